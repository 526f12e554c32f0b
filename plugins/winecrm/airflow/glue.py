"""Everything Airflow-specific in one place: connection ids, tags, default args, callbacks.

DAG files import their constants and callbacks from here; the rest of the package never
imports Airflow. Nothing here touches a database or a connection at import time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any

import pendulum

log = logging.getLogger(__name__)

# Connection ids, defined once.
WAREHOUSE_CONN_ID = "crm_warehouse"
BREVO_CONN_ID = "brevo_default"
SMTP_CONN_ID = "smtp_default"

# Tags, defined once.
TAG_CRM = "winecrm"
TAG_WEEKLY = "weekly"
TAG_ETL = "etl"

TIMEZONE = pendulum.timezone("Europe/Paris")
START_DATE = pendulum.datetime(2026, 1, 5, 6, 0, tz=TIMEZONE)  # a Monday; catchup is off

SENSOR_POKE_SECONDS = 300
SENSOR_TIMEOUT = dt.timedelta(hours=12)  # safety net; the clear deadline is exports.max_wait_hours


def warehouse_url() -> str:
    """The warehouse: Airflow connection ``crm_warehouse``, else CRM_DATABASE_URL, else embedded."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from winecrm.core import db

    try:
        conn = BaseHook.get_connection(WAREHOUSE_CONN_ID)
    except AirflowNotFoundException:
        conn = None
    if conn is not None and conn.host:
        url = conn.get_uri()
        # Airflow writes postgres://; libpq accepts it, but keep the canonical scheme and drop
        # Airflow-only extras from the query string.
        url = url.split("?", 1)[0]
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if conn.password:
            _mask(conn.password)
        return url
    env_url = os.environ.get("CRM_DATABASE_URL")
    if env_url:
        from urllib.parse import urlsplit

        password = urlsplit(env_url).password
        if password:
            _mask(password)
        return env_url
    return db.embedded_server_url()


def _mask(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # masking is best effort outside a task
        pass


def warehouse_connection():
    from winecrm.core import db

    return db.connect(warehouse_url())


def run_stage(stage: str, run: dict) -> dict:
    """Run ``winecrm.pipeline.run_<stage>`` for the DAG run on the warehouse.

    Errors that a retry cannot fix (too many bad rows) fail the task at once instead of
    retrying; everything else is left to the task's retries.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from winecrm import pipeline
    from winecrm.etl.validate import QualityGateError

    with warehouse_connection() as conn:
        try:
            return getattr(pipeline, f"run_{stage}")(conn, run["run_id"])
        except QualityGateError as exc:
            raise AirflowFailException(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# failure notifications


def alert_targets() -> tuple[str, str]:
    from winecrm.core import settings

    cfg = settings.pipeline_config().get("alerts", {})
    email = os.environ.get("CRM_ALERT_EMAIL", cfg.get("email") or "")
    webhook = os.environ.get("CRM_ALERT_WEBHOOK_URL", cfg.get("webhook_url") or "")
    return email, webhook


def failure_message(context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    dag_run = context.get("dag_run")
    logical = context.get("logical_date")
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "logical_date": logical.isoformat() if hasattr(logical, "isoformat") else logical,
        "try_number": getattr(ti, "try_number", None),
        "error": f"{exception.__class__.__name__}: {exception}" if exception else None,
        "log_url": getattr(ti, "log_url", None),
    }


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
    import requests

    text = (f":red_circle: {payload['dag_id']}.{payload['task_id']} failed "
            f"(run {payload['run_id']}, try {payload['try_number']}): {payload['error']}")
    response = requests.post(url, json={"text": text, **payload}, timeout=timeout)
    response.raise_for_status()


def notify_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: mark the run record failed, then tell people (webhook and/or email)."""
    payload = failure_message(context)
    log.error("Task failed: %s", json.dumps(payload, default=str))
    _mark_run_failed(payload)
    email, webhook = alert_targets()
    if webhook:
        _mask(webhook)  # chat webhook URLs embed their token
        try:
            post_webhook(webhook, payload)
        except Exception:  # a broken alert channel must not hide the original failure
            log.exception("Failure webhook could not be delivered")
    if email:
        try:
            _send_email(email, payload)
        except Exception:
            log.exception("Failure email could not be sent")


def _mark_run_failed(payload: dict[str, Any]) -> None:
    if not payload.get("run_id"):
        return
    try:
        from winecrm import pipeline

        with warehouse_connection() as conn:
            exists = conn.execute("SELECT to_regclass('etl.runs') IS NOT NULL").fetchone()[0]
            if exists:
                pipeline.finish(conn, payload["run_id"], error=f"{payload['task_id']}: {payload['error']}")
    except Exception:
        log.exception("Could not record the failure in etl.runs")


def _send_email(to: str, payload: dict[str, Any]) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    subject = f"[winecrm] {payload['dag_id']}.{payload['task_id']} a échoué"
    body = "<br>".join(f"<b>{k}</b>: {v}" for k, v in payload.items())
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook.send_email_smtp(to=to, subject=subject, html_content=body)


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=30),
    "on_failure_callback": notify_failure,
}
