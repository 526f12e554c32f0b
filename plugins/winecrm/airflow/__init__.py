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
WAREHOUSE_POOL_DESCRIPTION = "One writer per warehouse: ingest, validate, load, score, recommend, e-mails"

TAG_CRM = "winecrm"
TAG_WEEKLY = "weekly"
TAG_ETL = "etl"
TAG_EVENTS = "events"

# Weekly runs at once: a scheduled run waiting for its exports (up to exports.max_wait_hours) must
# not hold up a week triggered by hand. Their writing tasks still take turns (pool, writer lock).
WEEKLY_MAX_ACTIVE_RUNS = 3

def _estate_timezone() -> str:
    """``schedule.timezone`` of pipeline.yaml, read when the DAG file is parsed (a file read, no
    connection); with a broken file, the default: prepare_run then fails naming the key."""
    from winecrm.core import settings

    try:
        return settings.pipeline_config().schedule.timezone
    except (settings.ConfigError, OSError):
        return settings.ScheduleConfig().timezone


TIMEZONE = pendulum.timezone(_estate_timezone())
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


def events_default_args() -> dict:
    """crm_events runs every 5 minutes: a failed run is retried once, soon; the next run takes
    over anyway (the queue keeps everything)."""
    return {**default_args(), "retries": 1, "retry_delay": dt.timedelta(minutes=1),
            "retry_exponential_backoff": False, "execution_timeout": dt.timedelta(minutes=20)}


def trigger_params() -> dict:
    """The trigger form (Airflow renders titles, descriptions, a date picker and text areas).
    ``prepare_run`` checks the values again (winecrm.core.run_params) and records them."""
    from airflow.sdk import Param

    return {
        "week": Param(
            None, type=["null", "string"], format="date", title="Week to process",
            description="Any day of the sales week (Monday–Sunday, Paris time). Empty: the week before the "
                        "run's date, as the Monday 06:00 run does. For a backfill of several weeks, use the "
                        "backfill dialog instead: each run takes the week before its date."),
        "dry_run": Param(
            True, type="boolean", title="Dry run: no e-mail sent",
            description="Ticked: the week's e-mails are written to the outbox folder (.eml), never sent. "
                        "Unticked: they are sent through Brevo (connection brevo_default) once a person "
                        "approves the campaign in the UI — and only for the latest week: a past week never "
                        "sends. Recorded with the run."),
        "reingest_files": Param(
            [], type=["null", "array"], items={"type": "string"}, title="Re-ingest these files",
            description="One file per line: its path inside RAW as the run summary shows it "
                        "(isavigne/ventes_lignes/ventes_lignes_2026-11-16.csv) or its name. Files already "
                        "processed are read, validated and loaded again (the newest export still wins)."),
        "accept_files": Param(
            [], type=["null", "array"], items={"type": "string"}, title="Accept these files despite the quality gate",
            description="One file per line. Their good rows load and their bad rows stay in quarantine, "
                        "however many there are; a file rejected by an earlier run is taken again. "
                        "Same effect as a '<file>.accept' marker next to the file in RAW."),
        "settle_seconds": Param(
            None, type=["null", "integer"], minimum=0, title="Settle time (seconds)",
            description="How long a file must stay unchanged before it is read (default "
                        "files.settle_seconds in pipeline.yaml). 0 takes files at once: only when nothing "
                        "is being copied into RAW."),
    }


# One asset per warehouse table a run writes, so the Assets view shows what each run produced
# and later DAGs (campaigns, events) can be scheduled on them.
ASSET_TABLES = {
    "validate": ["etl.quarantine"],
    "load": ["etl.ventes_lignes", "etl.clients", "etl.produits", "etl.stock"],
    "score": ["crm.customer_360", "crm.rfm_scores", "crm.lead_scores", "crm.product_affinity"],
    "recommend": ["crm.recommendations", "crm.recommendation_exclusions"],
}


def outlets(stage: str) -> list:
    from airflow.sdk import Asset

    return [Asset(name=table, uri=f"winecrm-warehouse://{table.replace('.', '/')}", group="winecrm-warehouse")
            for table in ASSET_TABLES.get(stage, [])]
