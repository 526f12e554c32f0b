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


# brevo_default as the Airflow UI's HTTP connection form fills it (provider apache-airflow-providers-http):
# Host, Schema (the URL scheme, as HttpHook reads it), Port, Password (the API key).
@pytest.mark.parametrize("fields, base", [
    ({}, "https://api.brevo.com/v3"),
    ({"host": "api.brevo.com", "schema": "https"}, "https://api.brevo.com/v3"),
    ({"host": "127.0.0.1", "port": 8090, "schema": "http"}, "http://127.0.0.1:8090/v3"),
    ({"host": "http://127.0.0.1:8090/v3"}, "http://127.0.0.1:8090/v3"),
    ({"host": "http://127.0.0.1", "port": 8090}, "http://127.0.0.1:8090/v3"),
    ({"host": "sandbox.example", "schema": "api/v3"}, "https://sandbox.example/api/v3"),  # a path, as before
])
def test_brevo_default_as_an_http_connection(monkeypatch, fields, base):
    monkeypatch.delenv("BREVO_API_KEY", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps({"conn_type": "http", "password": "xkeysib-1", **fields}))
    found = connections.brevo_credentials()
    assert (found.api_key, found.base_url) == ("xkeysib-1", base)


def test_an_http_brevo_default_reaches_the_fake_brevo(monkeypatch):
    """The rehearsal in docs/campaigns.md: brevo_default pointed at the fake Brevo, as the UI form fills it."""
    from tests.fakes.brevo import FakeBrevoServer
    from winecrm.campaigns import brevo

    with FakeBrevoServer() as server:
        port = server.httpd.server_address[1]
        monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http",
             "password": server.fake.api_key}))
        client = brevo.configured_client(connections.brevo_credentials())
        assert "FIRSTNAME" in client.attributes()
        assert server.fake.requests == [("GET", "/contacts/attributes", 200)]


def test_the_http_connection_type_is_offered(monkeypatch):
    """The UI lists a connection type only when its provider is installed (requirements.txt and
    requirements/runtime.txt name apache-airflow-providers-http)."""
    pytest.importorskip("airflow.providers.http", reason="apache-airflow-providers-http not installed in this venv")
    from airflow.providers_manager import ProvidersManager

    assert "http" in ProvidersManager().hooks


def test_the_fake_brevo_runs_on_its_own_and_says_what_it_receives(tmp_path):
    """docs/campaigns.md « Rehearse live mode with the fake Brevo »: python -m tests.fakes.brevo --port N."""
    import socket
    import subprocess
    import sys

    from winecrm.campaigns import brevo
    from winecrm.core import settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = subprocess.Popen([sys.executable, "-m", "tests.fakes.brevo", "--port", str(port), "--api-key", "k-rehearsal"],
                            cwd=settings.PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = fake.stdout.readline()
        assert f"http://127.0.0.1:{port}/v3" in banner and "k-rehearsal" in banner, banner
        client = brevo.BrevoClient(brevo.BrevoCredentials("k-rehearsal", brevo_base(port)), timeout=5)
        client.send_transactional({
            "sender": {"name": "Domaine", "email": "cave@domaine-exemple.fr"}, "subject": "S",
            "htmlContent": "<p>x</p>", "textContent": "x",
            "messageVersions": [{"to": [{"email": "anne@example.fr"}], "subject": "Anne, une découverte"}],
            "headers": {"idempotencyKey": "3f1c2b1e-0000-4000-8000-00000000000a"}})
        assert "POST /smtp/email -> 201" in fake.stdout.readline()
        assert "e-mail to anne@example.fr: Anne, une découverte" in fake.stdout.readline()
    finally:
        fake.terminate()
        fake.wait(timeout=20)


def brevo_base(port: int) -> str:
    return connections.brevo_base_url("127.0.0.1", "http", port)


def test_sample_exports_of_the_latest_week_for_a_live_rehearsal(tmp_path):
    import datetime as dt

    from winecrm.core.weeks import Week, estate_zone
    from winecrm_tools.samples import sampledata

    sampledata.main(["--raw-dir", str(tmp_path), "--customers", "40", "--as-of", "latest"])
    monday = Week.before(dt.datetime.now(estate_zone())).end + dt.timedelta(days=1)
    assert (tmp_path / "isavigne" / "ventes_lignes" / f"ventes_lignes_{monday.isoformat()}.csv").exists()
