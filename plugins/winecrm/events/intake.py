"""What the receiver accepts, and how it lands in the queue ``crm.webhook_events``.

* The payload models (pydantic): Brevo's transactional webhook event (one, or a JSON array of up
  to 500) and our behaviour event. They are strict about what we read (event names, address,
  lengths) and keep Brevo's other fields as data; the receiver's OpenAPI schema is generated
  from them.
* The deduplication key: Brevo retries a webhook (+10 min, +1 h, +2 h, +8 h) and has no event
  id, so an event is identified by its message-id, event, timestamp, link and address.
* ``QueueWriter``: group commit. Each request hands its rows to one writer task and waits; the
  writer inserts everything that arrived meanwhile in one statement and one COMMIT, then
  answers all of them. A request gets its 2xx only after the COMMIT that holds its events, so
  an acknowledged event is never lost; if the database fails, every waiting request gets the
  error (the receiver answers 503 and the sender retries).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections import deque
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from winecrm.events.rules import BEHAVIOR_TRIGGERS, BREVO_TRIGGERS

log = logging.getLogger(__name__)

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
MAX_BATCH = 500                      # Brevo posts at most 500 events per call
MAX_TEXT = 4096                      # any other string field we keep
MAX_EXTRA_FIELDS = 60
_LATEST_TS = 4_102_444_800           # 2100-01-01: a timestamp beyond is a mistake, not an event

BrevoEventName = Literal[tuple(BREVO_TRIGGERS)]  # type: ignore[valid-type]
BehaviorAction = Literal[tuple(BEHAVIOR_TRIGGERS)]  # type: ignore[valid-type]


def _bounded(value: Any, where: str, depth: int = 0) -> None:
    """Fields we do not read are stored as data, within reason: no huge strings, no deep nesting."""
    if depth > 4:
        raise ValueError(f"{where}: nested too deep")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise ValueError(f"{where}: longer than {MAX_TEXT} characters")
    if isinstance(value, dict):
        if len(value) > MAX_EXTRA_FIELDS:
            raise ValueError(f"{where}: more than {MAX_EXTRA_FIELDS} fields")
        for k, v in value.items():
            _bounded(v, f"{where}.{k}", depth + 1)
    if isinstance(value, list):
        if len(value) > 100:
            raise ValueError(f"{where}: more than 100 items")
        for i, v in enumerate(value):
            _bounded(v, f"{where}[{i}]", depth + 1)


class BrevoEvent(BaseModel):
    """One Brevo transactional webhook event (fields as Brevo names them)."""

    # ser_json_inf_nan: a NaN or Infinity in a field we keep is written out as json.dumps does, so
    # the database refuses it as before (only that request gets the 503)
    model_config = ConfigDict(extra="allow", populate_by_name=True, ser_json_inf_nan="constants",
                              json_schema_extra={"additionalProperties": True})

    event: BrevoEventName = Field(description="Brevo's event name")
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN, description="the recipient")
    message_id: str | None = Field(None, alias="message-id", max_length=500)
    id: int | None = Field(None, description="Brevo's webhook id (not an event id)")
    ts: int | None = Field(None, ge=0, le=_LATEST_TS, description="seconds since the epoch")
    ts_event: int | None = Field(None, ge=0, le=_LATEST_TS, description="seconds since the epoch")
    ts_epoch: int | None = Field(None, ge=0, le=_LATEST_TS * 1000, description="milliseconds since the epoch")
    date: str | None = Field(None, max_length=40)
    subject: str | None = Field(None, max_length=1000)
    tag: str | None = Field(None, max_length=1000)
    tags: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=50)
    link: str | None = Field(None, max_length=MAX_TEXT, description="click: the URL")
    reason: str | None = Field(None, max_length=2000, description="bounces: why")
    x_mailin_custom: str | None = Field(None, alias="X-Mailin-custom", max_length=1000,
                                        description="the header we set at send time, echoed")

    @model_validator(mode="after")
    def _extras_bounded(self) -> "BrevoEvent":
        extra = self.model_extra or {}
        if len(extra) > MAX_EXTRA_FIELDS:
            raise ValueError(f"more than {MAX_EXTRA_FIELDS} fields")
        for key, value in extra.items():
            if len(key) > 100:
                raise ValueError("a field name longer than 100 characters")
            _bounded(value, key)
        return self

    def occurred_at(self) -> dt.datetime | None:
        if self.ts_epoch is not None:
            return dt.datetime.fromtimestamp(self.ts_epoch / 1000, dt.timezone.utc)
        seconds = self.ts_event if self.ts_event is not None else self.ts
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc) if seconds is not None else None

    def dedupe_key(self) -> str:
        moment = next((str(v) for v in (self.ts_epoch, self.ts_event, self.ts, self.date) if v is not None), "")
        return _digest("brevo", self.message_id or "", self.event, moment, self.link or "", self.email.strip().lower())


class BehaviorEvent(BaseModel):
    """What a customer did on the shop or a form (our own senders)."""

    model_config = ConfigDict(extra="forbid")

    client_code: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    email: str | None = Field(None, max_length=254, pattern=EMAIL_PATTERN)
    action: BehaviorAction = Field(description="click | open | purchase | form_submit | page_visit")
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="free data; purchase: amount (euros), order")
    event_id: str | None = Field(None, min_length=1, max_length=200,
                                 description="the sender's id of the event: a repeat with the same id is stored once")
    ts: dt.datetime | None = Field(None, description="when it happened (ISO 8601); default: when received")

    @field_validator("metadata")
    @classmethod
    def _metadata_bounded(cls, value: dict) -> dict:
        _bounded(value, "metadata")
        amount = value.get("amount")
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, (int, float))
                                   or not 0 <= amount <= 10_000_000):
            raise ValueError("metadata.amount must be a number of euros between 0 and 10,000,000")
        return value

    @model_validator(mode="after")
    def _identified(self) -> "BehaviorEvent":
        if not self.client_code and not self.email:
            raise ValueError("client_code or email is required")
        if self.ts is not None:
            if not 2000 <= self.ts.year <= 2100:
                raise ValueError("ts must be a date between 2000 and 2100")
            moment = self.ts if self.ts.tzinfo is not None else self.ts.replace(tzinfo=dt.timezone.utc)
            self.ts = moment.astimezone(dt.timezone.utc)  # any offset ISO 8601 allows, stored as UTC
        return self

    def dedupe_key(self) -> str:
        if self.event_id:
            return _digest("behavior-id", self.event_id)
        return _digest("behavior", self.client_code or "", (self.email or "").lower(), self.action,
                       self.ts.isoformat() if self.ts else "", json.dumps(self.metadata, sort_keys=True, default=str))


BrevoBody = Union[BrevoEvent, Annotated[list[BrevoEvent], Field(min_length=1, max_length=MAX_BATCH)]]
BREVO_BODY = TypeAdapter(BrevoBody)          # for the OpenAPI schema
BREVO_BATCH = TypeAdapter(Annotated[list[BrevoEvent], Field(min_length=1, max_length=MAX_BATCH)])
BEHAVIOR_BODY = TypeAdapter(BehaviorEvent)


class BadShape(ValueError):
    """The body is JSON but neither an event object nor an array of them."""


def parse_brevo(data) -> list[BrevoEvent]:
    """One event or an array of up to 500; raises pydantic's ValidationError (with clean
    locations: ``email``, ``3.link``) or BadShape."""
    if isinstance(data, list):
        return BREVO_BATCH.validate_python(data)
    if isinstance(data, dict):
        return [BrevoEvent.model_validate(data)]
    raise BadShape("expected a Brevo event object or an array of up to 500 of them")


def parse_behavior(data) -> BehaviorEvent:
    if not isinstance(data, dict):
        raise BadShape("expected one behaviour event object")
    return BehaviorEvent.model_validate(data)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


# row layout of crm.webhook_events written by the receiver
COLUMNS = ("source", "event", "email", "client_code", "message_id", "custom", "link", "occurred_at", "payload",
           "dedupe_key")


def brevo_rows(events: list[BrevoEvent]) -> list[tuple]:
    # the payload serialised by pydantic itself (the same JSON as json.dumps of model_dump, 3x faster)
    return [("brevo", e.event, e.email.strip().lower(), None, e.message_id, e.x_mailin_custom, e.link,
             e.occurred_at(), e.model_dump_json(by_alias=True, exclude_none=True), e.dedupe_key()) for e in events]


def behavior_rows(event: BehaviorEvent) -> list[tuple]:
    return [("behavior", event.action, event.email.strip().lower() if event.email else None, event.client_code,
             None, None, event.metadata.get("url") if isinstance(event.metadata.get("url"), str) else None,
             event.ts, json.dumps(event.model_dump(mode="json", exclude_none=True), ensure_ascii=False),
             event.dedupe_key())]


# The arrays travel in PostgreSQL's binary format (%b): the text format escapes every quote of
# every JSON payload in Python, ~40 µs per event on the receiver's single thread.
INSERT_SQL = """
INSERT INTO crm.webhook_events (source, event, email, client_code, message_id, custom, link, occurred_at, payload,
                                dedupe_key)
SELECT s, e, m, c, mid, cu, l, o, p::jsonb, k
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
            %b::text[], %b::text[]) AS r(s, e, m, c, mid, cu, l, o, p, k)
ON CONFLICT (dedupe_key) DO NOTHING
"""


def insert_params(rows: list[tuple]) -> list[list]:
    """The rows as one array per column (one statement for any number of events)."""
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in COLUMNS]


class QueueUnavailable(RuntimeError):
    """The queue could not be written: nothing of this request was acknowledged."""


class QueueWriter:
    """Group commit into crm.webhook_events (see the module docstring). One per process."""

    def __init__(self, url: str, *, max_rows: int = 5000, connect_timeout: int = 5):
        self.url, self.max_rows, self.connect_timeout = url, max_rows, connect_timeout
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
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._wakeup.set()
        return await future

    async def _connection(self):
        import psycopg

        if self._conn is None or self._conn.closed:
            # autocommit: the INSERT is its own transaction, committed (WAL flushed) before the
            # server's answer completes — one round trip per group instead of INSERT then COMMIT
            self._conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=self.connect_timeout,
                                                               application_name="winecrm-receiver",
                                                               autocommit=True)
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
                    keys = {r[-1] for r in request_rows}
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
