"""Benchmark of scoring + recommendations and of the backtest on a 1M-line, 50,000-customer estate.

    python bench/bench_scoring.py                 # make bench-scoring

The estate is the sample generator's (``write_sample_exports``) scaled up: customers file,
XLSX catalogue, stock, weekly files with planted bad rows, ~1M sales lines over 3.2 years. It
is loaded once through the weekly pipeline (ingest -> validate -> load), then measured:
``score`` + ``recommend`` as of the run's Sunday (the tasks of crm_weekly), and the backtest
(4 automatic cutoffs, 90-day horizon) on the same database. Peak RSS is sampled (every
50-100 ms, during each measured part only: the earlier load's peak is not counted) for this
process and for the busiest PostgreSQL backend. Uses CRM_BENCH_DATABASE_URL if set, else an
embedded PostgreSQL under bench/out/. Writes bench/out/results-scoring.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out"

from bench_load import PeakRss, machine  # noqa: E402


class PeakServerRss(PeakRss):
    """Largest RSS of any single PostgreSQL process (``peak``; ``mb`` would add this process's)."""

    def _sample(self) -> int:
        import psutil

        return max((proc.info["memory_info"].rss for proc in psutil.process_iter(["name", "memory_info"])
                    if (proc.info["name"] or "").startswith("postgres") and proc.info["memory_info"]), default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--cutoffs", type=int, default=4)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    work = OUT / f"scoring-{args.customers}"
    os.environ["CRM_DATA_DIR"] = str(work / "data")
    os.environ["CRM_RAW_DIR"] = str(work / "raw")
    os.environ["CRM_FILE_SETTLE_SECONDS"] = "0"
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import shutil

    import psycopg
    from winecrm import pipeline
    from winecrm.core import db
    from winecrm.crm.scoring import scoring_config
    from winecrm_tools.samples import sampledata
    from winecrm_tools.evaluation import backtest

    shutil.rmtree(work / "data", ignore_errors=True)
    years = 3.2
    if not (work / "raw").exists():
        t = time.perf_counter()
        # churn and the end-date cut keep ~82 % of the generated lines: ask for more
        out = sampledata.write_sample_exports(work / "raw", n_customers=args.customers, years=years,
                                              lines_per_customer_year=args.lines / args.customers / years / 0.82)
        print(f"generated {out.sales_lines_total} lines in {time.perf_counter() - t:.0f}s")

    admin = os.environ.get("CRM_BENCH_DATABASE_URL") or db.embedded_server_url(data_dir=OUT / "pg", db_name="postgres")
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    os.environ["CRM_DATABASE_URL"] = url
    results: dict = {"machine": machine(), "customers": args.customers}
    try:
        with psycopg.connect(url) as conn:
            window = pipeline.week_window("bench_scoring", dt.datetime(2026, 11, 16, 5, tzinfo=dt.timezone.utc))
            pipeline.prepare(conn, window)
            for stage in (pipeline.run_ingest, pipeline.run_validate, pipeline.run_load):
                stage(conn, window.run_id)
            results["sales_lines"] = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
            results["customers_with_sales"] = conn.execute(
                "SELECT count(DISTINCT client_code) FROM etl.ventes_lignes").fetchone()[0]
            conn.execute("ANALYZE etl.ventes_lignes")
            conn.commit()
            with PeakRss() as rss, PeakServerRss() as server:
                t = time.perf_counter()
                score = pipeline.run_score(conn, window.run_id)
                t_score = time.perf_counter() - t
                rec = pipeline.run_recommend(conn, window.run_id)
                t_total = time.perf_counter() - t
            results.update({
                "score_s": round(t_score, 1), "recommend_s": round(t_total - t_score, 1),
                "score_plus_recommend_s": round(t_total, 1), "peak_rss_mb": round(rss.peak / 1e6),
                "peak_server_backend_rss_mb": round(server.peak / 1e6),
                "segments": score["segments"], "affinity_pairs": score["affinity_pairs"],
                "recommended": rec["recommended"], "excluded": rec["excluded"],
                "recommend_steps_s": rec.get("step_seconds")})
            print(json.dumps(results, indent=1))

            with PeakRss() as rss, PeakServerRss() as server:
                t = time.perf_counter()
                cutoffs = backtest.auto_cutoffs(conn, 90, args.cutoffs)
                report = backtest.run(conn, cutoffs, 90, scoring_config())
                results["backtest_s"] = round(time.perf_counter() - t, 1)
            results["backtest_peak_rss_mb"] = round(rss.peak / 1e6)
            results["backtest_peak_server_backend_rss_mb"] = round(server.peak / 1e6)
            results["backtest_cutoffs"] = report["cutoffs"]
            results["backtest_per_cutoff_s"] = [c["seconds"] for c in report["per_cutoff"]]
            report["source"] = {"dataset": f"bench estate ({args.customers} customers)", "lines": results["sales_lines"]}
            report["seconds"] = results["backtest_s"]
            print(backtest.format_report(report))
            results["backtest_summary"] = report["summary"]
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results-scoring.json").write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps({k: v for k, v in results.items() if k != "backtest_summary"}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
