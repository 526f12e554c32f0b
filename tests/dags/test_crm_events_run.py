"""crm_events run for real with `airflow dags test`: queued Brevo and behaviour events become
score changes, tags, a task and a thank-you e-mail in the outbox; the task log says what fired."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from winecrm.events import intake

from tests.fakes.estate import seed_warehouse

pytestmark = pytest.mark.airflow
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_crm_events_processes_the_queue(airflow_db, conn, warehouse_url, tmp_path):  # noqa: F811
    seed_warehouse(conn, 5)
    rows = intake.rows(intake.parse_behavior(
        {"client_code": "C000001", "action": "purchase", "event_id": "o-1", "metadata": {"amount": 75.0},
         "ts": "2026-11-17T10:00:00+01:00"}))
    rows += intake.rows(intake.parse_brevo([
        {"event": "unsubscribed", "email": "client2@example.fr", "message-id": "<m2@relay>", "ts_event": 1_763_370_000},
        {"event": "hard_bounce", "email": "client3@example.fr", "message-id": "<m3@relay>", "ts_event": 1_763_370_000,
         "reason": "unknown user"}]))
    conn.execute(intake.INSERT_SQL, intake.insert_params(rows))
    conn.commit()
    env = {**os.environ, "CRM_DATABASE_URL": warehouse_url, "CRM_OUTBOX_DIR": str(tmp_path / "outbox"),
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    env.pop("BREVO_API_KEY", None)
    result = subprocess.run([AIRFLOW, "dags", "test", "crm_events", "2026-11-17T09:00:00+00:00"], env=env,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "3 events processed" in output and "actions decided per rule: " in output and "purchase" in output
    assert conn.execute("SELECT status, count(*) FROM crm.webhook_events GROUP BY 1").fetchall() == [("done", 3)]
    assert sorted(conn.execute("SELECT email, reason FROM crm.suppressions").fetchall()) == [
        ("client2@example.fr", "unsubscribed"), ("client3@example.fr", "hard_bounce")]
    assert conn.execute("SELECT template, status FROM crm.email_sends").fetchall() == [("thank_you", "simulated")]
    assert list((tmp_path / "outbox").glob("auto-purchase-*/thank_you-C000001.eml"))
