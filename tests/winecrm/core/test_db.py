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
