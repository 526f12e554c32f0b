"""The crm_events work on a real warehouse: Brevo and behaviour events, linked to our sends and
customers, through the default rules into score changes, tags, tasks, suppressions and e-mails —
each action once, however often the queue is processed."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from winecrm import pipeline
from winecrm.campaigns import render, send
from winecrm.events import intake, processing
from winecrm.events.rules import load_rules
from winecrm.demo import sampledata

from tests.conftest import MONDAY_RUN

AS_OF = dt.date(2026, 11, 15)
DRY = "hebdo-2026-11-15-dry-run"


@pytest.fixture
def sent(conn, crm_dirs):
    """A 300-customer sample estate scored, recommended, and its week's e-mails in the outbox."""
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=300, years=2.0)
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    for stage in pipeline.stages_until(pipeline.run_recommend):
        stage(conn, window.run_id)
    render.render_campaign(conn, "run_1", AS_OF, mode="dry_run")
    send.send_campaign(conn, DRY, outbox=crm_dirs["work"] / "outbox")
    return conn


def queue(conn, rows: list[tuple]) -> None:
    conn.execute(intake.INSERT_SQL, intake.insert_params(rows))
    conn.commit()


def brevo_event(event: str, email: str, message_id: str, ts: int, **extra) -> tuple:
    body = {"event": event, "email": email, "message-id": message_id, "ts_epoch": ts * 1000, **extra}
    return intake.brevo_rows(intake.parse_brevo(body))[0]


def behavior(action: str, client_code: str, event_id: str, **metadata) -> tuple:
    return intake.behavior_rows(intake.parse_behavior(
        {"action": action, "client_code": client_code, "event_id": event_id, "metadata": metadata,
         "ts": "2026-11-17T10:00:00+01:00"}))[0]


def recipients(conn, n: int, segment: str | None = None) -> list[tuple]:
    """(client, email, send id) of simulated e-mails of the week, optionally of one segment."""
    return conn.execute(
        """SELECT e.client_code, e.email, e.send_id FROM crm.email_sends e
           JOIN crm.rfm_scores r ON r.client_code = e.client_code AND r.as_of_date = %s
           WHERE e.campaign_id = %s AND e.status = 'simulated' AND (%s::text IS NULL OR r.segment = %s)
           ORDER BY e.send_id LIMIT %s""", (AS_OF, DRY, segment, segment, n)).fetchall()


def test_smoke(sent, crm_dirs):
    conn = sent
    (c1, e1, s1), (c2, e2, s2) = recipients(conn, 2, "Standard")
    ts = 1_763_370_000
    queue(conn, [brevo_event("opened", e1, "<m1@x>", ts, **{"X-Mailin-custom": f"{DRY}|{s1}"}),
                 brevo_event("unique_opened", e1, "<m1@x>", ts + 1, **{"X-Mailin-custom": f"{DRY}|{s1}"}),
                 brevo_event("click", e1, "<m1@x>", ts + 5, link="https://x/a"),
                 brevo_event("unsubscribed", e2, "<m2@x>", ts + 9),
                 behavior("purchase", c1, "order-1", amount=120.0)])
    summary = processing.process_events(conn, rules=load_rules(), outbox=crm_dirs["work"] / "outbox")
    print(json.dumps(summary, default=str, indent=1))
    print(conn.execute("SELECT event_id, event, trig, client_code, send_id, campaign_id, repeat_of, status FROM crm.webhook_events").fetchall())
    print(conn.execute("SELECT rule_id, action_type, status, error, due_at FROM crm.automation_actions ORDER BY action_id").fetchall())
    print(conn.execute("SELECT * FROM crm.score_changes").fetchall())
    print(conn.execute("SELECT * FROM crm.tasks").fetchall())
    print(conn.execute("SELECT campaign_id, client_code, status FROM crm.email_sends WHERE campaign_id LIKE 'auto%'").fetchall())
    assert 0
