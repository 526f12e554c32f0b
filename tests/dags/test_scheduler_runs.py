"""crm_weekly and crm_events as deployed: the real scheduler, DAG processor and API server
(LocalExecutor, PostgreSQL as Airflow's metadata database), driven through the REST API as the
UI drives them — a backfill, a DAG unpaused while a week is triggered, a file the quality gate
refuses and the week triggered again, sending asked without Brevo. What `airflow dags test`
hides shows here: the listener runs inside the scheduler's loop, runs overlap, the log view
reads the task logs. The scenarios share one cluster and run in order (each builds on the
warehouse the previous ones left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql
from psycopg.conninfo import make_conninfo
from winecrm_tools.samples import sampledata

from tests.conftest import alert_receiver, relaxed_gate_config, sales_line, sqlalchemy_url, write_export

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG = "crm_weekly"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The running components and a REST client signed in as the data engineer."""

    def __init__(self, base: Path, env: dict, api: str, meta: str, warehouse: str):
        self.base, self.env, self.api, self.meta, self.warehouse = base, env, api, meta, warehouse
        self.processes: list[tuple[str, subprocess.Popen, object]] = []
        self._token = None

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.base / f"{name}.log", "w")
        proc = subprocess.Popen([AIRFLOW, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.processes.append((name, proc, log))

    def stop(self) -> None:
        for _, proc, _ in self.processes:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for _, proc, log in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-tail:]
                         for p in sorted(self.base.glob("*.log")))

    def alive(self) -> None:
        dead = [name for name, proc, _ in self.processes if proc.poll() is not None]
        assert not dead, f"{', '.join(dead)} stopped\n" + self.logs()

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        if self._token is None:
            answer = requests.post(f"{self.api}/auth/token", json={"username": "engineer", "password": "engineer-pw"},
                                   timeout=30)
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {self._token}"}
        return requests.request(method, f"{self.api}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def trigger(self, run_id: str, logical_date: str | None, conf: dict | None = None, dag_id: str = DAG) -> None:
        answer = self.call("POST", f"/dags/{dag_id}/dagRuns",
                           json={"dag_run_id": run_id, "logical_date": logical_date, "conf": conf or {}})
        assert answer.status_code == 200, answer.text

    def run(self, run_id: str, dag_id: str = DAG) -> dict:
        answer = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait(self, run_id: str, dag_id: str = DAG, states=("success", "failed"), minutes: float = 8) -> dict:
        deadline = time.time() + minutes * 60
        while True:
            run = self.run(run_id, dag_id)
            if run["state"] in states:
                return run
            assert time.time() < deadline, f"{run_id} still {run['state']} after {minutes} min\n" + self.logs()
            self.alive()
            time.sleep(1)

    def tasks(self, run_id: str, dag_id: str = DAG) -> dict[str, str]:
        answer = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: t["state"] for t in answer.json()["task_instances"]}

    def task_log(self, run_id: str, task_id: str, try_number: int = 1, dag_id: str = DAG) -> list[str]:
        """The task's log as the UI's log view reads it: one message per event."""
        answer = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                           params={"full_content": "true"}, headers={"Accept": "application/json"})
        assert answer.status_code == 200, answer.text
        lines = []
        for item in answer.json()["content"]:
            if isinstance(item, dict):
                lines.append(str(item.get("event", "")))
                lines += [str(line) for e in item.get("error_detail") or [] for line in
                          [e.get("exc_value", "")]]
            else:
                lines.append(str(item))
        return lines

    def wh(self):
        return psycopg.connect(self.warehouse, autocommit=True)


@pytest.fixture(scope="module")
def alerts():
    with alert_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pg_admin_url, alerts):
    base = tmp_path_factory.mktemp("scheduler")
    suffix = f"{os.getpid()}_{int(time.time()) % 100000}"
    names = {"meta": f"crm_sched_meta_{suffix}", "warehouse": f"crm_sched_wh_{suffix}"}
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    urls = {k: make_conninfo(pg_admin_url, dbname=v) for k, v in names.items()}
    sampledata.write_sample_exports(base / "raw", n_customers=300, years=1.2)
    # Chunks of 1,000 rows: the history file is checked by the validate task and a worker it forks.
    pipeline_config = relaxed_gate_config(base, exports={"poke_interval_seconds": 10}, files={"chunk_rows": 1000})
    passwords = base / "passwords.json"
    passwords.write_text(json.dumps({"engineer": "engineer-pw"}), encoding="utf-8")
    port = _free_port()
    env = {**os.environ,
           "AIRFLOW_HOME": str(base / "airflow"),
           "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(urls["meta"]),
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           # as deployed (docker-compose.yaml): paused at creation, Paris time
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
           "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Paris",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "engineer:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__CORE__PARALLELISM": "2",  # two cores
           "AIRFLOW__API_AUTH__JWT_SECRET": f"scheduler-check-{suffix}",
           "AIRFLOW__API__SECRET_KEY": f"scheduler-check-{suffix}",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "CRM_DATABASE_URL": urls["warehouse"],
           "CRM_RAW_DIR": str(base / "raw"),
           "CRM_WORK_URL": str(base / "work"),
           "CRM_DOCS_DIR": str(base / "quality"),
           "CRM_REPORTS_DIR": str(base / "reports"),
           "CRM_OUTBOX_DIR": str(base / "outbox"),
           "CRM_DATA_DIR": str(base / "data"),
           "CRM_PIPELINE_CONFIG": str(pipeline_config),
           "CRM_FILE_SETTLE_SECONDS": "0",
           "CRM_ALERT_WEBHOOK_URL": alerts[0],
           "GX_ANALYTICS_ENABLED": "False"}
    env.pop("CRM_ALLOW_EMBEDDED_DB", None)  # as deployed: the warehouse is named, never embedded
    for name in ("AIRFLOW_CONN_BREVO_DEFAULT", "BREVO_API_KEY"):
        env.pop(name, None)
    for command in (["db", "migrate"], ["pools", "set", "crm_warehouse", "1", "one writer"]):
        done = subprocess.run([AIRFLOW, *command], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cluster = Cluster(base, env, f"http://127.0.0.1:{port}", urls["meta"], urls["warehouse"])
    cluster.start("api-server", ["api-server", "--port", str(port), "--host", "127.0.0.1"])
    cluster.start("scheduler", ["scheduler"])
    cluster.start("dag-processor", ["dag-processor"])
    try:
        deadline = time.time() + 180
        while True:  # the API answers and the DAG processor has serialised both DAGs
            try:
                dags = {d["dag_id"] for d in cluster.call("GET", "/dags").json().get("dags", [])}
                if {"crm_weekly", "crm_events"} <= dags:
                    break
            except requests.RequestException:
                cluster._token = None
            assert time.time() < deadline, "Airflow did not come up\n" + cluster.logs()
            cluster.alive()
            time.sleep(1)
        yield cluster
    finally:
        cluster.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _no_note_errors(cluster: Cluster) -> None:
    text = "\n".join(p.read_text(errors="replace") for p in cluster.base.glob("*.log"))
    assert "could not set the run note" not in text and "UNEXPECTED COMMIT" not in text, cluster.logs(6000)


@pytest.mark.timeout(1200)
def test_backfill_runs_each_week_on_its_own_exports_and_notes_it(cluster):
    """A backfill from the API (as the UI's dialog posts it) of two past Mondays, while the
    exports of later weeks are already in RAW: each run takes its week's files, goes green, and
    its note in the run list says which week and what happened. The DAG is unpaused first, as the
    UI's dialogs do ("Unpause on trigger"): the scheduler then also creates this week's run, which
    waits for exports that are not there yet — and must hold up nobody."""
    answer = cluster.call("PATCH", f"/dags/{DAG}", json={"is_paused": False})
    assert answer.status_code == 200, answer.text
    answer = cluster.call("POST", "/backfills", json={
        "dag_id": DAG, "from_date": "2026-10-26T00:00:00+01:00", "to_date": "2026-11-02T23:00:00+01:00",
        "max_active_runs": 1, "reprocess_behavior": "none", "run_backwards": False, "dag_run_conf": {}})
    assert answer.status_code == 200, answer.text
    runs = {}
    deadline = time.time() + 900
    while len(runs) < 2 or any(r["state"] not in ("success", "failed") for r in runs.values()):
        listed = cluster.call("GET", f"/dags/{DAG}/dagRuns", params={"run_type": "backfill"}).json()["dag_runs"]
        runs = {r["logical_date"][:10]: r for r in listed}
        assert time.time() < deadline, f"{runs}\n" + cluster.logs()
        cluster.alive()
        time.sleep(1)
    assert set(runs) == {"2026-10-26", "2026-11-02"}, runs
    for day, week in (("2026-10-26", "Semaine du 19/10 au 25/10/2026 : "),
                      ("2026-11-02", "Semaine du 26/10 au 01/11/2026 : ")):
        run = runs[day]
        assert run["state"] == "success", (run, cluster.tasks(run["dag_run_id"]), cluster.logs())
        assert (run["note"] or "").startswith(week), run["note"]
        assert "lignes lues" in run["note"] and "campagne à blanc" in run["note"], run["note"]
    with cluster.wh() as wh:
        taken = wh.execute("SELECT file_path, export_date, run_id FROM etl.file_manifest ORDER BY 1").fetchall()
    later = [(path, day) for path, day, _ in taken if str(day) > "2026-11-03"]
    assert taken and not later, f"files of later weeks taken by the backfill: {later}"
    _no_note_errors(cluster)


@pytest.mark.timeout(900)
def test_a_week_triggered_by_hand_is_not_held_by_the_scheduled_run(cluster):
    """This week's scheduled run, created when the DAG was unpaused, still waits for its exports;
    the week triggered by hand runs beside it."""
    cluster.trigger("manual__week_1116", "2026-11-16T05:00:00Z")
    run = cluster.wait("manual__week_1116")
    assert run["state"] == "success", (cluster.tasks("manual__week_1116"), cluster.logs())
    assert run["note"].startswith("Semaine du 09/11 au 15/11/2026 : "), run["note"]
    scheduled = cluster.call("GET", f"/dags/{DAG}/dagRuns", params={"run_type": "scheduled"}).json()["dag_runs"]
    assert scheduled and scheduled[0]["state"] == "running", scheduled
    assert scheduled[0]["note"] == "Semaine du 23/11 au 29/11/2026 : en cours", scheduled[0]
    details = cluster.call("GET", f"/dags/{DAG}/details").json()
    assert details["timezone"] == "Europe/Paris", details["timezone"]
    _no_note_errors(cluster)


@pytest.mark.timeout(900)
def test_a_refused_week_is_never_green_when_triggered_again(cluster):
    """The waiting scheduled run gets its week's only sales export; the quality gate refuses it
    (the run fails naming it). Triggered again, the week fails at once saying why and what to do,
    instead of going green with nothing loaded."""
    scheduled = cluster.call("GET", f"/dags/{DAG}/dagRuns", params={"run_type": "scheduled"}).json()["dag_runs"][0]
    bad = [sales_line(client=f"Z{i}", date="31/02/2026", doc_no=f"Z{i}") for i in range(8)]
    write_export(Path(cluster.env["CRM_RAW_DIR"]), "ventes_lignes", "ventes_lignes_2026-11-30.csv",
                 bad + [sales_line(client="C1", date="27/11/2026", doc_no="ZOK")])
    run = cluster.wait(scheduled["dag_run_id"], minutes=10)
    assert run["state"] == "failed", cluster.tasks(scheduled["dag_run_id"])
    assert "ÉCHEC — Quality gate rejected isavigne/ventes_lignes/ventes_lignes_2026-11-30.csv" in run["note"], run

    cluster.trigger("manual__week_1123_again", None, conf={"week": "2026-11-23"})
    again = cluster.wait("manual__week_1123_again")
    tasks = cluster.tasks("manual__week_1123_again")
    assert again["state"] == "failed" and tasks["wait_for_exports"] == "failed", tasks
    assert tasks.get("ingest") != "success", tasks
    assert again["note"].startswith("Semaine du 23/11 au 29/11/2026 : ÉCHEC — "), again["note"]
    log = cluster.task_log("manual__week_1123_again", "wait_for_exports")
    text = "\n".join(log)
    assert text.count("were refused by an earlier run") == 1, text[-4000:]  # said once, not again as its cause
    assert "Way out: drop a corrected export" in text.replace("\n    ", " ")
    failure = text[text.index("Task failed with exception"):].split("::group::Post Execute")[0]
    assert max(len(line) for line in failure.splitlines()) <= 120, failure  # folded: the log view shows it whole
    _no_note_errors(cluster)


@pytest.mark.timeout(600)
def test_asking_to_send_without_brevo_fails_at_once(cluster):
    """dry_run unticked and no brevo_default: the run fails in prepare_run, before any work, and
    says how to set Brevo up; no silent dry run."""
    cluster.trigger("manual__live_without_brevo", None, conf={"dry_run": False, "week": "2026-11-09"})
    run = cluster.wait("manual__live_without_brevo")
    tasks = cluster.tasks("manual__live_without_brevo")
    assert run["state"] == "failed" and tasks["prepare_run"] == "failed", tasks
    assert run["note"].startswith("Semaine du 09/11 au 15/11/2026 : ÉCHEC — Sending was asked"), run["note"]
    text = "\n".join(cluster.task_log("manual__live_without_brevo", "prepare_run"))
    assert "create the connection brevo_default" in text.replace("\n    ", " "), text[-3000:]


@pytest.mark.timeout(600)
def test_events_runs_get_a_note_too(cluster):
    answer = cluster.call("PATCH", "/dags/crm_events", json={"is_paused": False})
    assert answer.status_code == 200, answer.text
    cluster.trigger("manual__events_check", "2026-11-30T10:00:00Z", dag_id="crm_events")
    run = cluster.wait("manual__events_check", dag_id="crm_events")
    assert run["state"] == "success", cluster.tasks("manual__events_check", "crm_events")
    assert run["note"].startswith("Événements : 0 traité, 0 action appliquée ; file : "), run["note"]
    cluster.call("PATCH", "/dags/crm_events", json={"is_paused": True})
    _no_note_errors(cluster)
