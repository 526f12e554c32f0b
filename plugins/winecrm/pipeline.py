"""The weekly run's stages as plain functions, shared by the DAG, the demo, the CLI and the benchmarks.

Each stage takes a psycopg connection and the run id, holds the warehouse's writer lock while it
writes (one writer per warehouse, whatever started the work), records what it did in its
attempt's row of ``etl.runs`` and is safe to repeat: a retry or a rerun of the same logical
date changes nothing more.
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

from winecrm.core import db, settings
from winecrm.core.migrations import apply_migrations
from winecrm.etl import ingest as ingest_mod
from winecrm.etl import load as load_mod
from winecrm.etl import validate as validate_mod
from winecrm.etl.contract import DATASETS

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


# The run's current attempt in etl.runs (a rerun is a new attempt of the same run id).
_CURRENT = "run_id = %(run_id)s AND attempt = (SELECT max(attempt) FROM etl.runs WHERE run_id = %(run_id)s)"


def writer(conn: psycopg.Connection, run_id: str, stage: str):
    """The warehouse's writer lock, named after the run and the stage holding it."""
    return db.warehouse_writer(conn, f"{run_id}:{stage}")


def prepare(conn: psycopg.Connection, window: RunWindow) -> list[str]:
    """Check the settings files, apply pending migrations and open a new attempt of the run.

    A rerun of the same run id is a new attempt (``etl.runs.attempt`` + 1): what earlier
    attempts did stays recorded."""
    settings.check_all()
    with writer(conn, window.run_id, "prepare"):
        applied = apply_migrations(conn)
        conn.execute(
            """INSERT INTO etl.runs (run_id, attempt, logical_date, week_start, week_end)
               SELECT %(run_id)s, coalesce(max(attempt), 0) + 1, %(logical_date)s, %(week_start)s, %(week_end)s
               FROM etl.runs WHERE run_id = %(run_id)s""",
            {"run_id": window.run_id, "logical_date": window.logical_date, "week_start": window.week_start,
             "week_end": window.week_end},
        )
        conn.commit()
    return applied


def heartbeat(conn: psycopg.Connection, run_id: str) -> None:
    """A sign of life of the run's current attempt (see ``ingest`` for why it matters)."""
    conn.execute(f"UPDATE etl.runs SET heartbeat_at = now() WHERE {_CURRENT}", {"run_id": run_id})
    conn.commit()



def latest_export_date(window: RunWindow) -> dt.date:
    """Exports dated after the week's Monday and up to the day after the run's logical date
    belong to the run's week."""
    return window.logical_date.astimezone(PARIS).date() + dt.timedelta(days=1)


def in_window(window: RunWindow, export_date: dt.date) -> bool:
    return window.week_start < export_date <= latest_export_date(window)


def exports_status(window: RunWindow, raw_dir: Path | None = None, now: float | None = None) -> tuple[bool, list[str]]:
    """Whether the week's exports are there: every required dataset has a complete export, and
    no file of the week (of any dataset) is still being copied; else what is awaited."""
    cfg = settings.pipeline_config().exports
    raw_dir = raw_dir or settings.paths().raw_dir
    files = ingest_mod.discover(raw_dir, now=now)
    latest_ok = latest_export_date(window)
    missing = []
    for dataset in DATASETS:
        in_week = [f for f in files if f.dataset == dataset and in_window(window, f.export_date)]
        settling = [f for f in in_week if not f.complete]
        if settling:  # a file of the week still arriving is waited for, even when an older one is complete
            missing.append(f"{dataset}: " + "; ".join(f"{f.relative} {f.why_incomplete}" for f in settling))
            continue
        if dataset not in cfg.required_datasets or in_week:
            continue
        else:
            missing.append(f"{dataset}: no file in {raw_dir / 'isavigne' / dataset} dated "
                           f"{window.week_start + dt.timedelta(days=1):%d/%m/%Y}–{latest_ok:%d/%m/%Y} "
                           "(date in the file name, else modification time)")
    return (not missing, missing)


def wait_deadline(window: RunWindow) -> dt.datetime:
    return window.logical_date + dt.timedelta(hours=settings.pipeline_config().exports.max_wait_hours)


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
    sets = "".join(f", {k} = %({k})s" for k in counters)
    conn.execute(
        f"""UPDATE etl.runs SET stage_seconds = stage_seconds || jsonb_build_object(%(stage)s::text, %(seconds)s::float8),
                details = details || jsonb_build_object(%(stage)s::text, %(details)s::jsonb),
                heartbeat_at = now(){sets}
            WHERE {_CURRENT}""",
        {"stage": stage, "seconds": round(seconds, 3), "details": json.dumps(details, default=str),
         "run_id": run_id, **counters},
    )
    conn.commit()


class FilesStillArriving(RuntimeError):
    """A file of the run's week was still being copied when ingest looked: the task fails naming
    it (its retry takes it once complete) rather than going on without it."""


def run_ingest(conn: psycopg.Connection, run_id: str) -> dict:
    started = time.perf_counter()
    with writer(conn, run_id, "ingest"):
        heartbeat(conn, run_id)
        report = ingest_mod.ingest(conn, run_id)
        details = report.as_dict()
        _record(conn, run_id, "ingest", time.perf_counter() - started, details,
                files_seen=report.files_seen, files_new=report.files_new, files_duplicate=report.files_duplicate,
                files_quarantined=report.files_quarantined, rows_read=report.rows_read)
    window = current_window(conn, run_id)
    late = [line for line in report.files_waiting
            if any(line.startswith(path) and in_window(window, dt.date.fromisoformat(day))
                   for path, day in report.waiting_export_dates.items())]
    if late:
        raise FilesStillArriving(
            f"Exports of the week {window.week_start:%d/%m/%Y}–{window.week_end:%d/%m/%Y} still being copied: "
            + " | ".join(late) + ". The run does not go on without them; the task's retry takes them once "
            "complete (or drop <file>.done next to a file that is complete).")
    return details


def current_window(conn: psycopg.Connection, run_id: str) -> RunWindow:
    logical_date, week_start, week_end = conn.execute(
        f"SELECT logical_date, week_start, week_end FROM etl.runs WHERE {_CURRENT}", {"run_id": run_id}).fetchone()
    return RunWindow(run_id, logical_date, week_start, week_end)


def run_validate(conn: psycopg.Connection, run_id: str) -> dict:
    """Validate the run's files. A file above the quality gate is rejected (recorded, not
    loaded, never taken again); the other files go on — ``finish`` then fails the run naming
    the rejected files, so someone looks at them."""
    started = time.perf_counter()
    with writer(conn, run_id, "validate"):
        heartbeat(conn, run_id)
        summary = validate_mod.validate(conn, run_id)
        _record(conn, run_id, "validate", time.perf_counter() - started,
                {"datasets": summary["datasets"], "rejected_files": summary["rejected_files"],
                 "data_docs": str(settings.paths().data_docs_index)},
                rows_quarantined=sum(s["quarantined"] for s in summary["datasets"].values()))
    return summary


def run_load(conn: psycopg.Connection, run_id: str) -> dict:
    started = time.perf_counter()
    with writer(conn, run_id, "load"):
        heartbeat(conn, run_id)
        report = load_mod.load(conn, run_id)
        _record(conn, run_id, "load", time.perf_counter() - started, report,
                rows_loaded=sum(r["rows_staged"] for r in report.values()))
    return report


def _as_of_week_end(conn: psycopg.Connection, run_id: str, stage: str, compute) -> dict:
    """Run ``compute(conn, run_id, as_of)`` as of the Sunday that ends the run's week, so a
    backfill reproduces that week's sales, and record it under ``stage``."""
    started = time.perf_counter()
    with writer(conn, run_id, stage):
        heartbeat(conn, run_id)
        week_end = conn.execute(f"SELECT week_end FROM etl.runs WHERE {_CURRENT}", {"run_id": run_id}).fetchone()[0]
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


def run_purge(conn: psycopg.Connection, run_id: str) -> dict:
    """RGPD retention: personal data of rejected input, old Data Docs pages and work files."""
    from winecrm.etl import retention

    with writer(conn, run_id, "purge"):
        report = retention.purge(conn)
        _record(conn, run_id, "purge", 0.0, report)
    return report


class FilesRejected(RuntimeError):
    """Files were rejected by the quality gate: the run's other files went through, but someone
    must look at these. Not worth retrying."""


def finish(conn: psycopg.Connection, run_id: str, *, error: str | None = None) -> dict:
    """Close the run's current attempt (the counters were written by each stage as it finished).

    The first error recorded for an attempt stays (the root cause; the run-level callback that
    follows a task's failure knows less). Never takes the writer lock: failure callbacks call it
    and must not wait behind a load."""
    conn.rollback()
    conn.execute(
        f"""UPDATE etl.runs SET status = %(status)s, finished_at = now(), heartbeat_at = now(),
                error = coalesce(error, %(error)s)
            WHERE {_CURRENT}""",
        {"status": "failed" if error else "success", "error": error, "run_id": run_id},
    )
    conn.commit()
    return run_summary(conn, run_id)


def finish_checked(conn: psycopg.Connection, run_id: str) -> dict:
    """``finish`` for a run that reached its end: failed (with the files named) when the quality
    gate rejected some of its files, else success."""
    rejected = conn.execute(
        """SELECT file_path, status_reason FROM etl.file_manifest
           WHERE run_id = %s AND status = 'rejected' ORDER BY file_id""", (run_id,)).fetchall()
    if not rejected:
        return finish(conn, run_id)
    message = ("Quality gate: " + " | ".join(reason or path for path, reason in rejected)
               + " — the run's other files were loaded; the rejected files are kept out and will not be "
                 "taken again. Their bad rows are in etl.quarantine (file, line, column, raw values) and in "
                 "the Data Docs. Fix the export and drop the corrected file into RAW (new content = new file), "
                 "or raise quality_gate.max_bad_row_share in include/config/pipeline.yaml if such rows are expected.")
    finish(conn, run_id, error=message)
    raise FilesRejected(message)


def run_summary(conn: psycopg.Connection, run_id: str) -> dict:
    row = conn.execute(
        f"""SELECT run_id, attempt, logical_date, week_start, week_end, status, files_seen, files_new,
                   files_duplicate, files_quarantined, rows_read, rows_loaded, rows_quarantined, stage_seconds,
                   details, error
            FROM etl.runs WHERE {_CURRENT}""",
        {"run_id": run_id},
    ).fetchone()
    if row is None:
        return {}
    keys = ["run_id", "attempt", "logical_date", "week_start", "week_end", "status", "files_seen", "files_new",
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
    """Every stage in order, without Airflow (demo checks, benchmarks, CLI)."""
    prepare(conn, window)
    try:
        for run_stage in (run_ingest, run_validate, run_load, run_score, run_recommend, run_purge):
            run_stage(conn, window.run_id)
    except Exception as exc:
        finish(conn, window.run_id, error=f"{exc.__class__.__name__}: {exc}")
        raise
    return finish_checked(conn, window.run_id)
