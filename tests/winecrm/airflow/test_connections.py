"""Which warehouse a task uses: the crm_warehouse connection with its extras, else
CRM_DATABASE_URL, never a silent embedded database outside the demo and the tests."""

from __future__ import annotations

import json

import psycopg
import pytest
from winecrm.airflow import connections


def _conn_env(monkeypatch, **fields):
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE", json.dumps({"conn_type": "postgres", **fields}))


def test_airflow_connection_wins_and_keeps_its_extras(monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql://env@envhost/envdb")
    _conn_env(monkeypatch, host="db.internal", login="crm", password="s3cret w@rd", schema="winecrm", port=5432,
              extra={"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem", "connect_timeout": 7,
                     "options": "-c search_path=etl", "cursor": "dictcursor"})
    info = psycopg.conninfo.conninfo_to_dict(connections.warehouse_url())
    assert info == {"host": "db.internal", "port": "5432", "user": "crm", "password": "s3cret w@rd",
                    "dbname": "winecrm", "sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem",
                    "connect_timeout": "7", "options": "-c search_path=etl"}  # the hook's own "cursor" is not libpq's


def test_uri_form_of_the_connection_keeps_its_query_extras(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CRM_WAREHOUSE",
                       "postgresql://crm:pw@db.internal:5433/winecrm?sslmode=require&connect_timeout=3")
    info = psycopg.conninfo.conninfo_to_dict(connections.warehouse_url())
    assert (info["host"], info["port"], info["dbname"], info["sslmode"], info["connect_timeout"]) == \
        ("db.internal", "5433", "winecrm", "require", "3")


@pytest.mark.parametrize("fields, missing", [
    ({"login": "crm", "password": "x", "schema": "winecrm"}, "no host"),
    ({"host": "db.internal", "login": "crm"}, "no database"),
])
def test_an_incomplete_connection_fails_saying_what_to_set(monkeypatch, fields, missing):
    monkeypatch.setenv("CRM_ALLOW_EMBEDDED_DB", "1")  # even where embedding is allowed, a typo is an error
    _conn_env(monkeypatch, **fields)
    with pytest.raises(connections.WarehouseConnectionError) as info:
        connections.warehouse_url()
    assert missing in str(info.value) and "AIRFLOW_CONN_CRM_WAREHOUSE=" in str(info.value)


def test_environment_url_is_used_without_a_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CRM_WAREHOUSE", raising=False)
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql://env@envhost/envdb")
    assert connections.warehouse_url() == "postgresql://env@envhost/envdb"


def test_no_warehouse_anywhere_fails_instead_of_starting_an_embedded_database(monkeypatch, session_dir):
    monkeypatch.delenv("AIRFLOW_CONN_CRM_WAREHOUSE", raising=False)
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRM_ALLOW_EMBEDDED_DB", raising=False)
    monkeypatch.setenv("CRM_DATA_DIR", str(session_dir / "no-embedded-here"))
    with pytest.raises(connections.WarehouseConnectionError) as info:
        connections.warehouse_url()
    assert "No Airflow connection 'crm_warehouse' and no CRM_DATABASE_URL" in str(info.value)
    assert not (session_dir / "no-embedded-here" / "pg").exists()
