"""RGPD retention of what the pipeline keeps about rejected input.

Rejected rows are kept in ``etl.quarantine`` with their raw values (names, e-mail addresses,
phone numbers as delivered) and shown in the Data Docs, so a person can fix the export. After
``retention.quarantine_raw_values_days`` the raw values are blanked and the reason is reduced to
file, line, column and the failing checks; Data Docs validation pages older than
``retention.data_docs_days`` are deleted (and the index rebuilt); run work files older than
``retention.work_files_days`` are deleted. Dry-run outboxes go too: e-mail folders after
``retention.email_bodies_days``, the SMS outbox's daily files (phone numbers and texts) after
``retention.sms_outbox_days``.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time

import psycopg

from winecrm.core import settings, storage

log = logging.getLogger(__name__)


def purge_quarantine(conn: psycopg.Connection, days: int) -> int:
    cursor = conn.execute(
        """UPDATE etl.quarantine
           SET raw_values = NULL,
               reason = file_path || coalesce(' line ' || row_no, '') || ': '
                        || coalesce(column_name || ': ', '') || array_to_string(expectations, ', ')
                        || ' (details purged after ' || %(days)s || ' days)'
           WHERE quarantined_at < now() - make_interval(days => %(days)s) AND raw_values IS NOT NULL""",
        {"days": days})
    conn.commit()
    return cursor.rowcount


def purge_data_docs(days: int, now: float | None = None) -> int:
    """Delete validation results and their pages older than ``days``; rebuild the site index."""
    docs = settings.paths().docs_dir / "gx"
    cutoff = (now or time.time()) - days * 86400
    removed = 0
    for folder in (docs / "uncommitted" / "validations", settings.paths().data_docs_site / "validations"):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    if removed:
        from winecrm.etl.gx_context import rebuild_data_docs

        rebuild_data_docs(settings.paths().docs_dir)
    return removed


def purge_work_files(days: int, now: float | None = None) -> int:
    """Delete run work folders not modified for ``days``."""
    root = storage.work_root()
    cutoff = dt.datetime.fromtimestamp((now or time.time()) - days * 86400, tz=dt.timezone.utc)
    removed = 0
    for folder in storage.sorted_glob(root, "*"):
        newest = None
        for part in folder.rglob("*"):
            try:
                modified = part.stat().st_mtime
            except (FileNotFoundError, AttributeError):
                continue
            modified = modified if isinstance(modified, (int, float)) else modified.timestamp()
            newest = max(newest or 0.0, modified)
        if newest is not None and dt.datetime.fromtimestamp(newest, tz=dt.timezone.utc) < cutoff:
            storage.remove_tree(folder)
            removed += 1
    return removed


def purge_email_bodies(conn: psycopg.Connection, days: int, now: float | None = None) -> dict:
    """Drop the bodies of e-mails whose fate is settled (sent, simulated, skipped, failed) after
    ``days``, and the outbox folders of dry runs not touched since: an e-mail is ~10 KB of HTML,
    the ledger row without it keeps what the report and the webhooks need."""
    cursor = conn.execute(
        """UPDATE crm.email_sends SET html = NULL, text_body = NULL
           WHERE status NOT IN ('rendered', 'sending') AND html IS NOT NULL
             AND updated_at < now() - make_interval(days => %s)""", (days,))
    conn.commit()
    outbox = settings.paths().outbox_dir
    cutoff = (now or time.time()) - days * 86400
    removed = 0
    if outbox.is_dir():
        for folder in outbox.iterdir():
            if folder.name == SMS_FOLDER:
                continue  # one file per day, purged by purge_sms_outbox with its own setting
            if folder.is_dir() and all(p.stat().st_mtime < cutoff for p in folder.rglob("*")):
                shutil.rmtree(folder)
                removed += 1
    return {"email_bodies_purged": cursor.rowcount, "outbox_folders_deleted": removed}


SMS_FOLDER = "sms"  # <outbox>/sms/<Paris date>.jsonl, written by winecrm.events.actions in dry-run


def purge_sms_outbox(days: int, now: dt.datetime | None = None) -> int:
    """Delete the SMS outbox's daily files older than ``days``; returns the files deleted.

    Each file holds the SMS simulated on one Paris day (recipient numbers, texts). The folder is
    written to every day SMS flow, so it is judged file by file, by the day in the file's name
    (its modification time for a file named otherwise), never as a whole."""
    from winecrm.core.weeks import estate_zone

    folder = settings.paths().outbox_dir / SMS_FOLDER
    if not folder.is_dir():
        return 0
    moment = now or dt.datetime.now(dt.timezone.utc)
    oldest_kept = moment.astimezone(estate_zone()).date() - dt.timedelta(days=days)
    removed = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            day = dt.date.fromisoformat(path.name.split(".", 1)[0])
        except ValueError:
            day = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc).astimezone(estate_zone()).date()
        if day < oldest_kept:
            path.unlink()
            removed += 1
    return removed


def purge_event_payloads(conn: psycopg.Connection, days: int) -> int:
    """Events processed more than ``days`` ago keep their structured columns (event, customer,
    send, link, time: what the funnel and the score ledger need) but lose the payload as Brevo or
    the shop sent it (addresses, subjects, free metadata)."""
    cursor = conn.execute(
        """UPDATE crm.webhook_events SET payload = jsonb_build_object('purged', true, 'event', event)
           WHERE status = 'done' AND processed_at < now() - make_interval(days => %s)
             AND NOT payload ? 'purged'""", (days,))
    conn.commit()
    return cursor.rowcount


def purge(conn: psycopg.Connection) -> dict:
    from winecrm.core.db import data_docs_lock

    cfg = settings.pipeline_config().retention
    with data_docs_lock(conn, "purge"):
        docs_deleted = purge_data_docs(cfg.data_docs_days)
    report = {
        "event_payloads_purged": purge_event_payloads(conn, cfg.event_payload_days),
        "quarantine_rows_purged": purge_quarantine(conn, cfg.quarantine_raw_values_days),
        "data_docs_files_deleted": docs_deleted,
        "work_folders_deleted": purge_work_files(cfg.work_files_days),
        **purge_email_bodies(conn, cfg.email_bodies_days),
        "sms_outbox_files_deleted": purge_sms_outbox(cfg.sms_outbox_days),
    }
    log.info("Retention: %s", report)
    return report
