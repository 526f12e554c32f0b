"""docker-compose.yaml: the services, volumes and settings a one-server deployment needs."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))


def test_services_of_an_airflow_3_deployment():
    services = _compose()["services"]
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in services[name]


def test_local_executor_by_default_and_a_celery_profile():
    compose = _compose()
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    for name in ("redis", "airflow-worker", "flower"):
        assert compose["services"][name]["profiles"] == ["celery"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")


def test_two_databases_and_the_warehouse_connection():
    compose = _compose()
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    assert env["AIRFLOW_CONN_CRM_WAREHOUSE"].endswith("@postgres:5432/winecrm")
    init = ROOT / "deploy" / "postgres-init" / "10-winecrm.sh"
    assert "CREATE DATABASE winecrm" in init.read_text()
    mounts = compose["services"]["postgres"]["volumes"]
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in mounts


def test_project_folders_and_raw_exports_are_mounted():
    volumes = _compose()["services"]["airflow-scheduler"]["volumes"]
    import re

    targets = {re.search(r":(/opt/airflow/[^:]+)(?::ro)?$", v).group(1): v for v in volumes}
    for folder in ("/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include", "/opt/airflow/data"):
        assert folder in targets
    assert targets["/opt/airflow/raw"].endswith(":ro"), "RAW must stay immutable"
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert env["CRM_RAW_DIR"] == "/opt/airflow/raw"


def test_no_secret_is_committed():
    text = (ROOT / "docker-compose.yaml").read_text(encoding="utf-8")
    assert "api-key" not in text.lower()
    assert "xkeysib-" not in text
    assert (ROOT / ".env.example").exists() and ".env" in (ROOT / ".gitignore").read_text().split()
