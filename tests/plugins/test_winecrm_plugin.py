"""The Airflow plugin: only it is imported from plugins/, and its pages answer only to logged-in
Airflow users — checked over real HTTP against `airflow api-server`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from winecrm import pipeline

from tests.conftest import MONDAY_RUN, airflow_api_server, alert_receiver

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_plugin_manager_imports_the_plugin_and_nothing_of_the_domain_package(tmp_path):
    code = (
        "import sys\n"
        "from airflow import plugins_manager\n"
        "plugins_manager.ensure_plugins_loaded()\n"
        "names = [p.name for p in plugins_manager._get_plugins()[0]]\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('backtest', 'db', 'demo', 'load', 'settings',\n"
        "    'validate', 'ingest', 'pipeline', 'readers', 'scoring', 'recommend', 'winecrm', 'pandas', 'psycopg',\n"
        "    'great_expectations'))\n"
        "print('PLUGINS', names)\n"
        "print('LEAKED', leaked)\n"
    )
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False", "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PLUGINS ['winecrm']" in result.stdout, result.stdout
    assert "LEAKED []" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def alerts():
    with alert_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def api_server(tmp_path_factory, pg_admin_url, template_db, alerts):
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    base = tmp_path_factory.mktemp("apiserver")
    name = f"winecrm_ui_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    url = make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(url) as conn:
        pipeline.prepare(conn, pipeline.week_window("scheduled__2026-11-16T05:00:00+00:00", MONDAY_RUN))
        pipeline.finish(conn, "scheduled__2026-11-16T05:00:00+00:00", error="load: <b>disk</b> full")
    site = base / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<html><body>Data Docs index</body></html>", encoding="utf-8")
    (base / "secret.txt").write_text("outside the site", encoding="utf-8")
    passwords = base / "passwords.json"
    passwords.write_text(json.dumps({"viewer": "viewer-pw", "ops": "ops-pw"}), encoding="utf-8")
    env = {**os.environ,
           "AIRFLOW_HOME": str(base / "airflow"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer,ops:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__API_AUTH__JWT_SECRET": "test-secret-for-the-plugin-test",
           "CRM_DATABASE_URL": url, "CRM_DOCS_DIR": str(base / "quality"),
           "CRM_ALERT_WEBHOOK_URL": alerts[0]}
    # crm_weekly known (dags reserialize): runs can be triggered
    with airflow_api_server(env, base / "api-server.log") as base_url:
        yield base_url, url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


RUN_PATH = "/winecrm/runs/scheduled__2026-11-16T05:00:00+00:00"


@pytest.mark.airflow
def test_anonymous_callers_are_refused(api_server):
    api_server, _ = api_server
    for path in (RUN_PATH, "/winecrm/data-docs/index.html", RUN_PATH.replace("/runs/", "/reports/"),
                 "/winecrm/previews/hebdo-2026-11-15/cross_sell"):
        response = requests.get(api_server + path, timeout=10)
        assert response.status_code == 401, (path, response.status_code, response.text[:200])
    forged = requests.get(api_server + RUN_PATH, headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    assert forged.status_code in (401, 403)


@pytest.mark.airflow
def test_a_signed_out_browser_is_sent_to_the_login_page_and_back(api_server):
    """A person following the run page's link while signed out gets Airflow's login page, not JSON."""
    api_server, _ = api_server
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    response = requests.get(api_server + RUN_PATH, headers=browser, allow_redirects=False, timeout=10)
    assert response.status_code in (302, 303, 307), (response.status_code, response.text[:200])
    location = response.headers["location"]
    assert "/auth/login" in location and "next=" in location, location
    from urllib.parse import parse_qs, urlsplit

    assert parse_qs(urlsplit(location).query)["next"][0].endswith(RUN_PATH)  # back to the page asked for
    login = requests.get(api_server + location if location.startswith("/") else location, timeout=10)
    assert login.status_code == 200 and "<html" in login.text.lower()


@pytest.mark.airflow
def test_a_logged_in_user_sees_the_run_summary_and_data_docs(api_server):
    api_server, _ = api_server
    token = requests.post(api_server + "/auth/token", json={"username": "viewer", "password": "viewer-pw"},
                          timeout=10).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    page = requests.get(api_server + RUN_PATH, headers=headers, timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert "Sales week 09/11/2026 – 15/11/2026; times in Paris time" in page.text
    assert "load: &lt;b&gt;disk&lt;/b&gt; full" in page.text  # shown as text, never as markup
    # the UI's session cookie works the same way as the header
    docs = requests.get(api_server + "/winecrm/data-docs/index.html", cookies={"_token": token}, timeout=10)
    assert docs.status_code == 200 and "Data Docs index" in docs.text
    escape = requests.get(api_server + "/winecrm/data-docs/..%2F..%2F..%2F..%2Fsecret.txt", headers=headers, timeout=10)
    assert escape.status_code == 404
    assert requests.get(api_server + "/winecrm/runs/nope", headers=headers, timeout=10).status_code == 404
    # the plugin's links are in the UI
    plugins = requests.get(api_server + "/api/v2/plugins", headers=headers, timeout=10).json()["plugins"]
    views = {v["name"]: v for p in plugins if p["name"] == "winecrm" for v in p["external_views"]}
    assert views["Run summary"]["href"] == "winecrm/runs/{RUN_ID}" and views["Run summary"]["destination"] == "dag_run"
    assert views["Data Docs"]["destination"] == "nav"
    assert views["Rapport hebdo"] == {**views["Rapport hebdo"], "href": "winecrm/reports/{RUN_ID}",
                                      "destination": "dag_run"}
    # a run without a report yet: a clear 404, never a file outside the reports folder
    missing = requests.get(api_server + RUN_PATH.replace("/runs/", "/reports/"), headers=headers, timeout=10)
    assert missing.status_code == 404 and "No weekly report" in missing.text


@pytest.mark.airflow
def test_a_run_marked_failed_in_the_ui_closes_its_record_alerts_and_says_so_in_its_note(api_server, alerts):
    """Marking a run failed runs no DAG callback in Airflow 3: the plugin's listener closes etl.runs."""
    import psycopg

    base_url, warehouse = api_server
    token = requests.post(base_url + "/auth/token", json={"username": "ops", "password": "ops-pw"},
                          timeout=10).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = requests.post(base_url + "/api/v2/dags/crm_weekly/dagRuns", headers=headers, timeout=30,
                            json={"logical_date": None, "conf": {"week": "2026-11-09"}})
    assert created.status_code == 200, created.text[:500]
    run_id = created.json()["dag_run_id"]
    with psycopg.connect(warehouse) as conn:  # the run got as far as its first task
        pipeline.prepare(conn, pipeline.week_window(run_id, MONDAY_RUN))
    marked = requests.patch(f"{base_url}/api/v2/dags/crm_weekly/dagRuns/{run_id}", headers=headers, timeout=30,
                            json={"state": "failed"})
    assert marked.status_code == 200 and marked.json()["state"] == "failed", marked.text[:500]
    with psycopg.connect(warehouse) as conn:
        status, error, note = conn.execute("SELECT status, error, note FROM etl.runs WHERE run_id = %s",
                                           (run_id,)).fetchone()
    assert status == "failed" and error == "run: Dag Run's state was manually set to `failed`."
    assert note.startswith("Semaine du 09/11 au 15/11/2026 : ÉCHEC — run: Dag Run's state was manually set")
    shown = requests.get(f"{base_url}/api/v2/dags/crm_weekly/dagRuns/{run_id}", headers=headers, timeout=10).json()
    assert shown["note"] == note
    _, received = alerts
    assert any(a["json"]["run_id"] == run_id and "manually set" in a["json"]["error"] for a in received)
