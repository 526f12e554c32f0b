"""The webhook routes over real HTTP: who may post, what is refused, what is stored — once.

An authenticated JSON body is never refused for its content: Brevo retries a refused call a few
times, then drops it with its whole batch. Refusals are only for credentials (401), size (413)
and bodies that are not JSON (400/415), and nothing of a refused request is stored; everything
else is stored exactly once — an event the receiver cannot read as received, and parked."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
import requests
from winecrm.events import processing
from winecrm.events.receiver import ReceiverAuth, ReceiverMisconfigured, WebhookAuth, create_app
from winecrm.events.rules import parse_rules

from tests.winecrm.events.test_receiver import running_receiver

BREVO_TOKEN = "brevo-token-for-tests-0123456789"
SHOP_TOKEN = "shop-token-for-tests-9876543210"
BREVO = {"Authorization": f"Bearer {BREVO_TOKEN}"}
SHOP = {"Authorization": f"Bearer {SHOP_TOKEN}"}
FIXTURES = json.loads((Path(__file__).parents[2] / "fixtures" / "brevo_webhooks.json").read_text(encoding="utf-8"))


def opened(email="anne@example.fr", ts=1_763_370_000, **extra) -> dict:
    return {"event": "opened", "email": email, "message-id": "<202611171000.1@smtp-relay.mailin.fr>",
            "ts_event": ts, "ts_epoch": ts * 1000, "date": "2026-11-17 10:00:00", "subject": "Une découverte",
            "tags": ["crm-hebdo"], "X-Mailin-custom": "hebdo-2026-11-15|1b4e28ba", **extra}


def stored(conn) -> list[tuple]:
    conn.commit()
    return conn.execute("SELECT source, event, email, client_code, payload FROM crm.webhook_events "
                        "ORDER BY event_id").fetchall()


def parked(conn) -> list[tuple]:
    conn.commit()
    return conn.execute("SELECT event, intake_problem FROM crm.webhook_events WHERE intake_problem IS NOT NULL "
                        "ORDER BY event_id").fetchall()


def post(base: str, body, path: str = "/webhook/email", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{base}{path}", data=data, timeout=20,
                         headers={"Content-Type": "application/json", **(BREVO if headers is None else headers)})


AUTH = ReceiverAuth(brevo=WebhookAuth(token=BREVO_TOKEN, user="brevo", password="basic-pass-0123"),
                    shop=WebhookAuth(token=SHOP_TOKEN))


@pytest.fixture
def receiver(warehouse_url):
    with running_receiver(create_app(AUTH, warehouse_url, max_body_bytes=200_000)) as base:
        yield base


# -- who may post ---------------------------------------------------------------------------------


def test_credentials_are_required_compared_exactly_and_each_source_has_its_own(receiver, conn):
    cases = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {BREVO_TOKEN}x"},
             {"Authorization": f"Basic {base64.b64encode(b'brevo:nope').decode()}"},
             {"Authorization": "Basic !!!not-base64"}, {"Authorization": BREVO_TOKEN},
             SHOP]  # the shop's token on Brevo's route
    for headers in cases:
        answer = post(receiver, opened(), headers=headers)
        assert answer.status_code == 401, headers
        assert "WWW-Authenticate" in answer.headers
    # Brevo's token on the shop's route: a purchase (which sends e-mails and SMS) is refused
    purchase = {"client_code": "C1", "action": "purchase", "metadata": {"amount": 80}}
    assert post(receiver, purchase, "/webhook/behavior", BREVO).status_code == 401
    # no credentials and a malformed body: still 401 (nothing is read before the caller is known)
    assert requests.post(f"{receiver}/webhook/behavior", data="{not json", timeout=10).status_code == 401
    assert stored(conn) == []
    basic = {"Authorization": f"Basic {base64.b64encode(b'brevo:basic-pass-0123').decode()}"}
    assert post(receiver, opened(), headers=basic).status_code == 200
    assert post(receiver, opened(ts=1_763_370_001)).status_code == 200
    assert post(receiver, purchase, "/webhook/behavior", SHOP).status_code == 200
    assert [r[0] for r in stored(conn)] == ["brevo", "brevo", "behavior"]


def test_nothing_configured_refuses_everything(warehouse_url, conn):
    with running_receiver(create_app(ReceiverAuth(), warehouse_url)) as base:
        assert post(base, opened()).status_code == 401
        assert post(base, opened(), headers={"Authorization": "Bearer "}).status_code == 401
    assert stored(conn) == []


def test_credentials_from_the_environment_or_airflow_connections(monkeypatch):
    from winecrm.events.receiver import receiver_auth

    for name in ("CRM_WEBHOOK_TOKEN", "AIRFLOW_CONN_CRM_WEBHOOK", *(f"CRM_WEBHOOK_{s}_{k}" for s in ("BREVO", "SHOP")
                                                                  for k in ("TOKEN", "USER", "PASSWORD")),
                 "AIRFLOW_CONN_CRM_WEBHOOK_BREVO", "AIRFLOW_CONN_CRM_WEBHOOK_SHOP"):
        monkeypatch.delenv(name, raising=False)
    assert not receiver_auth().brevo.configured and not receiver_auth().shop.configured
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WEBHOOK_BREVO", "http://brevo:conn-secret-123@receiver")
    monkeypatch.setenv("CRM_WEBHOOK_SHOP_TOKEN", "shop-env-456")
    auth = receiver_auth()
    assert auth.brevo.allows("Bearer conn-secret-123")
    assert auth.brevo.allows(f"Basic {base64.b64encode(b'brevo:conn-secret-123').decode()}")
    assert auth.shop.allows("Bearer shop-env-456") and not auth.shop.allows("Bearer conn-secret-123")
    assert "conn-secret-123" not in repr(auth) and "shop-env-456" not in repr(auth)
    monkeypatch.setenv("CRM_WEBHOOK_BREVO_TOKEN", "brevo-env-789")  # the environment first
    assert receiver_auth().brevo.allows("Bearer brevo-env-789")
    # one secret for both sources defeats the separation: the receiver does not start
    monkeypatch.setenv("CRM_WEBHOOK_SHOP_TOKEN", "brevo-env-789")
    with pytest.raises(ReceiverMisconfigured, match="share a secret"):
        receiver_auth()
    # the single shared token of earlier versions is refused, saying what to set instead
    monkeypatch.setenv("CRM_WEBHOOK_SHOP_TOKEN", "shop-env-456")
    monkeypatch.setenv("CRM_WEBHOOK_TOKEN", "old-shared-token")
    with pytest.raises(ReceiverMisconfigured, match="CRM_WEBHOOK_BREVO_TOKEN"):
        receiver_auth()


# -- what is stored -------------------------------------------------------------------------------


def test_both_families_as_brevo_documents_and_sends_them_are_stored_and_read(receiver, conn):
    """Every documented and captured payload, each spelling of the webhook settings: 200, stored
    once, nothing parked, the canonical event, the family, the right time (ts_epoch in seconds
    in the documented example, in milliseconds in live captures) and the link (link or URL)."""
    cases = [c for group in ("transactional_documented", "transactional_live", "marketing_documented",
                             "setting_spellings") for c in FIXTURES[group]]
    answer = post(receiver, [c["payload"] for c in cases])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": len(cases), "stored": len(cases), "duplicates": 0, "parked": 0}
    rows = conn.execute("""SELECT event, family, occurred_at, link, email, intake_problem FROM crm.webhook_events
                           ORDER BY event_id""").fetchall()
    for case, (event, family, at, link, email, problem) in zip(cases, rows, strict=True):
        assert (event, family, problem) == (case["event"], case["family"], None), case["payload"]
        assert at == dt.datetime.fromisoformat(case["at"]), case["payload"]
        assert link == case.get("link")
        expected_email = case["email"] if "email" in case else case["payload"]["email"].lower()
        assert email == expected_email
    # Brevo's retry of the whole batch: acknowledged, nothing stored twice
    again = post(receiver, [c["payload"] for c in cases]).json()
    assert again["stored"] == 0 and again["duplicates"] == len(cases)


def test_one_unreadable_event_never_costs_its_batch(receiver, conn):
    """499 good events and one of each kind the receiver cannot read: all stored, the odd ones
    parked with the reason, the others processed."""
    good = [opened(email=f"client{i}@example.fr", ts=1_763_370_000 + i) for i in range(499)]
    odd = [{**opened(ts=1_763_380_000), "event": "looked_at"},                 # unknown event name
           {**opened(ts=1_763_380_001), "email": "anne@localhost"},            # an address without a TLD
           {**opened(ts=1_763_380_002), "email": "a" * 300 + "@example.fr"},   # longer than any address
           {**opened(ts=1_763_380_003), "link": {"href": "https://x.fr"}},     # a field of the wrong type
           {k: v for k, v in opened(ts=1_763_380_004).items() if k != "email"},  # no address at all
           "just a string", 42, None, [1, 2]]                                  # not even an event
    long_but_readable = [{**opened(ts=1_763_390_000), "event": "hard_bounce", "reason": "r" * 5000},
                         {**opened(ts=1_763_390_001), "subject": "s" * 3000}]
    body = good + odd + long_but_readable
    answer = post(receiver, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": len(body), "stored": len(body), "duplicates": 0, "parked": len(odd)}
    problems = [p for _, p in parked(conn)]
    assert len(problems) == len(odd)
    assert any("unknown Brevo event name 'looked_at'" in p for p in problems)
    assert sum("email: not a usable e-mail address" in p for p in problems) == 2
    assert any("link: expected text" in p for p in problems) and any("email: missing" in p for p in problems)
    assert sum("expected an event object" in p for p in problems) == 4
    # processing: the odd ones parked for a person at once, every other one processed
    rules = parse_rules({"rules": [{"id": "o", "trigger": "email_opened", "actions": [{"type": "add_tag", "tag": "o"}]}]})
    summary = processing.process_events(conn, rules=rules)
    assert summary["parked"] == len(odd) and summary["events"] == len(good) + len(long_but_readable)
    assert summary["queue"] == {"done": len(good) + len(long_but_readable), "parked": len(odd)}
    assert conn.execute("SELECT reason FROM crm.suppressions").fetchall() == [("hard_bounce",)]
    assert processing.process_events(conn, rules=rules)["parked"] == 0  # parked once, not again
    # the weekly report says what waits for a person, and why
    from winecrm.campaigns import report

    reasons = report.events(conn, dt.date(2026, 11, 22))["parked_reasons"]
    assert reasons[0] == {"reason": "email: not a usable e-mail address", "count": 2}
    assert sum(r["count"] for r in reasons) <= len(odd) and len(reasons) == 5


def test_distinct_events_stay_distinct(receiver, conn):
    """Same address, same second: a click on another URL, an open of another campaign, an event of
    another family are other events; the very same event again is one."""
    base = {"email": "anne@example.fr", "campaign name": "Lettre de novembre", "date_sent": "2026-11-16 09:00:00",
            "ts_sent": 1_763_280_000, "ts_event": 1_763_370_000, "ts": 1_763_373_600, "tag": ""}
    body = [{**base, "event": "click", "camp_id": 12, "URL": "https://x.fr/riesling"},
            {**base, "event": "click", "camp_id": 12, "URL": "https://x.fr/cremant"},
            {**base, "event": "click", "camp_id": 12, "URL": "https://x.fr/cremant"},   # the same click again
            {**base, "event": "opened", "camp_id": 12},
            {**base, "event": "opened", "camp_id": 13},
            {**base, "event": "unsubscribe", "camp_id": 12, "list_id": [3]},
            {**base, "event": "unsubscribe", "camp_id": 12, "list_id": [4]}]
    answer = post(receiver, body).json()
    assert answer == {"received": 7, "stored": 6, "duplicates": 1, "parked": 0}
    rows = conn.execute("SELECT event, brevo_campaign, link, message_key FROM crm.webhook_events "
                        "ORDER BY event_id").fetchall()
    assert rows[:2] == [("click", "12", "https://x.fr/riesling", "camp:12|anne@example.fr"),
                        ("click", "12", "https://x.fr/cremant", "camp:12|anne@example.fr")]
    assert [r[1] for r in rows[2:4]] == ["12", "13"]


def test_times_are_read_in_seconds_or_milliseconds_and_never_absurd(receiver, conn):
    documented = {"event": "delivered", "email": "a@example.fr", "message-id": "<m1@relay>", "ts_epoch": 1604933654}
    live = {**documented, "message-id": "<m2@relay>", "ts_epoch": 1604933654321}
    absurd = [{**documented, "message-id": f"<m{i}@relay>", "ts_epoch": v, "ts_event": v, "ts": v}
              for i, v in enumerate([-5, 10 ** 17, "yesterday", 1.5e300, True], start=3)]
    assert post(receiver, [documented, live, *absurd]).json()["parked"] == 0
    times = [r[0] for r in conn.execute("SELECT occurred_at FROM crm.webhook_events ORDER BY event_id")]
    assert times[0] == dt.datetime(2020, 11, 9, 14, 54, 14, tzinfo=dt.timezone.utc)   # not 1970-01-19
    assert times[1] == dt.datetime(2020, 11, 9, 14, 54, 14, 321000, tzinfo=dt.timezone.utc)
    assert times[2:] == [None] * len(absurd)   # no sane time given: processing uses the time received


def test_a_marketing_unsubscribe_or_complaint_suppresses_the_address(receiver, conn):
    from tests.fakes.estate import seed_warehouse

    seed_warehouse(conn, 3)
    campaign = {"camp_id": 12, "campaign name": "Lettre", "ts_event": 1_763_370_000, "tag": ""}
    body = [{**campaign, "event": "unsubscribe", "email": "Client0@Example.fr", "list_id": [3]},
            {**campaign, "event": "spam", "email": "client1@example.fr", "reason": "undesired"},
            {**campaign, "event": "hardBounce", "email": "client2@example.fr"}]
    assert post(receiver, body).json()["stored"] == 3
    processing.process_events(conn)
    assert conn.execute("SELECT email, reason, source FROM crm.suppressions ORDER BY email").fetchall() == [
        ("client0@example.fr", "unsubscribed", "brevo_campaign_webhook:unsubscribed"),
        ("client1@example.fr", "spam", "brevo_campaign_webhook:spam"),
        ("client2@example.fr", "hard_bounce", "brevo_campaign_webhook:hard_bounce")]


# -- what is refused ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, status, why", [
    (b"{not json", 400, "body is not valid JSON"),
    ("café".encode("latin-1"), 400, "body is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, 413, "nested too deeply"),
    (b"[" * 990 + b"]" * 990, 413, "nested too deeply"),
    (json.dumps([{"a": 1}] * 5001).encode(), 413, "5001 events"),
])
def test_only_size_credentials_and_non_json_are_refused(receiver, conn, body, status, why):
    answer = post(receiver, body)
    assert answer.status_code == status, answer.text
    assert why in answer.text
    assert stored(conn) == []


def test_what_json_cannot_say_and_postgresql_cannot_hold_is_stored_not_refused(receiver, conn):
    """NaN (Python's encoder writes it), a NUL character, half a surrogate pair: kept as text,
    the events parked when a character had to be replaced; never a 503 that makes Brevo retry
    and on-call believe the database is down."""
    nan = b'{"event": "opened", "email": "a@example.fr", "ts_epoch": NaN, "message-id": "<n1@relay>"}'
    answer = post(receiver, nan)
    assert answer.status_code == 200 and answer.json()["stored"] == 1 and answer.json()["parked"] == 0
    nul = b'{"event": "opened", "email": "b@example.fr", "subject": "a\\u0000b", "message-id": "<n2@relay>"}'
    surrogate = b'{"event": "opened", "email": "c@example.fr", "subject": "\\ud800", "message-id": "<n3@relay>"}'
    amount = b'{"client_code": "C1", "action": "purchase", "metadata": {"amount": Infinity}}'
    for body, path, headers in ((nul, "/webhook/email", BREVO), (surrogate, "/webhook/email", BREVO),
                                (amount, "/webhook/behavior", SHOP)):
        answer = post(receiver, body, path, headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["parked"] == 1
    subjects = [r[0] for r in conn.execute("SELECT payload ->> 'subject' FROM crm.webhook_events ORDER BY event_id")]
    assert subjects[1:3] == ["a\ufffdb", "\ufffd"]


def test_size_limit_and_content_type(receiver, conn):
    big = json.dumps([opened(ts=1_763_370_000 + i, subject="s" * 900) for i in range(300)]).encode()
    assert len(big) > 200_000
    assert post(receiver, big).status_code == 413
    # a chunked body (no Content-Length) is counted as it arrives
    chunks = (big[i:i + 10_000] for i in range(0, len(big), 10_000))
    answer = requests.post(f"{receiver}/webhook/email", data=chunks,
                           headers={**BREVO, "Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 413
    form = requests.post(f"{receiver}/webhook/email", data={"event": "opened"}, headers=BREVO, timeout=10)
    assert form.status_code == 415
    assert stored(conn) == []


def test_behaviour_events_the_receiver_cannot_read_are_parked_not_refused(receiver, conn):
    bodies = [{"action": "purchase", "metadata": {"amount": 80}},
              {"client_code": "C1", "action": "teleport"},
              {"client_code": "C1", "action": "purchase", "metadata": {"amount": "eighty"}},
              {"client_code": "C1", "action": "purchase", "metadata": {"amount": -5}},
              {"client_code": "C1", "action": "click", "surprise": 1},
              {"client_code": "C1\n2", "action": "click"},
              {"client_code": "C1", "action": "click", "ts": "yesterday"}]
    whys = ["client_code or email", "action", "amount", "amount", "surprise", "client_code", "ts"]
    answer = post(receiver, bodies, "/webhook/behavior", SHOP)
    assert answer.json() == {"received": 7, "stored": 7, "duplicates": 0, "parked": 7}
    for (_, problem), why in zip(parked(conn), whys, strict=True):
        assert why in problem


def test_hostile_values_are_stored_as_data(receiver, conn):
    script = "<script>alert('x')</script>"
    sql_like = "x'); DROP TABLE crm.webhook_events; --"
    body = {"client_code": sql_like, "action": "form_submit",
            "metadata": {"message": script, "name": "Robert'); DROP TABLE etl.clients;--", "url": "javascript:alert(1)"}}
    assert post(receiver, body, "/webhook/behavior", SHOP).status_code == 200
    event = opened(subject=script, tags=[sql_like])
    assert post(receiver, event).status_code == 200
    rows = stored(conn)
    assert rows[0][3] == sql_like and rows[0][4]["metadata"]["message"] == script
    assert rows[1][4]["subject"] == script and rows[1][4]["tags"] == [sql_like]
    assert conn.execute("SELECT count(*) FROM etl.clients").fetchone()[0] == 0  # the table is still there


def test_behaviour_events_dedupe_on_their_id(receiver, conn):
    body = {"email": "Zoe@Example.fr", "action": "purchase", "event_id": "order-991", "metadata": {"amount": 64.5}}
    for _ in range(3):
        assert post(receiver, body, "/webhook/behavior", SHOP).status_code == 200
    other = {**body, "event_id": "order-992"}
    assert post(receiver, other, "/webhook/behavior", SHOP).json()["stored"] == 1
    rows = stored(conn)
    assert [(r[0], r[1], r[2]) for r in rows] == [("behavior", "purchase", "zoe@example.fr")] * 2


def test_database_down_means_503_and_nothing_acknowledged(conn):
    app = create_app(AUTH, "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with running_receiver(app) as base:
        answer = post(base, opened())
        assert answer.status_code == 503 and answer.headers.get("Retry-After")
        assert requests.get(f"{base}/webhook/health", timeout=20).status_code == 503


def test_the_openapi_schema_documents_both_payloads(receiver):
    schema = requests.get(f"{receiver}/openapi.json", timeout=10).json()
    email = schema["paths"]["/webhook/email"]["post"]
    assert "503" in email["responses"] and email["security"] and "422" not in email["responses"]
    assert "parked" in json.dumps(email["responses"]["200"])
    brevo = json.dumps(schema["components"]["schemas"]["BrevoEvent"])
    assert all(f in brevo for f in ("message-id", "camp_id", "URL", "hardBounce", "list_addition"))
    behavior = json.dumps(schema["paths"]["/webhook/behavior"]["post"]["requestBody"])
    assert "BehaviorEvent" in behavior
    assert set(schema["components"]["schemas"]["BehaviorEvent"]["properties"]["action"]["enum"]) == {
        "click", "open", "purchase", "form_submit", "page_visit"}


@pytest.mark.parametrize("value", [
    "http://brevo:conn-secret-123@receiver",
    "http://brevo%40domaine:p%40ss%2Fw%3Ard%20x@receiver:8765/path?x=1",  # percent-encoded login and password
    "https://:only-a-token@receiver",
    "http://brevo@receiver",
    '{"conn_type": "http", "login": "brevo", "password": "s3cr\\u00e9t:/@", "host": "receiver"}',
    '{"conn_type": "http", "password": "token-only"}',
])
def test_webhook_connections_are_read_as_airflow_reads_them(monkeypatch, value):
    """The receiver reads its AIRFLOW_CONN_* without importing Airflow: what it reads is what
    Airflow's own Connection makes of the same value, URI or JSON."""
    from airflow.models.connection import Connection

    monkeypatch.setenv("AIRFLOW_CONN_CRM_WEBHOOK_BREVO", value)
    airflow_reads = Connection.get_connection_from_secrets("crm_webhook_brevo")
    from winecrm.events.receiver import connection_login

    assert connection_login("crm_webhook_brevo") == (airflow_reads.login or None, airflow_reads.password or None)


def test_the_receiver_module_does_not_import_airflow():
    import subprocess
    import sys

    code = ("import sys, winecrm.events.receiver, winecrm.events.intake, winecrm.events.processing; "
            "sys.exit(1 if any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
