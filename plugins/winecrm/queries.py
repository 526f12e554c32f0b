"""Named SQL queries: ``include/sql/queries/<name>.sql``, split into labelled steps."""

from __future__ import annotations

import re

from winecrm import settings


def named_steps(name: str) -> list[tuple[str, str]]:
    """``include/sql/queries/<name>.sql`` split on ``-- step: <label>`` lines."""
    text = (settings.SQL_DIR / "queries" / f"{name}.sql").read_text(encoding="utf-8")
    pieces = re.split(r"^-- step: *(\w+) *$", text, flags=re.M)
    return [(pieces[i], pieces[i + 1].strip()) for i in range(1, len(pieces), 2)]
