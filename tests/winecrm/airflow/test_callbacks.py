"""Failure callbacks: the run record is closed, the webhook gets a JSON alert over real HTTP,
and the e-mail (the SMTP provider's notifier) escapes what it shows."""

from __future__ import annotations

import pytest
from winecrm import pipeline
from winecrm.airflow import callbacks

from tests.conftest import MONDAY_RUN, alert_receiver


@pytest.fixture
def webhook_server():
    with alert_receiver() as receiver:
        yield receiver


class TI:
    dag_id, task_id, run_id, try_number, log_url = "crm_weekly", "load", "scheduled__x", 3, "http://ui/log?a=1&b=2"


def _fire(context):
    for callback in callbacks.task_failure_callbacks():
        callback(context)


def test_failure_is_recorded_and_posted(webhook_server, warehouse_url, monkeypatch, conn):
    url, received = webhook_server
    monkeypatch.setenv("CRM_ALERT_WEBHOOK_URL", url)
    pipeline.prepare(conn, pipeline.week_window("scheduled__x", MONDAY_RUN))
    _fire({"ti": TI(), "exception": RuntimeError("disk full"), "logical_date": MONDAY_RUN})
    (call,) = received
    assert call["path"] == "/hooks/crm"
    assert call["json"]["task_id"] == "load" and call["json"]["error"] == "RuntimeError: disk full"
    assert "crm_weekly.load failed" in call["json"]["text"]
    status, error = conn.execute("SELECT status, error FROM etl.runs WHERE run_id = 'scheduled__x'").fetchone()
    assert status == "failed" and error == "load: RuntimeError: disk full"


def test_a_whole_run_failing_is_recorded_too(webhook_server, warehouse_url, monkeypatch, conn):
    url, received = webhook_server
    monkeypatch.setenv("CRM_ALERT_WEBHOOK_URL", url)
    pipeline.prepare(conn, pipeline.week_window("scheduled__y", MONDAY_RUN))

    class DagRun:
        dag_id, run_id, logical_date = "crm_weekly", "scheduled__y", MONDAY_RUN

    for callback in callbacks.run_failure_callbacks():
        callback({"dag_run": DagRun(), "reason": "timed_out"})
    assert "crm_weekly (run) failed" in received[0]["json"]["text"]
    status, error = conn.execute("SELECT status, error FROM etl.runs WHERE run_id = 'scheduled__y'").fetchone()
    assert status == "failed" and error == "run: timed_out"


def test_a_dead_alert_channel_does_not_raise(monkeypatch, warehouse_url):
    monkeypatch.setenv("CRM_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/nobody-listens")
    _fire({"ti": TI(), "exception": ValueError("x")})


def test_failure_email_escapes_what_it_shows():
    notifier = callbacks.EmailAlert()

    class DagRun:
        dag_id, run_id = "crm_weekly", "manual__<b>"

    notifier.render_template_fields({"ti": TI(), "dag_run": DagRun(),
                                     "exception": ValueError("client <script>alert(1)</script> & O'Neil {{ 7*7 }}")})
    html = notifier.html_content
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; O&#39;Neil" in html
    assert "{{ 7*7 }}" in html  # the error text is data, never a template
    assert "manual__&lt;b&gt;" in html and "http://ui/log?a=1&amp;b=2" in html
    assert notifier.subject == "[winecrm] crm_weekly.load a échoué"


def test_the_approval_email_goes_to_the_configured_person_only(monkeypatch):
    """No address configured: no e-mail (the request waits in the UI); an address: the request's
    counts as HTML, raw HTML in it never passed through, and the link to answer it."""
    from winecrm.airflow import approval

    monkeypatch.delenv("CRM_APPROVAL_EMAIL", raising=False)
    assert approval.approval_address() == ""
    monkeypatch.setenv("CRM_APPROVAL_EMAIL", "marie@domaine-exemple.fr")
    assert approval.approval_address() == "marie@domaine-exemple.fr"
    sent = []
    monkeypatch.setattr(approval.SmtpNotifier, "notify", lambda self, context: sent.append(
        (self.to, self.subject, self.html_content)))

    class Task:
        subject = "Envoyer 12 e-mails de la campagne hebdo-2026-11-15\u202f?"
        body = "| Scénario | À envoyer |\n|---|--:|\n| Réachat | 12 |\n\n<script>alert(1)</script> [voir](http://ui/p)"

        def generate_link_to_ui_from_context(self, context):
            return "http://ui/dags/crm_weekly/runs/r1/tasks/approve_campaign/required_actions?map_index=-1"

    approval.ApprovalRequestEmail()({"task": Task()})
    ((to, subject, html),) = sent
    assert to == "marie@domaine-exemple.fr" and subject == "[winecrm] " + Task.subject + " : à valider"
    assert "<table>" in html and "<td>Réachat</td>" in html and '<a href="http://ui/p">voir</a>' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="http://ui/dags/crm_weekly/runs/r1/tasks/approve_campaign/required_actions?map_index=-1"' in html
    monkeypatch.setenv("CRM_APPROVAL_EMAIL", "")
    approval.ApprovalRequestEmail()({"task": Task()})
    assert len(sent) == 1
