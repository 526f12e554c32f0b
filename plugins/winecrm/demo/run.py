"""``make demo``: the weekly DAG end to end on the sample estate, then the same date again.

1. starts the embedded PostgreSQL (unless CRM_DATABASE_URL is set) and keeps it up meanwhile;
2. writes the sample iSaVigne exports into $CRM_RAW_DIR (default .crm/raw);
3. prepares Airflow (AIRFLOW_HOME inside the project, SQLite metadata);
4. runs ``airflow dags test crm_weekly <logical date>`` — the real DAG, every task;
5. prints what happened, checks the quarantine against the rows planted as bad;
6. runs the same logical date again and shows that the warehouse did not change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from winecrm.airflow import WAREHOUSE_POOL, WAREHOUSE_POOL_DESCRIPTION
from winecrm.core import db, settings, storage
from winecrm.demo import sampledata

LOGICAL_DATE = "2026-11-16T05:00:00+00:00"  # Monday 16 Nov 2026, 06:00 Europe/Paris
TABLES = ("etl.ventes_lignes", "etl.clients", "etl.produits", "etl.stock", "etl.quarantine", "etl.file_manifest")


def airflow_env(database_url: str) -> dict[str, str]:
    root = settings.PROJECT_ROOT
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(root / "airflow_home"))
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


def print_summary(summary: dict, planted: list, conn) -> bool:
    print(f"\nRun {summary['run_id']} — week {summary['week_start']} → {summary['week_end']}: {summary['status'].upper()}")
    print(f"  files: {summary['files_seen']} seen, {summary['files_new']} new, "
          f"{summary['files_duplicate']} duplicate content (not re-ingested), {summary['files_quarantined']} rejected")
    ingest = summary["details"].get("ingest", {})
    for line in ingest.get("duplicates", []):
        print(f"    duplicate: {line}")
    for line in ingest.get("rejected", []):
        print(f"    rejected : {line}")
    print(f"  rows: {summary['rows_read']} read, {summary['rows_loaded']} loaded, {summary['rows_quarantined']} quarantined")
    for item in summary["quarantine_reasons"]:
        print(f"    {item['rows']:>4} × {item['dataset']}.{item['column'] or '(row)'}: {', '.join(item['expectations'])}")
    for reason, in conn.execute(
            "SELECT reason FROM etl.quarantine WHERE run_id = %s ORDER BY dataset, file_path, row_no LIMIT 12",
            (summary["run_id"],)):
        print(f"      - {reason}")
    warnings = summary["details"].get("validate", {}).get("datasets", {})
    for dataset, stats in warnings.items():
        for name, n in stats.get("warnings", {}).items():
            print(f"    warning: {dataset} {name}: {n} rows loaded with a flag")
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
        for scenario, code, reason in conn.execute(
                """SELECT DISTINCT ON (scenario) scenario, client_code, reason_fr FROM crm.recommendations
                   WHERE as_of_date = %s AND rank = 1 ORDER BY scenario, score DESC, client_code""", (rec["as_of"],)):
            print(f"    {scenario:<10} {code}: « {reason} »")
    seconds = summary.get("stage_seconds", {})
    print("  stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"  Data Docs (offline HTML): {summary['data_docs']}")
    found = {(ds, Path(path).name.replace(" (copie)", ""), row) for ds, path, row in conn.execute(
        "SELECT dataset, file_path, row_no FROM etl.quarantine WHERE run_id = %s AND row_no IS NOT NULL",
        (summary["run_id"],))}
    expected = {(b.dataset, b.file_name, b.row_no) for b in planted}
    exact = found == expected
    print(f"  quarantine vs. rows planted as bad by the generator: {len(found)} / {len(expected)} "
          f"→ {'exactly the bad rows' if exact else 'MISMATCH'}")
    if not exact:
        print(f"    unexpected: {sorted(found - expected)}\n    missed: {sorted(expected - found)}")
    return exact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logical-date", default=LOGICAL_DATE)
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
    for attempt in ("first run", "same logical date again"):
        with db.connect(url) as conn:
            before = counts(conn) if attempt != "first run" else None
            sum_before = checksum(conn) if before else None
        started = time.perf_counter()
        print(f"\n▶ airflow dags test crm_weekly {args.logical_date}   ({attempt})")
        code = _airflow(["dags", "test", "crm_weekly", args.logical_date], env, log_file)
        print(f"  finished in {time.perf_counter() - started:.0f}s with exit code {code}")
        with db.connect(url) as conn:
            summary = latest_run(conn)
            if code != 0 or not summary or summary.get("status") != "success":
                print(f"The DAG run failed; details in {log_file}", file=sys.stderr)
                if summary:
                    print(f"  error recorded in etl.runs: {summary.get('error')}", file=sys.stderr)
                return 1
            if before is None:
                ok &= print_summary(summary, planted.bad_rows, conn)
                print("  warehouse: " + ", ".join(f"{t} {n}" for t, n in counts(conn).items()))
            else:
                after = counts(conn)
                same = after == before and checksum(conn) == sum_before
                print(f"  {summary['files_new']} new files, {summary['rows_loaded']} rows loaded; "
                      f"warehouse {'unchanged' if same else 'CHANGED'} ({after['etl.ventes_lignes']} sales lines)")
                ok &= same
    print("\nDemo OK." if ok else "\nDemo finished with a mismatch (see above).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
