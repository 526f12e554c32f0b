"""Benchmark of the weekly pipeline's ingest → validate → load on big sales exports.

    python bench/bench_load.py --lines 1000000            # the 1M-line figures + baselines + delta
    python bench/bench_load.py --lines 10000000 --skip-baselines   # bounded memory on 10M lines

Measures, in one run on one database: wall time per stage and from the ingest's start until the
load and the Data Docs (which run beside the load, as in the DAG) are both done, peak RSS of this
process (the pipeline runs in it), the load stage's throughput against (a) a plain COPY of the same rows
into an unindexed table and (b) pandas.to_sql(chunksize=500) — the original documents'
approach —, then a weekly delta of ~5,000 lines into the loaded warehouse.
Uses CRM_BENCH_DATABASE_URL if set, else a fresh embedded PostgreSQL under bench/out/.
Prints a Markdown table row block to paste into bench/RESULTS.md, and writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
OUT = ROOT / "bench" / "out"


class PeakRss:
    """Samples the memory of this process and of the workers it forks (validation checks a big
    file's chunks in two processes) every 50 ms: this process's RSS plus each worker's USS, the
    memory only that worker holds (the pages it shares with this process, forked from it, are
    counted once, here). ru_maxrss (this process alone) as a cross-check."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_full_info().uss
            except psutil.Error:  # ended between the listing and the reading
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 1e6


def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores {cpu}, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--peer-python", help="python of the peer's virtualenv (dlt): run the peer on the same "
                        "file and server in this run (make bench builds it)")
    parser.add_argument("--to-sql-rows", type=int, default=200_000,
                        help="rows for the pandas.to_sql baseline (its rate is compared; 1M takes minutes)")
    args = parser.parse_args()

    tag = f"{args.lines // 1_000_000}M" if args.lines >= 1_000_000 else f"{args.lines // 1000}k"
    work = OUT / tag
    import shutil

    # A run starts from its generated history file only (cached), never from a previous run's state.
    shutil.rmtree(work / "data", ignore_errors=True)
    for stale in (work / "raw" / "isavigne" / "ventes_lignes").glob("ventes_lignes_2026-11-16*"):
        stale.unlink()
    os.environ["CRM_DATA_DIR"] = str(work / "data")
    os.environ["CRM_RAW_DIR"] = str(work / "raw")
    os.environ["CRM_FILE_SETTLE_SECONDS"] = "0"
    os.environ["GX_ANALYTICS_ENABLED"] = "False"

    import psycopg
    from winecrm import pipeline
    from winecrm.core import db
    from winecrm_tools.samples import sampledata

    sales_file = work / "raw" / "isavigne" / "ventes_lignes" / f"ventes_lignes_historique_{tag}_2026-11-09.csv"
    if not sales_file.exists():
        t = time.perf_counter()
        n = sampledata.write_sales_file(sales_file, args.lines, end=dt.date(2026, 11, 8))
        print(f"generated {n} lines in {time.perf_counter() - t:.0f}s ({sales_file.stat().st_size / 1e6:.0f} MB)")
    lines_in_file = sum(1 for _ in open(sales_file, "rb")) - 1

    admin = os.environ.get("CRM_BENCH_DATABASE_URL") or db.embedded_server_url(data_dir=OUT / "pg", db_name="postgres")
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    os.environ["CRM_DATABASE_URL"] = url

    results: dict = {"machine": machine(), "lines": lines_in_file, "file_mb": round(sales_file.stat().st_size / 1e6)}
    try:
        with psycopg.connect(url) as conn, PeakRss() as rss:
            stage_peaks = peaks_per_stage(pipeline.stages, rss)
            window = pipeline.week_window("bench_initial", dt.datetime(2026, 11, 9, 5, tzinfo=dt.timezone.utc))
            t0 = time.perf_counter()
            summary = pipeline.run_all(conn, window, require_week=False)  # sales only, by design
            results["run_all_s"] = round(time.perf_counter() - t0, 1)
            results["initial_stage_s"] = summary["stage_seconds"]
            # The issue-2 figure: ingest -> validate -> load (scoring is reported on its own).
            results["initial_total_s"] = ingest_validate_load_s(summary["stage_seconds"])
            results["initial_task_time_sum_s"] = task_time_sum(summary["stage_seconds"])  # data docs counted too
            results["score_s"] = summary["stage_seconds"].get("score")
            results["initial_load_detail"] = summary["details"]["load"]["ventes_lignes"]
            results["rows_written"] = summary["rows_written"]
            results["rows_quarantined"] = summary["rows_quarantined"]
        results["initial_peak_rss_mb"] = round(rss.mb)
        results["initial_stage_peak_rss_mb"] = dict(stage_peaks)  # later runs (delta, re-delivery) reuse it
        # the issue-2/22 figure: the peak while ingesting, validating and loading (scoring apart)
        results["ingest_validate_load_peak_rss_mb"] = max(stage_peaks.get(k, 0) for k in LOADING_STAGES)
        print(json.dumps(results, indent=1))

        if not args.skip_baselines:
            results.update(baselines(url, window.run_id, args.to_sql_rows, summary))
            results.update(weekly_delta(url))
            results.update(full_redelivery(url, sales_file))
        if args.peer_python:
            results["peer"] = peer_dlt(args.peer_python, admin, sales_file)
            results["vs_peer"] = versus_peer(results)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"results-{tag}.json").write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps(results, indent=1, default=str))
    return 0


LOADING_STAGES = ("ingest", "validate", "data_docs", "load")  # what the load targets measure; scoring apart
SPANS: dict[str, tuple[float, float]] = {}  # stage -> (start, end), perf_counter, of the last run_all


def ingest_validate_load_s(stage_seconds: dict) -> float:
    """Wall time from the ingest's start until both the load and the Data Docs (run beside the
    load in a process of their own, as in the DAG) are done; ``stage_seconds`` is the fallback
    when no span was taken."""
    _read_spans_from_other_processes()
    if "ingest" in SPANS and "load" in SPANS and "data_docs" in SPANS:
        return round(max(SPANS["load"][1], SPANS["data_docs"][1]) - SPANS["ingest"][0], 1)
    return task_time_sum(stage_seconds)


MAIN_PID = os.getpid()
SPANS_FILE = OUT / f"spans-{MAIN_PID}.txt"  # stages run in another process (the Data Docs) write theirs here


def _read_spans_from_other_processes() -> None:
    if SPANS_FILE.exists():
        for line in SPANS_FILE.read_text().splitlines():
            name, start, end = line.split()
            SPANS[name] = (float(start), float(end))
        SPANS_FILE.unlink()


def task_time_sum(stage_seconds: dict) -> float:
    """The four tasks' times added up, as if nothing ran beside anything."""
    return round(sum(stage_seconds.get(k, 0) for k in LOADING_STAGES), 1)


def peaks_per_stage(stages, rss: PeakRss) -> dict:
    """Wraps the pipeline's stages so that ``rss`` is read per stage: {stage: peak MB}."""
    peaks: dict[str, int] = {}

    def wrap(stage):
        def run(*args, **kwargs):
            rss.peak = rss._sample()
            started = time.perf_counter()
            try:
                return stage(*args, **kwargs)
            finally:
                name = stage.__name__.removeprefix("run_")
                SPANS[name] = (started, time.perf_counter())  # perf_counter: CLOCK_MONOTONIC, one clock for all processes
                if os.getpid() != MAIN_PID:
                    with open(SPANS_FILE, "a") as spans:
                        spans.write(f"{name} {SPANS[name][0]} {SPANS[name][1]}\n")
                peaks[name] = round(max(rss.peak, rss._sample()) / 1e6)
        run.__name__ = stage.__name__
        return run

    stages.STAGES = tuple(wrap(stage) for stage in stages.STAGES)  # run_all reads them there
    return peaks


def peer_dlt(python: str, admin: str, sales_file: Path) -> dict:
    """dlt on the same file and the same server, in a database of its own: replace, then the same
    file again as a merge (our re-delivery's counterpart)."""
    import subprocess

    import psycopg

    name = f"peer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        done = subprocess.run([os.path.abspath(python), str(ROOT / "bench" / "peer_dlt.py"), "--file", str(sales_file),
                               "--dsn", as_url(psycopg.conninfo.make_conninfo(admin, dbname=name))],
                              capture_output=True, text=True, cwd=OUT)
        if done.returncode:
            raise RuntimeError(f"the dlt peer failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(json.dumps(out, indent=1))
    return out


def as_url(conninfo: str) -> str:
    """A connection URL dlt accepts for any server, a unix socket's included (libpq takes the
    ``host`` query parameter over the URL's host)."""
    from urllib.parse import quote, urlencode

    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    host, port = str(params.pop("host", "localhost")), params.pop("port", 5432)
    user, dbname = params.pop("user", "postgres"), params.pop("dbname", "postgres")
    password = params.pop("password", None)  # none: peer_dlt.py puts the placeholder dlt insists on
    query = {**params, "host": host} if host.startswith("/") else params
    netloc_host = "localhost" if host.startswith("/") else host
    secret = f":{quote(str(password))}" if password else ""
    return f"postgresql://{quote(str(user))}{secret}@{netloc_host}:{port}/{quote(str(dbname))}" + \
        (f"?{urlencode(query)}" if query else "")


def versus_peer(results: dict) -> dict:
    """Our figures over dlt's, measured in this run (the issue's targets: <= 0.9 and <= 0.6)."""
    runs = {run["disposition"]: run for run in results["peer"]["runs"]}
    out = {"ours_initial_s": results["initial_total_s"], "dlt_replace_s": runs["replace"]["total_s"],
           "initial_over_dlt_replace": round(results["initial_total_s"] / runs["replace"]["total_s"], 2)}
    if "redelivery_total_s" in results and "merge" in runs:
        out.update(ours_redelivery_s=results["redelivery_total_s"], dlt_merge_s=runs["merge"]["total_s"],
                   redelivery_over_dlt_merge=round(results["redelivery_total_s"] / runs["merge"]["total_s"], 2))
    print(json.dumps(out, indent=1))
    return out


def _good_parts(run_id: str):
    import pandas as pd
    from winecrm.core.storage import run_work_dir

    for part in sorted(run_work_dir(run_id).glob("file-*/good-*.parquet")):
        yield pd.read_parquet(part)


def baselines(url: str, run_id: str, to_sql_rows: int, summary: dict) -> dict:
    """Same rows, same database, same run: plain COPY and pandas.to_sql against our load stage."""
    import pandas as pd
    import psycopg
    import sqlalchemy
    from winecrm.etl.load import _staging_frame, copy_frames

    out = {}
    load_s = summary["stage_seconds"]["load"]
    rows = summary["rows_written"]
    out["load_stage_s"] = load_s
    out["load_rows_per_s"] = round(rows / load_s)

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE plain_copy (client_code text, date_livraison date, produit_label text, "
                     "qty_line numeric, pu_ht numeric, mt_ht numeric, mt_ttc numeric, marge numeric, "
                     "document_type text, document_no text, article text, email text, email_valid boolean, "
                     "code_postal text, ville text, file_id bigint, source_row bigint, export_date date)")
        conn.commit()
        # The same client path as the loader (Parquet -> Arrow CSV -> COPY, pipelined), minus the
        # warehouse logic: what the load stage would cost if it were only a bulk copy.
        t = time.perf_counter()
        copied = copy_frames(conn, "plain_copy",
                             (_staging_frame("ventes_lignes", good, 1, "2026-11-09") for good in _good_parts(run_id)))
        conn.commit()
        plain_s = time.perf_counter() - t
    out["plain_copy_s"] = round(plain_s, 2)
    out["plain_copy_rows_per_s"] = round(copied / plain_s)
    out["load_vs_plain_copy"] = round((rows / load_s) / (copied / plain_s), 3)

    frames, taken = [], 0
    for good in _good_parts(run_id):
        frames.append(good.head(to_sql_rows - taken))
        taken += len(frames[-1])
        if taken >= to_sql_rows:
            break
    sample = pd.concat(frames, ignore_index=True)
    # As in the original documents: create_engine(DATABASE_URL) with a postgresql:// URL — i.e.
    # SQLAlchemy's default PostgreSQL driver, psycopg2 — then df.to_sql(..., chunksize=500).
    # The same with psycopg 3 (which pipelines executemany) is measured too, for transparency.
    params = psycopg.conninfo.conninfo_to_dict(url)
    # SQLAlchemy 2.0 (their era) resolved postgresql:// to psycopg2; name it explicitly.
    for label, driver_url in (("to_sql", "postgresql+psycopg2://"), ("to_sql_psycopg3", "postgresql+psycopg://")):
        import psycopg2

        creator = (lambda: psycopg2.connect(**params)) if label == "to_sql" else (lambda: psycopg.connect(url))
        engine = sqlalchemy.create_engine(driver_url, creator=creator)
        assert engine.dialect.driver == ("psycopg2" if label == "to_sql" else "psycopg")
        t = time.perf_counter()
        sample.to_sql(f"{label}_baseline", engine, if_exists="replace", index=False, chunksize=500)
        seconds = time.perf_counter() - t
        engine.dispose()
        out[f"{label}_rows"] = len(sample)
        out[f"{label}_s"] = round(seconds, 2)
        out[f"{label}_rows_per_s"] = round(len(sample) / seconds)
        out[f"load_vs_{label}"] = round((rows / load_s) / (len(sample) / seconds), 2)
    print(json.dumps(out, indent=1))
    return out


WEEKLY_TASKS = ("ingest", "validate", "load", "data_docs", "score")  # the weekly delta's tasks up to the scores


def settle_autovacuum(conn, limit_s: float = 120.0) -> float:
    """Wait (at most ``limit_s``) until no autovacuum worker runs on the server; returns the wait."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                            "AND state IS DISTINCT FROM 'idle'").fetchone()[0]
        conn.commit()
        if not busy:
            break
        time.sleep(0.5)
    return round(time.perf_counter() - started, 1)


def weekly_delta(url: str) -> dict:
    """~5,000 new lines (one week) into the warehouse that now holds the big history."""
    import psycopg
    from winecrm import pipeline
    from winecrm.core import settings
    from winecrm_tools.samples import sampledata

    raw = settings.paths().raw_dir
    delta = raw / "isavigne" / "ventes_lignes" / "ventes_lignes_2026-11-16.csv"
    # One week of sales by the same customers, with new document numbers.
    sampledata.write_sales_file(delta, 5_000, n_customers=50_000, seed=99, end=dt.date(2026, 11, 15),
                                years=7 / 365.25, first_doc_no=900_000_000)
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
        # a weekly run comes a week after the last one: the server's autovacuum of the initial
        # load is long done, not competing for the two cores
        settled = settle_autovacuum(conn)
        window = pipeline.week_window("bench_delta", dt.datetime(2026, 11, 16, 5, tzinfo=dt.timezone.utc))
        t = time.perf_counter()
        summary = pipeline.run_all(conn, window, require_week=False)  # sales only, by design
        total = time.perf_counter() - t
        after = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    score = summary["details"].get("score") or {}
    out = {"delta_lines": summary["rows_read"], "delta_total_s": round(total, 2),
           "delta_waited_for_autovacuum_s": settled,
           # the figure: the task time of the weekly delta's five tasks, added up
           "delta_task_time_sum_s": round(sum(summary["stage_seconds"].get(k, 0) for k in WEEKLY_TASKS), 2),
           "delta_stage_s": summary["stage_seconds"], "warehouse_before": before, "warehouse_after": after,
           # where the rescoring's time went: its SQL steps, and the chance to buy's wait and finish
           "delta_score_sql_s": score.get("sql_seconds"),
           "delta_score_customers": {k: score.get(k) for k in ("customers", "customers_recomputed")},
           "delta_buy_probability_s": (score.get("buy_probability") or {}).get("seconds")}
    print(json.dumps(out, indent=1))
    return out


def full_redelivery(url: str, sales_file: Path) -> dict:
    """The whole history re-exported under another name (bytes differ by one blank line): every
    document is arbitrated, its old lines deleted and replaced — the load's slowest path."""
    import psycopg
    from winecrm import pipeline

    again = sales_file.with_name("ventes_lignes_reexport_2026-11-16.csv")
    again.write_bytes(sales_file.read_bytes() + b"\r\n")
    try:
        with psycopg.connect(url) as conn:
            window = pipeline.week_window("bench_redelivery", dt.datetime(2026, 11, 16, 6, tzinfo=dt.timezone.utc))
            summary = pipeline.run_all(conn, window, require_week=False)  # sales only, by design
            count = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    finally:
        again.unlink()
    load = summary["details"]["load"]["ventes_lignes"]
    out = {"redelivery_total_s": ingest_validate_load_s(summary["stage_seconds"]),
           "redelivery_task_time_sum_s": task_time_sum(summary["stage_seconds"]),
           "redelivery_lines": summary["rows_read"], "redelivery_load_s": summary["stage_seconds"]["load"],
           "redelivery_load_rows_per_s": round(summary["rows_read"] / summary["stage_seconds"]["load"]),
           "redelivery_load_detail": load, "warehouse_after_redelivery": count}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(main())
