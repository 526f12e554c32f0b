"""Every DAG file parses, follows the house rules, and does nothing heavy at parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_FILES and len(dagbag.dags) >= len(DAG_FILES)


def test_house_rules(dagbag):
    from winecrm.airflow import TAG_CRM
    from winecrm.airflow.callbacks import EmailAlert, RecordRunFailure, WebhookAlert, task_failure_callbacks

    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and dag.doc_md.strip(), dag_id
        assert TAG_CRM in dag.tags, dag_id
        assert dag.start_date.tzinfo is not None, dag_id
        assert dag.dagrun_timeout is not None, f"{dag_id}: a hung run must time out (and alert)"
        run_callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
        assert {type(c) for c in run_callbacks} >= {RecordRunFailure, WebhookAlert, EmailAlert}, dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            callbacks = task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
            assert callbacks == task_failure_callbacks(), f"{dag_id}.{task.task_id} has no failure callbacks"
            if task.task_type == "CampaignApprovalOperator":  # waits for a person: a response timeout instead
                assert task.response_timeout is not None and task.defaults == ["Reject"], task.task_id
            elif task.task_type != "DecoratedSensorOperator":
                assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"


def test_crm_weekly_shape(dagbag):
    dag = dagbag.dags["crm_weekly"]
    assert dag.timetable.expression == "0 6 * * 1"
    assert str(dag.timezone.name) == "Europe/Paris"
    # a scheduled run waiting for its exports holds up no week triggered by hand
    assert dag.max_active_runs == 3 and dag.catchup is False
    assert dag.start_date == pendulum.datetime(2026, 1, 5, 6, tz="Europe/Paris")
    order = ["prepare_run", "wait_for_exports", "ingest", "validate", "load", "score", "recommend", "render_emails",
             "campaign_path", "send_emails", "purge", "report", "finish_run"]
    assert set(order) | {"approve_campaign", "data_docs"} == set(dag.task_ids)
    for upstream, downstream in zip(order, order[1:]):
        # a straight line: the run's window travels through etl.runs, not by an edge from prepare_run;
        # the forks: the Data Docs beside the load (done before the purge), and a live campaign
        # passes by a person's approval before it is sent
        expected = {downstream, "approve_campaign"} if upstream == "campaign_path" else \
            {downstream, "data_docs"} if upstream == "validate" else {downstream}
        assert dag.get_task(upstream).downstream_task_ids == expected, upstream
    assert dag.get_task("data_docs").downstream_task_ids == {"purge"}
    assert dag.get_task("data_docs").pool != "crm_warehouse"  # beside the load, not after it
    assert dag.get_task("approve_campaign").downstream_task_ids == {"send_emails"}
    assert dag.get_task("send_emails").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("purge").trigger_rule == "none_failed"  # a rejected campaign still closes the run
    sensor = dag.get_task("wait_for_exports")
    assert sensor.mode == "reschedule"
    from winecrm.core import settings

    assert sensor.poke_interval == settings.pipeline_config().exports.poke_interval_seconds
    # what the UI shows: a description, a doc for every task, the trigger form, the tables produced
    assert dag.description and "Monday" in dag.doc_md
    assert all(task.doc_md for task in dag.tasks)
    form = dag.params.dump()
    assert set(form) == {"week", "dry_run", "reingest_files", "accept_files", "settle_seconds"}
    for name in form:
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description, name
    assert dag.params.get_param("week").schema["format"] == "date" and form["dry_run"] is True
    produced = {asset.name for task in dag.tasks for asset in task.outlets}
    assert {"etl.ventes_lignes", "etl.clients", "etl.produits", "etl.stock", "crm.rfm_scores", "crm.lead_scores",
            "crm.recommendations"} <= produced
    # every task that writes the warehouse is in the one-slot pool (runs overlap; backfills follow their own max_active_runs)
    writers = {t.task_id for t in dag.tasks if t.pool == "crm_warehouse"}
    assert writers == {"ingest", "validate", "load", "score", "recommend", "render_emails", "send_emails", "purge"}


def test_crm_events_shape(dagbag):
    dag = dagbag.dags["crm_events"]
    assert dag.timetable.expression == "*/5 * * * *"
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert set(dag.task_ids) == {"process_events"}
    task = dag.get_task("process_events")
    assert task.doc_md and task.retries == 1 and task.execution_timeout is not None
    assert "automation_rules.yaml" in dag.doc_md and "events" in dag.tags


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_nothing_heavy_and_touches_no_database(dag_file):
    code = (
        "import sys, runpy, socket\n"
        f"sys.path.insert(0, {str(ROOT / 'plugins')!r})\n"
        "def refuse(*a, **k):\n    raise AssertionError('network/database access at parse time')\n"
        "socket.socket.connect = refuse\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        "heavy = [m for m in ('great_expectations', 'pandas', 'psycopg', 'pyarrow', 'pgserver', 'openpyxl') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stdout
