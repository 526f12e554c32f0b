"""The demo's Airflow environment: this checkout's own metadata database, whatever airflow.cfg says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from winecrm.core import settings
from winecrm.demo import run


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
