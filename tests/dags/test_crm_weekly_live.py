"""The live path of crm_weekly, run for real: ``airflow dags test`` with dry_run unticked and a
Brevo connection (the fake Brevo over real HTTP) stops at approve_campaign until a person
answers through Airflow's REST API — nothing is sent before — then sends each e-mail once;
a second run of the same week sends nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql
from psycopg.conninfo import make_conninfo
from winecrm.core.weeks import Week, estate_zone
from winecrm_tools.samples import sampledata

from tests.conftest import airflow_api_server, relaxed_gate_config
from tests.fakes.brevo import FakeBrevoServer
from tests.fakes.smtp import FakeSmtp

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def live_env(tmp_path_factory, pg_admin_url):
    base = tmp_path_factory.mktemp("live")
    name = f"winecrm_live_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    warehouse = make_conninfo(pg_admin_url, dbname=name)
    # live sends only the latest complete week: the sample estate ends with it, whatever today is
    week = Week.before(dt.datetime.now(estate_zone()))
    sampledata.write_sample_exports(base / "raw", n_customers=150, years=1.0, as_of=week.end + dt.timedelta(days=1))
    passwords = base / "passwords.json"
    passwords.write_text(json.dumps({"marie": "marie-pw"}), encoding="utf-8")
    env = {**os.environ,
           "AIRFLOW_HOME": str(base / "airflow"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "marie:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__API_AUTH__JWT_SECRET": "test-secret-for-the-live-test",
           "CRM_DATABASE_URL": warehouse, "CRM_RAW_DIR": str(base / "raw"), "CRM_WORK_URL": str(base / "work"),
           "CRM_DOCS_DIR": str(base / "quality"), "CRM_OUTBOX_DIR": str(base / "outbox"),
           "CRM_REPORTS_DIR": str(base / "reports"), "GX_ANALYTICS_ENABLED": "False"}
    env["CRM_PIPELINE_CONFIG"] = str(relaxed_gate_config(base))
    with airflow_api_server(env, base / "api-server.log", commands=(
            ["db", "migrate"], ["pools", "set", "crm_warehouse", "1", "one writer"], ["dags", "reserialize"])) as api:
        yield env, api, warehouse, week
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _approve_when_asked(api: str, warehouse: str, fake, seen: dict) -> None:
    """What the marketing person does: wait for the request, check nothing left yet, approve."""
    token = requests.post(f"{api}/auth/token", json={"username": "marie", "password": "marie-pw"},
                          timeout=10).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.time() + 400
    while time.time() < deadline:
        with psycopg.connect(warehouse) as conn:
            row = conn.execute("SELECT run_id FROM etl.runs WHERE details ? 'render' ORDER BY started_at DESC "
                               "LIMIT 1").fetchone() if _has_runs(conn) else None
        if row:
            url = f"{api}/api/v2/dags/crm_weekly/dagRuns/{row[0]}/taskInstances/approve_campaign/-1/hitlDetails"
            detail = requests.get(url, headers=headers, timeout=10)
            if detail.status_code == 200 and detail.json().get("subject"):
                seen["request"] = detail.json()
                seen["sent_before_approval"] = len(fake.sent)
                answer = requests.patch(url, headers=headers, json={"chosen_options": ["Approve"]}, timeout=10)
                seen["answer"] = answer.status_code
                return
        time.sleep(1)


def _has_runs(conn) -> bool:
    return conn.execute("SELECT to_regclass('etl.runs') IS NOT NULL").fetchone()[0]


def test_a_live_run_waits_for_approval_then_sends_each_email_once(live_env):
    env, api, warehouse, week = live_env
    with FakeBrevoServer() as brevo, FakeSmtp() as smtp:
        env = {**env, "AIRFLOW_CONN_BREVO_DEFAULT": json.dumps(
            {"conn_type": "http", "host": brevo.url, "password": brevo.fake.api_key}),
            # the marketing person is told by e-mail that the campaign waits (SMTP notifier)
            "CRM_APPROVAL_EMAIL": "marie@domaine-exemple.fr",
            "AIRFLOW__API__BASE_URL": api, "CRM_DATA_DOCS_URL": f"{api}/winecrm/data-docs",  # links people open
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                                     "extra": {"disable_ssl": True, "disable_tls": True,
                                                               "from_email": "airflow@domaine-exemple.fr"}})}
        seen: dict = {}
        person = threading.Thread(target=_approve_when_asked, args=(api, warehouse, brevo.fake, seen), daemon=True)
        person.start()
        conf = json.dumps({"week": week.start.isoformat(), "dry_run": False})
        run = subprocess.run([AIRFLOW, "dags", "test", "crm_weekly", "-c", conf], env=env, capture_output=True,
                             text=True, timeout=900)
        person.join(timeout=30)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
        assert seen.get("answer") == 200, seen
        assert seen["sent_before_approval"] == 0  # nothing left before a person said yes
        assert "Envoyer" in seen["request"]["subject"] and "Groupe témoin" in seen["request"]["body"]
        (told,) = [m for m in smtp.messages if "marie@domaine-exemple.fr" in m["to"]]
        message = told["message"]
        assert message["Subject"].startswith("[winecrm] Envoyer") and message["Subject"].endswith("à valider")
        html_part = message.get_body(("html",)).get_content()
        assert "<table>" in html_part and "Groupe témoin" in html_part  # the counts, as in the request
        assert f'href="{api}/winecrm/previews/' in html_part  # a rendered e-mail of each scenario
        assert f'href="{api}/dags/crm_weekly/runs/' in html_part and "/approve_campaign/required_actions" in html_part
        campaign = f"hebdo-{week.end.isoformat()}"
        with psycopg.connect(warehouse) as conn:
            status, decided_by = conn.execute("SELECT status, decided_by FROM crm.campaigns WHERE campaign_id = %s",
                                              (campaign,)).fetchone()
            sent = conn.execute("SELECT count(*) FROM crm.email_sends WHERE campaign_id = %s AND status = 'sent'",
                                (campaign,)).fetchone()[0]
        assert status == "done" and "marie" in decided_by
        accepted = brevo.fake.accepted_addresses()
        assert sent > 0 and len(accepted) == len(set(accepted)) == sent
        assert env["AIRFLOW_CONN_BREVO_DEFAULT"] and brevo.fake.api_key not in run.stdout + run.stderr

        # the same week again, live: already sent — nothing rendered or sent twice, no approval asked
        again = subprocess.run([AIRFLOW, "dags", "test", "crm_weekly", "-c", conf], env=env, capture_output=True,
                               text=True, timeout=900)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-3000:]
        assert len(brevo.fake.sent) == sent
