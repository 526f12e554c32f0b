"""What happens when a task or a whole run fails (including a timeout): the run's attempt is
closed as failed in ``etl.runs``, then people are told — e-mail through the SMTP provider's
notifier (connection ``smtp_default``), a chat webhook through a small notifier of ours. Targets
come from ``CRM_ALERT_EMAIL`` / ``CRM_ALERT_WEBHOOK_URL``, else ``alerts`` in pipeline.yaml,
resolved when a failure happens (nothing is looked up when the DAG file is parsed).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import BaseNotifier

from winecrm.airflow import SMTP_CONN_ID

log = logging.getLogger(__name__)

# Jinja, rendered by the notifier with the failure's context; every value is escaped (`| e`):
# an exception message can hold '<', '&' or a customer name; the error is scrubbed of e-mail
# addresses and phone numbers (`| scrub`, winecrm.core.personal).
FAILURE_SUBJECT = ("[winecrm] {{ dag_run.dag_id if dag_run else 'crm' }}"
                   "{% if ti %}.{{ ti.task_id }}{% endif %} a échoué")
FAILURE_HTML = """\
<h3>winecrm : échec de {{ (dag_run.dag_id if dag_run else '?') | e }}{% if ti %}.{{ ti.task_id | e }}{% endif %}</h3>
<table>
<tr><th align="left">Run</th><td>{{ (dag_run.run_id if dag_run else '?') | e }}</td></tr>
{% if ti %}<tr><th align="left">Essai</th><td>{{ ti.try_number | e }}</td></tr>{% endif %}
<tr><th align="left">Erreur</th><td><pre>{{ (exception or reason or 'inconnue') | string | scrub | e }}</pre></td></tr>
{% if ti and ti.log_url %}<tr><th align="left">Journal</th><td><a href="{{ ti.log_url | e }}">{{ ti.log_url | e }}</a></td></tr>{% endif %}
</table>
"""


def alert_targets() -> tuple[str, str]:
    from winecrm.core import settings

    try:
        cfg = settings.pipeline_config().alerts
        email, webhook = cfg.email, cfg.webhook_url
    except settings.ConfigError:  # a broken config must not silence the alert about it
        email = webhook = ""
    return os.environ.get("CRM_ALERT_EMAIL", email), os.environ.get("CRM_ALERT_WEBHOOK_URL", webhook)


def failure_payload(context: dict[str, Any]) -> dict[str, Any]:
    """What every alert says about a failure. The error text is scrubbed of anything that looks
    like an e-mail address or a phone number (an exception may quote a delivered value); the
    file, line and column it names stay."""
    from winecrm.core.personal import scrub

    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exception = context.get("exception")
    reason = context.get("reason")
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "logical_date": logical.isoformat() if hasattr(logical, "isoformat") else logical,
        "try_number": getattr(ti, "try_number", None),
        "error": scrub(f"{exception.__class__.__name__}: {exception}" if exception else (str(reason) if reason else None)),
        "log_url": getattr(ti, "log_url", None),
    }


class _PlainNotifier(BaseNotifier):
    """A notifier with nothing to template. (Airflow renders notifier templates with the DAG's
    Jinja environment, which a serialized DAG, as `airflow dags test` hands to run callbacks, lacks.)"""

    def render_template_fields(self, context, jinja_env=None) -> None:
        return None


class RecordRunFailure(_PlainNotifier):
    """Close the run's current attempt as failed in etl.runs (never waits for the writer lock)."""

    def notify(self, context):
        payload = failure_payload(context)
        if not payload["run_id"]:
            return
        where = f"{payload['task_id']}: " if payload["task_id"] else "run: "
        summary = None
        try:
            from winecrm import pipeline
            from winecrm.airflow.connections import warehouse_connection

            with warehouse_connection("failure-callback") as conn:
                if conn.execute("SELECT to_regclass('etl.runs') IS NOT NULL").fetchone()[0]:
                    summary = pipeline.finish(conn, payload["run_id"], error=where + (payload["error"] or "failed"))
        except Exception:  # the alert notifiers that follow this one still run
            log.exception("Could not record the failure in etl.runs")
            return
        ti = context.get("ti")
        # A task's own failure hands the run note over (the plugin's listener sets it); a run-level
        # callback comes after it and has no task of its own to push from.
        if summary and ti is not None and context.get("exception") is not None and hasattr(ti, "xcom_push"):
            from winecrm.airflow.tasks import NOTE_KEY

            try:  # the plugin's listener sets it as the run's note
                ti.xcom_push(NOTE_KEY, summary["note"])
            except Exception:
                log.exception("Could not hand the run note over")


class WebhookAlert(_PlainNotifier):
    """POST a JSON alert with a Slack/Teams-style ``text`` to CRM_ALERT_WEBHOOK_URL."""

    def notify(self, context):
        import requests

        _, url = alert_targets()
        if not url:
            return
        from airflow.sdk.log import mask_secret

        mask_secret(url)  # chat webhook URLs embed their token
        payload = failure_payload(context)
        where = f"{payload['dag_id']}.{payload['task_id']}" if payload["task_id"] else f"{payload['dag_id']} (run)"
        text = f":red_circle: {where} failed (run {payload['run_id']}, try {payload['try_number']}): {payload['error']}"
        try:
            requests.post(url, json={"text": text, **payload}, timeout=10).raise_for_status()
        except Exception:  # a broken alert channel must not hide the original failure
            log.exception("Failure webhook could not be delivered")


class EmailAlert(SmtpNotifier):
    """The SMTP provider's notifier, sent only when an address is configured."""

    def __init__(self):
        super().__init__(to="", subject=FAILURE_SUBJECT, html_content=FAILURE_HTML, smtp_conn_id=SMTP_CONN_ID)

    def get_template_env(self, dag=None):
        # Our own sandboxed environment: the templates above need no DAG macros, and a serialized
        # DAG (run callbacks under `airflow dags test`) has no template environment to lend.
        import jinja2.sandbox

        from winecrm.core.personal import scrub

        env = jinja2.sandbox.SandboxedEnvironment(autoescape=False, undefined=jinja2.Undefined)
        env.filters["scrub"] = scrub  # the error may quote a delivered e-mail address or phone number
        return env

    def __call__(self, *args):
        address, _ = alert_targets()
        if not address:
            return
        self.to = address
        try:
            super().__call__(*args)
        except Exception:
            log.exception("Failure e-mail could not be sent")


_TASK_CALLBACKS = [RecordRunFailure(), WebhookAlert(), EmailAlert()]


def task_failure_callbacks() -> list:
    """on_failure_callback of every task (timeouts included): defined once, shared by the DAGs."""
    return _TASK_CALLBACKS


def run_failure_callbacks() -> list:
    """on_failure_callback of a DAG: a run failed as a whole (dagrun_timeout, marked failed in the UI)."""
    return _TASK_CALLBACKS

