"""The weekly pipeline's stages as plain functions, shared by the DAG, the demo and the benchmarks.

Each stage takes a psycopg connection and the run id, records what it did in ``etl.runs`` and
is safe to repeat: a retry or a rerun of the same logical date changes nothing more.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from winecrm.etl import ingest as ingest_mod
from winecrm.etl import load as load_mod
from winecrm.core import settings
from winecrm.etl import validate as validate_mod
from winecrm.core.migrations import apply_migrations

log = logging.getLogger(__name__)
PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class RunWindow:
    run_id: str
    logical_date: dt.datetime
    week_start: dt.date  # Monday of the sales week covered
    week_end: dt.date  # its Sunday

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "logical_date": self.logical_date.isoformat(),
                "week_start": self.week_start.isoformat(), "week_end": self.week_end.isoformat()}

    @classmethod
    def from_dict(cls, data: dict) -> "RunWindow":
        return cls(data["run_id"], dt.datetime.fromisoformat(data["logical_date"]),
                   dt.date.fromisoformat(data["week_start"]), dt.date.fromisoformat(data["week_end"]))


def week_window(run_id: str, logical_date: dt.datetime) -> RunWindow:
    """The complete Monday–Sunday week before the run's logical date (Europe/Paris).

    Weekly cron runs get data_interval_start == data_interval_end, so the window is derived
    from the logical date: a run on Monday 16 Nov 06:00 covers Mon 9 – Sun 15 Nov.
    """
    local = logical_date.astimezone(PARIS).date()
    this_monday = local - dt.timedelta(days=local.weekday())
    week_start = this_monday - dt.timedelta(days=7)
    return RunWindow(run_id, logical_date, week_start, week_start + dt.timedelta(days=6))


def prepare(conn: psycopg.Connection, window: RunWindow) -> list[str]:
    """Apply pending migrations and open (or reopen, on a rerun) the run record."""
    applied = apply_migrations(conn)
    conn.execute(
        """INSERT INTO etl.runs (run_id, logical_date, week_start, week_end)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, error = NULL,
               started_at = now(), files_seen = 0, files_new = 0, files_duplicate = 0,
               files_quarantined = 0, rows_read = 0, rows_loaded = 0, rows_quarantined = 0,
               stage_seconds = '{}', details = '{}'""",
        (window.run_id, window.logical_date, window.week_start, window.week_end),
    )
    conn.commit()
    return applied


def exports_status(window: RunWindow, raw_dir: Path | None = None, now: float | None = None) -> tuple[bool, list[str]]:
    """Whether every required dataset has a complete export for the week; else what is missing."""
    cfg = settings.pipeline_config().get("exports", {})
    required = cfg.get("required_datasets", ["ventes_lignes", "clients", "produits", "stock"])
    raw_dir = raw_dir or settings.paths().raw_dir
    files = ingest_mod.discover(raw_dir, now=now)
    latest_ok = window.logical_date.astimezone(PARIS).date() + dt.timedelta(days=1)
    missing = []
    for dataset in required:
        in_window = [f for f in files if f.dataset == dataset and window.week_start < f.export_date <= latest_ok]
        complete = [f for f in in_window if f.complete]
        if complete:
            continue
        if in_window:
            missing.append(f"{dataset}: " + "; ".join(f"{f.relative} {f.why_incomplete}" for f in in_window))
        else:
            missing.append(f"{dataset}: no file in {raw_dir / 'isavigne' / dataset} dated "
                           f"{window.week_start + dt.timedelta(days=1):%d/%m/%Y}–{latest_ok:%d/%m/%Y} "
                           "(date in the file name, else modification time)")
    return (not missing, missing)


def wait_deadline(window: RunWindow) -> dt.datetime:
    hours = float(settings.pipeline_config().get("exports", {}).get("max_wait_hours", 6))
    return window.logical_date + dt.timedelta(hours=hours)


class ExportsMissing(RuntimeError):
    """The week's exports did not arrive in time: not worth retrying."""


def check_exports(window: RunWindow, now: dt.datetime | None = None) -> bool:
    """Sensor body: True when ready, False to look again later, ExportsMissing past the deadline."""
    ready, missing = exports_status(window)
    if ready:
        return True
    now = now or dt.datetime.now(dt.timezone.utc)
    deadline = wait_deadline(window)
    if now >= deadline:
        raise ExportsMissing(
            f"iSaVigne exports for the week {window.week_start:%d/%m/%Y}–{window.week_end:%d/%m/%Y} "
            f"still incomplete at {deadline.astimezone(PARIS):%d/%m/%Y %H:%M} (exports.max_wait_hours): "
            + " | ".join(missing))
    log.info("Waiting for exports (deadline %s): %s", deadline.isoformat(), " | ".join(missing))
    return False


def _record(conn: psycopg.Connection, run_id: str, stage: str, seconds: float, details: dict, **counters) -> None:
    sets = ", ".join(f"{k} = %({k})s" for k in counters)
    conn.execute(
        f"""UPDATE etl.runs SET stage_seconds = stage_seconds || jsonb_build_object(%(stage)s::text, %(seconds)s::float8),
                details = details || jsonb_build_object(%(stage)s::text, %(details)s::jsonb)
                {', ' + sets if sets else ''}
            WHERE run_id = %(run_id)s""",
        {"stage": stage, "seconds": round(seconds, 3), "details": json.dumps(details, default=str),
         "run_id": run_id, **counters},
    )
    conn.commit()


def run_ingest(conn: psycopg.Connection, run_id: str) -> dict:
    started = time.perf_counter()
    report = ingest_mod.ingest(conn, run_id)
    details = report.as_dict()
    _record(conn, run_id, "ingest", time.perf_counter() - started, details,
            files_seen=report.files_seen, files_new=report.files_new, files_duplicate=report.files_duplicate,
            files_quarantined=report.files_quarantined, rows_read=report.rows_read)
    return details


def run_validate(conn: psycopg.Connection, run_id: str) -> dict:
    started = time.perf_counter()
    try:
        summary = validate_mod.validate(conn, run_id)
    except validate_mod.QualityGateError as exc:
        _record(conn, run_id, "validate", time.perf_counter() - started, {"quality_gate": str(exc)})
        raise
    _record(conn, run_id, "validate", time.perf_counter() - started,
            {"datasets": summary, "data_docs": str(settings.paths().data_docs_index)},
            rows_quarantined=sum(s["quarantined"] for s in summary.values()))
    return summary


def run_load(conn: psycopg.Connection, run_id: str) -> dict:
    started = time.perf_counter()
    report = load_mod.load(conn, run_id)
    _record(conn, run_id, "load", time.perf_counter() - started, report,
            rows_loaded=sum(r["rows_staged"] for r in report.values()))
    return report


def _as_of_week_end(conn: psycopg.Connection, run_id: str, stage: str, compute) -> dict:
    """Run ``compute(conn, run_id, as_of)`` as of the Sunday that ends the run's week, so a
    backfill reproduces that week, and record it under ``stage``."""
    started = time.perf_counter()
    week_end = conn.execute("SELECT week_end FROM etl.runs WHERE run_id = %s", (run_id,)).fetchone()[0]
    report = compute(conn, run_id, week_end)
    _record(conn, run_id, stage, time.perf_counter() - started, report)
    return report


def run_score(conn: psycopg.Connection, run_id: str) -> dict:
    from winecrm.crm import scoring

    return _as_of_week_end(conn, run_id, "score", scoring.score)


def run_recommend(conn: psycopg.Connection, run_id: str) -> dict:
    """Recommendations read the scores of the same Sunday."""
    from winecrm.crm import recommend

    return _as_of_week_end(conn, run_id, "recommend", recommend.recommend)


def finish(conn: psycopg.Connection, run_id: str, *, error: str | None = None) -> dict:
    """Close the run record (the counters were written by each stage as it finished)."""
    conn.rollback()
    conn.execute(
        """UPDATE etl.runs SET status = %(status)s, finished_at = now(), error = %(error)s
           WHERE run_id = %(run_id)s""",
        {"status": "failed" if error else "success", "error": error, "run_id": run_id},
    )
    conn.commit()
    return run_summary(conn, run_id)


def run_summary(conn: psycopg.Connection, run_id: str) -> dict:
    row = conn.execute(
        """SELECT run_id, logical_date, week_start, week_end, status, files_seen, files_new, files_duplicate,
                  files_quarantined, rows_read, rows_loaded, rows_quarantined, stage_seconds, details, error
           FROM etl.runs WHERE run_id = %s""",
        (run_id,),
    ).fetchone()
    if row is None:
        return {}
    keys = ["run_id", "logical_date", "week_start", "week_end", "status", "files_seen", "files_new",
            "files_duplicate", "files_quarantined", "rows_read", "rows_loaded", "rows_quarantined",
            "stage_seconds", "details", "error"]
    summary = dict(zip(keys, row))
    summary["quarantine_reasons"] = [
        {"dataset": d, "column": c, "expectations": e, "rows": n}
        for d, c, e, n in conn.execute(
            """SELECT dataset, column_name, expectations, count(*) FROM etl.quarantine
               WHERE run_id = %s GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2""", (run_id,))
    ]
    summary["data_docs"] = str(settings.paths().data_docs_index)
    return summary


def run_all(conn: psycopg.Connection, window: RunWindow) -> dict:
    """Every stage in order, without Airflow (benchmarks, CLI)."""
    prepare(conn, window)
    try:
        run_ingest(conn, window.run_id)
        run_validate(conn, window.run_id)
        run_load(conn, window.run_id)
        run_score(conn, window.run_id)
        run_recommend(conn, window.run_id)
    except Exception as exc:
        finish(conn, window.run_id, error=f"{exc.__class__.__name__}: {exc}")
        raise
    return finish(conn, window.run_id)
