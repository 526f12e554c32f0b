"""Proof of consent (GDPR art. 7(1)): the history of every opt-in and opt-out, in ``crm.consent_log``.

Each row says who (client code and/or address), what (``opt_in``, ``opt_out``,
``suppressed:<reason>``, ``paused``), for which channel (``email``, ``sms``, ``all``), from where
(``source``: ``erp_export`` with its file and run, ``unsubscribe_link``, ``brevo_webhook:<event>``,
``rule:<id>``, ``privacy_erase``...) and when. Rows are only ever added (migration 015 refuses an
edit of what was recorded). The events DAG and the receiver write their rows in their own SQL;
the weekly load calls ``record_export_changes``; anything else (the erasure) calls
``record_consent_change``; the access export reads ``consent_history``.

Light on imports: the ETL load imports this module.
"""

from __future__ import annotations

import datetime as dt

import psycopg

CHANGES = ("opt_in", "opt_out", "paused")
CHANNELS = ("email", "sms", "all")
ERP_SOURCE = "erp_export"

HISTORY_COLUMNS = ("consent_id", "changed_at", "client_code", "email", "channel", "change", "source",
                   "source_file", "run_id", "event_id", "detail", "event_at")


def _valid_change(change: str) -> bool:
    return change in CHANGES or (change.startswith("suppressed:") and len(change) > len("suppressed:"))


def record_consent_change(conn: psycopg.Connection, *, client_code: str | None = None, email: str | None = None,
                          change: str, source: str, channel: str = "email", source_file: str | None = None,
                          run_id: str | None = None, event_id: int | None = None, detail: str | None = None,
                          changed_at: dt.datetime | None = None) -> int:
    """Append one consent change and return its ``consent_id``; runs in the caller's transaction
    (never commits). ``email`` is stored as the warehouse compares it (``lower(btrim())``); give
    at least one of ``client_code`` and ``email``. ``changed_at`` defaults to the transaction's
    time. ``detail`` is free context and must not hold personal data.

    The erasure records the person's final opt-out with
    ``record_consent_change(conn, client_code=code, email=None, change='opt_out', source='privacy_erase', channel='all')``.
    """
    if not _valid_change(change):
        raise ValueError(f"unknown consent change {change!r}: one of {', '.join(CHANGES)} or suppressed:<reason>")
    if channel not in CHANNELS:
        raise ValueError(f"unknown consent channel {channel!r}: one of {', '.join(CHANNELS)}")
    if not (client_code or email):
        raise ValueError("a consent change needs a client code or an address")
    if not source:
        raise ValueError("a consent change needs its source")
    row = conn.execute(
        """INSERT INTO crm.consent_log (email, client_code, change, source, channel, source_file, run_id, event_id,
                                        detail, changed_at)
           VALUES (lower(btrim(%s)), %s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()))
           RETURNING consent_id""",
        (email, client_code, change, source, channel, source_file, run_id, event_id, detail, changed_at)).fetchone()
    return row[0]


# The winning staged row of each customer (the same order as load_clients.sql's upsert) whose row
# this run wrote, with a consent value; a row flips when it differs from the customer's last
# erp_export row, or is the first one. People erased earlier (their address hashes to an erased
# marker, as crm.email_blocked_reason checks, or their client code is in crm.erasures) get no new
# history from an export that brings them back.
_EXPORT_CHANGES = """
WITH staged AS (
    SELECT DISTINCT ON (s.client_code) s.client_code, s.opt_out, s.email, s.file_id, s.source_row
    FROM stg_clients s
    ORDER BY s.client_code, s.export_date DESC, s.file_id DESC, s.source_row DESC),
written AS (
    SELECT s.* FROM staged s
    JOIN etl.clients c ON c.client_code = s.client_code AND c.file_id = s.file_id AND c.source_row = s.source_row
                      AND c.loaded_run = %(run_id)s
    WHERE s.opt_out IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM crm.suppressions x
                      WHERE s.email IS NOT NULL
                        AND x.email = 'erased:' || encode(sha256(convert_to(lower(btrim(s.email)), 'UTF8')), 'hex'))
      -- nor a client code erased earlier (crm.erasures), whatever address the export gives it now
      AND NOT EXISTS (SELECT 1 FROM crm.erased_clients e WHERE e.client_code = s.client_code)),
last AS (
    SELECT DISTINCT ON (l.client_code) l.client_code, l.change
    FROM crm.consent_log l JOIN written w USING (client_code)
    WHERE l.source = %(source)s
    ORDER BY l.client_code, l.changed_at DESC, l.consent_id DESC)
INSERT INTO crm.consent_log (email, client_code, change, source, channel, source_file, run_id, detail, changed_at)
SELECT NULL, w.client_code, CASE WHEN w.opt_out THEN 'opt_out' ELSE 'opt_in' END, %(source)s, 'all',
       m.file_path, %(run_id)s, 'line ' || w.source_row, now()
FROM written w
JOIN etl.file_manifest m ON m.file_id = w.file_id
LEFT JOIN last l ON l.client_code = w.client_code
WHERE l.change IS DISTINCT FROM CASE WHEN w.opt_out THEN 'opt_out' ELSE 'opt_in' END
ORDER BY w.client_code
RETURNING change, source_file
"""


def record_export_changes(conn: psycopg.Connection, run_id: str) -> dict:
    """Record the consent the clients export of this run states, where it is new: a customer's
    first known value, or a value that flipped since the last export that stated one. Called by
    the clients load inside its transaction, after the upsert (it reads the ``stg_clients``
    staging table). A file without the consent column states nothing. The ERP's column covers
    e-mails and SMS alike (channel ``all``).

    Returns ``{"opt_out": n, "opt_in": m, "files": {path: {"opt_out": n, "opt_in": m}}}``."""
    counts = {"opt_out": 0, "opt_in": 0, "files": {}}
    for change, path in conn.execute(_EXPORT_CHANGES, {"run_id": run_id, "source": ERP_SOURCE}).fetchall():
        counts[change] += 1
        per_file = counts["files"].setdefault(path, {"opt_out": 0, "opt_in": 0})
        per_file[change] += 1
    return counts


def consent_history(conn: psycopg.Connection, client_codes: list[str] | tuple[str, ...] = (),
                    addresses: list[str] | tuple[str, ...] = ()) -> list[dict]:
    """Every recorded consent change of these customers or addresses (addresses compared as
    ``lower(btrim())``), oldest first, as dicts keyed by ``HISTORY_COLUMNS``; ``changed_at`` is a
    timezone-aware datetime; ``event_at`` is, for a change an event caused (a Brevo webhook), the
    time the sender gave the event (the person's click), else None. An address also brings the
    history of the customer whose record in ``etl.clients`` carries it (the ERP's rows are kept per
    customer, without the address). For the access export (GDPR art. 15) and for proving a consent."""
    codes = [c for c in client_codes if c]
    emails = [a.strip().lower() for a in addresses if a and a.strip()]
    if not codes and not emails:
        return []
    rows = conn.execute(
        f"""SELECT {', '.join('l.' + c for c in HISTORY_COLUMNS[:-1])}, w.occurred_at
            FROM crm.consent_log l LEFT JOIN crm.webhook_events w ON w.event_id = l.event_id
            WHERE l.client_code = ANY(%(codes)s::text[]) OR lower(btrim(l.email)) = ANY(%(emails)s::text[])
               OR l.client_code IN (SELECT c.client_code FROM etl.clients c
                                    WHERE lower(btrim(c.email)) = ANY(%(emails)s::text[]))
            ORDER BY l.changed_at, l.consent_id""", {"codes": codes, "emails": emails}).fetchall()
    return [dict(zip(HISTORY_COLUMNS, row)) for row in rows]


def summary_fr(counts: dict | None) -> str:
    """« Consentements : 3 retraits, 1 accord (export ERP) » for the run's note, or '' when the
    load changed none. French typography: a no-break space before the colon."""
    from winecrm.core import french

    if not counts or not (counts.get("opt_out") or counts.get("opt_in")):
        return ""
    said = []
    if counts.get("opt_out"):
        said.append(french.plural(counts["opt_out"], "retrait"))
    if counts.get("opt_in"):
        said.append(french.plural(counts["opt_in"], "accord"))
    return f"Consentements\u00a0: {', '.join(said)} (export ERP)"
