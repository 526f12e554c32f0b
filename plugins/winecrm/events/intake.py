"""What the receiver stores, and how it lands in the queue ``crm.webhook_events``.

The intake rule: an authenticated body that parses as JSON is never refused for its content.
Brevo retries a refused call a few times and then drops it — with the whole batch — so a 4xx
for one odd event would lose an unsubscribe we are bound to honour, and the 499 events beside
it. Each element of a body is therefore read on its own:

* understood (a known event of either Brevo family, or a behaviour event we can read): stored
  with the fields processing needs pulled out (event, address, message, link, time...);
* not understood (unknown event name, an address we cannot use, a field of the wrong type, an
  object where an event was expected...): stored *as received*, with the reason in
  ``intake_problem``; the crm_events run parks it for on-call (and the weekly report lists it).

Refusals remain only for credentials, size and a body that is not JSON (the receiver).

Brevo sends two webhook families to the same kind of URL: *transactional* (our campaign e-mails
and the shop's own mails: ``message-id``, ``X-Mailin-custom``, ``ts_epoch``, ``link``) and
*marketing* (campaigns an estate sends from Brevo itself: ``camp_id``, ``campaign name``,
``URL``, ``date_event``, ``list_id``; contact events ``list_addition``, ``contact_updated``,
``contact_deleted``). Event names come in several spellings (``hard_bounce`` in payloads,
``hardBounce`` in the webhook settings, ``unsubscribe`` in marketing, ``unsubscribed`` in
transactional...): one canonical name is stored in ``event``, the spelling received stays in
the payload.

Brevo has no event id: an event is identified by what tells two events apart — family, event,
address, message (message-id or campaign), moment, link and list — so a retry is stored once
and a click on another URL, or an open of another campaign in the same second, stays distinct.

``QueueWriter``: group commit. Each request hands its rows to one writer task and waits; the
writer inserts everything that arrived meanwhile in one statement and one COMMIT, then answers
all of them. A request gets its 2xx only after the COMMIT that holds its events, so an
acknowledged event is never lost; if the database fails, every waiting request gets the error
(the receiver answers 503 and the sender retries).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import re
import time
from collections import deque
from typing import Any, Literal, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from winecrm.core.weeks import estate_zone
from winecrm.events.rules import BEHAVIOR_TRIGGERS, canonical_brevo_event

log = logging.getLogger(__name__)

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_EVENTS_PER_BODY = 5000          # Brevo batches hold far fewer; beyond, a body is refused for its size
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc).timestamp()
_FUTURE_SLACK = 2 * 86_400          # a sender's clock a little ahead is fine; a year ahead is not a time

# the contact events of the marketing family: about a contact, not an e-mail (no address needed)
CONTACT_EVENTS = frozenset({"list_addition", "contact_updated", "contact_deleted"})
BEHAVIOR_FIELDS = frozenset({"client_code", "email", "action", "metadata", "event_id", "ts"})


def _address(value) -> str | None:
    if isinstance(value, str):
        value = value.strip().lower()
        if len(value) <= 254 and EMAIL_PATTERN.match(value):
            return value
    return None


def _epoch_seconds(value) -> float | None:
    """A Unix time in seconds or milliseconds (Brevo's documented ``ts_epoch`` example is in
    seconds, live captures in milliseconds): decided by magnitude; None when not a sane time."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 15:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    seconds = value / 1000 if value > 100_000_000_000 else float(value)  # 1e11 s is year 5138; 1e11 ms is 1973
    return seconds if _EARLIEST <= seconds <= time.time() + _FUTURE_SLACK else None


def _iso_moment(value, naive_zone: dt.tzinfo) -> dt.datetime | None:
    """An ISO 8601 time (a time without offset is in ``naive_zone``), in UTC; None when it is not
    one, or not a sane time."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=naive_zone)
    if not _EARLIEST <= moment.timestamp() <= time.time() + _FUTURE_SLACK:
        return None
    return moment.astimezone(dt.timezone.utc)


def brevo_moment(event: dict) -> dt.datetime | None:
    """When it happened: ``ts_epoch`` (s or ms), else ``ts_event``, else ``ts`` (the marketing
    examples' ``ts`` is an hour off ``ts_event``), else ``date_event`` / ``date``; None when none
    is a sane time (processing then uses the time it was received)."""
    for key in ("ts_epoch", "ts_event", "ts"):
        seconds = _epoch_seconds(event.get(key))
        if seconds is not None:
            return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    for key in ("date_event", "date"):  # « 2020-10-09 00:00:00 »: the account's local time (the estate's, Paris)
        moment = _iso_moment(event.get(key), estate_zone())
        if moment is not None:
            return moment
    return None


def _text(event: dict, *keys: str, limit: int = 2000) -> tuple[str | None, str | None]:
    """The first of ``keys`` present: (value, problem). A number is taken as its text."""
    for key in keys:
        if key in event and event[key] not in (None, ""):
            value = event[key]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                return None, f"{key}: expected text, got {type(value).__name__}"
            value = str(value)
            if len(value) > limit:
                return None, f"{key}: longer than {limit} characters"
            return value, None
    return None, None


class Incoming(NamedTuple):
    """One element of a body, as it goes into crm.webhook_events: the first fields are the
    table's columns (``COLUMNS``, same order), so the row is a slice of it."""

    source: str
    event: str
    email: str | None
    client_code: str | None
    message_id: str | None
    custom: str | None
    link: str | None
    occurred_at: dt.datetime | None
    payload: str                       # the element as received (JSON text)
    dedupe_key: str
    family: str | None = None          # Brevo: transactional | marketing
    brevo_campaign: str | None = None  # marketing: camp_id
    message_key: str | None = None     # the e-mail it is about: message-id, or campaign + address
    problem: str | None = None         # not understood: why (the event is parked for on-call)
    amount: float | None = None        # behaviour purchase: metadata.amount (explain shows it)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _as_json(value) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # an overflowing number read as infinity: kept as text (jsonb has no infinity)
        return json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _unreadable(source: str, element, problem: str, *, event: str | None = None, email: str | None = None) -> Incoming:
    """Stored as received, parked with the reason (identified by its whole content)."""
    raw = _as_json(element)
    name = event or (str(element.get("event") or element.get("action") or "?")[:60] if isinstance(element, dict)
                     else "?")
    return Incoming(source, name, email, None, None, None, None, None, raw,
                    _digest(f"{source}-unread", json.dumps(element, sort_keys=True, ensure_ascii=False)),
                    problem=problem)


def read_brevo_event(element) -> Incoming:
    """One Brevo webhook event of either family; never raises for its content."""
    if not isinstance(element, dict):
        return _unreadable("brevo", element, f"expected an event object, got {type(element).__name__}")
    raw_name = element.get("event")
    name = canonical_brevo_event(raw_name) if isinstance(raw_name, str) else None
    email = _address(element.get("email"))
    if name is None:
        return _unreadable("brevo", element, f"unknown Brevo event name {str(raw_name)[:60]!r}", email=email)
    if email is None and name not in CONTACT_EVENTS:
        what = "missing" if element.get("email") in (None, "") else "not a usable e-mail address"
        return _unreadable("brevo", element, f"email: {what}", event=name)
    family = ("marketing" if "camp_id" in element or "campaign name" in element or name in CONTACT_EVENTS
              else "transactional")
    problems = []
    message_id, p1 = _text(element, "message-id", "messageId", "message_id", limit=500)
    custom, p2 = _text(element, "X-Mailin-custom", "x-mailin-custom", limit=1000)
    link, p3 = _text(element, "link", "URL", "url", limit=20_000)
    campaign, p4 = _text(element, "camp_id", limit=40)
    problems += [p for p in (p1, p2, p3, p4) if p]
    if problems:
        return _unreadable("brevo", element, "; ".join(problems), event=name, email=email)
    moment = brevo_moment(element)
    stamp = moment.isoformat() if moment else str(next((element.get(k) for k in ("ts_epoch", "ts_event", "ts",
                                                                                 "date_event", "date")
                                                        if element.get(k) is not None), ""))
    lists = element.get("list_id")
    contact_key = element.get("key") if name in CONTACT_EVENTS else None
    who = email or _as_json(element.get("email"))
    dedupe = _digest("brevo", family, name, who, message_id or "", campaign or "", stamp, link or "",
                     _as_json(lists) if lists is not None else "", str(contact_key or ""))
    message_key = message_id or (f"camp:{campaign}|{email}" if campaign and email else None)
    return Incoming("brevo", name, email, None, message_id, custom, link, moment, _as_json(element), dedupe,
                    family=family, brevo_campaign=campaign, message_key=message_key)


def read_behavior_event(element) -> Incoming:
    """One behaviour event from the shop or a form; never raises for its content."""
    if not isinstance(element, dict):
        return _unreadable("behavior", element, f"expected an event object, got {type(element).__name__}")
    email = _address(element.get("email")) if element.get("email") not in (None, "") else None
    problems = []
    odd = sorted(str(k)[:40] for k in set(element) - BEHAVIOR_FIELDS)
    if odd:
        problems.append(f"unknown fields {odd}")
    action = element.get("action")
    if action not in BEHAVIOR_TRIGGERS:
        problems.append(f"action: expected one of {', '.join(BEHAVIOR_TRIGGERS)}")
    code = element.get("client_code")
    if code is not None and not (isinstance(code, str) and 1 <= len(code) <= 64
                                 and not any(ord(ch) < 32 or ord(ch) == 127 for ch in code)):
        problems.append("client_code: 1 to 64 printable characters")
        code = None
    if element.get("email") not in (None, "") and email is None:
        problems.append("email: not a usable e-mail address")
    if not code and not email:
        problems.append("client_code or email is required")
    metadata = element.get("metadata", {})
    amount = None
    if not isinstance(metadata, dict):
        problems.append("metadata: expected an object")
        metadata = {}
    elif "amount" in metadata:
        amount = metadata["amount"]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) \
                or not 0 <= amount <= 10_000_000:
            problems.append("metadata.amount must be a number of euros between 0 and 10,000,000")
            amount = None
    event_id = element.get("event_id")
    if event_id is not None and not (isinstance(event_id, str) and 1 <= len(event_id) <= 200):
        problems.append("event_id: 1 to 200 characters")
    moment = None
    if element.get("ts") is not None:
        moment = _iso_moment(element["ts"], dt.timezone.utc)  # any offset ISO 8601 allows, stored as UTC
        if moment is None:
            problems.append("ts: expected an ISO 8601 time between 2000 and now")
    if problems:
        return _unreadable("behavior", element, "; ".join(problems), event=action if action in BEHAVIOR_TRIGGERS
                           else None, email=email)
    url = metadata.get("url")
    if event_id:
        dedupe = _digest("behavior-id", event_id)
    else:
        dedupe = _digest("behavior", code or "", email or "", action, moment.isoformat() if moment else "",
                         json.dumps(metadata, sort_keys=True, default=str))
    payload = {k: v for k, v in element.items() if v is not None}
    if moment is not None:
        payload["ts"] = moment.isoformat()
    return Incoming("behavior", action, email, code, None, None, url if isinstance(url, str) else None, moment,
                    _as_json(payload), dedupe, amount=amount)


class TooLarge(ValueError):
    """A body beyond what the receiver takes: too many events, or nested too deep."""


def _elements(data) -> list:
    """One event or an array of them; the array's length is the only limit."""
    if isinstance(data, list):
        if len(data) > MAX_EVENTS_PER_BODY:
            raise TooLarge(f"{len(data)} events in one body (at most {MAX_EVENTS_PER_BODY}): send smaller batches")
        return data
    return [data]


def parse_brevo(data) -> list[Incoming]:
    """Every element of a Brevo body, understood or not (see the module docstring)."""
    return [read_brevo_event(e) for e in _elements(data)]


def parse_behavior(data) -> list[Incoming]:
    """Every element of a behaviour body (one event or an array)."""
    return [read_behavior_event(e) for e in _elements(data)]


def rows(events: list[Incoming]) -> list[tuple]:
    return [e[:_ROW_LENGTH] for e in events]


# -- what PostgreSQL cannot hold ------------------------------------------------------------------


def _int_or_text(text: str):
    return int(text) if len(text) <= 30 else text


def _float_or_text(text: str):
    value = float(text)
    return value if math.isfinite(value) else text


_DECODER = json.JSONDecoder(parse_constant=str)   # built once: json.loads(..., hook) builds one per call
_DECODER_KEEPING_TEXT = json.JSONDecoder(parse_constant=str, parse_int=_int_or_text, parse_float=_float_or_text)


def loads(body: bytes):
    """JSON as the receiver reads it. NaN and ±Infinity (not JSON, but what Python's own encoder
    writes) are kept as text rather than refused; so are numbers PostgreSQL cannot hold (an
    overflowing exponent, an integer of thousands of digits: ``_as_json``). Raises ValueError (not
    JSON) or TooLarge (nested too deeply to read)."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass") if isinstance(body, (bytes, bytearray)) \
            else body
        try:
            return _DECODER.decode(text)
        except ValueError as exc:
            if "digits" not in str(exc):   # Python's limit on the digits of an integer; else: not JSON
                raise
            return _DECODER_KEEPING_TEXT.decode(text)
    except RecursionError:
        raise TooLarge("JSON nested too deeply to read") from None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(data):
    """A copy where NUL characters and lone surrogates (PostgreSQL text cannot hold them; only a
    \\u escape or bytes that are not UTF-8 bring them) are replaced by U+FFFD; and whether any was."""
    changed = False

    def clean(value):
        nonlocal changed
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                changed = True
                return _UNSTORABLE.sub("\ufffd", value)
            return value
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(data), changed


def with_problem(events: list[Incoming], problem: str) -> list[Incoming]:
    """The events of a body whose characters had to be replaced: kept, and parked for a person."""
    return [e._replace(problem="; ".join(p for p in (e.problem, problem) if p)) for e in events]


# -- documentation of the bodies (OpenAPI): what is read; anything else is kept as data ---------------


class BrevoEvent(BaseModel):
    """One Brevo webhook event, transactional or marketing family, as Brevo names its fields.
    Other fields are kept as received. An event the receiver cannot read (unknown name, unusable
    address, a field of the wrong type) is stored as received and parked for a person."""

    model_config = ConfigDict(populate_by_name=True, json_schema_extra={"additionalProperties": True})

    event: str = Field(description="Brevo's event name, any documented spelling: delivered, opened, unique_opened "
                                   "(uniqueOpened), proxy_open, click, hard_bounce (hardBounce), soft_bounce "
                                   "(softBounce), blocked, invalid_email (invalid), deferred, spam, unsubscribed "
                                   "(marketing: unsubscribe), request (sent), error, list_addition (listAddition), "
                                   "contact_updated, contact_deleted")
    email: str | None = Field(None, description="the recipient (contact events: may be absent)")
    message_id: str | None = Field(None, alias="message-id", description="transactional: Brevo's message id")
    x_mailin_custom: str | None = Field(None, alias="X-Mailin-custom",
                                        description="transactional: the header we set at send time, echoed")
    ts_epoch: int | None = Field(None, description="transactional: Unix time, milliseconds (seconds in some examples)")
    ts_event: int | None = Field(None, description="Unix time of the event, seconds")
    ts: int | None = Field(None, description="Unix time, seconds")
    date: str | None = Field(None, description="date of the event (Paris time)")
    link: str | None = Field(None, description="transactional click: the URL")
    camp_id: int | None = Field(None, description="marketing: the Brevo campaign")
    campaign_name: str | None = Field(None, alias="campaign name", description="marketing: the campaign's name")
    url: str | None = Field(None, alias="URL", description="marketing click: the URL")
    date_event: str | None = Field(None, description="marketing: date of the event (the account's local time)")
    list_id: list[int] | None = Field(None, description="marketing: lists concerned")
    reason: str | None = Field(None, description="bounces, spam: why")


class BehaviorEvent(BaseModel):
    """What a customer did on the shop or a form (our own senders). An event the receiver cannot
    read (unknown action or field, no customer, an amount that is not a sum) is stored as received
    and parked for a person."""

    model_config = ConfigDict(extra="forbid")

    client_code: str | None = Field(None, min_length=1, max_length=64)
    email: str | None = Field(None, max_length=254)
    action: Literal[tuple(BEHAVIOR_TRIGGERS)] = Field(  # type: ignore[valid-type]
        description="click | open | purchase | form_submit | page_visit")
    metadata: dict[str, Any] = Field(default_factory=dict, description="free data; purchase: amount (euros), order")
    event_id: str | None = Field(None, min_length=1, max_length=200,
                                 description="the sender's id of the event: a repeat with the same id is stored once")
    ts: dt.datetime | None = Field(None, description="when it happened (ISO 8601); default: when received")


BREVO_BODY = TypeAdapter(Union[BrevoEvent, list[BrevoEvent]])
BEHAVIOR_BODY = TypeAdapter(Union[BehaviorEvent, list[BehaviorEvent]])


# -- the queue --------------------------------------------------------------------------------------

# row layout of crm.webhook_events written by the receiver (Incoming's attributes, same order)
COLUMNS = ("source", "event", "email", "client_code", "message_id", "custom", "link", "occurred_at", "payload",
           "dedupe_key", "family", "brevo_campaign", "message_key", "intake_problem")
_ROW_LENGTH = len(COLUMNS)
assert Incoming._fields[:_ROW_LENGTH] == COLUMNS[:-1] + ("problem",)

# The arrays travel in PostgreSQL's binary format (%b): the text format escapes every quote of
# every JSON payload in Python, ~40 µs per event on the receiver's single thread.
INSERT_SQL = f"""
INSERT INTO crm.webhook_events ({", ".join(COLUMNS)})
SELECT s, e, m, c, mid, cu, l, o, p::jsonb, k, f, bc, mk, ip
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
            %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])
     AS r(s, e, m, c, mid, cu, l, o, p, k, f, bc, mk, ip)
ON CONFLICT (dedupe_key) DO NOTHING
"""


def insert_params(rows: list[tuple]) -> list[list]:
    """The rows as one array per column (one statement for any number of events)."""
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in COLUMNS]


# The receiver's sessions: a locked table or a slow server answers 503 quickly instead of
# holding Brevo's call (and every request behind it) open.
RECEIVER_SESSION = {"statement_timeout": "10s", "lock_timeout": "5s", "idle_in_transaction_session_timeout": "30s"}
RECEIVER_ROLE = "crm_receiver"   # may insert into the queue and record an unsubscribe, nothing else (migration 012)


def restrict_session(conn, role: str | None = RECEIVER_ROLE) -> bool:
    """Session timeouts and, when the connected user may take it, the receiver's role: the
    receiver then cannot read customers or change anything but the queue and unsubscribes, even
    when it was given the warehouse owner's URL. Returns whether the role was taken."""
    import psycopg

    for name, value in RECEIVER_SESSION.items():
        conn.execute(f"SET {name} = '{value}'")
    if not role:
        return False
    current = conn.execute("SELECT current_user").fetchone()[0]
    if current == role:
        return True
    try:
        conn.execute(f'SET ROLE "{role}"')
        return True
    except psycopg.Error:
        if not conn.autocommit:
            conn.rollback()
            for name, value in RECEIVER_SESSION.items():
                conn.execute(f"SET {name} = '{value}'")
        return False


class QueueUnavailable(RuntimeError):
    """The queue could not be written: nothing of this request was acknowledged."""


class QueueWriter:
    """Group commit into crm.webhook_events (see the module docstring). One per process."""

    def __init__(self, url: str, *, max_rows: int = 5000, connect_timeout: int = 5, role: str | None = RECEIVER_ROLE):
        self.url, self.max_rows, self.connect_timeout, self.role = url, max_rows, connect_timeout, role
        self.restricted: bool | None = None     # whether the connection took the receiver's role
        self._pending: deque[tuple[list[tuple], asyncio.Future]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._conn = None

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="webhook-queue-writer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._conn is not None:
            await self._conn.close()

    async def submit(self, rows: list[tuple]) -> int:
        """Wait until the rows are committed; returns how many were new (not duplicates)."""
        if self._task is None or self._task.done():
            raise QueueUnavailable("the queue writer is not running")
        if not rows:
            return 0
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._wakeup.set()
        return await future

    async def _connection(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            # autocommit: the INSERT is its own transaction, committed (WAL flushed) before the
            # server's answer completes — one round trip per group instead of INSERT then COMMIT
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=self.connect_timeout,
                                                         application_name="winecrm-receiver", autocommit=True)
            await conn.execute(";".join(f"SET {k} = '{v}'" for k, v in RECEIVER_SESSION.items()))
            self.restricted = False
            if self.role:
                current = (await (await conn.execute("SELECT current_user")).fetchone())[0]
                try:
                    if current != self.role:
                        await conn.execute(f'SET ROLE "{self.role}"')
                    self.restricted = True
                except psycopg.Error as exc:
                    log.warning("the receiver could not take the database role %s (%s): it writes as %s; create "
                                "the role (migration 012) or give the receiver its own login",
                                self.role, exc.__class__.__name__, current)
            self._conn = conn
        return self._conn

    async def _run(self) -> None:
        import psycopg

        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                taken, size = [], 0
                while self._pending and (not taken or size + len(self._pending[0][0]) <= self.max_rows):
                    item = self._pending.popleft()
                    taken.append(item)
                    size += len(item[0])
                rows = [row for request_rows, _ in taken for row in request_rows]
                try:
                    new = await self._write(rows)
                except psycopg.DataError:
                    # a value the database refuses: each request alone, so only its sender gets the 503
                    await self._rollback()
                    for request_rows, future in taken:
                        await self._write_alone(request_rows, future)
                    continue
                except Exception as exc:  # database gone, or anything else: never a 2xx, and the writer lives on
                    log.warning("queue write failed (%s): %d requests answered 503", exc.__class__.__name__,
                                len(taken))
                    await self._drop()
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(QueueUnavailable(str(exc.__class__.__name__)))
                    continue
                # duplicates inside one group are counted on the first request that carried them
                for request_rows, future in taken:
                    keys = {r[9] for r in request_rows}
                    fresh = len(keys & new)
                    new -= keys
                    if not future.done():
                        future.set_result(fresh)

    async def _write_alone(self, rows: list[tuple], future: asyncio.Future) -> None:
        import psycopg

        try:
            new = await self._write(rows)
        except (psycopg.Error, OSError) as exc:
            log.warning("queue write refused (%s) for one request: answered 503", exc.__class__.__name__)
            await self._rollback()
            if not future.done():
                future.set_exception(QueueUnavailable(exc.__class__.__name__))
            return
        if not future.done():
            future.set_result(len(new))

    async def _rollback(self) -> None:
        try:
            if self._conn is not None:
                await self._conn.rollback()
        except Exception:  # broken: start again with a new connection
            await self._drop()

    async def _write(self, rows: list[tuple]) -> set[str]:
        """One statement, one transaction: ``execute`` returns once the server is ready for the
        next query, i.e. after the implicit COMMIT of the INSERT (or with its error)."""
        conn = await self._connection()
        async with conn.cursor() as cur:
            await cur.execute(INSERT_SQL + " RETURNING dedupe_key", insert_params(rows))
            new = {r[0] for r in await cur.fetchall()}
        return new

    async def _drop(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:  # already broken
                pass
        self._conn = None
