"""The webhook routes over real HTTP: who may post, what is refused, what is stored — once.

Nothing is stored from a refused request; every 2xx is in the queue exactly once, repeats
included; hostile values are kept as data."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from winecrm.events.receiver import WebhookAuth, create_app

from tests.winecrm.events.test_receiver import running_receiver

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def opened(email="anne@example.fr", ts=1_763_370_000, **extra) -> dict:
    return {"event": "opened", "email": email, "message-id": "<202611171000.1@smtp-relay.mailin.fr>",
            "ts_event": ts, "ts_epoch": ts * 1000, "date": "2026-11-17 10:00:00", "subject": "Une découverte",
            "tags": ["crm-hebdo"], "X-Mailin-custom": "hebdo-2026-11-15|1b4e28ba", **extra}


def stored(conn) -> list[tuple]:
    conn.commit()
    return conn.execute("SELECT source, event, email, client_code, payload FROM crm.webhook_events "
                        "ORDER BY event_id").fetchall()


@pytest.fixture
def receiver(warehouse_url):
    app = create_app(WebhookAuth(token=TOKEN, user="brevo", password="basic-pass-0123"), warehouse_url,
                     max_body_bytes=200_000)
    with running_receiver(app) as base:
        yield base


def test_credentials_are_required_and_compared_exactly(receiver, conn):
    cases = [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": f"Bearer {TOKEN}x"}, 401),
             ({"Authorization": f"Basic {base64.b64encode(b'brevo:nope').decode()}"}, 401),
             ({"Authorization": "Basic !!!not-base64"}, 401), ({"Authorization": TOKEN}, 401)]
    for headers, status in cases:
        answer = requests.post(f"{receiver}/webhook/email", json=opened(), headers=headers, timeout=10)
        assert answer.status_code == status, headers
        assert "WWW-Authenticate" in answer.headers
    # no credentials and a malformed body: still 401 (nothing is read before the caller is known)
    assert requests.post(f"{receiver}/webhook/behavior", data="{not json", timeout=10).status_code == 401
    assert stored(conn) == []
    basic = {"Authorization": f"Basic {base64.b64encode(b'brevo:basic-pass-0123').decode()}"}
    assert requests.post(f"{receiver}/webhook/email", json=opened(), headers=basic, timeout=10).status_code == 200
    assert requests.post(f"{receiver}/webhook/email", json=opened(ts=1_763_370_001), headers=AUTH,
                         timeout=10).status_code == 200
    assert len(stored(conn)) == 2


def test_nothing_configured_refuses_everything(warehouse_url, conn):
    with running_receiver(create_app(WebhookAuth(), warehouse_url)) as base:
        assert requests.post(f"{base}/webhook/email", json=opened(), headers=AUTH, timeout=10).status_code == 401
        assert requests.post(f"{base}/webhook/email", json=opened(), headers={"Authorization": "Bearer "},
                             timeout=10).status_code == 401
    assert stored(conn) == []


def test_a_repeat_is_acknowledged_and_stored_once_and_batches_count(receiver, conn):
    first = requests.post(f"{receiver}/webhook/email", json=opened(), headers=AUTH, timeout=10)
    assert first.status_code == 200 and first.json() == {"received": 1, "stored": 1, "duplicates": 0}
    again = requests.post(f"{receiver}/webhook/email", json=opened(), headers=AUTH, timeout=10)  # Brevo's retry
    assert again.status_code == 200 and again.json() == {"received": 1, "stored": 0, "duplicates": 1}
    # a batch: the same event again, a click (different link = different event), a new open
    batch = [opened(), {**opened(), "event": "click", "link": "https://x.fr/a"},
             {**opened(), "event": "click", "link": "https://x.fr/b"}, opened(ts=1_763_370_100)]
    answer = requests.post(f"{receiver}/webhook/email", json=batch, headers=AUTH, timeout=10)
    assert answer.json() == {"received": 4, "stored": 3, "duplicates": 1}
    assert len(stored(conn)) == 4
    too_many = [opened(ts=1_763_370_000 + i) for i in range(501)]
    assert requests.post(f"{receiver}/webhook/email", json=too_many, headers=AUTH, timeout=10).status_code in (413, 422)
    assert len(stored(conn)) == 4


@pytest.mark.parametrize("body, why", [
    (b"{not json", "body is not valid JSON"),
    (b"[]", "at least 1 item"),
    (json.dumps({**opened(), "event": "looked_at"}).encode(), "event"),
    (json.dumps({k: v for k, v in opened().items() if k != "email"}).encode(), "email"),
    (json.dumps({**opened(), "email": "not-an-address"}).encode(), "email"),
    (json.dumps({**opened(), "email": "a" * 10_000 + "@example.fr"}).encode(), "email"),
    (json.dumps({**opened(), "link": "https://x.fr/" + "a" * 10_000}).encode(), "link"),
    (json.dumps({**opened(), "free": "x" * 10_000}).encode(), "free"),
    (json.dumps({**opened(), "ts_event": "yesterday"}).encode(), "ts_event"),
    (json.dumps("just a string").encode(), ""),
])
def test_bad_brevo_bodies_get_a_clear_4xx_and_store_nothing(receiver, conn, body, why):
    answer = requests.post(f"{receiver}/webhook/email", data=body,
                           headers={**AUTH, "Content-Type": "application/json"}, timeout=10)
    assert answer.status_code in (400, 422), answer.text
    assert why in json.dumps(answer.json())
    assert "x" * 200 not in answer.text and "a" * 200 not in answer.text  # the value is not echoed back
    assert stored(conn) == []


@pytest.mark.parametrize("body, why", [
    ({"action": "purchase", "metadata": {"amount": 80}}, "client_code or email"),
    ({"client_code": "C1", "action": "teleport"}, "action"),
    ({"client_code": "C1", "action": "purchase", "metadata": {"amount": "eighty"}}, "amount"),
    ({"client_code": "C1", "action": "purchase", "metadata": {"amount": -5}}, "amount"),
    ({"client_code": "C1", "action": "click", "surprise": 1}, "surprise"),
    ({"client_code": "C1\n2", "action": "click"}, "client_code"),
    ({"client_code": "C1", "action": "click", "metadata": {"deep": {"a": {"b": {"c": {"d": {"e": 1}}}}}}}, "deep"),
])
def test_bad_behaviour_bodies_get_a_clear_422_and_store_nothing(receiver, conn, body, why):
    answer = requests.post(f"{receiver}/webhook/behavior", json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 422, answer.text
    assert why in json.dumps(answer.json())
    assert stored(conn) == []


def test_size_limit_and_content_type(receiver, conn):
    big = json.dumps([opened(ts=1_763_370_000 + i, subject="s" * 900) for i in range(300)]).encode()
    assert len(big) > 200_000
    answer = requests.post(f"{receiver}/webhook/email", data=big, headers={**AUTH, "Content-Type": "application/json"},
                           timeout=10)
    assert answer.status_code == 413
    # a chunked body (no Content-Length) is counted as it arrives
    chunks = (big[i:i + 10_000] for i in range(0, len(big), 10_000))
    answer = requests.post(f"{receiver}/webhook/email", data=chunks,
                           headers={**AUTH, "Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 413
    form = requests.post(f"{receiver}/webhook/email", data={"event": "opened"}, headers=AUTH, timeout=10)
    assert form.status_code == 415
    assert stored(conn) == []


def test_hostile_values_are_stored_as_data(receiver, conn):
    script = "<script>alert('x')</script>"
    sql_like = "x'); DROP TABLE crm.webhook_events; --"
    body = {"client_code": sql_like, "action": "form_submit",
            "metadata": {"message": script, "name": "Robert'); DROP TABLE etl.clients;--", "url": "javascript:alert(1)"}}
    assert requests.post(f"{receiver}/webhook/behavior", json=body, headers=AUTH, timeout=10).status_code == 200
    event = opened(subject=script, tags=[sql_like])
    assert requests.post(f"{receiver}/webhook/email", json=event, headers=AUTH, timeout=10).status_code == 200
    rows = stored(conn)
    assert rows[0][3] == sql_like and rows[0][4]["metadata"]["message"] == script
    assert rows[1][4]["subject"] == script and rows[1][4]["tags"] == [sql_like]
    assert conn.execute("SELECT count(*) FROM etl.clients").fetchone()[0] == 0  # the table is still there


def test_behaviour_events_dedupe_on_their_id(receiver, conn):
    body = {"email": "Zoe@Example.fr", "action": "purchase", "event_id": "order-991", "metadata": {"amount": 64.5}}
    for _ in range(3):
        assert requests.post(f"{receiver}/webhook/behavior", json=body, headers=AUTH, timeout=10).status_code == 200
    other = {**body, "event_id": "order-992"}
    assert requests.post(f"{receiver}/webhook/behavior", json=other, headers=AUTH, timeout=10).json()["stored"] == 1
    rows = stored(conn)
    assert [(r[0], r[1], r[2]) for r in rows] == [("behavior", "purchase", "zoe@example.fr")] * 2


def test_database_down_means_503_and_nothing_acknowledged(conn):
    app = create_app(WebhookAuth(token=TOKEN), "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with running_receiver(app) as base:
        answer = requests.post(f"{base}/webhook/email", json=opened(), headers=AUTH, timeout=20)
        assert answer.status_code == 503 and answer.headers.get("Retry-After")
        assert requests.get(f"{base}/webhook/health", timeout=20).status_code == 503


def test_the_openapi_schema_documents_both_payloads(receiver):
    schema = requests.get(f"{receiver}/openapi.json", timeout=10).json()
    email = schema["paths"]["/webhook/email"]["post"]
    assert "503" in email["responses"] and email["security"]
    body = json.dumps(email["requestBody"])
    assert "BrevoEvent" in body and "message-id" in json.dumps(schema["components"]["schemas"]["BrevoEvent"])
    behavior = schema["paths"]["/webhook/behavior"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert behavior == {"$ref": "#/components/schemas/BehaviorEvent"}
    assert set(schema["components"]["schemas"]["BehaviorEvent"]["properties"]["action"]["enum"]) == {
        "click", "open", "purchase", "form_submit", "page_visit"}


def test_credentials_from_the_environment_or_the_airflow_connection(monkeypatch):
    from winecrm.events.receiver import webhook_auth

    for name in ("CRM_WEBHOOK_TOKEN", "CRM_WEBHOOK_USER", "CRM_WEBHOOK_PASSWORD", "AIRFLOW_CONN_CRM_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    assert not webhook_auth().configured
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WEBHOOK", "http://brevo:conn-secret-123@receiver")
    auth = webhook_auth()
    assert auth.allows("Bearer conn-secret-123") and auth.allows(f"Basic {base64.b64encode(b'brevo:conn-secret-123').decode()}")
    assert "conn-secret-123" not in repr(auth)
    monkeypatch.setenv("CRM_WEBHOOK_TOKEN", "env-token-456")  # the environment first
    assert webhook_auth().allows("Bearer env-token-456") and not webhook_auth().allows("Bearer conn-secret-123")
