"""Numbered SQL migrations from ``include/sql/NNN_name.sql``, applied once each, in order.

Safe to call from several processes at once (an advisory lock serialises them) and on every
run (already-applied files are skipped). Editing an applied file is refused: add a new one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import psycopg

from winecrm.core import settings

log = logging.getLogger(__name__)

MIGRATION_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 7_734_221  # arbitrary, constant: "winecrm migrations"


class MigrationError(RuntimeError):
    pass


def migration_files(sql_dir: Path | None = None) -> list[tuple[int, Path]]:
    sql_dir = sql_dir or settings.SQL_DIR
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    versions = [v for v, _ in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"Two migrations share a number in {sql_dir}: {versions}")
    return found


GRANTS_FILE = "grants.sql"  # roles and grants, idempotent (not a numbered migration)


def apply_migrations(conn: psycopg.Connection, sql_dir: Path | None = None, *, grants: bool = False) -> list[str]:
    """Apply pending migrations; return the names applied now. The roles and grants of
    ``grants.sql`` follow whenever a migration was applied, or when ``grants`` asks for them (a
    deployment: a role created since gets its grants)."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS etl")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS etl.schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum char(64) NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            version: (name, checksum)
            for version, name, checksum in conn.execute(
                "SELECT version, name, checksum FROM etl.schema_migrations"
            )
        }
        for version, path in migration_files(sql_dir):
            text = path.read_text(encoding="utf-8")
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if version in done:
                if done[version][1] != checksum:
                    raise MigrationError(
                        f"Migration {path.name} changed after it was applied; "
                        "add a new numbered migration instead of editing it."
                    )
                continue
            log.info("Applying migration %s", path.name)
            conn.execute(text)
            conn.execute(
                "INSERT INTO etl.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (version, path.name, checksum),
            )
            applied_now.append(path.name)
        grants_path = (sql_dir or settings.SQL_DIR) / GRANTS_FILE
        if (applied_now or grants) and grants_path.exists():
            conn.execute(grants_path.read_text(encoding="utf-8"))
    return applied_now
