"""A weekly run's record (``etl.runs``): its window (the sales week, the trigger form's values),
its attempts, the writer lock its stages hold, what each stage did, and how it ended."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from winecrm.core import db, settings
from winecrm.core.migrations import apply_migrations
from winecrm.core.run_params import RunParams, RunParamsError
from winecrm.core.weeks import Week, estate_zone
from winecrm.etl import ingest as ingest_mod
from winecrm.pipeline.notes import run_note

@dataclass(frozen=True)
class RunWindow:
    run_id: str
    logical_date: dt.datetime
    week_start: dt.date  # Monday of the sales week covered
    week_end: dt.date  # its Sunday
    started_at: dt.datetime | None = None  # when this attempt began (etl.runs.started_at)
    params: dict = field(default_factory=dict)  # the trigger form's values, as recorded

    @property
    def week(self) -> Week:
        return Week(self.week_start, self.week_end)

    @property
    def run_params(self) -> RunParams:
        return RunParams.parse(self.params)

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "logical_date": self.logical_date.isoformat(),
                "week_start": self.week_start.isoformat(), "week_end": self.week_end.isoformat()}


def week_window(run_id: str, logical_date: dt.datetime, params: RunParams | None = None,
                today: dt.date | None = None) -> RunWindow:
    """The sales week a run covers: the trigger form's ``week`` when given, else the complete
    Monday–Sunday week before the run's logical date (Europe/Paris).

    Weekly cron runs get data_interval_start == data_interval_end, so the window is derived
    from the logical date: a run on Monday 16 Nov 06:00 covers Mon 9 – Sun 15 Nov.
    """
    params = params or RunParams()
    week = params.week_of(logical_date, today or dt.datetime.now(estate_zone()).date())
    return RunWindow(run_id, logical_date, week.start, week.end, params=params.recorded())


# The run's current attempt in etl.runs (a rerun is a new attempt of the same run id).
_CURRENT = "run_id = %(run_id)s AND attempt = (SELECT max(attempt) FROM etl.runs WHERE run_id = %(run_id)s)"


def writer(conn: psycopg.Connection, run_id: str, stage: str):
    """The warehouse's writer lock, named after the run and the stage holding it."""
    return db.warehouse_writer(conn, f"{run_id}:{stage}")

def resolve_raw_files(names: list[str], param: str, files: list[str], raw_dir: Path) -> list[str]:
    """The RAW paths (as the manifest records them, ``files``) of the files a person named in the
    trigger form, by path inside RAW or by file name; each must match exactly one file."""
    resolved = []
    for name in names:
        wanted = name.replace("\\", "/").strip("/")
        matches = [f for f in files if f == wanted or f.endswith("/" + wanted)]
        if len(matches) != 1:
            found = "no file" if not matches else f"{len(matches)} files ({', '.join(matches[:5])})"
            raise RunParamsError(f"{param}: {name!r} matches {found} in {raw_dir}; give its path inside RAW, "
                                 "as the run summary and the failure message show it")
        resolved.append(matches[0])
    return resolved


def prepare(conn: psycopg.Connection, window: RunWindow) -> list[str]:
    """Check the settings files and the run's params, apply pending migrations and open a new
    attempt of the run.

    A rerun of the same run id is a new attempt (``etl.runs.attempt`` + 1): what earlier
    attempts did stays recorded."""
    settings.check_all()
    params = window.run_params
    if params.reingest_files or params.accept_files:
        raw_dir = settings.paths().raw_dir
        files = [f.relative for f in ingest_mod.discover(raw_dir)]
        params = params.model_copy(update={
            "reingest_files": resolve_raw_files(params.reingest_files, "reingest_files", files, raw_dir),
            "accept_files": resolve_raw_files(params.accept_files, "accept_files", files, raw_dir),
        })
    recorded = params.recorded()
    with writer(conn, window.run_id, "prepare"):
        applied = apply_migrations(conn)
        conn.execute(
            """INSERT INTO etl.runs (run_id, attempt, logical_date, week_start, week_end, params)
               SELECT %(run_id)s, coalesce(max(attempt), 0) + 1, %(logical_date)s, %(week_start)s, %(week_end)s,
                      %(params)s
               FROM etl.runs WHERE run_id = %(run_id)s""",
            {"run_id": window.run_id, "logical_date": window.logical_date, "week_start": window.week_start,
             "week_end": window.week_end, "params": json.dumps(recorded)},
        )
        conn.commit()
    return applied


def heartbeat(conn: psycopg.Connection, run_id: str) -> None:
    """A sign of life of the run's current attempt (see ``ingest`` for why it matters)."""
    conn.execute(f"UPDATE etl.runs SET heartbeat_at = now() WHERE {_CURRENT}", {"run_id": run_id})
    conn.commit()


def current_window(conn: psycopg.Connection, run_id: str) -> RunWindow:
    row = conn.execute(
        f"SELECT logical_date, week_start, week_end, started_at, params FROM etl.runs WHERE {_CURRENT}",
        {"run_id": run_id}).fetchone()
    if row is None:
        raise RuntimeError(f"No record of run {run_id} in etl.runs: prepare_run did not run for it")
    return RunWindow(run_id, *row)


def in_window(window: RunWindow, export_date: dt.date) -> bool:
    return window.week.holds_export(export_date)

DATASET_LABELS = {"ventes_lignes": "sales", "clients": "customers", "produits": "products", "stock": "stock"}

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

class WeekNotLoaded(RuntimeError):
    """The run reached its end but an export its week needs is not in the warehouse: never green."""


def week_not_loaded(conn: psycopg.Connection, window: RunWindow) -> list[str]:
    """What the week needs and the warehouse does not hold: a loaded export dated in the week
    for each of ``weekly_datasets``, one at or before it for the other required datasets."""
    cfg = settings.pipeline_config().exports
    week = window.week
    missing = []
    for dataset in cfg.required_datasets:
        weekly = dataset in cfg.weekly_datasets
        first = week.first_export_day if weekly else dt.date.min
        loaded = conn.execute(
            """SELECT 1 FROM etl.file_manifest WHERE dataset = %s AND status = 'loaded'
                 AND export_date BETWEEN %s AND %s LIMIT 1""", (dataset, first, week.last_export_day)).fetchone()
        if loaded is None:
            label = DATASET_LABELS[dataset]
            dated = (f"dated {week.first_export_day:%d/%m/%Y}–{week.last_export_day:%d/%m/%Y}" if weekly
                     else f"dated on or before {week.last_export_day:%d/%m/%Y}")
            missing.append(f"Week {window.week_start:%d/%m/%Y}–{window.week_end:%d/%m/%Y}: no {label} export "
                           f"{dated} was loaded into the warehouse (etl.file_manifest), so this week was not "
                           "processed. Way out: drop the export into RAW (or accept the rejected one with "
                           "accept_files) and trigger the week again")
    return missing


class FilesRejected(RuntimeError):
    """Files were rejected by the quality gate: the run's other files went through, but someone
    must look at these. Not worth retrying."""


def finish(conn: psycopg.Connection, run_id: str, *, error: str | None = None) -> dict:
    """Close the run's current attempt (the counters were written by each stage as it finished)
    and write its one-line French note (``run_note``).

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
    summary = run_summary(conn, run_id)
    if summary:
        if not summary["files_new"] and not summary["rows_read"]:  # read nothing: was its week read before?
            week = Week(summary["week_start"], summary["week_end"])
            summary["week_read_before"] = conn.execute(
                """SELECT count(*) > 0 FROM etl.file_manifest WHERE status = 'loaded' AND dataset = ANY(%s)
                     AND export_date BETWEEN %s AND %s AND run_id <> %s""",
                (settings.pipeline_config().exports.weekly_datasets, week.first_export_day, week.last_export_day,
                 run_id)).fetchone()[0]
        summary["note"] = run_note(summary)
        # what the run saw, kept with it: a file accepted later by another run moves to that run
        closed = {"files": run_files(conn, run_id), "quarantine": quarantine_reasons(conn, run_id)}
        conn.execute(f"""UPDATE etl.runs SET note = %(note)s,
                             details = details || jsonb_build_object('at_finish', %(closed)s::jsonb)
                         WHERE {_CURRENT}""",
                     {"note": summary["note"], "run_id": run_id, "closed": json.dumps(closed, default=str)})
    conn.commit()
    return summary


FILE_COLUMNS = ("file", "dataset", "status", "rows read", "written", "skipped (older)", "quarantined", "reason")


def run_files(conn: psycopg.Connection, run_id: str) -> list[list]:
    """The files a run owns now, as the Run summary page lists them (``FILE_COLUMNS``)."""
    return [list(r) for r in conn.execute(
        """SELECT file_path, dataset, status, coalesce(rows_read, 0), coalesce(rows_loaded, 0),
                  coalesce(rows_skipped, 0), coalesce(rows_quarantined, 0),
                  concat_ws(' — ', status_reason, 'accepted: ' || accepted_by)
           FROM etl.file_manifest WHERE run_id = %s ORDER BY file_id""", (run_id,))]


QUARANTINE_COLUMNS = ("dataset", "file", "column", "checks", "rows", "example")


def quarantine_reasons(conn: psycopg.Connection, run_id: str, limit: int = 50) -> list[list]:
    """The run's quarantined rows grouped by file, column and checks (``QUARANTINE_COLUMNS``)."""
    return [list(r) for r in conn.execute(
        """SELECT dataset, file_path,
                  coalesce(column_name, CASE WHEN row_no IS NULL THEN '(whole file)' ELSE '(row)' END),
                  array_to_string(expectations, ', '), count(*), min(reason)
           FROM etl.quarantine WHERE run_id = %s GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC LIMIT %s""", (run_id, limit))]

def finish_checked(conn: psycopg.Connection, run_id: str, *, require_week: bool = True) -> dict:
    """``finish`` for a run that reached its end: failed (with the files named) when the quality
    gate rejected some of its files, else success."""
    rejected = conn.execute(
        """SELECT file_path, status_reason FROM etl.file_manifest
           WHERE run_id = %s AND status = 'rejected' ORDER BY file_id""", (run_id,)).fetchall()
    unloaded = week_not_loaded(conn, current_window(conn, run_id)) if require_week else []
    if unloaded and not rejected:
        message = " | ".join(unloaded)
        finish(conn, run_id, error=message)
        raise WeekNotLoaded(message)
    if not rejected:
        return finish(conn, run_id)
    files = ", ".join(path for path, _ in rejected)
    message = (f"Quality gate rejected {files}: kept out of the warehouse, not taken again unless accepted; "
               "the run's other files were loaded.\n" + "\n".join(reason or path for path, reason in rejected)
               + "".join(f"\n{line}" for line in unloaded))
    finish(conn, run_id, error=message)
    raise FilesRejected(message)


def run_summary(conn: psycopg.Connection, run_id: str) -> dict:
    keys = ["run_id", "attempt", "logical_date", "week_start", "week_end", "status", "started_at", "finished_at",
            "files_seen", "files_new", "files_duplicate", "files_quarantined", "rows_read", "rows_validated",
            "rows_written", "rows_superseded", "rows_skipped", "rows_quarantined", "stage_seconds", "details",
            "params", "error", "note"]
    row = conn.execute(f"SELECT {', '.join(keys)} FROM etl.runs WHERE {_CURRENT}", {"run_id": run_id}).fetchone()
    if row is None:
        return {}
    summary = dict(zip(keys, row))
    summary["quarantine_reasons"] = [
        {"dataset": d, "column": c, "expectations": e, "rows": n}
        for d, c, e, n in conn.execute(
            """SELECT dataset, column_name, expectations, count(*) FROM etl.quarantine
               WHERE run_id = %s GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2""", (run_id,))
    ]
    summary["data_docs"] = settings.paths().data_docs_link()
    return summary


# The stages of a run, in the order of crm_weekly's tasks (approval aside).
