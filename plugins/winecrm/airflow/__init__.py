"""Everything Airflow-specific, in one place: connection ids, pool, tags, default args,
timeouts, callbacks and the task bodies the DAG files call.

The only subpackage that imports Airflow (lazily, inside functions where it can). Importing it
touches no database and no connection: DAG files import their constants from here at parse time.
"""

from __future__ import annotations

import datetime as dt

import pendulum

# Connection ids, pool and tags, defined once.
WAREHOUSE_CONN_ID = "crm_warehouse"
BREVO_CONN_ID = "brevo_default"
SMTP_CONN_ID = "smtp_default"
WAREHOUSE_POOL = "crm_warehouse"  # 1 slot: shows in the UI which task holds the warehouse
WAREHOUSE_POOL_DESCRIPTION = "One writer per warehouse: ingest, validate, load, score, recommend"

TAG_CRM = "winecrm"
TAG_WEEKLY = "weekly"
TAG_ETL = "etl"

TIMEZONE = pendulum.timezone("Europe/Paris")
START_DATE = pendulum.datetime(2026, 1, 5, 6, 0, tz=TIMEZONE)  # a Monday; catchup is off


def _timeouts():
    """Timeouts from pipeline.yaml, read when the DAG file is parsed. A broken file must not make
    the DAG vanish from the UI: defaults are used and prepare_run then fails naming the key."""
    from winecrm.core import settings

    try:
        cfg = settings.pipeline_config()
        return cfg.timeouts, cfg.exports
    except (settings.ConfigError, OSError):
        return settings.TimeoutsConfig(), settings.ExportsConfig()


def task_timeout() -> dt.timedelta:
    return dt.timedelta(minutes=_timeouts()[0].task_minutes)


def run_timeout() -> dt.timedelta:
    return dt.timedelta(hours=_timeouts()[0].run_hours)


def sensor_poke_seconds() -> int:
    return _timeouts()[1].poke_interval_seconds


def sensor_timeout() -> dt.timedelta:
    """Safety net behind the sensor's own clear deadline (exports.max_wait_hours)."""
    return dt.timedelta(hours=_timeouts()[1].max_wait_hours + 1)


def default_args() -> dict:
    from winecrm.airflow.callbacks import task_failure_callbacks

    return {
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=30),
        "execution_timeout": task_timeout(),
        "on_failure_callback": task_failure_callbacks(),
    }
