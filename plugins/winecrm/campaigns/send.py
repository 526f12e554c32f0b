"""Send a rendered campaign exactly once: the ledger ``crm.email_sends`` is the truth.

A row goes ``rendered -> sending -> sent`` (live), ``rendered -> simulated`` (dry-run: an .eml
in the outbox), or ``rendered -> skipped`` when, just before it would leave, the address turns
out suppressed, opted out or invalid, or the customer was emailed inside the silence window.

Live sending, batch by batch (``messageVersions``, up to 1000 e-mails per Brevo call):

1. claim the batch and record it as ``sending`` with its call's idempotencyKey (``batch_key``)
   — committed *before* the request leaves;
2. send; record ``sent`` with Brevo's message ids — committed as soon as the answer arrives.

A retried, killed or rerun task starts by resolving what it left ``sending`` (the request may
have left and its answer been lost): within ``sending.idempotency_window_minutes`` (at most 10:
Brevo documents a key's lifetime as 30 minutes today and 15 in an older changelog) the same call
is made again under the same key — Brevo either sends it (it never arrived) or refuses the key
as already used (it did: nothing is sent twice). Later, the key may be forgotten, so the batch is
looked up in Brevo's log of sent e-mails instead: Brevo takes a messageVersions call whole or
not at all, so a few of its recipients tell its fate (a handful of requests on an endpoint
limited to about 100 an hour, never one per e-mail), in a window of days around when it left
(Brevo reads its log at most one month at a time). Nothing is ever re-sent blindly.

Brevo answers one message id per version; an answer with another count, or an empty id, is
logged and noted on the rows (sent: the call was accepted) and no id is attached — an id on the
wrong row would send a customer's webhook events to another.

A live campaign with nothing left to send (everyone left out, or all sent already) needs no
approval: it is closed as done.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import logging
import time
import uuid
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import psycopg

from winecrm.campaigns import brevo as brevo_mod
from winecrm.campaigns.render import campaign_summary
from winecrm.core import settings

log = logging.getLogger(__name__)

_ROW = ("send_id", "client_code", "email", "scenario", "subject", "html", "text_body", "unsubscribe_token",
        "idempotency_key", "batch_key", "sending_at")


class CampaignNotApproved(RuntimeError):
    """A live campaign may leave only once a person approved it."""


@contextmanager
def _committed(conn: psycopg.Connection):
    """A transaction that is really committed when the block ends (not a savepoint of one the
    caller left open): the ledger must be on disk before a request leaves or after it returns."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()
    with conn.transaction():
        yield


def _rows(conn: psycopg.Connection, where: str, params: tuple) -> list[dict]:
    sql = f"SELECT {', '.join(_ROW)} FROM crm.email_sends WHERE {where} ORDER BY send_id"
    return [dict(zip(_ROW, r)) for r in conn.execute(sql, params)]


def _campaign(conn: psycopg.Connection, campaign_id: str) -> dict:
    row = conn.execute("SELECT campaign_id, kind, mode, status, test_address, as_of_date FROM crm.campaigns "
                       "WHERE campaign_id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise ValueError(f"no campaign {campaign_id!r} in crm.campaigns: render it first")
    return dict(zip(("campaign_id", "kind", "mode", "status", "test_address", "as_of_date"), row))


def _claim(conn: psycopg.Connection, campaign_id: str, limit: int, silence_days: int, *, live: bool,
           test: bool = False) -> list[dict]:
    """The next rendered e-mails, checked once more just before they leave: those now blocked
    are skipped with the reason; the others are marked sending (live) under one new batch key.
    Committed before anything is sent. (A test send to an internal address checks only that
    address: the customer's own consent and silence window are not at stake.)"""
    with _committed(conn):
        candidates = conn.execute(
            """SELECT send_id, crm.email_blocked_reason(CASE WHEN %s THEN NULL ELSE client_code END, email, %s,
                                                        campaign_id)
               FROM crm.email_sends WHERE campaign_id = %s AND status = 'rendered'
               ORDER BY send_id LIMIT %s FOR UPDATE SKIP LOCKED""",
            (test, silence_days, campaign_id, limit)).fetchall()
        blocked = [(reason, send_id) for send_id, reason in candidates if reason]
        if blocked:
            with conn.cursor() as cur:
                cur.executemany("UPDATE crm.email_sends SET status = 'skipped', skip_reason = %s, html = NULL, "
                                "text_body = NULL, updated_at = now() WHERE send_id = %s", blocked)
        ids = [send_id for send_id, reason in candidates if not reason]
        if not ids:
            return []
        batch_key = uuid.uuid4()
        if live:
            conn.execute("""UPDATE crm.email_sends SET status = 'sending', batch_key = %s, sending_at = now(),
                                   attempts = attempts + 1, error = NULL, updated_at = now()
                            WHERE send_id = ANY(%s)""", (batch_key, ids))
        return _rows(conn, "send_id = ANY(%s)", (ids,))


def build_message(rows: list[dict], campaign_id: str, batch_key: str, cfg: settings.CampaignsConfig,
                  to_override: str | None = None) -> dict:
    """One Brevo call for a batch: each e-mail a messageVersion (its own recipient, subject, HTML
    and text); tags name the campaign and scenarios; ``X-Mailin-custom`` carries the campaign and
    batch, which with the recipient's address (and the message ids answered per version) maps
    every webhook event back to its ledger row. Brevo adds its own List-Unsubscribe header to
    transactional e-mails; every body carries our one-click link as well."""
    estate = cfg.estate
    first = rows[0]
    message = {
        "sender": {"name": estate.sender_name, "email": estate.sender_email},
        "subject": first["subject"], "htmlContent": first["html"], "textContent": first["text_body"],
        "tags": sorted({*cfg.sending.tags, campaign_id, *(r["scenario"] for r in rows)}),
        "headers": {"idempotencyKey": str(batch_key), "X-Mailin-custom": f"{campaign_id}|{batch_key}"},
        "messageVersions": [{"to": [{"email": to_override or r["email"]}], "subject": r["subject"],
                             "htmlContent": r["html"], "textContent": r["text_body"]} for r in rows],
    }
    if estate.reply_to:
        message["replyTo"] = {"email": estate.reply_to}
    return message


def write_eml(row: dict, campaign_id: str, outbox: Path, cfg: settings.CampaignsConfig,
              to_override: str | None = None) -> Path:
    """The e-mail as a person can open it (.eml: headers, text and HTML alternatives), with the
    one-click unsubscribe headers it carries (RFC 8058)."""
    estate = cfg.estate
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((estate.sender_name, estate.sender_email))
    msg["To"] = to_override or row["email"]
    if estate.reply_to:
        msg["Reply-To"] = estate.reply_to
    msg["Subject"] = row["subject"]
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = f"<{row['idempotency_key']}@{estate.sender_email.split('@', 1)[1]}>"
    unsubscribe = cfg.links.unsubscribe_url.format(token=row["unsubscribe_token"])
    targets = [f"<{unsubscribe}>"]
    if cfg.links.unsubscribe_mailto:
        targets.append(f"<mailto:{cfg.links.unsubscribe_mailto}?subject=desinscription-{row['unsubscribe_token']}>")
    msg["List-Unsubscribe"] = ", ".join(targets)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Mailin-custom"] = f"{campaign_id}|{row['send_id']}"
    msg.set_content(row["text_body"], cte="quoted-printable")
    msg.add_alternative(row["html"], subtype="html", cte="base64")  # MJML's long lines: base64 is fast
    folder = outbox / campaign_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{row['scenario']}-{row['client_code']}.eml"
    tmp = path.with_suffix(".eml.tmp")
    tmp.write_bytes(bytes(msg))
    tmp.replace(path)  # a killed task never leaves half a file
    return path


def outbox_dir() -> Path:
    return settings.paths().outbox_dir


def _checked_ids(rows: list[dict], message_ids: list) -> tuple[list, str | None]:
    """Brevo's message ids when there is one non-empty id per e-mail, else none and a note."""
    if len(message_ids) == len(rows) and all(isinstance(m, str) and m.strip() for m in message_ids):
        return message_ids, None
    empty = sum(1 for m in message_ids if not (isinstance(m, str) and m.strip()))
    note = (f"Brevo accepted the call but answered {len(message_ids)} message id(s) ({empty} empty) for "
            f"{len(rows)} e-mail(s): no id attached (the webhook events still map by address and X-Mailin-custom)")
    log.warning("%s (batch %s)", note, rows[0].get("batch_key"))
    return [], note


def _mark_sent(conn: psycopg.Connection, rows: list[dict], message_ids: list | None, note: str | None) -> None:
    ids = message_ids or []
    with _committed(conn), conn.cursor() as cur:
        cur.executemany(
            """UPDATE crm.email_sends SET status = 'sent', sent_at = now(), brevo_message_id = %s, error = %s,
                      updated_at = now() WHERE send_id = %s AND status = 'sending'""",
            [(ids[i] if i < len(ids) else None, note, r["send_id"]) for i, r in enumerate(rows)])


def _release(conn: psycopg.Connection, rows: list[dict], error: str, status: str) -> None:
    with _committed(conn):
        conn.execute("""UPDATE crm.email_sends SET status = %s, error = %s, batch_key = NULL, sending_at = NULL,
                               updated_at = now() WHERE send_id = ANY(%s) AND status = 'sending'""",
                     (status, error, [r["send_id"] for r in rows]))


def _send_batch(conn, client: brevo_mod.BrevoClient, rows: list[dict], campaign_id: str,
                cfg: settings.CampaignsConfig, to_override: str | None) -> None:
    """Send one claimed batch (its rows are 'sending', committed) and record the outcome."""
    message = build_message(rows, campaign_id, rows[0]["batch_key"], cfg, to_override)
    try:
        message_ids = client.send_transactional(message)
    except brevo_mod.BrevoDuplicate:
        # accepted by an earlier try whose answer was lost: sent, and not again
        _mark_sent(conn, rows, None, "accepted by an earlier try (idempotencyKey already used)")
        return
    except (brevo_mod.BrevoAuthError, brevo_mod.BrevoNoCredits, brevo_mod.BrevoForbidden,
            brevo_mod.BrevoRateLimited) as exc:
        # refused before anything was sent: back to rendered, the task fails with what to do
        _release(conn, rows, str(exc), "rendered")
        raise
    except brevo_mod.BrevoBadRequest as exc:
        _release(conn, rows, str(exc), "failed")
        raise
    except brevo_mod.BrevoUnavailable:
        raise  # outcome unknown: the rows stay 'sending' and are resolved by the next try
    _mark_sent(conn, rows, *_checked_ids(rows, message_ids))


LOOKUP_SAMPLE = 3          # recipients looked up to tell an unknown batch's fate
CLOCK_SKEW = dt.timedelta(minutes=1)  # between our database and Brevo's log


def lookup_window(left_at: dt.datetime) -> tuple[str, str]:
    """The dates (UTC) to read Brevo's log for a batch that left at ``left_at``: the day before
    to two days after — well inside Brevo's one-month limit, however long ago it left."""
    day = left_at.astimezone(dt.timezone.utc).date()
    return (day - dt.timedelta(days=1)).isoformat(), (day + dt.timedelta(days=2)).isoformat()


def _sample(rows: list[dict]) -> list[dict]:
    """A few rows spread over the batch (first, middle, last)."""
    picks = sorted({0, len(rows) // 2, len(rows) - 1})[:LOOKUP_SAMPLE]
    return [rows[i] for i in picks]


def _brevo_date(text: str | None) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _resolve_by_lookup(conn: psycopg.Connection, client: brevo_mod.BrevoClient, campaign_id: str,
                       rows: list[dict], to_override: str | None, attributed: set) -> bool:
    """Was this unknown batch accepted? Looks a few of its recipients up in Brevo's log (tag =
    the campaign). An e-mail whose message id the ledger already holds is an earlier batch's
    (with a test address, every batch goes to the same address under the same tag); so is one
    dated before the batch left. Marks the batch sent (ids attached where one address is one
    row) or puts it back to 'rendered'. ``attributed``: ids already given to a batch."""
    left_at = min(r["sending_at"] for r in rows)
    start, end = lookup_window(left_at)
    shared_address = to_override is not None
    addresses = list(dict.fromkeys(to_override or r["email"] for r in _sample(rows)))
    found: dict[str, list[dict]] = {}
    for address in addresses:
        found[address] = [
            e for e in client.find_sent(address, start, end, tag=campaign_id)
            if e.get("messageId") and e["messageId"] not in attributed
            and (not shared_address or (_brevo_date(e.get("date")) or left_at) >= left_at - CLOCK_SKEW)]
    if not any(found.values()):
        _release(conn, rows, "not in Brevo's log after an unanswered call: to send again", "rendered")
        return False
    ids = []
    for row in rows:
        candidates = [] if shared_address else found.get(row["email"], [])
        ids.append(candidates[0]["messageId"] if len(candidates) == 1 else None)
    # a batch takes the oldest unattributed e-mails (only one batch of a campaign is ever unknown at a
    # time: each try resolves them before it sends anything new)
    attributed.update(e["messageId"] for emails in found.values()
                      for e in sorted(emails, key=lambda e: e.get("date") or "")[:len(rows)])
    _mark_sent(conn, rows, ids, "found in Brevo's log after an unanswered call (the whole call was accepted)")
    return True


def _resolve_unknown(conn: psycopg.Connection, client: brevo_mod.BrevoClient, campaign_id: str,
                     cfg: settings.CampaignsConfig, to_override: str | None, now: dt.datetime) -> dict:
    """Rows left 'sending' by an earlier try: the same call under the same key inside the
    window, else the batch looked up in Brevo's log; never sent blindly."""
    counts = {"repeated_under_key": 0, "found_sent": 0, "not_found_resent_later": 0}
    pending = _rows(conn, "campaign_id = %s AND status = 'sending'", (campaign_id,))
    batches: dict = {}
    for row in pending:
        batches.setdefault(row["batch_key"], []).append(row)
    window = dt.timedelta(minutes=cfg.sending.idempotency_window_minutes)
    attributed = {m for (m,) in conn.execute("SELECT brevo_message_id FROM crm.email_sends WHERE campaign_id = %s "
                                             "AND brevo_message_id IS NOT NULL", (campaign_id,))}
    for batch_key, rows in sorted(batches.items(), key=lambda b: min(r["sending_at"] for r in b[1])):
        left_at = min(r["sending_at"] for r in rows)
        if now - left_at < window:
            counts["repeated_under_key"] += len(rows)
            _send_batch(conn, client, rows, campaign_id, cfg, to_override)
        elif _resolve_by_lookup(conn, client, campaign_id, rows, to_override, attributed):
            counts["found_sent"] += len(rows)
        else:
            counts["not_found_resent_later"] += len(rows)
    return counts


def send_campaign(conn: psycopg.Connection, campaign_id: str, *, client: brevo_mod.BrevoClient | None = None,
                  outbox: Path | None = None, cfg: settings.CampaignsConfig | None = None,
                  scoring: settings.ScoringConfig | None = None, now: dt.datetime | None = None) -> dict:
    """Send (live), or write to the outbox (dry-run), every rendered e-mail of a campaign.

    Live needs a Brevo client and the campaign approved; test mode sends every e-mail to the
    campaign's test address (through Brevo when a client is given, else to the outbox)."""
    cfg = cfg or settings.campaigns_config()
    scoring = settings.scoring_from(scoring)
    outbox = outbox or outbox_dir()
    campaign = _campaign(conn, campaign_id)
    mode = campaign["mode"]
    live = client is not None and mode in ("live", "test")
    if mode == "live" and campaign["status"] == "rendered" and _left_to_send(conn, campaign_id) == 0:
        # a normal week where everyone was left out (or all went already): nothing to approve
        conn.execute("UPDATE crm.campaigns SET status = 'done', updated_at = now() WHERE campaign_id = %s "
                     "AND status = 'rendered'", (campaign_id,))
        conn.commit()
        summary = campaign_summary(conn, campaign_id)
        summary.update(mode=mode, live=live, batches=0, resolved={}, brevo_requests=0, outbox=None, seconds=0.0,
                       note="nothing left to send: no approval needed")
        log.info("campaign %s: nothing left to send, closed without approval: %s", campaign_id, summary)
        return summary
    if mode == "live" and client is None:
        raise CampaignNotApproved(f"campaign {campaign_id} is live but no Brevo connection is configured: "
                                  "nothing sent (set the Airflow connection brevo_default, or switch to dry-run)")
    if mode == "live" and campaign["status"] not in ("approved", "sending", "done"):
        raise CampaignNotApproved(f"campaign {campaign_id} is live and {campaign['status']}: a person must approve "
                                  "it in the Airflow UI before anything is sent")
    to_override = campaign["test_address"] if mode == "test" else None
    started = time.perf_counter()
    conn.execute("UPDATE crm.campaigns SET status = 'sending', updated_at = now() WHERE campaign_id = %s "
                 "AND status IN ('rendered', 'approved')", (campaign_id,))
    conn.commit()
    resolved = {}
    if live:
        resolved = _resolve_unknown(conn, client, campaign_id, cfg, to_override, now or _db_now(conn))
    batches = 0
    while True:
        rows = _claim(conn, campaign_id, cfg.sending.batch_size, scoring.recommendations.silence_days, live=live,
                      test=campaign["kind"] == "test")
        if not rows:
            break
        batches += 1
        if live:
            _send_batch(conn, client, rows, campaign_id, cfg, to_override)
        else:
            written = [(str(write_eml(r, campaign_id, outbox, cfg, to_override)), r["send_id"]) for r in rows]
            with _committed(conn), conn.cursor() as cur:
                cur.executemany("""UPDATE crm.email_sends SET status = 'simulated', outbox_path = %s, updated_at = now()
                                   WHERE send_id = %s AND status = 'rendered'""", written)
    if _left_to_send(conn, campaign_id) == 0:
        conn.execute("UPDATE crm.campaigns SET status = 'done', updated_at = now() WHERE campaign_id = %s",
                     (campaign_id,))
    conn.commit()
    summary = campaign_summary(conn, campaign_id)
    summary.update(mode=mode, live=live, batches=batches, resolved=resolved,
                   brevo_requests=client.requests_made if client else 0,
                   outbox=str(outbox / campaign_id) if not live else None,
                   seconds=round(time.perf_counter() - started, 3))
    log.info("campaign %s sent (%s): %s", campaign_id, "live" if live else "outbox", summary)
    return summary


def _left_to_send(conn: psycopg.Connection, campaign_id: str) -> int:
    return conn.execute("SELECT count(*) FROM crm.email_sends WHERE campaign_id = %s AND status IN "
                        "('rendered', 'sending')", (campaign_id,)).fetchone()[0]


def _db_now(conn: psycopg.Connection) -> dt.datetime:
    return conn.execute("SELECT now()").fetchone()[0]
