"""crm_weekly run for real with `airflow dags test` (one shared run; Airflow start-up is slow)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from winecrm.demo import sampledata

from tests.conftest import alert_receiver, relaxed_gate_config

pytestmark = pytest.mark.airflow
LOGICAL_DATE = "2026-11-16T05:00:00+00:00"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_db(session_dir):
    env = dict(os.environ)
    result = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = subprocess.run([AIRFLOW, "pools", "set", "crm_warehouse", "1", "one writer"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Path(env["AIRFLOW_HOME"]) / "airflow.db"


@pytest.fixture(scope="module")
def module_warehouse(pg_admin_url, template_db):
    name = f"winecrm_dag_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))  # empty: the DAG migrates it
    yield make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def alerts():
    with alert_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def dag_env(tmp_path_factory, module_warehouse, airflow_db, alerts):
    base = tmp_path_factory.mktemp("dagrun")
    env = dict(os.environ)
    env.update({
        "CRM_DATABASE_URL": module_warehouse,
        "CRM_RAW_DIR": str(base / "raw"),
        "CRM_WORK_URL": str(base / "work"),
        "CRM_DOCS_DIR": str(base / "quality"),
        "CRM_ALERT_WEBHOOK_URL": alerts[0],
        "GX_ANALYTICS_ENABLED": "False",
    })
    planted = sampledata.write_sample_exports(base / "raw", n_customers=300, years=1.2)
    env["CRM_PIPELINE_CONFIG"] = str(relaxed_gate_config(base))  # the gate is judged per file
    return env, planted


def dags_test(env, logical_date):
    return subprocess.run([AIRFLOW, "dags", "test", "crm_weekly", logical_date], env=env,
                          capture_output=True, text=True, timeout=600)


def task_states(airflow_db: Path, logical_date_prefix: str) -> dict[str, str]:
    with sqlite3.connect(airflow_db) as db:
        run_id = db.execute("SELECT run_id FROM dag_run WHERE dag_id = 'crm_weekly' AND logical_date LIKE ? "
                            "ORDER BY id DESC LIMIT 1", (f"{logical_date_prefix}%",)).fetchone()[0]
        return dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'crm_weekly' AND run_id = ?",
                               (run_id,)).fetchall())


@pytest.fixture(scope="module")
def first_run(dag_env, airflow_db):
    env, planted = dag_env
    result = dags_test(env, LOGICAL_DATE)
    return result, planted


def test_weekly_dag_runs_every_task_and_loads_the_sample(first_run, airflow_db, module_warehouse):
    result, planted = first_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    states = task_states(airflow_db, "2026-11-16")
    assert states == {t: "success" for t in
                      ("prepare_run", "wait_for_exports", "ingest", "validate", "load", "score", "recommend", "purge",
                       "finish_run")}
    with psycopg.connect(module_warehouse) as conn:
        status, week_start, rows_loaded, rows_quarantined = conn.execute(
            "SELECT status, week_start::text, rows_loaded, rows_quarantined FROM etl.runs WHERE attempt = 1").fetchone()
        assert (status, week_start) == ("success", "2026-11-09")
        assert rows_quarantined == len(planted.bad_rows)
        assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == planted.sales_lines_total
        assert rows_loaded > planted.sales_lines_total  # the overlapping re-export counted, not duplicated
        segments = dict(conn.execute("SELECT segment, count(*) FROM crm.rfm_scores WHERE as_of_date = '2026-11-15' "
                                     "GROUP BY 1"))
        assert sum(segments.values()) == conn.execute(
            "SELECT count(DISTINCT client_code) FROM etl.ventes_lignes WHERE document_type <> 'AVOIR'").fetchone()[0]
        assert set(segments) <= {"VIP", "Standard", "At Risk", "Churn"} and segments.get("Churn", 0) > 0
        recommended, excluded = conn.execute(
            "SELECT (SELECT count(DISTINCT client_code) FROM crm.recommendations WHERE as_of_date = '2026-11-15'), "
            "(SELECT count(*) FROM crm.recommendation_exclusions WHERE as_of_date = '2026-11-15')").fetchone()
        assert recommended > 0 and recommended + excluded == sum(segments.values())


def test_rerunning_the_same_date_through_airflow_changes_nothing(first_run, dag_env, module_warehouse):
    env, planted = dag_env
    with psycopg.connect(module_warehouse) as conn:
        before = conn.execute("SELECT count(*), sum(mt_ht), max(loaded_at) FROM etl.ventes_lignes").fetchone()
    result = dags_test(env, LOGICAL_DATE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    with psycopg.connect(module_warehouse) as conn:
        assert conn.execute("SELECT count(*), sum(mt_ht), max(loaded_at) FROM etl.ventes_lignes").fetchone() == before
        assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == len(planted.bad_rows)


def test_missing_exports_fail_fast_with_a_clear_message_and_an_alert(first_run, dag_env, airflow_db, alerts,
                                                                     module_warehouse):
    env, _ = dag_env
    url, received = alerts
    result = dags_test(env, "2026-02-02T05:00:00+00:00")  # nothing was exported that week
    states = task_states(airflow_db, "2026-02-02")
    assert states, result.stdout[-3000:] + result.stderr[-3000:]
    assert states["prepare_run"] == "success"
    assert states["wait_for_exports"] == "failed"
    assert states.get("ingest") in (None, "upstream_failed")
    alert = next(a["json"] for a in received if a["json"]["task_id"] == "wait_for_exports")
    assert "exports for the week 26/01/2026–01/02/2026" in alert["error"]
    assert "ventes_lignes: no file in" in alert["error"] and "clients: no file in" in alert["error"]
    with psycopg.connect(module_warehouse) as conn:
        status, error = conn.execute(
            "SELECT status, error FROM etl.runs WHERE week_start = '2026-01-26'").fetchone()
    assert status == "failed" and error.startswith("wait_for_exports: AirflowFailException")
