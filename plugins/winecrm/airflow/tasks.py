"""The bodies of crm_weekly's tasks: thin wrappers that open the warehouse connection and call
``winecrm.pipeline``, turning errors a retry cannot fix into failures without retry."""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


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
    from winecrm.core.settings import ConfigError

    # A manual run triggered without a logical date (allowed in Airflow 3) covers the week
    # before the moment it was asked to run.
    logical_date = context.get("logical_date") or context["dag_run"].run_after
    window = pipeline.week_window(context["run_id"], logical_date)
    try:
        with warehouse_connection("prepare") as conn:
            applied = pipeline.prepare(conn, window)
    except (WarehouseConnectionError, WarehouseNotConfigured, ConfigError) as exc:
        raise _fail_fast(exc) from exc
    log.info("Week %s – %s; migrations applied now: %s", window.week_start, window.week_end, applied or "none")
    return window.as_dict()


def wait_for_exports(run: dict) -> bool:
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection

    window = pipeline.RunWindow.from_dict(run)
    with warehouse_connection("sensor") as conn:
        pipeline.heartbeat(conn, window.run_id)
    try:
        return pipeline.check_exports(window)
    except pipeline.ExportsMissing as exc:
        raise _fail_fast(exc) from exc


def run_stage(stage: str, run: dict) -> dict:
    """``winecrm.pipeline.run_<stage>`` for the DAG run, on the warehouse."""
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection
    from winecrm.core.db import WarehouseBusy

    use_airflow_storage()
    with warehouse_connection(stage) as conn:
        try:
            return getattr(pipeline, f"run_{stage}")(conn, run["run_id"])
        except WarehouseBusy as exc:
            raise _fail_fast(exc) from exc


def finish_run(run: dict) -> dict:
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("finish") as conn:
        try:
            summary = pipeline.finish_checked(conn, run["run_id"])
        except pipeline.FilesRejected as exc:
            raise _fail_fast(exc) from exc
    log.info("%s", json.dumps(summary, indent=2, default=str, ensure_ascii=False))
    return {k: summary[k] for k in ("status", "files_new", "rows_read", "rows_loaded", "rows_quarantined")}
