"""The demo's Airflow environment: this checkout's own metadata database, whatever airflow.cfg says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from winecrm.core import settings
from winecrm_tools.demo import run


def test_the_metadata_database_is_named_by_this_checkouts_path(monkeypatch, tmp_path):
    # a checkout copied from another one: its airflow.cfg still points at the first checkout
    home = tmp_path / "copy" / "airflow_home"
    home.mkdir(parents=True)
    (home / "airflow.cfg").write_text("[database]\nsql_alchemy_conn = sqlite:////elsewhere/airflow_home/airflow.db\n")
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    env = run.airflow_env("postgresql://x@h/db")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home.resolve()}/airflow.db"
    # Airflow reads the environment before airflow.cfg
    shown = subprocess.run([str(Path(sys.executable).with_name("airflow")), "config", "get-value",
                            "database", "sql_alchemy_conn"], env=env, capture_output=True, text=True, timeout=120)
    assert shown.stdout.strip() == f"sqlite:///{home.resolve()}/airflow.db", shown.stderr[-1000:]


def test_make_airflow_names_it_too():
    dry = subprocess.run(["make", "-n", "airflow"], cwd=settings.PROJECT_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///{settings.PROJECT_ROOT}/airflow_home/airflow.db" in dry.stdout


def test_make_airflow_serves_on_the_port_asked_for():
    """AIRFLOW_PORT moves the API server, its base URL (the workers' execution API) and the plugin's
    links (CRM_DATA_DOCS_URL) together; 8080 when not given; the help line says so."""
    def dry(*args: str) -> str:
        done = subprocess.run(["make", "-n", *args], cwd=settings.PROJECT_ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    moved = dry("airflow", "AIRFLOW_PORT=8091").splitlines()
    standalone = next(line for line in moved if line.endswith("airflow standalone"))
    for setting in ("AIRFLOW__API__PORT=8091", "AIRFLOW__API__BASE_URL=http://localhost:8091",
                    "CRM_DATA_DOCS_URL=http://localhost:8091/winecrm/data-docs"):
        assert setting in standalone, standalone
    assert "8080" not in "\n".join(moved)
    default = dry("airflow")
    assert "AIRFLOW__API__PORT=8080" in default and "CRM_DATA_DOCS_URL=http://localhost:8080/winecrm/data-docs" in default
    helped = subprocess.run(["make", "help"], cwd=settings.PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert "AIRFLOW_PORT" in next(line for line in helped.stdout.splitlines() if line.startswith("make airflow"))
