"""``make demo``: the weekly DAG end to end on the sample estate — a backfill of three weeks,
then the last week again.

1. starts the embedded PostgreSQL (unless CRM_DATABASE_URL is set) and keeps it up meanwhile;
2. writes the sample iSaVigne exports into $CRM_RAW_DIR (default .crm/raw);
3. prepares Airflow (AIRFLOW_HOME inside the project, SQLite metadata at an absolute path of
   this checkout, so a copied checkout never writes into another one's database);
4. runs ``airflow dags test crm_weekly -c '{"week": …}'`` for three weeks in order — the real
   DAG, every task, the week chosen as in the trigger form (the run's date stays now: no run
   of 7 days, no logical date taken from a later trigger);
5. prints each run's note, the last week's details (scores, one recommendation per scenario,
   the dry-run campaign in the outbox, the weekly report), checks the quarantine against the
   rows planted as bad;
6. runs the last week again and shows that the warehouse did not change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from winecrm.airflow import WAREHOUSE_POOL, WAREHOUSE_POOL_DESCRIPTION
from winecrm.core import db, settings, storage
from winecrm.demo import sampledata

BACKFILL_WEEKS = ("2026-10-26", "2026-11-02", "2026-11-09")  # Mondays: the sample's last three weeks
TABLES = ("etl.ventes_lignes", "etl.clients", "etl.produits", "etl.stock", "etl.quarantine", "etl.file_manifest")


def airflow_env(database_url: str) -> dict[str, str]:
    root = settings.PROJECT_ROOT
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(root / "airflow_home"))
    # airflow.cfg, once written, pins the database by absolute path: set it per checkout instead.
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{Path(env['AIRFLOW_HOME']).resolve()}/airflow.db")
    env.update({
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        "CRM_DATABASE_URL": database_url,
        "GX_ANALYTICS_ENABLED": "False",
    })
    return env


def _airflow(args: list[str], env: dict[str, str], log_file: Path) -> int:
    airflow = Path(sys.executable).with_name("airflow")
    with open(log_file, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ airflow {' '.join(args)}\n")
        fh.flush()
        return subprocess.call([str(airflow), *args], env=env, stdout=fh, stderr=subprocess.STDOUT)


def create_pool(env: dict[str, str], log_file: Path) -> int:
    """The warehouse pool (1 slot) the writing tasks run in, as docker compose's init creates it."""
    return _airflow(["pools", "set", WAREHOUSE_POOL, "1", WAREHOUSE_POOL_DESCRIPTION], env, log_file)


def counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def checksum(conn) -> str:
    return conn.execute(
        "SELECT md5(string_agg(md5(v::text), '' ORDER BY document_type, document_no, source_row)) FROM etl.ventes_lignes v"
    ).fetchone()[0]


def latest_run(conn) -> dict:
    from winecrm import pipeline

    row = conn.execute("SELECT run_id FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()
    return pipeline.run_summary(conn, row[0]) if row else {}


def print_summary(ingested: dict, summary: dict, planted: list, conn) -> bool:
    """``ingested``: the backfill's run that read the files (its first); ``summary``: its last run."""
    print(f"\nFiles and rows — run {ingested['run_id']} ({ingested['week_start']} → {ingested['week_end']}), "
          "the backfill's first run, took every new file of RAW:")
    print(f"  files: {ingested['files_seen']} seen, {ingested['files_new']} new, "
          f"{ingested['files_duplicate']} duplicate content (not re-ingested), {ingested['files_quarantined']} unreadable")
    ingest = ingested["details"].get("ingest", {})
    for line in ingest.get("duplicates", []):
        print(f"    duplicate: {line}")
    for line in ingest.get("rejected", []):
        print(f"    rejected : {line}")
    print(f"  rows: {ingested['rows_read']} read, {ingested['rows_written']} written, {ingested['rows_skipped']} skipped "
          f"(a newer export of the same document), {ingested['rows_quarantined']} quarantined; "
          f"{ingested['rows_superseded']} older warehouse lines replaced")
    for item in ingested["quarantine_reasons"]:
        print(f"    {item['rows']:>4} × {item['dataset']}.{item['column'] or '(row)'}: {', '.join(item['expectations'])}")
    for reason, in conn.execute(
            "SELECT reason FROM etl.quarantine WHERE run_id = %s ORDER BY dataset, file_path, row_no LIMIT 12",
            (ingested["run_id"],)):
        print(f"      - {reason}")
    warnings = ingested["details"].get("validate", {}).get("datasets", {})
    for dataset, stats in warnings.items():
        for name, n in stats.get("warnings", {}).items():
            print(f"    warning: {dataset} {name}: {n} rows loaded with a flag")
    print(f"\nScores and recommendations — run {summary['run_id']} ({summary['week_start']} → {summary['week_end']}):")
    score = summary["details"].get("score", {})
    if score:
        print(f"  scores as of {score['as_of']}: {score['customers']} customers — "
              + ", ".join(f"{k} {v}" for k, v in sorted(score["segments"].items())))
        for code, segment, lead, r, f, m in conn.execute(
                """SELECT r.client_code, r.segment, l.score, r.r_score, r.f_score, r.m_score
                   FROM crm.rfm_scores r JOIN crm.lead_scores l USING (as_of_date, client_code)
                   WHERE r.as_of_date = %s ORDER BY l.raw_score DESC, r.client_code LIMIT 3""", (score["as_of"],)):
            print(f"    top lead {code}: {segment}, lead score {lead} (R{r} F{f} M{m})")
    rec = summary["details"].get("recommend", {})
    if rec:
        print("  recommendations (customers): " + ", ".join(f"{k} {v}" for k, v in rec["recommended"].items()))
        print("  left out: " + ", ".join(f"{k} {v}" for k, v in rec["excluded"].items()))
        if rec.get("expected_buyers"):
            print("  buyers to expect in the horizon (sum of the chances to buy, control group left out): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in rec["expected_buyers"].items()))
        # each scenario's likeliest buyer (scenario_rank), all their wines: what their email will say
        for scenario, code, segment, probability, wines in conn.execute(
                """SELECT DISTINCT ON (scenario) scenario, client_code, segment, buy_probability,
                          (SELECT array_agg(w.produit || ' — « ' || w.reason_fr || ' »' ORDER BY w.rank)
                           FROM crm.recommendations w
                           WHERE w.as_of_date = r.as_of_date AND w.client_code = r.client_code)
                   FROM crm.recommendations r
                   WHERE as_of_date = %s AND rank = 1 AND NOT is_control
                   ORDER BY scenario, scenario_rank, client_code""", (rec["as_of"],)):
            chance = "" if probability is None else f", chance to buy {100 * float(probability):.0f} %"
            print(f"    {scenario} — {code} ({segment}{chance}):")
            for wine in wines:
                print(f"      {wine}")
    rendered, sent = summary["details"].get("render"), summary["details"].get("send")
    if rendered:
        print(f"\nCampaign {rendered['campaign_id']} — {rendered['why']}:")
        print("  rendered: " + ", ".join(f"{k} {v}" for k, v in rendered["by_status"].items())
              + (f" → after sending: {', '.join(f'{k} {v}' for k, v in sent['by_status'].items())}" if sent else ""))
        print("  no e-mail for: " + ", ".join(f"{k} {v}" for k, v in rendered["skipped"].items()))
        if sent and sent.get("outbox"):
            print(f"  outbox (nothing sent): {sent['outbox']}")
            for scenario, subject, path in conn.execute(
                    """SELECT DISTINCT ON (scenario) scenario, subject, outbox_path FROM crm.email_sends
                       WHERE campaign_id = %s AND status = 'simulated' ORDER BY scenario, send_id""",
                    (sent["campaign_id"],)):
                print(f"    {scenario}: « {subject} » — {path}")
    report = summary["details"].get("report")
    if report:
        print(f"\nWeekly report (French, self-contained HTML with its charts): {report['html']}")
        print(f"  JSON summary: {report['json']}")
    seconds = summary.get("stage_seconds", {})
    print("  stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"  Data Docs (offline HTML): {ingested['data_docs']}")
    found = {(ds, Path(path).name.replace(" (copie)", ""), row) for ds, path, row in conn.execute(
        "SELECT dataset, file_path, row_no FROM etl.quarantine WHERE run_id = %s AND row_no IS NOT NULL",
        (ingested["run_id"],))}
    expected = {(b.dataset, b.file_name, b.row_no) for b in planted}
    exact = found == expected
    print(f"  quarantine vs. rows planted as bad by the generator: {len(found)} / {len(expected)} "
          f"→ {'exactly the bad rows' if exact else 'MISMATCH'}")
    if not exact:
        print(f"    unexpected: {sorted(found - expected)}\n    missed: {sorted(expected - found)}")
    return exact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", nargs="+", metavar="YYYY-MM-DD",
                        help="Mondays of the weeks to run, in order (default: the sample's last three weeks)")
    parser.add_argument("--keep", action="store_true", help="keep previous demo data instead of starting fresh")
    args = parser.parse_args(argv)

    # The demo is one of the places an embedded PostgreSQL is asked for (unless CRM_DATABASE_URL is set).
    os.environ.setdefault(db.ALLOW_EMBEDDED_ENV, "1")
    paths = settings.paths()
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    log_file = paths.data_dir / "demo-airflow.log"
    log_file.write_text("", encoding="utf-8")
    embedded = not os.environ.get("CRM_DATABASE_URL")
    url = db.database_url()  # starts the embedded server and holds it for the whole demo
    print(f"Warehouse: {db.redact(url) if not embedded else 'embedded PostgreSQL in ' + str(paths.data_dir / 'pg')}")
    if not args.keep:
        for folder in (paths.raw_dir, paths.docs_dir):
            shutil.rmtree(folder, ignore_errors=True)
        storage.remove_tree(storage.work_root())
        if embedded:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS etl CASCADE")
                conn.execute("DROP SCHEMA IF EXISTS crm CASCADE")
    print(f"Sample exports → {paths.raw_dir}")
    planted = sampledata.write_sample_exports(paths.raw_dir)
    print(f"  {len(planted.files)} files, {planted.sales_lines_total} sales lines, "
          f"{planted.customers} customers, {planted.products} products, {len(planted.bad_rows)} rows planted as bad")

    env = airflow_env(url)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    print(f"Airflow metadata (SQLite) in {env['AIRFLOW_HOME']}; log of the Airflow commands: {log_file}")
    if _airflow(["db", "migrate"], env, log_file) != 0:
        print(f"airflow db migrate failed; see {log_file}", file=sys.stderr)
        return 1
    if create_pool(env, log_file) != 0:
        print(f"creating the Airflow pool {WAREHOUSE_POOL} failed; see {log_file}", file=sys.stderr)
        return 1

    ok = True
    weeks = args.weeks or list(BACKFILL_WEEKS)
    runs = [(week, f"backfill {i + 1}/{len(weeks)}") for i, week in enumerate(weeks)] + [(weeks[-1], "same week again")]
    before = sum_before = None
    first_run = None
    for week, label in runs:
        if label == "same week again":
            with db.connect(url) as conn:
                before, sum_before = counts(conn), checksum(conn)
        started = time.perf_counter()
        conf = json.dumps({"week": week})
        print(f"\n▶ airflow dags test crm_weekly -c '{conf}'   ({label})")
        code = _airflow(["dags", "test", "crm_weekly", "-c", conf], env, log_file)
        with db.connect(url) as conn:
            summary = latest_run(conn)
            print(f"  {summary.get('note') or '(no note)'}")
            print(f"  finished in {time.perf_counter() - started:.0f}s with exit code {code}")
            if code != 0 or not summary or summary.get("status") != "success":
                print(f"The DAG run failed; details in {log_file}", file=sys.stderr)
                if summary:
                    print(f"  error recorded in etl.runs: {summary.get('error')}", file=sys.stderr)
                return 1
            first_run = first_run or summary
            if label == "same week again":
                after = counts(conn)
                same = after == before and checksum(conn) == sum_before
                print(f"  warehouse {'unchanged' if same else 'CHANGED'} ({after['etl.ventes_lignes']} sales lines)")
                ok &= same
            elif week == weeks[-1]:
                ok &= print_summary(first_run, summary, planted.bad_rows, conn)
                print("  warehouse: " + ", ".join(f"{t} {n}" for t, n in counts(conn).items()))
    print("\nDemo OK." if ok else "\nDemo finished with a mismatch (see above).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
