"""The weekly run's stages as plain functions (ingest, validate, data docs, load, score,
recommend, render, send, purge, report), each under the writer lock (data docs: the Data Docs
lock, beside the load), recorded, safe to repeat; and ``run_all`` for the demo, the CLI and the
benchmarks."""

from __future__ import annotations

import datetime as dt
import logging
import time

import psycopg

from winecrm.core import db, settings
from winecrm.core.storage import run_work_dir
from winecrm.core.weeks import Week, estate_zone
from winecrm.etl import ingest as ingest_mod
from winecrm.etl import load as load_mod
from winecrm.etl import validate as validate_mod
from winecrm.pipeline.runs import (_CURRENT, RunWindow, _record, current_window, finish, finish_checked, heartbeat,
                                   in_window, prepare, run_summary, writer)
from winecrm.privacy import register as erasure_register
from winecrm.privacy import work_files

log = logging.getLogger("winecrm.pipeline")

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


def run_data_docs(conn: psycopg.Connection, run_id: str) -> dict:
    """Great Expectations stores what validate found in each chunk and renders the Data Docs
    (``winecrm.etl.gx_context.record_found``). It writes no warehouse table, so it runs beside the
    load under the Data Docs lock, not the writer's."""
    import os

    from winecrm.etl import gx_context

    started = time.perf_counter()
    if os.environ.get("AIRFLOW_CTX_TASK_ID") == "data_docs":  # Airflow's task: a process of its own
        gx_context.import_gx_for_data_docs()
    with db.data_docs_lock(conn, f"{run_id}:data_docs"):
        report = gx_context.record_found(run_id)
    report["data_docs"] = settings.paths().data_docs_link()
    log.info("Data Docs: %d chunk(s) recorded; index %s", report["chunks"], report["data_docs"])
    # GX imported ahead (run_all) counts as this stage's time, what a task of its own would spend:
    # the part done before the stage started (the stage waited for the rest)
    imported_ahead = gx_context.imported_ahead_seconds(started) if report["chunks"] else 0.0
    if imported_ahead:
        report["gx_imported_ahead_s"] = round(imported_ahead, 3)
    _record(conn, run_id, "data_docs", time.perf_counter() - started + imported_ahead, report)
    return report


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

STAGES = (run_ingest, run_validate, run_data_docs, run_load, run_score, run_recommend, run_render, run_send, run_purge,
          run_report)
BESIDE_NEXT = ("run_data_docs",)  # run_all runs these beside the stage after them, as the DAG does


def _import_gx_ahead() -> None:
    from winecrm.etl.gx_context import import_ahead

    import_ahead()


# What a stage run beside can import before its turn (run_all forks its process at the start).
IMPORTS_AHEAD = {"run_data_docs": _import_gx_ahead}


class _Beside:
    """A stage run in a process of its own, on a connection of its own, while the caller goes on
    with the next one — as the DAG runs it in a task of its own (two processes: neither waits for
    the other's Python). The process is forked when the run starts and imports what the stage needs
    (GX for the Data Docs: 1.3 s of one core) while the ingest, which uses one, reads; ``start``
    then lets it run. In a daemonic process, which may not start one, the stage just runs at its
    turn."""

    def __init__(self, stage, conn: psycopg.Connection, run_id: str):
        import multiprocessing

        self.stage, self.conn, self.run_id = stage, conn, run_id
        self.name, self.process, self.reader, self.go = stage.__name__, None, None, None
        if multiprocessing.current_process().daemon:
            return
        context = multiprocessing.get_context("fork")
        self.reader, writer = context.Pipe(duplex=False)
        wait, self.go = context.Pipe(duplex=False)
        self.process = context.Process(target=_run_beside,
                                       args=(stage, db.connection_args(conn), run_id, writer, wait, self.go),
                                       name=f"winecrm-{stage.__name__}", daemon=True)
        self.process.start()
        writer.close()
        wait.close()

    def start(self) -> None:
        """The stage's turn: its process goes on (or, without one, the stage runs here)."""
        if self.process is None:
            self.stage(self.conn, self.run_id)
            return
        self.go.send("go")
        self.go.close()

    def cancel(self) -> None:
        """The run stopped before the stage's turn: its process ends without running it."""
        if self.process is None:
            return
        self.go.close()
        self.process.join()
        self.reader.close()

    def finish(self) -> None:
        if self.process is None:
            return
        self.process.join()
        failure = self.reader.recv() if self.reader.poll() else None
        self.reader.close()
        if failure or self.process.exitcode:
            raise RuntimeError(f"{self.name} failed beside the next stage: "
                               f"{failure or f'its process ended with exit code {self.process.exitcode}'}")


def _run_beside(stage, login: dict, run_id: str, channel, wait, told_by) -> None:
    import threading

    told_by.close()  # the caller's end, copied by the fork: the run's end must be the only one
    try:
        import os

        # the stages the run waits for (ingest, validate, load) go first; this one takes what
        # they leave of the two cores
        os.nice(10)
        ahead = IMPORTS_AHEAD.get(stage.__name__)
        if ahead is not None:
            # a thread, so that a stage with nothing to do (no chunk validated) ends at once;
            # one that needs the modules waits for the import under Python's import lock
            threading.Thread(target=ahead, daemon=True, name="import-ahead").start()
        try:
            told = wait.recv()
        except EOFError:
            told = None
        if told != "go":  # the run stopped before this stage's turn
            channel.send(None)
            return
        with psycopg.connect(**login) as own:
            stage(own, run_id)
        channel.send(None)
    except BaseException:
        import traceback

        channel.send(traceback.format_exc())
        raise SystemExit(1) from None
    finally:
        channel.close()


def stages_until(last) -> tuple:
    """The stages up to ``last`` included (e.g. everything before the campaign, for tests)."""
    return STAGES[:STAGES.index(last) + 1]


def run_all(conn: psycopg.Connection, window: RunWindow, *, require_week: bool = True) -> dict:
    """Every stage in order, without Airflow (demo checks, benchmarks, CLI). ``require_week=False``
    closes the run green even when its week's exports were not all loaded (a check of one
    dataset's files, say): the Airflow run never does."""
    prepare(conn, window)
    waiting = {stage.__name__: _Beside(stage, conn, window.run_id) for stage in STAGES if stage.__name__ in BESIDE_NEXT}
    beside = None
    try:
        for run_stage in STAGES:
            if run_stage.__name__ in waiting:
                beside = waiting.pop(run_stage.__name__)
                beside.start()
                continue
            try:
                run_stage(conn, window.run_id)
            finally:
                if beside is not None:
                    beside, running = None, beside
                    running.finish()
    except Exception as exc:
        finish(conn, window.run_id, error=f"{exc.__class__.__name__}: {exc}")
        raise
    finally:
        for never_started in waiting.values():
            never_started.cancel()
    return finish_checked(conn, window.run_id, require_week=require_week)
