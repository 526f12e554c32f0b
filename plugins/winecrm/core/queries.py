"""Named SQL queries: ``include/sql/queries/<name>.sql``, split into labelled steps."""

from __future__ import annotations

import re
import time

import psycopg

from winecrm.core import settings


def named_steps(name: str) -> list[tuple[str, str]]:
    """``include/sql/queries/<name>.sql`` split on ``-- step: <label>`` lines."""
    text = (settings.SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")
    pieces = re.split(r"^-- step: *(\w+) *$", text, flags=re.M)
    return [(pieces[i], pieces[i + 1].strip()) for i in range(1, len(pieces), 2)]


def run_steps(conn: psycopg.Connection, steps: list[tuple[str, str]], params: dict) -> dict[str, tuple[int, float]]:
    """Run labelled steps in one transaction (a savepoint inside an open one), with ``work_mem``
    raised for their big sorts and hashes; returns each step's row count and seconds."""
    done = {}
    with conn.transaction():
        conn.execute("SET LOCAL work_mem = '256MB'")
        for label, sql in steps:
            started = time.perf_counter()
            rowcount = conn.execute(sql, params).rowcount
            done[label] = (rowcount, time.perf_counter() - started)
    return done
