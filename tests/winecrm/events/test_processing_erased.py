"""crm_events and an erased person (GDPR): late Brevo webhooks and behaviour events about them
fire nothing and keep nothing of them, and an erasure never interleaves with a processing run."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import sql
from winecrm.events import intake, processing
from winecrm.events.rules import load_rules
from winecrm.privacy import erase

from tests.fakes.estate import seed_warehouse

PERSON = "C000000"
ADDRESS = "client0@example.fr"
TS = 1_763_370_000
NOT_TEXT = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean", "date",
            "timestamp with time zone", "timestamp without time zone", "interval", "uuid", "bytea")


def _queue(conn, rows):
    conn.execute(intake.INSERT_SQL, intake.insert_params(rows))
    conn.commit()


def _brevo(body: dict) -> tuple:
    return intake.rows(intake.parse_brevo(body))[0]


def _behavior(action: str, client_code: str, event_id: str, **metadata) -> tuple:
    return intake.rows(intake.parse_behavior({"action": action, "client_code": client_code, "event_id": event_id,
                                              "metadata": metadata, "ts": "2026-11-17T10:00:00+01:00"}))[0]


def _plain_address_left(conn, needle: str) -> list[str]:
    hits = []
    for schema, table, column in conn.execute(
            """SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name)
               WHERE c.table_schema IN ('etl', 'crm') AND t.table_type = 'BASE TABLE' AND c.data_type <> ALL(%s)""",
            (list(NOT_TEXT),)).fetchall():
        n = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}::text ILIKE %s").format(
            sql.Identifier(schema, table), sql.Identifier(column)), (f"%{needle}%",)).fetchone()[0]
        if n:
            hits.append(f"{schema}.{table}.{column}")
    conn.commit()
    return hits


@pytest.fixture
def erased(conn, crm_dirs, monkeypatch):
    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: True)
    seed_warehouse(conn, 3)
    erase.erase(conn, [ADDRESS])
    return conn


def test_late_events_about_an_erased_person_fire_nothing_and_keep_no_address(erased):
    conn = erased
    _queue(conn, [
        # Brevo, days later: a click and an unsubscribe (transactional), one it cannot read (parked)
        _brevo({"event": "click", "email": ADDRESS.upper(), "message-id": "<m1@relay>", "ts_epoch": TS * 1000,
                "link": f"https://domaine.example/vins?who={ADDRESS}"}),
        _brevo({"event": "unsubscribed", "email": ADDRESS, "message-id": "<m2@relay>", "ts_epoch": TS * 1000}),
        _brevo({"event": "strange_new_event", "email": ADDRESS, "message-id": "<m3@relay>", "ts_epoch": TS * 1000,
                "subject": f"Pour {ADDRESS}"}),
        # the shop: a purchase of 80 EUR by the erased client code (the default rules: +50, a
        # thank-you e-mail, a follow-up task), and one by someone else
        _behavior("purchase", PERSON, "p1", amount=80, email=ADDRESS),
        _behavior("purchase", "C000001", "p2", amount=80),
        # someone else's unsubscribe, by address only: still linked to its customer and honoured
        _brevo({"event": "unsubscribed", "email": "client2@example.fr", "message-id": "<m4@relay>",
                "ts_epoch": TS * 1000})])
    assert conn.execute("SELECT count(*) FROM crm.webhook_events WHERE intake_problem IS NOT NULL").fetchone()[0] == 1
    conn.commit()
    processing.process_events(conn, rules=load_rules())

    assert _plain_address_left(conn, ADDRESS) == []
    for table in ("crm.automation_actions", "crm.score_changes", "crm.customer_tags", "crm.tasks",
                  "crm.campaign_pauses", "crm.lead_score_state"):
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE client_code = %s", (PERSON,)).fetchone()[0] == 0, table
    # the consent history holds only the erasure's own opt-out
    assert conn.execute("SELECT source FROM crm.consent_log WHERE client_code = %s", (PERSON,)).fetchall() == [
        ("privacy_erase",)]
    assert conn.execute("SELECT count(*) FROM crm.email_sends WHERE client_code = %s AND template = 'thank_you'",
                        (PERSON,)).fetchone()[0] == 0
    marker = erase.erased_marker(ADDRESS)
    events = conn.execute("SELECT event, email, client_code, link, payload, status FROM crm.webhook_events "
                          "WHERE payload ? 'erased' ORDER BY event_id").fetchall()
    assert events == [
        ("click", marker, None, None, {"erased": True, "event": "click"}, "done"),
        ("unsubscribed", marker, None, None, {"erased": True, "event": "unsubscribed"}, "done"),
        (events[2][0], marker, None, None, {"erased": True, "event": events[2][0]}, "parked"),
        ("purchase", None, None, None, {"erased": True, "event": "purchase"}, "done")]
    # the others' events went through the rules as usual
    assert conn.execute("SELECT count(*) FROM crm.automation_actions WHERE client_code = 'C000001'").fetchone()[0] == 3
    assert conn.execute("SELECT email, client_code, status FROM crm.webhook_events WHERE message_id = '<m4@relay>'"
                        ).fetchone() == ("client2@example.fr", "C000002", "done")
    assert conn.execute("SELECT email, client_code FROM crm.consent_log WHERE source <> 'privacy_erase'").fetchall() == [
        ("client2@example.fr", "C000002")]
    assert conn.execute("SELECT count(*) FROM crm.customer_tags WHERE client_code = 'C000002' "
                        "AND tag = 'unsubscribed'").fetchone()[0] == 1


def test_an_erasure_waits_for_a_running_events_processing(conn, crm_dirs, warehouse_url, monkeypatch):
    """crm_events writes tags, actions and consent rows under its own lock, not the writer lock:
    an erasure taking only the writer lock could delete the person's rows while a processing run
    is about to write new ones. It waits for the processor instead."""
    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: True)
    seed_warehouse(conn, 3)
    held, released = threading.Event(), {}

    def processing_run():
        with psycopg.connect(warehouse_url) as other, processing.processor_lock(other):
            held.set()
            time.sleep(2.5)
            released["at"] = time.monotonic()

    worker = threading.Thread(target=processing_run)
    worker.start()
    assert held.wait(10)
    erase.erase(conn, [ADDRESS])
    done = time.monotonic()
    worker.join()
    assert done >= released["at"]
    assert conn.execute("SELECT count(*) FROM etl.clients WHERE email = %s", (ADDRESS,)).fetchone()[0] == 0
