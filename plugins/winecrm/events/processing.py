"""The ``crm_events`` work: queued events -> triggers -> rules -> actions, each exactly once.

Events the receiver could not read (``intake_problem``) are parked at once for a person.
One batch of the others is one transaction (set-based SQL, whatever its size):

1. claim the oldest queued events with ``FOR UPDATE SKIP LOCKED``;
2. link each to our send (``X-Mailin-custom`` set at send time, else Brevo's message-id; an
   event tied to none of our e-mails — the shop's own mails — fires no engagement rule) and to
   the customer; map it to a trigger; mark a second open of the same e-mail (or a second click
   on the same link...) as a repeat that fires nothing;
   an event about a person erased on request (their client code in ``crm.erasures``, or an
   address whose hash is an erased marker) keeps only its name: no customer, no trigger, no
   action, tag or consent row, its address replaced by the marker and its payload dropped;
3. honour consent: an unsubscribe, spam complaint, hard bounce, blocked or invalid address
   suppresses the address at once, whatever the rules say;
4. evaluate the enabled rules, highest priority first: every action of a matching rule becomes
   a row of ``crm.automation_actions`` with its due time — unique per (event, rule, action);
5. mark the events done.

A killed task rolls the whole batch back: nothing half-applied, nothing lost. A batch that fails
on one bad event is retried event by event; the bad one is marked failed with the error and
retried with back-off (1, 2, 4, 8 min...), then parked for a person — it never blocks the queue.

Due actions then run: the internal ones (score, tags, tasks, calls, pauses, suppressions)
set-based, their effect and their 'done' in one transaction; e-mails, SMS and outbound webhooks
through ``winecrm.events.actions``. Finally the lead scores are compared with the threshold:
a customer crossing it upwards gets a ``lead_score_high`` event, processed in the same run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections import Counter

import psycopg

from winecrm.core import settings
from winecrm.events.rules import ALWAYS_SUPPRESS, BEHAVIOR_TRIGGERS, BREVO_TRIGGERS, ENGAGEMENT_TRIGGERS, \
    INTERNAL_ACTIONS, RuleSet, condition_sql, load_rules

log = logging.getLogger(__name__)

PROCESSOR_LOCK_KEY = 7_734_223   # arbitrary, constant: "winecrm events processor"

# what makes a second event of the same trigger a repeat (no rule fires again): the same values of
# these columns (an event missing one is never a repeat)
REPEAT_KEYS = {
    "email_opened": ("message_key",),
    "email_clicked": ("message_key", "link"),
    "email_bounce": ("message_key",),
    "email_soft_bounce": ("message_key",),
    "unsubscribe": ("email",),
}


class ProcessorBusy(RuntimeError):
    """Another crm_events run is processing the queue."""


@contextlib.contextmanager
def processor_lock(conn: psycopg.Connection, wait_seconds: float = 120):
    """One processor at a time (a session advisory lock: gone with a killed worker). Not the
    warehouse writer lock: events keep flowing while a weekly run loads and scores."""
    deadline = time.monotonic() + wait_seconds
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (PROCESSOR_LOCK_KEY,)).fetchone()[0]:
        conn.commit()
        if time.monotonic() > deadline:
            raise ProcessorBusy("another crm_events run holds the queue since more than "
                                f"{wait_seconds:.0f} s; this run leaves the events to it")
        time.sleep(1)
    conn.commit()
    try:
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (PROCESSOR_LOCK_KEY,))
            conn.commit()


# The SQL twin of winecrm.core.personal.erased_marker (kept here: the events DAG does not import the erasure).
MARKER_SQL = "'erased:' || encode(sha256(convert_to(lower(btrim({})), 'UTF8')), 'hex')"


def erased_condition(conn: psycopg.Connection, w: str = "w") -> tuple[str, dict]:
    """SQL condition (and its parameters) true for an event ``w`` about someone erased on request
    (GDPR): their client code is in crm.erasures, or an address of the event (its email column,
    or any address in its payload) hashes to an erased marker (crm.erasures, crm.suppressions).
    Read once per batch; ``false`` when nobody was erased (the queue's usual path costs nothing)."""
    codes = [c for (c,) in conn.execute("SELECT client_code FROM crm.erased_clients")]
    markers = [m for (m,) in conn.execute(
        "SELECT email FROM crm.suppressions WHERE reason = 'erased' AND email LIKE 'erased:%' "
        "UNION SELECT unnest(markers) FROM crm.erasures")]
    parts = []
    if codes:
        parts.append(f"{w}.client_code = ANY(%(erased_codes)s::text[])")
    if markers:
        parts.append(
            "EXISTS (SELECT 1 FROM (SELECT " + w + ".email AS a UNION ALL"
            " SELECT v #>> '{}' FROM jsonb_path_query(" + w + ".payload, 'strict $.**') v"
            " WHERE jsonb_typeof(v) = 'string' AND strpos(v #>> '{}', '@') > 0) addr"
            " WHERE addr.a IS NOT NULL AND " + MARKER_SQL.format("addr.a") + " = ANY(%(erased_markers)s::text[]))")
    return ("coalesce(" + " OR ".join(parts) + ", false)" if parts else "false"), {"erased_codes": codes,
                                                                                 "erased_markers": markers}


# What is left of such an event: its name and the fact, no address, code, link or payload.
ERASED_PAYLOAD_SQL = "jsonb_build_object('erased', true, 'event', {w}.event)"
ERASED_NOTE = "about a person erased on request (GDPR): details removed"


def _trigger_case() -> str:
    """SQL CASE mapping (source, event) to the trigger (constants of this module only)."""
    arms = []
    for trig in sorted({t for t in BREVO_TRIGGERS.values() if t}):
        names = ", ".join(f"'{e}'" for e, t in BREVO_TRIGGERS.items() if t == trig)
        arms.append(f"WHEN w.source = 'brevo' AND w.event IN ({names}) THEN '{trig}'")
    for action, trig in BEHAVIOR_TRIGGERS.items():
        arms.append(f"WHEN w.source = 'behavior' AND w.event = '{action}' THEN '{trig}'")
    arms.append("WHEN w.source = 'internal' AND w.event = 'lead_score_high' THEN 'lead_score_high'")
    return "CASE " + " ".join(arms) + " END"


def _link_and_map(conn: psycopg.Connection, engagement_from_brevo_campaigns: bool = True) -> None:
    """Step 2 of the module docstring, over the claimed batch (temp table ``batch``), worked out
    in the temp table ``lk`` (no WAL, no dead rows in the queue); ``_mark_done`` writes each
    event once with all of it."""
    erased, erased_params = erased_condition(conn, "w")
    conn.execute(f"""
        CREATE TEMP TABLE lk ON COMMIT DROP AS
        SELECT w.event_id, w.source, w.event, w.email, w.client_code, w.message_id, w.custom, w.link,
               w.family, w.brevo_campaign, w.message_key,
               least(coalesce(w.occurred_at, w.received_at), w.received_at) AS at,
               {_trigger_case()} AS trig,
               -- an erased person (crm.erasures, or only a hash of the address kept): the event stays as a
               -- count, without them
               {erased} AS erased,
               NULL::bigint AS send_id, NULL::text AS campaign_id, NULL::bigint AS repeat_of,
               NULL::boolean AS unknown_customer,
               CASE WHEN w.source = 'behavior' AND w.event = 'purchase'
                         AND jsonb_typeof(w.payload -> 'metadata' -> 'amount') = 'number'
                    THEN (w.payload -> 'metadata' ->> 'amount')::numeric(12, 2) END AS amount
        FROM batch b JOIN crm.webhook_events w USING (event_id)""", erased_params)
    conn.execute("""UPDATE lk SET email = NULL, client_code = NULL, message_id = NULL, custom = NULL, link = NULL,
                                  message_key = NULL, trig = NULL, amount = NULL
                    WHERE erased""")
    # our send: the X-Mailin-custom header ('campaign|batch key' live, 'campaign|send id' in .eml
    # files), else Brevo's message-id. Nothing else: the same Brevo account also sends the shop's
    # mails, and an event we cannot tie to one of our e-mails is not about our campaigns (the
    # address still finds the customer, below, for consent). Then the customer: the send's, else
    # the one with that address.
    conn.execute("""
        UPDATE lk SET send_id = coalesce(
            (SELECT e.send_id FROM crm.email_sends e
             WHERE lk.custom LIKE '%|%' AND e.campaign_id = split_part(lk.custom, '|', 1)
               AND (e.batch_key::text = split_part(lk.custom, '|', 2) OR e.send_id::text = split_part(lk.custom, '|', 2))
               AND lower(e.email) = lk.email
             LIMIT 1),
            (SELECT e.send_id FROM crm.email_sends e WHERE lk.message_id IS NOT NULL
               AND e.brevo_message_id = lk.message_id LIMIT 1))
        WHERE lk.source = 'brevo' AND lk.family = 'transactional' AND lk.email IS NOT NULL""")
    # engagement (opens, clicks, soft bounces) counts for our e-mails and, when allowed, the
    # estate's own Brevo campaigns; the shop's order mails and other strangers fire no rule
    conn.execute("""UPDATE lk SET trig = NULL
                    WHERE lk.source = 'brevo' AND lk.trig = ANY(%s) AND lk.send_id IS NULL
                      AND NOT (lk.family = 'marketing' AND %s)""",
                 (list(ENGAGEMENT_TRIGGERS), engagement_from_brevo_campaigns))
    conn.execute("""
        UPDATE lk SET campaign_id = e.campaign_id, client_code = coalesce(lk.client_code, e.client_code)
        FROM crm.email_sends e WHERE e.send_id = lk.send_id""")
    conn.execute("""
        UPDATE lk SET
            client_code = coalesce(lk.client_code, (
                SELECT c.client_code FROM etl.clients c WHERE lower(btrim(c.email)) = lk.email
                ORDER BY c.updated_at DESC, c.client_code LIMIT 1)),
            email = coalesce(lk.email, (SELECT lower(btrim(c.email)) FROM etl.clients c
                                        WHERE c.client_code = lk.client_code))
        WHERE NOT lk.erased""")
    conn.execute("""UPDATE lk SET unknown_customer = NOT EXISTS (SELECT 1 FROM etl.clients c
                                                                 WHERE c.client_code = lk.client_code)""")
    conn.execute("ANALYZE lk")  # a temp table has no statistics until asked: without, nested loops
    for trig, columns in REPEAT_KEYS.items():
        key = ", ".join(f"l.{c}" for c in columns)
        present = " AND ".join(f"l.{c} IS NOT NULL" for c in columns)
        same = " AND ".join(f"d.{c} = f.{c}" for c in columns)
        # the first of the batch, or an original already processed (earlier, or later when this
        # event failed at first): set-based, one pass over the batch and its keys' past events
        conn.execute(f"""
            WITH firsts AS (
                SELECT l.event_id, {key}, min(l.event_id) OVER (PARTITION BY {key}) AS first_in_batch
                FROM lk l WHERE l.trig = %(trig)s AND {present}),
            originals AS (  -- per key of the batch, through the index on (message_id | email, event_id)
                SELECT k.*, (SELECT p.event_id FROM crm.webhook_events p
                             WHERE {" AND ".join(f"p.{c} = k.{c}" for c in columns)} AND p.trig = %(trig)s
                               AND p.status = 'done' AND p.repeat_of IS NULL
                             ORDER BY p.event_id LIMIT 1) AS original
                FROM (SELECT DISTINCT {key} FROM lk l WHERE l.trig = %(trig)s AND {present}) k)
            UPDATE lk w SET repeat_of = coalesce(d.original, nullif(f.first_in_batch, f.event_id))
            FROM firsts f LEFT JOIN originals d ON {same}
            WHERE w.event_id = f.event_id""", {"trig": trig})


def _mark_done(conn: psycopg.Connection) -> None:
    conn.execute(f"""
        UPDATE crm.webhook_events w
        SET client_code = l.client_code, message_id = l.message_id, custom = l.custom,
            link = l.link, message_key = l.message_key, trig = l.trig, send_id = l.send_id,
            campaign_id = l.campaign_id, repeat_of = l.repeat_of,
            unknown_customer = l.unknown_customer, amount = l.amount,
            payload = CASE WHEN l.erased THEN jsonb_build_object('erased', true, 'event', w.event) ELSE w.payload END,
            email = CASE WHEN NOT l.erased THEN l.email WHEN w.email IS NOT NULL THEN {MARKER_SQL.format("w.email")} END,
            status = 'done', processed_at = now(), error = NULL, attempts = w.attempts + 1
        FROM lk l WHERE w.event_id = l.event_id""")


def _honour_consent(conn: psycopg.Connection) -> int:
    reasons = list(ALWAYS_SUPPRESS.items())
    rows = conn.execute("""
        WITH wanted AS (
            SELECT DISTINCT ON (w.email) w.email, r.reason, w.event_id, w.client_code,
                   CASE WHEN w.family = 'marketing' THEN 'brevo_campaign_webhook:' ELSE 'brevo_webhook:' END
                   || w.event AS source
            FROM lk w
            JOIN unnest(%s::text[], %s::text[]) AS r(event, reason) ON r.event = w.event
            WHERE w.source = 'brevo' AND w.email IS NOT NULL
            ORDER BY w.email, w.event_id),
        added AS (
            INSERT INTO crm.suppressions (email, reason, source)
            SELECT email, reason, source FROM wanted
            ON CONFLICT (email) DO NOTHING RETURNING email)
        INSERT INTO crm.consent_log (email, client_code, change, source, event_id, changed_at)
        SELECT w.email, w.client_code, 'suppressed:' || w.reason, w.source, w.event_id, now()
        FROM wanted w JOIN added a USING (email)
        RETURNING 1""", ([e for e, _ in reasons], [r for _, r in reasons])).fetchall()
    return len(rows)


def _evaluate(conn: psycopg.Connection, rules: RuleSet, cap: float) -> Counter:
    # the customers' context (segment, lead score now, tags) once per customer of the batch, not per event
    conn.execute("""
        CREATE TEMP TABLE ctx ON COMMIT DROP AS
        WITH who AS (SELECT DISTINCT client_code FROM lk
                     WHERE trig IS NOT NULL AND repeat_of IS NULL AND client_code IS NOT NULL),
        segments AS (SELECT DISTINCT ON (r.client_code) r.client_code, r.segment
                     FROM crm.rfm_scores r JOIN who USING (client_code) ORDER BY r.client_code, r.as_of_date DESC),
        scores AS (SELECT * FROM crm.current_lead_scores((SELECT array_agg(client_code) FROM who), %s::numeric)),
        tags AS (SELECT t.client_code, array_agg(t.tag) AS tags
                 FROM crm.customer_tags t JOIN who USING (client_code) GROUP BY 1)
        SELECT w.event_id, w.event, w.trig, w.client_code, w.email, w.amount, w.at, segments.segment,
               scores.score, coalesce(tags.tags, '{}') AS tags, false AS stopped
        FROM lk w LEFT JOIN segments USING (client_code) LEFT JOIN scores USING (client_code)
                  LEFT JOIN tags USING (client_code)
        WHERE w.trig IS NOT NULL AND w.repeat_of IS NULL""", (float(cap),))
    fired = Counter()
    for rule in rules.active():
        predicate, params = condition_sql(rule.conditions)
        actions = list(enumerate(rule.actions))
        params.update(rule=rule.id, trigger=rule.trigger, priority=rule.priority,
                      idx=[i for i, _ in actions], types=[a.type for _, a in actions],
                      params=[json.dumps(a.params, ensure_ascii=False) for _, a in actions],
                      delays=[a.delay_td for _, a in actions])
        cur = conn.execute(f"""
            INSERT INTO crm.automation_actions (event_id, rule_id, action_index, action_type, params, priority,
                                                client_code, email, due_at)
            SELECT c.event_id, %(rule)s, a.idx, a.type, a.params::jsonb, %(priority)s, c.client_code, c.email,
                   c.at + a.delay
            FROM ctx c CROSS JOIN unnest(%(idx)s::int[], %(types)s::text[], %(params)s::text[],
                                         %(delays)s::interval[]) AS a(idx, type, params, delay)
            WHERE c.trig = %(trigger)s AND NOT c.stopped AND {predicate}
            ON CONFLICT (event_id, rule_id, action_index) DO NOTHING""", params)
        if cur.rowcount:
            fired[rule.id] += cur.rowcount
        if rule.stop:
            conn.execute(f"UPDATE ctx c SET stopped = true WHERE c.trig = %(trigger)s AND {predicate}", params)
    return fired


def _claim(conn: psycopg.Connection, limit: int, only: list[int] | None) -> int:
    conn.execute("CREATE TEMP TABLE batch (event_id bigint PRIMARY KEY) ON COMMIT DROP")
    extra = "AND event_id = ANY(%(only)s)" if only is not None else ""
    return conn.execute(f"""
        INSERT INTO batch
        SELECT event_id FROM crm.webhook_events
        WHERE status IN ('queued', 'failed') AND next_attempt_at <= now() AND intake_problem IS NULL {extra}
        ORDER BY event_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED""", {"limit": limit, "only": only}).rowcount


def _process_batch(conn: psycopg.Connection, rules: RuleSet, cap: float, limit: int,
                   only: list[int] | None = None) -> tuple[int, Counter, int]:
    with conn.transaction():
        claimed = _claim(conn, limit, only)
        if not claimed:
            return 0, Counter(), 0
        _link_and_map(conn, rules.settings.engagement_from_brevo_campaigns)
        suppressed = _honour_consent(conn)
        fired = _evaluate(conn, rules, cap)
        _mark_done(conn)
    return claimed, fired, suppressed


def _fail_one(conn: psycopg.Connection, event_id: int, error: str, max_attempts: int) -> str:
    with conn.transaction():
        row = conn.execute("""
            UPDATE crm.webhook_events
            SET attempts = attempts + 1, error = %s,
                status = CASE WHEN attempts + 1 >= %s THEN 'parked' ELSE 'failed' END,
                next_attempt_at = now() + make_interval(mins => power(2, least(attempts, 10))::int)
            WHERE event_id = %s RETURNING status""", (error[:2000], max_attempts, event_id)).fetchone()
    return row[0] if row else "gone"


def park_unreadable(conn: psycopg.Connection) -> int:
    """Events the receiver stored without being able to read them (``intake_problem``): parked at
    once, the reason in ``error``, for a person — retrying cannot make them readable. One about an
    erased person keeps nothing of them (address replaced by its marker, payload and details gone)."""
    with conn.transaction():
        erased, erased_params = erased_condition(conn, "w")
        conn.execute(f"""
            UPDATE crm.webhook_events w
            SET status = 'parked', error = %(note)s, intake_problem = %(note)s, attempts = w.attempts + 1,
                processed_at = now(), payload = {ERASED_PAYLOAD_SQL.format(w="w")},
                email = CASE WHEN w.email IS NOT NULL THEN {MARKER_SQL.format("w.email")} END,
                client_code = NULL, message_id = NULL, custom = NULL, link = NULL, message_key = NULL
            WHERE w.status IN ('queued', 'failed') AND w.intake_problem IS NOT NULL
              AND {erased}""", {"note": ERASED_NOTE, **erased_params})
        return conn.execute("""
            UPDATE crm.webhook_events SET status = 'parked', error = intake_problem, attempts = attempts + 1,
                                          processed_at = now()
            WHERE status IN ('queued', 'failed') AND intake_problem IS NOT NULL""").rowcount


def process_queue(conn: psycopg.Connection, rules: RuleSet, cap: float) -> dict:
    """Every due queued event, batch after batch; a failing batch is retried event by event."""
    counts, fired = Counter(), Counter()
    counts["events_parked"] += park_unreadable(conn)
    batch_size = rules.settings.batch_size
    while True:
        try:
            n, rule_hits, suppressed = _process_batch(conn, rules, cap, batch_size)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:  # a bad value in one event: find it, the rest goes on
            conn.rollback()
            log.warning("a batch failed (%s): processing it event by event", str(exc).splitlines()[0])
            ids = [r[0] for r in conn.execute(
                """SELECT event_id FROM crm.webhook_events WHERE status IN ('queued', 'failed')
                   AND next_attempt_at <= now() ORDER BY event_id LIMIT %s""", (batch_size,))]
            conn.commit()
            for event_id in ids:
                try:
                    n1, hits1, sup1 = _process_batch(conn, rules, cap, 1, only=[event_id])
                    counts["events"] += n1
                    counts["suppressed"] += sup1
                    fired.update(hits1)
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as one:
                    conn.rollback()
                    status = _fail_one(conn, event_id, f"{one.__class__.__name__}: {str(one).splitlines()[0]}",
                                       rules.settings.max_attempts)
                    counts[f"events_{status}"] += 1
                    log.error("event %s %s: %s", event_id, status, str(one).splitlines()[0])
            continue
        if not n:
            break
        counts["events"] += n
        counts["batches"] += 1
        counts["suppressed"] += suppressed
        fired.update(rule_hits)
    return {"counts": counts, "fired": fired}


def apply_internal_actions(conn: psycopg.Connection, limit: int = 50_000) -> Counter:
    """Due score changes, tags, tasks, calls, pauses and suppressions: effect and 'done' in one
    transaction per chunk (the effect tables are unique per action: never twice)."""
    done = Counter()
    while True:
        with conn.transaction():
            conn.execute("""CREATE TEMP TABLE due ON COMMIT DROP AS SELECT * FROM crm.automation_actions WITH NO DATA""")
            n = conn.execute("""
                INSERT INTO due SELECT * FROM crm.automation_actions
                WHERE status IN ('pending', 'failed') AND due_at <= now() AND action_type = ANY(%s)
                ORDER BY due_at, priority DESC, action_id LIMIT %s FOR UPDATE SKIP LOCKED""",
                                 (list(INTERNAL_ACTIONS), limit)).rowcount
            if not n:
                return done
            conn.execute("""
                INSERT INTO crm.score_changes (client_code, delta, reason, rule_id, event_id, action_id, changed_at)
                SELECT d.client_code, (d.params ->> 'points')::int,
                       'rule ' || d.rule_id || ': ' || w.event || coalesce(' (' || w.campaign_id || ')', ''),
                       d.rule_id, d.event_id, d.action_id, least(coalesce(w.occurred_at, w.received_at), w.received_at)
                FROM due d JOIN crm.webhook_events w USING (event_id)
                WHERE d.action_type = 'update_score' AND d.client_code IS NOT NULL
                ON CONFLICT (action_id) DO NOTHING""")
            conn.execute("""
                INSERT INTO crm.customer_tags (client_code, tag, rule_id, event_id)
                SELECT d.client_code, d.params ->> 'tag', d.rule_id, d.event_id FROM due d
                WHERE d.action_type = 'add_tag' AND d.client_code IS NOT NULL
                ORDER BY d.action_id
                ON CONFLICT (client_code, tag) DO NOTHING""")
            conn.execute("""
                INSERT INTO crm.tasks (kind, client_code, title, due_at, rule_id, event_id, action_id)
                SELECT CASE d.action_type WHEN 'schedule_call' THEN 'call' ELSE 'task' END, d.client_code,
                       d.params ->> 'title', d.due_at, d.rule_id, d.event_id, d.action_id
                FROM due d WHERE d.action_type IN ('create_task', 'schedule_call') AND d.client_code IS NOT NULL
                ON CONFLICT (action_id) DO NOTHING""")
            conn.execute("""
                INSERT INTO crm.campaign_pauses (client_code, paused_until, reason, rule_id, event_id)
                SELECT DISTINCT ON (d.client_code) d.client_code,
                       now() + make_interval(days => (d.params ->> 'days')::int), 'rule ' || d.rule_id,
                       d.rule_id, d.event_id
                FROM due d WHERE d.action_type = 'pause_campaign' AND d.client_code IS NOT NULL
                ORDER BY d.client_code, (d.params ->> 'days')::int DESC
                ON CONFLICT (client_code) DO UPDATE SET paused_until = greatest(crm.campaign_pauses.paused_until,
                                                                               EXCLUDED.paused_until),
                                                        reason = EXCLUDED.reason, rule_id = EXCLUDED.rule_id,
                                                        event_id = EXCLUDED.event_id""")
            conn.execute("""
                INSERT INTO crm.consent_log (email, client_code, change, source, event_id)
                SELECT NULL, d.client_code, 'paused', 'rule:' || d.rule_id, d.event_id
                FROM due d WHERE d.action_type = 'pause_campaign' AND d.client_code IS NOT NULL""")
            conn.execute("""
                WITH wanted AS (
                    SELECT DISTINCT ON (lower(btrim(d.email))) lower(btrim(d.email)) AS email, d.client_code,
                           coalesce(d.params ->> 'reason', %s::jsonb ->> w.event, 'manual') AS reason,
                           d.rule_id, d.event_id
                    FROM due d JOIN crm.webhook_events w USING (event_id)
                    WHERE d.action_type = 'suppress' AND d.email IS NOT NULL ORDER BY 1, d.action_id),
                added AS (INSERT INTO crm.suppressions (email, reason, source)
                          SELECT email, reason, 'rule:' || rule_id FROM wanted
                          ON CONFLICT (email) DO NOTHING RETURNING email)
                INSERT INTO crm.consent_log (email, client_code, change, source, event_id)
                SELECT w.email, w.client_code, 'suppressed:' || w.reason, 'rule:' || w.rule_id, w.event_id
                FROM wanted w JOIN added USING (email)""",
                         (json.dumps({**ALWAYS_SUPPRESS, "unsubscribed": "unsubscribed"}),))
            for action_type, status, error in conn.execute("""
                    UPDATE crm.automation_actions a
                    SET status = CASE WHEN d.client_code IS NULL AND d.action_type <> 'suppress' THEN 'skipped'
                                      WHEN d.action_type = 'suppress' AND d.email IS NULL THEN 'skipped'
                                      ELSE 'done' END,
                        error = CASE WHEN d.client_code IS NULL AND d.action_type <> 'suppress'
                                     THEN 'unknown customer: nothing to apply it to'
                                     WHEN d.action_type = 'suppress' AND d.email IS NULL THEN 'no address' END,
                        attempts = a.attempts + 1, done_at = now()
                    FROM due d WHERE a.action_id = d.action_id
                    RETURNING a.action_type, a.status, a.error"""):
                done[f"{action_type}:{status}"] += 1


def detect_lead_score_high(conn: psycopg.Connection, threshold: float, cap: float) -> int:
    """Queue a lead_score_high event for every customer whose current score crossed the
    threshold upwards since the last run (first sight: the weekly score is the baseline)."""
    with conn.transaction():
        # crm.current_lead_score for every customer at once (one aggregate, not one call per customer)
        conn.execute(f"""
            CREATE TEMP TABLE current_scores ON COMMIT DROP AS
            SELECT ls.client_code, ls.score AS weekly,
                   greatest(0, least(100, ls.raw_score - ls.engagement_points
                                          + least({float(cap)}, coalesce(sc.points, 0))))::int AS score
            FROM crm.lead_scores ls
            LEFT JOIN (SELECT client_code, sum(delta) AS points FROM crm.score_changes GROUP BY 1) sc
                   USING (client_code)
            WHERE ls.as_of_date = (SELECT max(as_of_date) FROM crm.lead_scores)""")
        conn.execute("""INSERT INTO crm.lead_score_state (client_code, score, above)
                        SELECT client_code, weekly, weekly >= %s FROM current_scores
                        ON CONFLICT (client_code) DO NOTHING""", (threshold,))
        crossed = conn.execute("""
            WITH up AS (
                UPDATE crm.lead_score_state s SET score = c.score, above = true, changed_at = now()
                FROM current_scores c
                WHERE s.client_code = c.client_code AND NOT s.above AND c.score >= %(t)s
                RETURNING s.client_code, c.score)
            INSERT INTO crm.webhook_events (source, event, client_code, email, occurred_at, payload, dedupe_key)
            SELECT 'internal', 'lead_score_high', up.client_code, lower(btrim(cl.email)), now(),
                   jsonb_build_object('score', up.score, 'threshold', %(t)s),
                   'lead_score_high|' || up.client_code || '|' || now()::text
            FROM up LEFT JOIN etl.clients cl USING (client_code)
            ON CONFLICT (dedupe_key) DO NOTHING""", {"t": threshold}).rowcount
        conn.execute("""UPDATE crm.lead_score_state s SET score = c.score, above = false, changed_at = now()
                        FROM current_scores c WHERE s.client_code = c.client_code AND s.above AND c.score < %s""",
                     (threshold,))
    return crossed


def process_events(conn: psycopg.Connection, *, rules: RuleSet | None = None, brevo=None, outbox=None,
                   now: dt.datetime | None = None) -> dict:
    """One crm_events run: the queue, the lead-score crossings, the due actions. Returns what
    it did (counts), for the task log and the tests."""
    from winecrm.events import actions

    rules = rules or load_rules()
    cap = settings.scoring_config().lead_score.engagement_cap
    started = time.perf_counter()
    summary: dict = {"events": 0, "fired": Counter(), "actions": Counter(), "lead_score_high": 0,
                     "suppressed": 0, "failed": 0, "parked": 0}
    with processor_lock(conn):
        for _ in range(3):  # lead_score_high events queued by a round are processed by the next
            result = process_queue(conn, rules, cap)
            summary["events"] += result["counts"]["events"]
            summary["suppressed"] += result["counts"]["suppressed"]
            summary["failed"] += result["counts"]["events_failed"]
            summary["parked"] += result["counts"]["events_parked"]
            summary["fired"].update(result["fired"])
            summary["actions"].update(apply_internal_actions(conn))
            crossed = detect_lead_score_high(conn, rules.settings.lead_score_high, cap)
            summary["lead_score_high"] += crossed
            if not crossed:
                break
        summary["actions"].update(actions.run_external_actions(conn, rules, brevo=brevo, outbox=outbox, now=now))
        summary["actions"].update(apply_internal_actions(conn))
    summary["queue"] = queue_state(conn)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["fired"], summary["actions"] = dict(summary["fired"]), dict(summary["actions"])
    log.info("crm_events: %s", summary)
    return summary


def queue_state(conn: psycopg.Connection) -> dict:
    rows = conn.execute("SELECT status, count(*) FROM crm.webhook_events GROUP BY 1").fetchall()
    conn.commit()
    return {status: n for status, n in rows}
