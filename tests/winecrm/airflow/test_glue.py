"""Airflow glue: which warehouse a task uses, and failure notifications over real HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from winecrm.airflow import glue


@pytest.fixture
def webhook_server():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/crm", received
    server.shutdown()


def test_airflow_connection_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql://env@envhost/envdb")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", json.dumps(
        {"conn_type": "postgres", "host": "db.internal", "login": "crm", "password": "s3cret w@rd",
         "schema": "winecrm", "port": 5432}))
    url = airflow_glue.warehouse_url()
    assert url.startswith("postgresql://crm:") and url.endswith("@db.internal:5432/winecrm")
    import psycopg

    assert psycopg.conninfo.conninfo_to_dict(url)["password"] == "s3cret w@rd"


def test_environment_url_is_used_without_a_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CRM_WAREHOUSE", raising=False)
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql://env@envhost/envdb")
    assert airflow_glue.warehouse_url() == "postgresql://env@envhost/envdb"


def test_failure_notification_is_posted_and_recorded(webhook_server, warehouse_url, monkeypatch, conn):
    url, received = webhook_server
    monkeypatch.setenv("CRM_ALERT_WEBHOOK_URL", url)
    from winecrm import pipeline

    from tests.conftest import MONDAY_RUN

    pipeline.prepare(conn, pipeline.week_window("scheduled__x", MONDAY_RUN))

    class TI:
        dag_id, task_id, run_id, try_number, log_url = "crm_weekly", "load", "scheduled__x", 3, "http://ui/log"

    airflow_glue.notify_failure({"ti": TI(), "exception": RuntimeError("disk full"), "logical_date": MONDAY_RUN})
    (call,) = received
    assert call["path"] == "/hooks/crm"
    assert call["json"]["task_id"] == "load" and call["json"]["error"] == "RuntimeError: disk full"
    assert "crm_weekly.load failed" in call["json"]["text"]
    status, error = conn.execute("SELECT status, error FROM etl.runs WHERE run_id = 'scheduled__x'").fetchone()
    assert status == "failed" and error == "load: RuntimeError: disk full"


def test_a_dead_alert_channel_does_not_raise(monkeypatch, warehouse_url):
    monkeypatch.setenv("CRM_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/nobody-listens")

    class TI:
        dag_id, task_id, run_id, try_number, log_url = "crm_weekly", "ingest", None, 1, None

    airflow_glue.notify_failure({"ti": TI(), "exception": ValueError("x")})
