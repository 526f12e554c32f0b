"""SIGKILL the events processor at random points of a 20,000-event backlog, 10 times, then let it
finish: every event processed, every (event, rule, action) applied once — score changes, tags,
tasks — and each buyer's thank-you e-mail accepted by the (fake, real-HTTP) Brevo exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import yaml
from winecrm.core import settings
from winecrm.events import intake

from tests.fakes.brevo import FakeBrevoServer
from tests.fakes.estate import seed_warehouse

CUSTOMERS = 1500
EVENTS = 20_000
KILLS = 10
RULES = {
    "settings": {"batch_size": 500, "automation_emails": "live"},
    "rules": [
        {"id": "clicked", "trigger": "email_clicked", "priority": 60,
         "actions": [{"type": "update_score", "points": 15}, {"type": "add_tag", "tag": "engaged"}]},
        {"id": "purchase", "trigger": "purchase", "priority": 90, "conditions": {"amount_above": 50},
         "actions": [{"type": "update_score", "points": 50}, {"type": "send_email", "template": "thank_you"},
                     {"type": "create_task", "title": "Relancer le client"}]},
    ],
}


def backlog(rng: random.Random) -> list[tuple]:
    rows = []
    for i in range(CUSTOMERS):  # one purchase each, over 50 €
        rows += intake.rows(intake.parse_behavior(
            {"client_code": f"C{i:06d}", "action": "purchase", "event_id": f"order-{i}",
             "metadata": {"amount": 60 + i % 40}, "ts": "2026-11-17T10:00:00+01:00"}))
    for i in range(EVENTS - CUSTOMERS):  # clicks in the estate's Brevo newsletter, each a different link
        c = rng.randrange(CUSTOMERS)
        rows += intake.rows(intake.parse_brevo(
            {"event": "click", "email": f"client{c}@example.fr", "camp_id": 7, "campaign name": "Newsletter",
             "ts_event": 1_763_370_000 + i, "URL": f"https://x.fr/{i}"}))
    rng.shuffle(rows)
    return rows


def test_killed_processing_applies_every_action_once(conn, warehouse_url, tmp_path):
    rng = random.Random(2026)
    seed_warehouse(conn, CUSTOMERS)
    rows = backlog(rng)
    conn.execute(intake.INSERT_SQL, intake.insert_params(rows))
    conn.commit()
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    campaigns = yaml.safe_load(open(settings.campaigns_config_path(), encoding="utf-8"))
    campaigns["sending"]["batch_size"] = 50  # small Brevo calls, so kills land between and inside them
    campaigns_path = tmp_path / "campaigns.yaml"
    campaigns_path.write_text(yaml.safe_dump(campaigns, allow_unicode=True), encoding="utf-8")
    with FakeBrevoServer() as server:
        env = {**os.environ, "CRM_DATABASE_URL": warehouse_url, "BREVO_API_KEY": server.fake.api_key,
               "BREVO_API_URL": server.url, "CRM_AUTOMATION_RULES": str(rules_path),
               "CRM_CAMPAIGNS_CONFIG": str(campaigns_path), "CRM_OUTBOX_DIR": str(tmp_path / "outbox")}
        command = [sys.executable, "-m", "winecrm.events", "process"]

        def progress() -> tuple:
            state = conn.execute("SELECT (SELECT count(*) FROM crm.webhook_events WHERE status = 'done'), "
                                 "(SELECT count(*) FROM crm.automation_actions WHERE status <> 'pending')").fetchone()
            conn.rollback()
            return (*state, len(server.fake.sent))

        for _ in range(KILLS):
            before = progress()
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while progress() == before and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.6))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finish = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert finish.returncode == 0, finish.stderr[-3000:]
        accepted = server.fake.accepted_addresses()

    assert len(accepted) == len(set(accepted)) == CUSTOMERS          # one thank-you per buyer, none twice
    assert conn.execute("SELECT status, count(*) FROM crm.webhook_events GROUP BY 1").fetchall() == [("done", EVENTS)]
    actions = dict(conn.execute("SELECT action_type || ':' || status, count(*) FROM crm.automation_actions "
                                "GROUP BY 1").fetchall())
    clicks = EVENTS - CUSTOMERS
    assert actions == {"update_score:done": clicks + CUSTOMERS, "add_tag:done": clicks,
                       "send_email:done": CUSTOMERS, "create_task:done": CUSTOMERS}
    assert conn.execute("SELECT count(*), sum(delta) FROM crm.score_changes").fetchone() == (
        clicks + CUSTOMERS, 15 * clicks + 50 * CUSTOMERS)
    assert conn.execute("SELECT count(*) FROM crm.tasks").fetchone()[0] == CUSTOMERS
    assert conn.execute("SELECT status, count(*) FROM crm.email_sends GROUP BY 1").fetchall() == [("sent", CUSTOMERS)]
