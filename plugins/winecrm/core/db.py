"""Warehouse connections, the single-writer lock, and the embedded PostgreSQL for demo and tests.

Where the warehouse is: an explicit URL (the Airflow connection ``crm_warehouse``, resolved in
``winecrm.airflow``), else ``CRM_DATABASE_URL``. The embedded server (PyPI ``pgserver``) starts
only where it is asked for — ``CRM_ALLOW_EMBEDDED_DB=1``, set by the demo, the tests and
``make airflow`` — so a deployed worker with a missing connection fails loudly instead of
writing customer data into a throw-away database of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from winecrm.core import settings

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "winecrm"
ALLOW_EMBEDDED_ENV = "CRM_ALLOW_EMBEDDED_DB"
WRITER_LOCK_KEY = 7_734_222  # arbitrary, constant: "winecrm warehouse writer"
DATA_DOCS_LOCK_KEY = 7_734_224  # "winecrm Data Docs writer" (7_734_221: migrations, 223: events processor)
_embedded_lock = threading.Lock()
_embedded_server = None  # kept referenced so pgserver does not stop it while we run


class WarehouseNotConfigured(RuntimeError):
    """No warehouse to connect to: the message says what to set."""


def embedded_allowed() -> bool:
    return os.environ.get(ALLOW_EMBEDDED_ENV, "").strip().lower() in ("1", "true", "yes")


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
    """Where the warehouse is: explicit URL > ``CRM_DATABASE_URL`` > embedded (only if allowed)."""
    if explicit:
        return explicit
    env_url = os.environ.get("CRM_DATABASE_URL")
    if env_url:
        return env_url
    if embedded_allowed():
        return embedded_server_url()
    raise WarehouseNotConfigured(
        "No warehouse database configured. Set the Airflow connection 'crm_warehouse' (e.g. "
        "AIRFLOW_CONN_CRM_WAREHOUSE='postgresql://winecrm:PASSWORD@db-host:5432/winecrm') or "
        "CRM_DATABASE_URL; for a local try-out only, CRM_ALLOW_EMBEDDED_DB=1 starts an embedded "
        "PostgreSQL (make demo, make test and make airflow set it).")


def session_settings() -> dict[str, str]:
    """statement_timeout / lock_timeout from pipeline.yaml (warehouse.*), as PostgreSQL settings."""
    cfg = settings.pipeline_config().warehouse
    return {"statement_timeout": f"{int(cfg.statement_timeout_minutes * 60_000)}ms",
            "lock_timeout": f"{int(cfg.lock_timeout_minutes * 60_000)}ms"}


def connect(url: str | None = None, *, autocommit: bool = False, application_name: str = "winecrm",
            timeouts: bool = True) -> psycopg.Connection:
    """A connection with the deployment's timeouts applied (anything in the URL — sslmode,
    connect_timeout, options... — is kept as given)."""
    conn = psycopg.connect(database_url(url), autocommit=autocommit, application_name=application_name[:63])
    if timeouts:
        for name, value in session_settings().items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        if not autocommit:
            conn.commit()
    return conn


def redact(url: str) -> str:
    """A URL fit for logs: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# --------------------------------------------------------------------------------------------
# one writer per warehouse


class WarehouseBusy(RuntimeError):
    """Another writer held the warehouse for longer than warehouse.writer_wait_minutes."""


def writer_holders(conn: psycopg.Connection) -> list[str]:
    """Who holds the writer lock now: application name (``winecrm:<run>:<stage>``), pid, since."""
    rows = conn.execute(
        """SELECT a.application_name, a.pid, a.backend_start
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        (WRITER_LOCK_KEY,)).fetchall()
    return [f"{name or '?'} (pid {pid}, connected {since:%d/%m/%Y %H:%M:%S %Z})" for name, pid, since in rows]


@contextlib.contextmanager
def warehouse_writer(conn: psycopg.Connection, holder: str, *, wait_seconds: float | None = None,
                     poll_seconds: float = 2.0):
    """Hold the warehouse's writer lock (a session-level advisory lock) for the block.

    Every stage that writes the warehouse takes it, whatever started the work (DAG run,
    backfill, demo, CLI): concurrent writers wait their turn instead of interleaving inside a
    load. The lock goes with the connection, so a killed worker never leaves it behind.
    """
    if wait_seconds is None:
        wait_seconds = settings.pipeline_config().warehouse.writer_wait_minutes * 60
    conn.execute("SELECT set_config('application_name', %s, false)", (f"winecrm:{holder}"[:63],))
    conn.commit()
    deadline = time.monotonic() + wait_seconds
    told = 0.0
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK_KEY,)).fetchone()[0]:
        conn.commit()
        holders = writer_holders(conn)
        if time.monotonic() >= deadline:
            raise WarehouseBusy(
                f"The warehouse has another writer since more than {wait_seconds / 60:.0f} min "
                f"(warehouse.writer_wait_minutes): {'; '.join(holders) or 'unknown'}. Only one run, "
                "backfill or CLI command writes at a time; retry when it has finished.")
        if time.monotonic() - told >= 60:
            log.info("Waiting for the warehouse: another writer is at work: %s", "; ".join(holders) or "?")
            told = time.monotonic()
        time.sleep(poll_seconds)
    conn.commit()
    try:
        yield conn
    finally:
        try:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK_KEY,))
            conn.commit()
        except psycopg.Error:  # connection gone: the server released the lock with it
            pass


def connection_args(conn: psycopg.Connection) -> dict:
    """``psycopg.connect`` arguments for another connection like ``conn`` (same server, database
    and user): its DSN leaves the password out."""
    return {"conninfo": conn.info.dsn, **({"password": conn.info.password} if conn.info.password else {})}


def connect_like(conn: psycopg.Connection, *, autocommit: bool = False, application_name: str = "winecrm") -> psycopg.Connection:
    """A second connection to the server and database ``conn`` is connected to, as the same user."""
    return psycopg.connect(**connection_args(conn), autocommit=autocommit, application_name=application_name[:63])


@contextlib.contextmanager
def data_docs_lock(conn: psycopg.Connection, holder: str):
    """Hold the Data Docs lock for the block: the site is one folder that the data_docs task, the
    purge, the erasure and (for a suite GX's engine runs) validate write, while the warehouse's
    writer lock is not the one that orders them (data_docs runs beside the load). Held on a
    connection of its own, so it neither touches ``conn``'s transaction nor outlives a killed
    holder; waits as long as the writer lock would."""
    wait_seconds = settings.pipeline_config().warehouse.writer_wait_minutes * 60
    with connect_like(conn, autocommit=True, application_name=f"winecrm:docs:{holder}") as own:
        deadline = time.monotonic() + wait_seconds
        while not own.execute("SELECT pg_try_advisory_lock(%s)", (DATA_DOCS_LOCK_KEY,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise WarehouseBusy(f"The Data Docs have another writer since more than {wait_seconds / 60:.0f} min "
                                    "(warehouse.writer_wait_minutes); retry when it has finished.")
            time.sleep(0.5)
        yield

