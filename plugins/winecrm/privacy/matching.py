"""SQL that finds the person in free text: their addresses (any case, inside longer text),
their full name, their phone numbers."""

from __future__ import annotations

from psycopg import sql

def _contains_address(expr: sql.Composable, n_addresses: int) -> sql.Composable:
    """``expr`` (cast to text) contains one of the addresses %(addr_0)s, %(addr_1)s... (lower-cased)."""
    return sql.SQL("({})").format(sql.SQL(" OR ").join(
        sql.SQL("strpos(lower({}::text), {}) > 0").format(expr, sql.Placeholder(f"addr_{i}"))
        for i in range(n_addresses)))


def _address_params(addresses: list[str]) -> dict:
    return {f"addr_{i}": a for i, a in enumerate(addresses)}


def _address_regex(addresses: list[str]) -> str:
    """A PostgreSQL regular expression matching any of the addresses literally (every
    non-alphanumeric character escaped: in an ARE, ``\\`` + such a character is that character)."""
    return "|".join("".join(ch if ch.isalnum() else "\\" + ch for ch in a) for a in addresses)


def _names_regex(names: list[str]) -> str:
    """The full names as whole words (``\\m``/``\\M``: "li wu" must not match "Natali Wurtz")."""
    return "\\m(?:" + _address_regex(names) + ")\\M"


def _text_hit(expr: sql.Composable, n_addresses: int, names: bool) -> sql.Composable:
    """``expr`` holds one of the addresses (substring) or, with ``names``, one of the full names
    (whole words, %(names_re)s)."""
    parts = [_contains_address(expr, n_addresses)] if n_addresses else []
    if names:
        parts.append(sql.SQL("({}::text ~* %(names_re)s)").format(expr))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


# --------------------------------------------------------------------------------------------
# the erasure
