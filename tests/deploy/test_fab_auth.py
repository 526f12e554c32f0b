"""Production auth as docker-compose.yaml configures it: the api-server with the FAB auth manager
and its roles (never the simple auth manager the other tests use). A Viewer sees the runs and the
plugin's pages but can neither trigger a run nor answer the campaign approval; an Op can both."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests
import yaml
from winecrm import pipeline

from tests.conftest import MONDAY_RUN, airflow_api_server, sqlalchemy_url

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
RUN_ID = "scheduled__2026-11-16T05:00:00+00:00"
USERS = {"viewer": "Viewer", "ops": "Op"}


def _compose_auth_manager() -> str:
    env = yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))["x-airflow-common"]["environment"]
    return env["AIRFLOW__CORE__AUTH_MANAGER"]


@pytest.fixture(scope="module")
def fab_server(tmp_path_factory, pg_admin_url, template_db):
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    base = tmp_path_factory.mktemp("fab")
    names = {"meta": f"fab_meta_{os.getpid()}", "warehouse": f"fab_wh_{os.getpid()}"}
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for key, name in names.items():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)) if key == "meta" else
                         sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    warehouse = make_conninfo(pg_admin_url, dbname=names["warehouse"])
    with psycopg.connect(warehouse) as conn:
        pipeline.prepare(conn, pipeline.week_window(RUN_ID, MONDAY_RUN))
        pipeline.finish(conn, RUN_ID)
    meta_url = sqlalchemy_url(make_conninfo(pg_admin_url, dbname=names["meta"]))
    env = {**os.environ,
           "AIRFLOW_HOME": str(base / "airflow"),
           "AIRFLOW__CORE__AUTH_MANAGER": _compose_auth_manager(),  # as deployed
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__API_AUTH__JWT_SECRET": "test-secret-for-the-fab-test",
           "AIRFLOW__API__SECRET_KEY": "test-secret-key-for-the-fab-test",
           "CRM_DATABASE_URL": warehouse, "CRM_DOCS_DIR": str(base / "quality"), "GX_ANALYTICS_ENABLED": "False"}
    commands = [["db", "migrate"]]
    for user, role in USERS.items():
        commands.append(["users", "create", "--username", user, "--password", f"{user}-pw", "--role", role,
                         "--email", f"{user}@domaine-exemple.fr", "--firstname", user, "--lastname", "CRM"])
    commands.append(["dags", "reserialize"])
    with airflow_api_server(env, base / "api-server.log", commands=commands) as url:
        yield url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _headers(url: str, user: str) -> dict:
    answer = requests.post(f"{url}/auth/token", json={"username": user, "password": f"{user}-pw"}, timeout=20)
    assert answer.status_code in (200, 201), answer.text[:500]
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_compose_deploys_the_fab_auth_manager_and_the_lock_has_it():
    assert _compose_auth_manager().startswith("airflow.providers.fab.")
    lock = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "apache-airflow-providers-fab==" in lock
    assert "apache-airflow-providers-fab" in (ROOT / "requirements" / "runtime.txt").read_text(encoding="utf-8")


def test_a_viewer_sees_runs_and_plugin_pages_but_cannot_trigger_or_approve(fab_server):
    headers = _headers(fab_server, "viewer")
    runs = requests.get(f"{fab_server}/api/v2/dags/crm_weekly/dagRuns", headers=headers, timeout=20)
    assert runs.status_code == 200, runs.text[:300]
    page = requests.get(f"{fab_server}/winecrm/runs/{RUN_ID}", headers=headers, timeout=20)
    assert page.status_code == 200 and "Sales week 09/11/2026" in page.text, page.text[:300]
    trigger = requests.post(f"{fab_server}/api/v2/dags/crm_weekly/dagRuns", headers=headers,
                            json={"logical_date": None, "conf": {}}, timeout=20)
    assert trigger.status_code == 403, trigger.text[:300]
    approve = requests.patch(f"{fab_server}/api/v2/dags/crm_weekly/dagRuns/{RUN_ID}/taskInstances/approve_campaign/-1"
                             "/hitlDetails", headers=headers, json={"chosen_options": ["Approve"]}, timeout=20)
    assert approve.status_code == 403, approve.text[:300]
    assert requests.get(f"{fab_server}/winecrm/runs/{RUN_ID}", timeout=20).status_code == 401  # no token


def test_an_op_can_trigger_a_run_and_answer_the_approval(fab_server):
    headers = _headers(fab_server, "ops")
    trigger = requests.post(f"{fab_server}/api/v2/dags/crm_weekly/dagRuns", headers=headers,
                            json={"logical_date": None, "conf": {"dry_run": True}}, timeout=20)
    assert trigger.status_code == 200, trigger.text[:300]
    # allowed to answer: past the permission check, the run has no approval waiting (404, not 403)
    approve = requests.patch(f"{fab_server}/api/v2/dags/crm_weekly/dagRuns/{RUN_ID}/taskInstances/approve_campaign/-1"
                             "/hitlDetails", headers=headers, json={"chosen_options": ["Approve"]}, timeout=20)
    assert approve.status_code == 404, approve.text[:300]
