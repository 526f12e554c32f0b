"""Warehouse connections: an explicit URL, ``CRM_DATABASE_URL``, or an embedded PostgreSQL.

The Airflow connection ``crm_warehouse`` is resolved in ``winecrm.airflow.glue`` and passed in as
an explicit URL, so this module stays usable without Airflow.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import psycopg

from winecrm.core import settings

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "winecrm"
_embedded_lock = threading.Lock()
_embedded_server = None  # kept referenced so pgserver does not stop it while we run


def embedded_server_url(data_dir: Path | None = None, db_name: str = EMBEDDED_DB_NAME) -> str:
    """Start (or attach to) the embedded PostgreSQL from the ``pgserver`` package.

    Data lives in ``<CRM_DATA_DIR>/pg``. pgserver stops the server when the last process
    attached to it exits, so nothing is left running after a demo or a test session.
    """
    global _embedded_server
    import warnings

    # platformdirs complains when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # only when actually embedding

    # pgserver logs every pg_ctl call at INFO, including from its atexit hook when the process's
    # streams may already be closed (pytest, Airflow task runners): keep it to warnings.
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    pgdata = (data_dir or settings.paths().data_dir) / "pg"
    with _embedded_lock:
        if _embedded_server is None or Path(_embedded_server.pgdata) != pgdata:
            pgdata.mkdir(parents=True, exist_ok=True)
            log.info("Starting embedded PostgreSQL in %s", pgdata)
            _embedded_server = pgserver.get_server(pgdata, cleanup_mode="stop")
        server = _embedded_server
    admin_url = server.get_uri()
    ensure_database(admin_url, db_name)
    return server.get_uri(db_name)


def ensure_database(admin_url: str, db_name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(db_name)))


def database_url(explicit: str | None = None) -> str:
    """Where the warehouse is: explicit URL > ``CRM_DATABASE_URL`` > embedded PostgreSQL."""
    if explicit:
        return explicit
    env_url = os.environ.get("CRM_DATABASE_URL")
    if env_url:
        return env_url
    return embedded_server_url()


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    return psycopg.connect(database_url(url), autocommit=autocommit, application_name="winecrm")


def redact(url: str) -> str:
    """A URL fit for logs: the password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
