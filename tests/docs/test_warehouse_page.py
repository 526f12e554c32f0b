"""The warehouse reference (docs/warehouse.md) names every table the migrations create."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_table_of_the_migrations_is_in_the_warehouse_reference():
    ddl = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "include" / "sql").glob("*.sql")))
    created = set(re.findall(r"CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_]+\.[a-z_0-9]+)", ddl, re.I))
    dropped = set(re.findall(r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([a-z_]+\.[a-z_0-9]+)", ddl, re.I))
    assert len(created) > 20, "the migrations were not read"
    page = (ROOT / "docs" / "warehouse.md").read_text(encoding="utf-8")
    missing = sorted(t for t in created - dropped if f"`{t}`" not in page)
    assert not missing, f"tables without a line in docs/warehouse.md: {missing}"
