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
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg

from winecrm.core import db, settings
from winecrm.core.migrations import apply_migrations
from winecrm.core.run_params import RunParams, RunParamsError
from winecrm.core.storage import run_work_dir
from winecrm.core.weeks import estate_zone, Week, number_fr, paris, plural_fr
from winecrm.etl import ingest as ingest_mod
from winecrm.etl import load as load_mod
from winecrm.etl import validate as validate_mod
from winecrm.etl.contract import DATASETS
from winecrm.privacy import register as erasure_register
from winecrm.privacy import work_files

log = logging.getLogger(__name__)


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
    window = current_window(conn, run_id)
    params = window.params
    with writer(conn, run_id, "ingest"):
        heartbeat(conn, run_id)
        report = ingest_mod.ingest(conn, run_id, settle=params.get("settle_seconds"),
                                   reingest_files=params.get("reingest_files", []),
                                   accept_files=params.get("accept_files", []),
                                   until=window.week.last_export_day)
        details = report.as_dict()
        # an export that brings an erased customer back: their personal values never reach the
        # run's work files, hence never validation, logs, Data Docs or the warehouse
        erased_codes, markers = erasure_register.erased_keys(conn)
        blanked = work_files.blank_erased(run_work_dir(run_id), erased_codes, frozenset(markers))
        if blanked:
            details["erased_rows_blanked"] = blanked
            log.info("%d row(s) about customers erased earlier read again: kept without their personal values", blanked)
        log.info("Week %s–%s: %d file(s) in RAW — %d new, %d with a content already ingested under another "
                 "name, %d unreadable, %d taken again on request, %d already processed by earlier runs",
                 f"{window.week_start:%d/%m}", f"{window.week_end:%d/%m/%Y}", report.files_seen, report.files_new,
                 report.files_duplicate,
                 report.files_quarantined, len(report.files_taken_again), report.files_known)
        if report.files_later:
            log.info("Left for the runs of their weeks (dated after %s): %s", f"{window.week.last_export_day:%d/%m/%Y}",
                     ", ".join(report.files_later))
        _record(conn, run_id, "ingest", time.perf_counter() - started, details,
                files_seen=report.files_seen, files_new=report.files_new, files_duplicate=report.files_duplicate,
                files_quarantined=report.files_quarantined, rows_read=report.rows_read)
    late = [line for line in report.files_waiting
            if any(line.startswith(path) and in_window(window, dt.date.fromisoformat(day))
                   for path, day in report.waiting_export_dates.items())]
    if late:
        raise FilesStillArriving(
            f"Exports of the week {window.week_start:%d/%m/%Y}–{window.week_end:%d/%m/%Y} still being copied: "
            + " | ".join(late) + ". The run does not go on without them; the task's retry takes them once "
            "complete (or drop <file>.done next to a file that is complete).")
    return details


def run_validate(conn: psycopg.Connection, run_id: str) -> dict:
    """Validate the run's files. A file above the quality gate is rejected (recorded, not
    loaded, never taken again); the other files go on — ``finish`` then fails the run naming
    the rejected files, so someone looks at them."""
    started = time.perf_counter()
    with writer(conn, run_id, "validate"):
        heartbeat(conn, run_id)
        accept = current_window(conn, run_id).params.get("accept_files", [])
        summary = validate_mod.validate(conn, run_id, accept_files=accept)
        # rows of an erased person (GDPR) rejected from an export: their raw values go at once
        # (a file refused by the quality gate never reaches the load, which does the same)
        from winecrm.privacy.register import reapply_erasures_to_quarantine

        reapply_erasures_to_quarantine(conn, run_id=run_id)
        _record(conn, run_id, "validate", time.perf_counter() - started,
                {"datasets": summary["datasets"], "rejected_files": summary["rejected_files"],
                 "pages": summary["pages"], "data_docs": settings.paths().data_docs_link()},
                rows_quarantined=sum(s["quarantined"] for s in summary["datasets"].values()),
                rows_validated=conn.execute(  # good rows handed to the load: rejected files left out
                    "SELECT coalesce(sum(rows_good), 0) FROM etl.file_manifest WHERE run_id = %s AND status = 'validated'",
                    (run_id,)).fetchone()[0])
    return summary


def run_load(conn: psycopg.Connection, run_id: str) -> dict:
    started = time.perf_counter()
    with writer(conn, run_id, "load"):
        heartbeat(conn, run_id)
        report = load_mod.load(conn, run_id)
        # someone erased (GDPR) whom the ERP's export brought back: anonymised again inside each
        # dataset's transaction, before its commit (etl/load.py)
        erased_again = sum(r.get("steps", {}).get("erased_again", 0) for r in report.values())
        if erased_again:
            log.warning("%d rows of people erased earlier came back with this export and were anonymised again: "
                        "remove them in iSaVigne too", erased_again)
        totals = {key: sum(r[key] for r in report.values()) for key in ("rows_written", "rows_superseded", "rows_skipped")}
        _record(conn, run_id, "load", time.perf_counter() - started, report, **totals)
    if not report:
        log.info("Nothing to load: no validated file in this run.")
    for dataset, counts in report.items():
        held = counts.get("rows_held_back", 0)
        log.info("%s: %d good rows → %d written, %d skipped (a newer export of the same %s is already there); "
                 "%d warehouse rows of an older export replaced%s", dataset, counts["rows_staged"],
                 counts["rows_written"], counts["rows_skipped"], _UNIT[dataset], counts["rows_superseded"],
                 f"; {held} held back (their document incomplete, see below)" if held else "")
        for path, per_file in counts.get("per_file", {}).items():
            log.info("    %s: %d written, %d skipped%s", path, per_file["written"], per_file["skipped"],
                     f", {per_file['held_back']} held back" if per_file.get("held_back") else "")
        _log_incomplete_documents(dataset, counts.get("incomplete_documents"))
        consent = counts.get("consent") or {}
        for path, changed in consent.get("files", {}).items():
            log.info("    %s: consent changed for %d customer(s) — %d opt-out(s), %d opt-in(s) (history: "
                     "crm.consent_log)", path, changed["opt_out"] + changed["opt_in"], changed["opt_out"],
                     changed["opt_in"])
    return report


def _log_incomplete_documents(dataset: str, incomplete: dict | None) -> None:
    """Documents delivered with lines in quarantine: what the load did with them, for on-call."""
    if not incomplete:
        return
    held, new, replaced = incomplete["held_back"], incomplete["loaded_new"], incomplete["accepted_replaced"]
    if held["documents"]:
        one = held["documents"] == 1
        log.warning("%s: %d document%s with lines in quarantine kept in %s previous version: %d good line(s) of "
                    "the new export not written, %d line(s) in quarantine. The next export carrying %s complete "
                    "replaces %s; to replace %s anyway with the good lines, accept the file (accept_files / "
                    "<file>.accept) and re-ingest it", dataset, held["documents"], "" if one else "s",
                    "its" if one else "their", held["good_lines"], held["quarantined_lines"],
                    "it" if one else "them", "it" if one else "them", "it" if one else "them")
    if new["documents"]:
        log.info("%s: %d new document(s) loaded without their %d line(s) in quarantine (no earlier version to "
                 "keep): %d good line(s) written", dataset, new["documents"], new["quarantined_lines"],
                 new["good_lines"])
    if replaced["documents"]:
        log.warning("%s: accepted file(s) %s replaced %d document%s with lines in quarantine: %d warehouse lines and "
                    "%.2f EUR excl. VAT (%.2f incl. VAT) fewer than the previous version", dataset,
                    ", ".join(replaced["files"]), replaced["documents"], "" if replaced["documents"] == 1 else "s",
                    replaced["lines_removed"], replaced["mt_ht_removed"], replaced["mt_ttc_removed"])


_UNIT = {"ventes_lignes": "document", "clients": "customer", "produits": "article", "stock": "article and warehouse"}


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


def campaign_mode(conn: psycopg.Connection, run_id: str, *, brevo_configured: bool, scheduled_live: bool = False,
                  today: dt.date | None = None) -> tuple[str, str]:
    """Whether the run's campaign is sent ('live') or only written to the outbox ('dry_run'),
    and why. Live needs an explicit switch — the trigger form's dry_run unticked, or for the
    Monday scheduled runs the Airflow Variable ``crm_weekly_live`` set to true
    (``scheduled_live``) — a Brevo connection, and the latest complete week: a backfill of a
    past week never sends (it renders, for the report). A person still approves each campaign."""
    window = current_window(conn, run_id)
    if window.run_params.dry_run and not scheduled_live:
        return "dry_run", "dry run (the trigger form's default; Variable crm_weekly_live not set for scheduled runs)"
    if not brevo_configured:
        raise LiveWithoutBrevo(live_refusal(window.run_params.dry_run))
    latest = Week.before(dt.datetime.combine(today or dt.datetime.now(estate_zone()).date(), dt.time(12), tzinfo=estate_zone()))
    if window.week_end < latest.end:
        return "dry_run", (f"dry run: the week of {window.week_start:%d/%m/%Y} is a past week (a backfill never "
                           "sends e-mail)")
    return "live", "live: dry_run unticked, Brevo configured, the latest week — sent once a person approves"


class LiveWithoutBrevo(RuntimeError):
    """Sending was asked but Brevo is not configured: a person must act, a retry cannot help."""


def live_refusal(dry_run_param: bool) -> str:
    asked = ("the Variable crm_weekly_live is true (the Monday runs send)" if dry_run_param
             else "dry_run is unticked in the trigger form")
    return (f"Sending was asked ({asked}) but no Brevo connection is configured, so nothing could be sent. "
            "Way out: create the connection brevo_default (Admin > Connections, type HTTP, the Brevo API key "
            "as password), then clear this task; or trigger the week again with dry_run ticked.")


def run_render(conn: psycopg.Connection, run_id: str, *, brevo_configured: bool = False,
               scheduled_live: bool = False) -> dict:
    """The week's e-mails rendered into the send ledger (crm.email_sends), as of the week's Sunday."""
    from winecrm.campaigns import render

    mode, why = campaign_mode(conn, run_id, brevo_configured=brevo_configured, scheduled_live=scheduled_live)
    log.info("Campaign mode: %s", why)

    live_asked = scheduled_live or not current_window(conn, run_id).run_params.dry_run

    def compute(c, r, as_of):
        return {**render.render_campaign(c, r, as_of, mode=mode), "why": why,
                "live_refused": live_asked and mode != "live"}  # a past week: said in the run note

    return _as_of_week_end(conn, run_id, "render", compute)


def rendered_campaign(conn: psycopg.Connection, run_id: str) -> dict:
    """What the run's render stage recorded: campaign id, mode, counts, previews."""
    row = conn.execute(f"SELECT details -> 'render' FROM etl.runs WHERE {_CURRENT}", {"run_id": run_id}).fetchone()
    if not row or not row[0]:
        raise RuntimeError(f"run {run_id}: no campaign rendered by this run (the render stage did not run)")
    return row[0]


def run_send(conn: psycopg.Connection, run_id: str, *, client=None) -> dict:
    """Send the campaign rendered by this run: through Brevo when it is live (and approved), else
    into the outbox folder as .eml files."""
    from winecrm.campaigns import send

    started = time.perf_counter()
    with writer(conn, run_id, "send"):
        heartbeat(conn, run_id)
        details = rendered_campaign(conn, run_id)
        live = details.get("mode") == "live"
        report = send.send_campaign(conn, details["campaign_id"], client=client if live else None)
        _record(conn, run_id, "send", time.perf_counter() - started, report)
    return report


def run_report(conn: psycopg.Connection, run_id: str) -> dict:
    """The weekly report of the run's week (HTML + JSON summary, in French)."""
    from winecrm.campaigns import report

    started = time.perf_counter()
    written = report.write_report(conn, run_summary(conn, run_id))
    _record(conn, run_id, "report", time.perf_counter() - started, written)
    return written


def run_purge(conn: psycopg.Connection, run_id: str) -> dict:
    """RGPD retention: personal data of rejected input, old Data Docs pages and work files."""
    from winecrm.etl import retention

    with writer(conn, run_id, "purge"):
        report = retention.purge(conn)
        _record(conn, run_id, "purge", 0.0, report)
    return report


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


def run_note(summary: dict) -> str:
    """« Semaine du 09/11 au 15/11/2026 : 1 nouveau fichier, 507 lignes lues, 6 écrites, 501 ignorées
    (déjà à jour), 0 en quarantaine » — what Airflow's run list shows for the run (its note)."""
    week = Week(summary["week_start"], summary["week_end"]).label_fr()
    counts = ", ".join([
        plural_fr(summary["files_new"], "nouveau fichier", "nouveaux fichiers")
        + (" (exports de la semaine déjà lus par un autre run)" if summary.get("week_read_before") else ""),
        plural_fr(summary["rows_read"], "ligne lue", "lignes lues"),
        plural_fr(summary["rows_written"], "écrite"),
        plural_fr(summary["rows_skipped"], "ignorée") + " (déjà à jour)",
        f"{number_fr(summary['rows_quarantined'])} en quarantaine",
        *incomplete_documents_fr(((summary.get("details") or {}).get("load") or {}).get("ventes_lignes", {})
                                 .get("incomplete_documents")),
    ])
    consent = consent_note(summary.get("details") or {})
    if consent:  # a narrow no-break space before the semicolon (FRENCH-COPY.md)
        counts += f"\u202f; {consent}"
    campaign = _campaign_note(summary.get("details") or {})
    if campaign:
        counts += f" ; {campaign}"
    if summary.get("status") == "failed":
        reason = (summary.get("error") or "").strip().splitlines()[0] if summary.get("error") else "voir le journal"
        if len(reason) > 220:
            reason = reason[:217] + "…"
        return f"{week} : ÉCHEC — {reason} ({counts})"
    return f"{week} : {counts}"


def consent_note(details: dict) -> str:
    """« Consentements : 3 retraits, 1 accord (export ERP) » when the run's clients load changed
    some customers' consent (crm.consent_log), else ''."""
    from winecrm.privacy.consent import summary_fr

    return summary_fr(((details.get("load") or {}).get("clients") or {}).get("consent"))


def _campaign_note(details: dict) -> str:
    """What became of the week's e-mails, in the run note: sent, written to the outbox only, or a
    send that was asked and refused (a past week)."""
    render, send = details.get("render") or {}, details.get("send") or {}
    if not render:
        return ""
    sent = send.get("by_status") or {}
    if render.get("mode") == "live":
        if not send:
            return "campagne en attente d'approbation"
        return f"campagne envoyée : {plural_fr(sent.get('sent', 0), 'e-mail')}"
    written = plural_fr(sent.get("simulated", 0), "e-mail") + " dans la boîte d'envoi, rien n'est parti"
    if render.get("live_refused"):
        return f"envoi refusé : semaine passée (un rattrapage n'envoie jamais), {written}"
    return f"campagne à blanc : {written}" if send else "campagne à blanc"


def incomplete_documents_fr(incomplete: dict | None) -> list[str]:
    """What the load did with sales documents delivered with lines in quarantine, for the run's
    note: « 1 document gardé dans sa version précédente (1 ligne valide non chargée, 1 en
    quarantaine) », « 1 document chargé incomplet (2 lignes en quarantaine) », « fichier
    accepté : 3 lignes et 245,50 € HT de moins que l'ancienne version ». Nothing when all is well."""
    if not incomplete:
        return []
    from winecrm.campaigns.render import euros

    said = []
    held, new, replaced = incomplete["held_back"], incomplete["loaded_new"], incomplete["accepted_replaced"]
    if held["documents"]:
        one = held["documents"] == 1
        said.append(f"{number_fr(held['documents'])} document{'' if one else 's'} gardé{'' if one else 's'} dans "
                    f"{'sa' if one else 'leur'} version précédente ("
                    f"{plural_fr(held['good_lines'], 'ligne valide non chargée', 'lignes valides non chargées')}, "
                    f"{number_fr(held['quarantined_lines'])} en quarantaine)")
    if new["documents"]:
        one = new["documents"] == 1
        said.append(f"{number_fr(new['documents'])} document{'' if one else 's'} chargé{'' if one else 's'} "
                    f"incomplet{'' if one else 's'} ({plural_fr(new['quarantined_lines'], 'ligne')} en quarantaine)")
    if replaced["documents"]:
        which = "fichier accepté" if len(replaced["files"]) < 2 else "fichiers acceptés"
        less = []
        if replaced["lines_removed"] > 0:
            less.append(plural_fr(replaced["lines_removed"], "ligne"))
        if replaced["mt_ht_removed"] > 0:
            less.append(f"{euros(Decimal(str(replaced['mt_ht_removed'])))}\u00a0HT")
        if less:
            said.append(f"{which}\u00a0: {' et '.join(less)} de moins que l'ancienne version")
        else:
            said.append(f"{which}\u00a0: {plural_fr(replaced['documents'], 'document')} remplacé"
                        f"{'' if replaced['documents'] == 1 else 's'} malgré "
                        f"{plural_fr(replaced['quarantined_lines'], 'ligne')} en quarantaine")
    return said


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
STAGES = (run_ingest, run_validate, run_load, run_score, run_recommend, run_render, run_send, run_purge, run_report)


def stages_until(last) -> tuple:
    """The stages up to ``last`` included (e.g. everything before the campaign, for tests)."""
    return STAGES[:STAGES.index(last) + 1]


def run_all(conn: psycopg.Connection, window: RunWindow, *, require_week: bool = True) -> dict:
    """Every stage in order, without Airflow (demo checks, benchmarks, CLI). ``require_week=False``
    closes the run green even when its week's exports were not all loaded (a check of one
    dataset's files, say): the Airflow run never does."""
    prepare(conn, window)
    try:
        for run_stage in STAGES:
            run_stage(conn, window.run_id)
    except Exception as exc:
        finish(conn, window.run_id, error=f"{exc.__class__.__name__}: {exc}")
        raise
    return finish_checked(conn, window.run_id, require_week=require_week)
