"""Airflow's metadata for the DAG tests that run `airflow dags test`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="session")
def airflow_db(session_dir):
    """The session's Airflow metadata (SQLite under its AIRFLOW_HOME), migrated and with the
    warehouse pool, once for every module that runs DAGs with it."""
    env = dict(os.environ)
    result = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = subprocess.run([AIRFLOW, "pools", "set", "crm_warehouse", "1", "one writer"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Path(env["AIRFLOW_HOME"]) / "airflow.db"
