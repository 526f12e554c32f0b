"""The bodies of crm_weekly's tasks: thin wrappers that open the warehouse connection and call
``winecrm.pipeline``, turning errors a retry cannot fix into failures without retry.

Every task finds its run in ``etl.runs`` by the Airflow run id: nothing travels between tasks
by XCom but the run note (see the plugin's listener)."""

from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger(__name__)

NOTE_KEY = "run_note"  # XCom key of the one-line French summary the plugin sets as the run's note


def use_airflow_storage() -> None:
    """Work files on an object store go through Airflow's ObjectStoragePath, so the credentials
    can come from an Airflow connection named in the URL (``s3://aws_default@bucket/winecrm/work``).
    A plain local path keeps the plain path."""
    from urllib.parse import urlsplit

    from winecrm.core import settings, storage

    if urlsplit(settings.paths().work_url).scheme == "":
        storage.use_root_factory(None)
        return
    from airflow.sdk import ObjectStoragePath

    storage.use_root_factory(ObjectStoragePath)


def _fail_fast(exc: Exception):
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def prepare_run(context) -> dict:
    from winecrm import pipeline
    from winecrm.airflow.connections import WarehouseConnectionError, warehouse_connection
    from winecrm.core.db import WarehouseNotConfigured
    from winecrm.core.run_params import RunParams, RunParamsError
    from winecrm.core.settings import ConfigError
    from winecrm.core.weeks import paris

    # A manual run triggered without a logical date (allowed in Airflow 3) covers the week
    # before the moment it was asked to run.
    logical_date = context.get("logical_date") or context["dag_run"].run_after
    try:
        params = RunParams.parse(dict(context.get("params") or {}))
        window = pipeline.week_window(context["run_id"], logical_date, params)
        with warehouse_connection("prepare") as conn:
            applied = pipeline.prepare(conn, window)
            window = pipeline.current_window(conn, window.run_id)
    except (WarehouseConnectionError, WarehouseNotConfigured, ConfigError, RunParamsError) as exc:
        raise _fail_fast(exc) from exc
    log.info("%s (sales delivered %s–%s); run date %s (Paris); migrations applied now: %s",
             window.week.label_fr(), window.week_start.strftime("%d/%m/%Y"), window.week_end.strftime("%d/%m/%Y"),
             paris(logical_date), ", ".join(applied) or "none")
    log.info("Params: %s", window.params)
    context["ti"].xcom_push(NOTE_KEY, f"{window.week.label_fr()} : en cours")
    return window.as_dict()


def wait_for_exports(run_id: str) -> bool:
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("sensor") as conn:
        pipeline.heartbeat(conn, run_id)
        window = pipeline.current_window(conn, run_id)
        # Counted from this try's first look too: clearing the task after dropping the missing
        # file gives it a new wait, not the deadline the previous try already reached.
        window = dataclasses.replace(window, started_at=max(filter(None, (window.started_at, _first_look()))))
        try:
            return pipeline.check_exports(window, conn=conn)
        except pipeline.ExportsMissing as exc:
            raise _fail_fast(exc) from exc


def _first_look():
    """When the sensor's current try first looked (reschedule mode keeps it across looks)."""
    import datetime as dt

    from airflow.sdk import get_current_context

    context = get_current_context()
    try:
        first = context["ti"].get_first_reschedule_date(context)
    except Exception:  # outside a reschedule-mode sensor: this look is the first
        first = None
    return first or dt.datetime.now(dt.timezone.utc)


def run_stage(stage: str, run_id: str) -> None:
    """``winecrm.pipeline.run_<stage>`` for the DAG run, on the warehouse (its report goes to
    ``etl.runs.details`` and the Run summary page, not to XCom)."""
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection
    from winecrm.core.db import WarehouseBusy

    use_airflow_storage()
    with warehouse_connection(stage) as conn:
        try:
            getattr(pipeline, f"run_{stage}")(conn, run_id)
        except WarehouseBusy as exc:
            raise _fail_fast(exc) from exc


def finish_run(run_id: str, ti) -> dict:
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("finish") as conn:
        try:
            summary = pipeline.finish_checked(conn, run_id)
        except pipeline.FilesRejected as exc:
            raise _fail_fast(exc) from exc
    log.info("%s", summary["note"])
    ti.xcom_push(NOTE_KEY, summary["note"])
    return {k: summary[k] for k in ("status", "note", "files_new", "rows_read", "rows_written", "rows_superseded",
                                    "rows_skipped", "rows_quarantined")}
