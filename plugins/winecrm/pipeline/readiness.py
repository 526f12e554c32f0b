"""Are the week's exports there? What is missing, still being copied, or was refused by an
earlier run, and how long the run waits for them."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import psycopg

from winecrm.core import settings
from winecrm.core.weeks import paris
from winecrm.etl import ingest as ingest_mod
from winecrm.pipeline.runs import DATASET_LABELS, RunWindow

log = logging.getLogger("winecrm.pipeline")

def _settle(window: RunWindow) -> float | None:
    return window.params.get("settle_seconds")


class ExportsMissing(RuntimeError):
    """The week's exports did not arrive in time: not worth retrying."""


def exports_status(window: RunWindow, raw_dir: Path | None = None, now: float | None = None,
                   conn: psycopg.Connection | None = None) -> tuple[bool, list[str]]:
    """Whether the week's exports are there, else what is awaited.

    Every required dataset has an export: dated in the run's week for ``weekly_datasets``;
    for the others (snapshots) the latest export dated at or before the week's last export day
    will do, on disk or already loaded. And no file of the week, of any dataset, is still being
    copied (it is waited for even when an older file is complete)."""
    cfg = settings.pipeline_config().exports
    raw_dir = raw_dir or settings.paths().raw_dir
    files = ingest_mod.discover(raw_dir, now=now, settle=_settle(window))
    week = window.week
    span = f"{week.first_export_day:%d/%m/%Y}–{week.last_export_day:%d/%m/%Y}"
    missing, rejected = [], []
    for dataset, label in DATASET_LABELS.items():
        in_week = [f for f in files if f.dataset == dataset and week.holds_export(f.export_date)]
        settling = [f for f in in_week if not f.complete]
        if settling:  # a file of the week still arriving is waited for, even when an older one is complete
            missing.append(f"{label}: " + "; ".join(f"{f.relative} {f.why_incomplete}" for f in settling))
            continue
        refused = _refused_by_the_gate(conn, raw_dir, in_week, window) if conn is not None else {}
        if refused and len(refused) == len(in_week) and dataset in cfg.required_datasets:
            if dataset in cfg.weekly_datasets:
                # every export of the week was refused earlier: it is not "there", and waiting will not change it
                rejected.append(f"{label}: " + "; ".join(f"{path} was {why}" for path, why in refused.items()))
                continue
            in_week = []  # a refused snapshot does not count; an earlier one will do, as for any snapshot
        if dataset not in cfg.required_datasets or in_week:
            continue
        folder = raw_dir / "isavigne" / dataset
        if dataset in cfg.weekly_datasets:
            missing.append(f"no {label} export dated {span} for this week in {folder} "
                           "(the date is read from the file name, else its modification time)")
            continue
        earlier = any(f.complete and f.dataset == dataset and f.export_date <= week.last_export_day
                      and f.relative not in refused for f in files)
        if not earlier and conn is not None:
            earlier = conn.execute(
                "SELECT 1 FROM etl.file_manifest WHERE dataset = %s AND status = 'loaded' AND export_date <= %s LIMIT 1",
                (dataset, week.last_export_day)).fetchone() is not None
        if not earlier:
            missing.append(f"no {label} export dated on or before {week.last_export_day:%d/%m/%Y} in {folder} "
                           f"(a snapshot of the {label} at or before the week is enough)")
    if rejected:
        raise ExportsRejected(
            f"Week {window.week_start:%d/%m/%Y}–{window.week_end:%d/%m/%Y}: the export(s) of the week were refused "
            "by an earlier run, so there is nothing of the week to load:\n  " + "\n  ".join(rejected)
            + "\nWay out: drop a corrected export into RAW and trigger the week again, or accept the file as it "
            "is (trigger form: accept_files; its bad rows stay in quarantine).")
    return (not missing, missing)


def _refused_by_the_gate(conn: psycopg.Connection, raw_dir: Path, candidates: list, window: RunWindow) -> dict:
    """Files among ``candidates`` whose content (same path, size and time) an earlier run
    rejected or quarantined and nobody accepted since: path -> what happened."""
    if not candidates:
        return {}
    accepted = set(window.params.get("accept_files", [])) | set(window.params.get("reingest_files", []))
    rows = conn.execute(
        """SELECT d.file_path, d.size_bytes, d.file_mtime, m.status, m.status_reason, m.run_id
           FROM etl.file_deliveries d JOIN etl.file_manifest m USING (sha256)
           WHERE d.file_path = ANY(%s) AND m.status IN ('rejected', 'quarantined')""",
        ([f.relative for f in candidates],)).fetchall()
    conn.commit()
    known = {path: (size, mtime, status, reason, run) for path, size, mtime, status, reason, run in rows}
    refused = {}
    for f in candidates:
        if f.relative not in known or f.relative in accepted or ingest_mod.accepted_by_marker(raw_dir, f.relative):
            continue
        size, mtime, status, reason, run = known[f.relative]
        if size != f.size or abs(mtime.timestamp() - f.mtime) > 1e-3:
            continue  # re-delivered since: new content, judged again
        what = "rejected by the quality gate" if status == "rejected" else "unreadable"
        why = (reason or "").splitlines()[0].split(" Examples:")[0][:200] if reason else "no reason recorded"
        refused[f.relative] = f"{what} in run {run} ({why})"
    return refused


class ExportsRejected(RuntimeError):
    """Every export of the week was refused by an earlier run: waiting cannot help."""


def wait_deadline(window: RunWindow) -> dt.datetime:
    """``exports.max_wait_hours`` after the run's scheduled time, or after the moment it started
    when that is later (a backfill of a past week, a run triggered late, a rerun)."""
    start = window.logical_date
    if window.started_at is not None and window.started_at > start:
        start = window.started_at
    return start + dt.timedelta(hours=settings.pipeline_config().exports.max_wait_hours)




def check_exports(window: RunWindow, now: dt.datetime | None = None, conn: psycopg.Connection | None = None) -> bool:
    """Sensor body: True when ready, False to look again later, ExportsMissing past the deadline."""
    ready, missing = exports_status(window, conn=conn)
    week = f"{window.week_start:%d/%m/%Y}–{window.week_end:%d/%m/%Y}"
    if ready:
        log.info("Exports of the week %s are all there.", week)
        return True
    now = now or dt.datetime.now(dt.timezone.utc)
    deadline = wait_deadline(window)
    if now >= deadline:
        raise ExportsMissing(
            f"Week {week}: gave up waiting at {paris(deadline)} (Paris; exports.max_wait_hours after the run "
            "started): " + " | ".join(missing)
            + ". Drop the missing export into RAW and clear this task (or trigger the week again).")
    log.info("Week %s: waiting until %s (Paris) for: %s", week, paris(deadline), " | ".join(missing))
    return False
