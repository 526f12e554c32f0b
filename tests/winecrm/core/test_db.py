"""Connections carry the deployment's timeouts; the embedded server starts only where asked."""

from __future__ import annotations

import psycopg
import pytest
from winecrm.core import db

from tests.conftest import use_config


def test_statement_and_lock_timeouts_come_from_the_config(warehouse_url, tmp_path, monkeypatch):
    use_config(tmp_path, monkeypatch, warehouse={"statement_timeout_minutes": 0.01, "lock_timeout_minutes": 0.5})
    with db.connect(warehouse_url) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "600ms"
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "30s"
        conn.rollback()
        with pytest.raises(psycopg.errors.QueryCanceled):  # a hung statement fails (and alerts) instead of hanging
            conn.execute("SELECT pg_sleep(3)")


def test_without_a_database_nothing_embedded_starts_unless_asked(monkeypatch, session_dir):
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRM_ALLOW_EMBEDDED_DB", raising=False)
    monkeypatch.setenv("CRM_DATA_DIR", str(session_dir / "nothing-embedded"))
    with pytest.raises(db.WarehouseNotConfigured, match="CRM_ALLOW_EMBEDDED_DB=1"):
        db.database_url()
    assert not (session_dir / "nothing-embedded").exists()


def test_each_advisory_lock_has_its_own_key():
    """Advisory locks of one database share one key space: a shared key would make two unrelated
    holders wait for each other (the Data Docs writer and the events processor, say)."""
    from winecrm.core import db, migrations
    from winecrm.events import processing

    keys = [migrations._LOCK_KEY, db.WRITER_LOCK_KEY, db.DATA_DOCS_LOCK_KEY, processing.PROCESSOR_LOCK_KEY]
    assert len(set(keys)) == len(keys)


def test_the_data_docs_lock_is_held_apart_from_the_writer_lock(conn):
    """The data_docs task (beside the load) waits for another Data Docs writer, not for the load;
    held on a connection of its own, it leaves the caller's transaction alone."""
    import threading
    import time

    from winecrm.core import db

    order = []
    with db.warehouse_writer(conn, "load"), db.data_docs_lock(conn, "run_a:data_docs"):
        conn.execute("SELECT 1")  # the caller's transaction goes on
        other = db.connect_like(conn)

        def second():
            with db.data_docs_lock(other, "run_b:data_docs"):
                order.append("b")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(1.0)
        order.append("a released")
    thread.join(timeout=30)
    other.close()
    assert order == ["a released", "b"]
