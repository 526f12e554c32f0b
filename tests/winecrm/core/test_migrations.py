"""Numbered SQL migrations: applied once, in order, refusing edited history."""

from __future__ import annotations

import psycopg
import pytest
from winecrm.core.migrations import MigrationError, apply_migrations, migration_files


def test_migrations_apply_once_and_are_recorded(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        assert apply_migrations(conn) == []  # the template already has them
        applied = [r[0] for r in conn.execute("SELECT name FROM etl.schema_migrations ORDER BY version")]
    assert applied == [p.name for _, p in migration_files()]


def test_new_migration_is_applied_and_an_edited_one_is_refused(warehouse_url, tmp_path):
    for _, path in migration_files():
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "900_extra.sql").write_text("CREATE TABLE etl.extra_for_test (id int);", encoding="utf-8")
    with psycopg.connect(warehouse_url) as conn:
        assert apply_migrations(conn, tmp_path) == ["900_extra.sql"]
        assert apply_migrations(conn, tmp_path) == []
        (tmp_path / "900_extra.sql").write_text("CREATE TABLE etl.extra_for_test (id bigint);", encoding="utf-8")
        with pytest.raises(MigrationError, match="900_extra.sql changed after it was applied"):
            apply_migrations(conn, tmp_path)


def test_two_migrations_with_one_number_are_refused(tmp_path):
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share a number"):
        migration_files(tmp_path)


def test_every_warehouse_table_of_the_design_exists(conn):
    tables = {r[0] for r in conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema = 'etl'")}
    assert {"etl.file_manifest", "etl.quarantine", "etl.runs", "etl.ventes_lignes", "etl.clients",
            "etl.produits", "etl.stock"} <= tables


def test_a_deployment_gives_the_receiver_role_its_grants_again(conn):
    """A server whose receiver role came after the schema (or lost its grants) gets them back at
    the next deployment (migrate-warehouse), without any new migration."""
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'crm_receiver'").fetchone():
        pytest.skip("the role crm_receiver could not be created on this server")
    can_insert = "SELECT has_column_privilege('crm_receiver', 'crm.webhook_events', 'payload', 'INSERT')"
    assert conn.execute(can_insert).fetchone() == (True,)
    conn.execute("REVOKE ALL ON crm.webhook_events FROM crm_receiver")
    conn.commit()
    assert conn.execute(can_insert).fetchone() == (False,)
    assert apply_migrations(conn) == []           # nothing new: grants left as they are
    assert conn.execute(can_insert).fetchone() == (False,)
    assert apply_migrations(conn, grants=True) == []
    assert conn.execute(can_insert).fetchone() == (True,)
    assert conn.execute("SELECT has_table_privilege('crm_receiver', 'etl.clients', 'SELECT')").fetchone() == (False,)
