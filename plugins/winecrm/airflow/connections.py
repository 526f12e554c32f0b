"""The warehouse as Airflow sees it: the connection ``crm_warehouse`` (else ``CRM_DATABASE_URL``).

A missing connection, or one without a host or database (a typo in AIRFLOW_CONN_CRM_WAREHOUSE),
fails the task with a message saying what to set — never a silent embedded database on the
worker. The embedded PostgreSQL is used only where ``CRM_ALLOW_EMBEDDED_DB=1`` asks for it
(demo, tests, ``make airflow``). Extras of the connection (sslmode, sslrootcert,
connect_timeout, options, ...) reach libpq as given, as the postgres provider's hook passes them.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

from winecrm.airflow import WAREHOUSE_CONN_ID

log = logging.getLogger(__name__)


class WarehouseConnectionError(RuntimeError):
    """The crm_warehouse connection is missing or incomplete."""


def _mask(secret: str | None) -> None:
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # outside a task (CLI): nothing to mask in
        pass


def conninfo_from_connection(conn) -> str:
    """libpq conninfo for an Airflow connection: host, port, login, password, schema (= database)
    and every extra except the hook's own options (iam, cursor, sqlalchemy_*...)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from psycopg.conninfo import make_conninfo

    problems = []
    if not conn.host:
        problems.append("no host")
    if not conn.schema:
        problems.append("no database (the 'schema' field, or the path of the URI)")
    if problems:
        raise WarehouseConnectionError(
            f"The Airflow connection '{WAREHOUSE_CONN_ID}' is incomplete: {', '.join(problems)}. Expected e.g. "
            f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}='postgresql://winecrm:PASSWORD@db-host:5432/winecrm"
            "?sslmode=require', or a Postgres connection in Admin > Connections with host, login, password, "
            "port and the database in 'Schema'.")
    args = {"host": conn.host, "port": conn.port, "user": conn.login, "password": conn.password,
            "dbname": conn.schema}
    for key, value in (conn.extra_dejson or {}).items():
        if key not in PostgresHook.ignored_extra_options:
            args[key] = value
    _mask(conn.password)
    return make_conninfo(**{k: v for k, v in args.items() if v not in (None, "")})


def warehouse_url() -> str:
    """The warehouse: Airflow connection ``crm_warehouse``, else ``CRM_DATABASE_URL``, else the
    embedded server where it was asked for, else a clear error."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from winecrm.core import db

    try:
        conn = BaseHook.get_connection(WAREHOUSE_CONN_ID)
    except AirflowNotFoundException:
        conn = None
    if conn is not None:
        return conninfo_from_connection(conn)
    env_url = os.environ.get("CRM_DATABASE_URL")
    if env_url:
        _mask(urlsplit(env_url).password if "://" in env_url else None)
        return env_url
    if db.embedded_allowed():
        return db.embedded_server_url()
    raise WarehouseConnectionError(
        f"No Airflow connection '{WAREHOUSE_CONN_ID}' and no CRM_DATABASE_URL: the weekly run does not know "
        f"which warehouse to write to. Set AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}="
        "'postgresql://winecrm:PASSWORD@db-host:5432/winecrm' in the environment of every Airflow component "
        "(or add the connection in Admin > Connections). For a local try-out only, CRM_ALLOW_EMBEDDED_DB=1 "
        "starts an embedded PostgreSQL.")


def warehouse_connection(stage: str = "task"):
    from winecrm.core import db

    return db.connect(warehouse_url(), application_name=f"winecrm:{stage}")


def brevo_credentials():
    """Brevo: the connection ``brevo_default`` (API key in the password), else ``BREVO_API_KEY``;
    None when neither is set: a run that asks to send then fails, saying how to set it up. The key
    is masked in task logs.

    The connection is best of type HTTP (provider apache-airflow-providers-http), read as the UI
    form fills it and as HttpHook reads it: Host (a name, or a whole URL), Schema = the URL scheme
    (``https``, or ``http`` for the fake Brevo on this machine), Port. Without a host it is
    https://api.brevo.com/v3; a host without a path gets Brevo's ``/v3``. A Schema that is not a
    scheme is taken as the path, as before (``api/v3``)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from winecrm.airflow import BREVO_CONN_ID
    from winecrm.campaigns.brevo import BrevoCredentials, credentials_from_env

    try:
        conn = BaseHook.get_connection(BREVO_CONN_ID)
    except AirflowNotFoundException:
        conn = None
    if conn is None or not conn.password:
        found = credentials_from_env()
        if found:
            _mask(found.api_key)
        return found
    _mask(conn.password)
    return BrevoCredentials(conn.password, brevo_base_url(conn.host, conn.schema, conn.port))


def brevo_base_url(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """The API's base URL from a connection's Host, Schema and Port (see ``brevo_credentials``)."""
    from urllib.parse import urlunsplit

    from winecrm.campaigns.brevo import DEFAULT_BASE_URL

    if not host:
        return DEFAULT_BASE_URL
    schema = (schema or "").strip()
    scheme = schema.lower() if schema.lower() in ("http", "https") else "https"
    parts = urlsplit(host.strip() if "://" in host else f"{scheme}://{host.strip()}")
    netloc = parts.netloc if parts.port or not port else f"{parts.netloc}:{port}"
    path = parts.path.rstrip("/")
    if schema and schema.lower() not in ("http", "https"):
        path += "/" + schema.strip("/")
    return urlunsplit((parts.scheme, netloc, path or "/v3", "", ""))
