"""The receiver under generated traffic, over real HTTP.

* Both routes fuzzed from the receiver's own OpenAPI schema (schemathesis: bodies that follow it
  and bodies that break it): no 5xx, never a refusal for content, and exactly what the answer
  says is stored.
* A property of the Brevo route, over both webhook families and any event name (known, in any
  of Brevo's spellings, or unknown), any time unit (seconds, milliseconds, absurd values), with
  Brevo's retries mixed in: every event stored exactly once, distinct events kept distinct,
  unknown names parked, and every stored time within a sane range.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from winecrm.events.receiver import ReceiverAuth, WebhookAuth, create_app

from tests.winecrm.events.test_receiver import running_receiver

BREVO_TOKEN = "fuzz-brevo-token-0123456789abcdef"
SHOP_TOKEN = "fuzz-shop-token-0123456789abcdef"
EXAMPLES = 150
AUTH = ReceiverAuth(brevo=WebhookAuth(token=BREVO_TOKEN), shop=WebhookAuth(token=SHOP_TOKEN))


@pytest.mark.parametrize("path, token", [("/webhook/email", BREVO_TOKEN), ("/webhook/behavior", SHOP_TOKEN)])
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_fuzzed_bodies_are_stored_as_answered_and_never_break_the_receiver(warehouse_url, path, token, mode):
    seen: dict[int, int] = {}
    parked = 0
    with running_receiver(create_app(AUTH, warehouse_url)) as base, \
            psycopg.connect(warehouse_url, autocommit=True) as conn:
        operation = schemathesis.openapi.from_url(f"{base}/openapi.json")[path]["POST"]

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def one_request(case):
            nonlocal parked
            before = conn.execute("SELECT count(*) FROM crm.webhook_events").fetchone()[0]
            response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"})
            after = conn.execute("SELECT count(*) FROM crm.webhook_events").fetchone()[0]
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text[:500]
            # refusals: only a body that is not JSON (or not sent as JSON) or too large
            assert response.status_code in (200, 400, 413, 415), (response.status_code, response.text[:300])
            if response.status_code == 200:
                answer = response.json()
                assert after - before == answer["stored"]
                parked += answer["parked"]
            else:
                assert after == before, f"a refused request ({response.status_code}) stored something"

        one_request()
    assert seen.get(200, 0) > 0, seen
    if mode == schemathesis.GenerationMode.NEGATIVE:
        assert parked > 0, "bodies breaking the schema should have been stored and parked"


# -- the property -------------------------------------------------------------------------------------

# Brevo's spellings of each event (payloads, webhook settings, marketing), written out here from
# Brevo's documentation rather than taken from the code under test
SPELLINGS = {
    "request": ["request", "sent"], "delivered": ["delivered"], "opened": ["opened"],
    "unique_opened": ["unique_opened", "uniqueOpened"], "proxy_open": ["proxy_open", "proxyOpen"],
    "click": ["click"], "hard_bounce": ["hard_bounce", "hardBounce"], "soft_bounce": ["soft_bounce", "softBounce"],
    "blocked": ["blocked"], "invalid_email": ["invalid_email", "invalid"], "deferred": ["deferred"],
    "spam": ["spam"], "unsubscribed": ["unsubscribed", "unsubscribe"], "error": ["error"],
    "list_addition": ["list_addition", "listAddition"], "contact_updated": ["contact_updated"],
    "contact_deleted": ["contact_deleted"],
}
BASE_SECONDS = 1_763_370_000
# moments: (value sent, field, the time it means or None when it is no time at all)
MOMENTS = [(BASE_SECONDS, "ts_epoch", BASE_SECONDS), (BASE_SECONDS * 1000 + 250, "ts_epoch", BASE_SECONDS + 0.25),
           (BASE_SECONDS + 1, "ts_event", BASE_SECONDS + 1), (BASE_SECONDS + 2, "ts", BASE_SECONDS + 2),
           (-86_400, "ts_epoch", None), (10 ** 16, "ts_event", None), (99_999_999_999_999_999, "ts", None),
           ("bientôt", "ts_epoch", None), (None, None, None)]

identity = st.tuples(
    st.sampled_from(["transactional", "marketing"]),
    # unknown names of any storable text: a NUL or a lone surrogate parks the whole body (another test)
    st.one_of(st.sampled_from(sorted(SPELLINGS)),
              st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1,
                      max_size=12).map(lambda t: "x-" + t)),
    st.integers(0, 2),                       # which address
    st.integers(0, 2),                       # which message (message-id) or campaign (camp_id)
    st.integers(0, 3),                       # which link (0: none)
    st.integers(0, len(MOMENTS) - 1),        # which moment
)


def _event(marker: str, ident: tuple, spelling_pick: int) -> dict:
    family, name, who, which, link, moment = ident
    spellings = SPELLINGS.get(name, [name])
    event = {"event": spellings[spelling_pick % len(spellings)], "email": f"{marker}-{who}@example.fr"}
    if family == "transactional":
        event["message-id"] = f"<{marker}.{which}@smtp-relay.mailin.fr>"
        event["X-Mailin-custom"] = "hebdo-2026-11-15|1b4e28ba"
        if link:
            event["link"] = f"https://x.fr/{link}"
    else:
        event.update({"camp_id": 100 + which, "campaign name": f"Lettre {which}", "date_sent": "2026-11-16 09:00:00"})
        if link:
            event["URL"] = f"https://x.fr/{link}"
    value, field, _ = MOMENTS[moment]
    if field:
        event[field] = value
    return event


@pytest.fixture(scope="module")
def receiver_url(pg_admin_url, template_db):
    from psycopg import sql

    name = f"winecrm_prop_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    with running_receiver(create_app(AUTH, url)) as base:
        yield base, url
    with psycopg.connect(pg_admin_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@st.composite
def identities(draw) -> list[tuple]:
    """Events that differ in one field only (another link, campaign, address, moment, event or
    family, the rest the same second), mixed with unrelated ones: what must stay apart."""
    base = draw(identity)
    variants = draw(st.lists(st.tuples(st.integers(0, len(base) - 1), identity), max_size=25))
    others = draw(st.lists(identity, max_size=10))
    found = [base] + [base[:i] + (other[i],) + base[i + 1:] for i, other in variants] + others
    return list(dict.fromkeys(found))  # each identity once (the repeats come later, as Brevo's retries)


@given(idents=identities(), data=st.data())
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_event_once_distinct_ones_apart_and_times_sane(receiver_url, idents, data):
    base, url = receiver_url
    marker = uuid.uuid4().hex[:10]
    # one spelling per event (Brevo does not change the name of an event it retries)
    events = [_event(marker, ident, data.draw(st.integers(0, 1))) for ident in idents]
    # Brevo's traffic: the events in some order, some of them again (retries), in batches of any size
    repeats = data.draw(st.lists(st.sampled_from(range(len(events))), max_size=10))
    traffic = data.draw(st.permutations(list(range(len(events))) + repeats))
    cut = sorted(data.draw(st.lists(st.integers(0, len(traffic)), max_size=4)))
    acknowledged = 0
    for start, end in zip([0, *cut], [*cut, len(traffic)]):
        if start == end:
            continue
        batch = [events[i] for i in traffic[start:end]]
        answer = requests.post(f"{base}/webhook/email", data=json.dumps(batch), timeout=30,
                               headers={"Authorization": f"Bearer {BREVO_TOKEN}", "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        acknowledged += answer.json()["stored"]
    with psycopg.connect(url) as conn:
        rows = conn.execute("""SELECT event, occurred_at, intake_problem IS NOT NULL, family, payload
                               FROM crm.webhook_events WHERE payload ->> 'email' LIKE %s || '%%'
                               ORDER BY event_id""", (marker,)).fetchall()
    assert acknowledged == len(rows) == len(events)      # each event once, distinct ones all kept
    earliest = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    latest = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    by_payload = {json.dumps(e, sort_keys=True): ident for e, ident in zip(events, idents)}
    for event, occurred_at, is_parked, family, payload in rows:
        family_sent, name, *_, moment = by_payload[json.dumps(payload, sort_keys=True)]
        assert occurred_at is None or earliest <= occurred_at <= latest
        meant = MOMENTS[moment][2]
        if not is_parked:
            assert occurred_at == (dt.datetime.fromtimestamp(meant, dt.timezone.utc) if meant is not None else None)
        assert is_parked == (name not in SPELLINGS)       # unknown names parked, known ones read
        if not is_parked:
            assert event == name
            contact_event = name in ("list_addition", "contact_updated", "contact_deleted")
            assert family == ("marketing" if family_sent == "marketing" or contact_event else "transactional")
