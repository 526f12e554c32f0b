"""The scale-out path, run for real: crm_weekly under the CeleryExecutor with two workers.

Uses this machine's PostgreSQL (Airflow metadata, Celery results, the warehouse) and Redis
(broker) when they answer on 127.0.0.1; skips with the reason otherwise. Each worker gets its own
local data folder, as on two hosts: work files go through CRM_WORK_URL, the one place both see.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tests.conftest import relaxed_gate_config
from winecrm_tools.samples import sampledata

pytestmark = [pytest.mark.airflow]
ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PG = os.environ.get("CRM_CELERY_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("CRM_CELERY_REDIS", "redis://127.0.0.1:6379/7")
LOGICAL_DATE = "2026-11-16T05:00:00+00:00"
RUN_ID = "celery_check__2026-11-16"


def _services_or_skip():
    try:
        import airflow.providers.celery  # noqa: F401
        import celery  # noqa: F401
        import redis
    except ImportError as exc:
        pytest.skip(f"Celery check needs the celery provider and redis client: {exc}")
    try:
        with psycopg.connect(PG, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server at {PG} for the Celery check ({exc.__class__.__name__}); "
                    "set CRM_CELERY_PG to one")
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Redis at {REDIS} for the Celery check ({exc.__class__.__name__}); set CRM_CELERY_REDIS")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def celery_cluster(tmp_path_factory):
    _services_or_skip()
    base = tmp_path_factory.mktemp("celery")
    suffix = uuid.uuid4().hex[:8]
    databases = {"meta": f"crm_celery_meta_{suffix}", "warehouse": f"crm_celery_wh_{suffix}"}
    with psycopg.connect(PG, autocommit=True) as conn:
        for name in databases.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    urls = {k: psycopg.conninfo.make_conninfo(PG, dbname=v) for k, v in databases.items()}
    meta = psycopg.conninfo.conninfo_to_dict(urls["meta"])
    sqlalchemy = (f"postgresql+psycopg2://{meta.get('user', 'postgres')}@{meta.get('host', '127.0.0.1')}:"
                  f"{meta.get('port', 5432)}/{meta['dbname']}")
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    planted = sampledata.write_sample_exports(base / "raw", n_customers=300, years=1.2)
    # The scheduled run the unpaused DAG creates for this week finds no exports: a short deadline
    # (7 s, counted from its start) makes it fail quickly instead of holding the DAG's single
    # active run for 6 hours in front of the run under test.
    pipeline_config = relaxed_gate_config(base, exports={"max_wait_hours": 0.002, "poke_interval_seconds": 10})
    api_port = _port()
    env = {**os.environ,
           "AIRFLOW_HOME": str(base / "airflow"),
           "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy,
           "AIRFLOW__CELERY__BROKER_URL": REDIS,
           "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy,
           "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
           "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           # unpaused at once, so the scheduler also creates this week's scheduled run; it fails on
           # its (short) deadline, no exports for this week, before the run under test
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
           "AIRFLOW__API_AUTH__JWT_SECRET": "celery-check-" + suffix,
           "AIRFLOW__API__SECRET_KEY": "celery-check-" + suffix,
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "AIRFLOW_CONN_CRM_WAREHOUSE": f"postgresql://{meta.get('user', 'postgres')}@{meta.get('host', '127.0.0.1')}:"
                                         f"{meta.get('port', 5432)}/{databases['warehouse']}",
           "CRM_RAW_DIR": str(base / "raw"),
           "CRM_WORK_URL": (base / "shared-work").as_uri(),  # a storage URL both workers reach
           "CRM_PIPELINE_CONFIG": str(pipeline_config),
           "CRM_FILE_SETTLE_SECONDS": "0",
           "GX_ANALYTICS_ENABLED": "False"}
    for key in ("CRM_DATABASE_URL", "CRM_ALLOW_EMBEDDED_DB", "CRM_DOCS_DIR", "CRM_DATA_DIR"):
        env.pop(key, None)
    for command in (["db", "migrate"], ["pools", "set", "crm_warehouse", "1", "one writer"]):
        done = subprocess.run([AIRFLOW, *command], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    processes = []

    def start(name, args, extra=None):
        log = open(base / f"{name}.log", "w")
        proc = subprocess.Popen([AIRFLOW, *args], env={**env, **(extra or {})}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        processes.append((name, proc, log))

    start("api-server", ["api-server", "--port", str(api_port), "--host", "127.0.0.1"])
    start("scheduler", ["scheduler"])
    start("dag-processor", ["dag-processor"])
    for worker in ("worker-a", "worker-b"):
        # as on two hosts: each worker has its own local data folder (embedded DB, Data Docs, ...)
        start(worker, ["celery", "worker", "--celery-hostname", f"{worker}@%h", "--concurrency", "1"],
              {"CRM_DATA_DIR": str(base / worker)})
    try:
        yield {"env": env, "meta": urls["meta"], "warehouse": urls["warehouse"], "base": base, "planted": planted,
               "processes": processes}
    finally:
        for _, proc, _ in processes:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for _, proc, log in processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
        with psycopg.connect(PG, autocommit=True) as conn:
            for name in databases.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        shutil.rmtree(base / "shared-work", ignore_errors=True)


def _logs(cluster) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-2500:] for p in sorted(cluster["base"].glob("*.log")))


def _all_alive(cluster) -> None:
    dead = [name for name, proc, _ in cluster["processes"] if proc.poll() is not None]
    assert not dead, f"{', '.join(dead)} stopped\n" + _logs(cluster)


@pytest.mark.timeout(900)
def test_weekly_run_on_two_celery_workers(celery_cluster):
    env = celery_cluster["env"]
    _all_alive(celery_cluster)
    deadline = time.time() + 180
    while True:  # the DAG processor has to serialise the DAG first
        triggered = subprocess.run([AIRFLOW, "dags", "trigger", "crm_weekly", "--logical-date", LOGICAL_DATE,
                                    "--run-id", RUN_ID],
                                   env=env, capture_output=True, text=True, timeout=120)
        if triggered.returncode == 0:
            break
        assert time.time() < deadline, triggered.stderr[-2000:] + _logs(celery_cluster)
        time.sleep(1)
    deadline = time.time() + 600
    with psycopg.connect(celery_cluster["meta"], autocommit=True) as meta:
        while True:
            state = meta.execute("SELECT state FROM dag_run WHERE dag_id = 'crm_weekly' AND run_id = %s",
                                 (RUN_ID,)).fetchone()
            if state and state[0] in ("success", "failed"):
                break
            assert time.time() < deadline, f"run still {state} after 10 min\n" + _logs(celery_cluster)
            _all_alive(celery_cluster)
            time.sleep(1)
        tasks = meta.execute("SELECT task_id, state, external_executor_id FROM task_instance "
                             "WHERE dag_id = 'crm_weekly' AND run_id = %s", (RUN_ID,)).fetchall()
    assert state[0] == "success", f"{tasks}\n" + _logs(celery_cluster)
    assert {t for t, s, _ in tasks if s == "success"} == {
        "prepare_run", "wait_for_exports", "ingest", "validate", "data_docs", "load", "score", "recommend",
        "render_emails", "campaign_path", "send_emails", "purge", "report", "finish_run"}  # a dry run: approve_campaign skipped
    # Which worker ran each task: the Celery task id Airflow recorded, found in that worker's log.
    logs = {w: (celery_cluster["base"] / f"{w}.log").read_text(errors="replace") for w in ("worker-a", "worker-b")}
    by_task = {t: [w for w, text in logs.items() if celery_id and celery_id in text] for t, _, celery_id in tasks}
    workers = {w for found in by_task.values() for w in found}
    assert workers == {"worker-a", "worker-b"}, f"tasks per worker: {by_task}"
    with psycopg.connect(celery_cluster["warehouse"]) as conn:
        lines = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
        recommended = conn.execute("SELECT count(*) FROM crm.recommendations").fetchone()[0]
    assert lines == celery_cluster["planted"].sales_lines_total and recommended > 0
    # the work files were written where every worker reaches them, never in a worker's own folder
    assert any((celery_cluster["base"] / "shared-work").rglob("good-*.parquet")), by_task
    for worker in ("worker-a", "worker-b"):
        assert not list((celery_cluster["base"] / worker).rglob("*.parquet"))
