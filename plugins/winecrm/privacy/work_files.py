"""The person's personal values blanked in the runs' work files (Parquet parts of the exports read).

A run keeps what it read from RAW as Parquet parts under ``CRM_WORK_URL`` until the work-file
retention deletes them (an accepted file is loaded from them later). They hold the ERP's rows as
delivered — names, addresses, phones, the raw line — so:

- the erasure rewrites every part that holds the person (``blank_person``);
- a run's ingest blanks, in the parts it just wrote, the rows of anyone erased before
  (``blank_erased``: an export that brings an erased person back never reaches validation, the
  logs, Data Docs or the warehouse with their name).

The rows stay — a sale still counts, anonymously — with every personal column
(``core.personal.PERSONAL_COLUMNS``) and the raw line set to null; at ingest the address becomes
its erased marker instead, so that the load's guard still recognises the person (and records a
new client code that came with their address). A part is written beside and
moved over: a reader sees the old part or the new one, never half of one. RAW itself stays
immutable (see ``report.RAW_NOTE``).

A row is the person's when one of its text cells is one of their client codes (whole cell), holds
one of their addresses (case-insensitive) or an address whose erased marker is known, or is one of
their phone numbers (compared as digits: ``phone_digits`` of the forms the erasure derives).
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winecrm.core import storage
from winecrm.core.personal import ERASED_PREFIX, PERSONAL_COLUMNS
from winecrm.core.personal import erased_marker as _marker

RAW_LINE_COLUMNS = ("_raw",)        # the delivered line as read, kept for the quarantine


def phone_digits(forms) -> set[str]:
    """The digit strings of a person's numbers as written anywhere (``identity.phone_forms``):
    0661225607, 33661225607, 0033661225607 — never fewer than 10 digits (a shorter run of digits
    could be a document number)."""
    return {d for d in (re.sub(r"\D", "", str(f)) for f in forms) if len(d) >= 10}


def _mask(table: pa.Table, codes: list[str], addresses: list[str], phones: set[str],
          markers: frozenset[str] = frozenset()) -> pa.Array | None:
    """True for the rows about the person; None when no text column could hold them."""
    mask = None
    for name in table.column_names:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        hits = pc.is_in(pc.utf8_trim_whitespace(column), value_set=pa.array(codes, pa.string())) if codes else None
        lowered = pc.utf8_lower(column)
        for address in addresses:
            found = pc.match_substring(lowered, address)
            hits = found if hits is None else pc.or_(hits, found)
        if markers and pc.any(pc.match_substring(column, "@")).as_py():
            # hashed once per distinct value: a million sales lines hold a few thousand addresses
            erased = [v for v in pc.unique(column).to_pylist() if v and "@" in v and _marker(v) in markers]
            found = pc.is_in(column, value_set=pa.array(erased, column.type))
            hits = found if hits is None else pc.or_(hits, found)
        if phones:
            digits = pc.replace_substring_regex(column, r"[^0-9]", "")
            found = pc.is_in(digits, value_set=pa.array(sorted(phones), pa.string()))
            hits = found if hits is None else pc.or_(hits, found)
        if hits is not None:
            hits = pc.fill_null(hits, False)
            mask = hits if mask is None else pc.or_(mask, hits)
    return mask


def _blank(table: pa.Table, mask: pa.Array, markers: frozenset[str]) -> pa.Table:
    for i, name in enumerate(table.column_names):
        if name in PERSONAL_COLUMNS or name in RAW_LINE_COLUMNS:
            column = table.column(i)
            blank = pa.scalar(None, column.type)
            if name == "email" and markers:
                # the address becomes its marker: the load still knows an erased person came back
                # (a new client code with their address is then recorded as erased too)
                erased = {v: _marker(v) for v in pc.unique(column).to_pylist() if v and _marker(v) in markers}
                blank = pa.array([erased.get(v) for v in column.to_pylist()], column.type) if erased else blank
            table = table.set_column(i, name, pc.if_else(mask, blank, column))
    return table


def blank_rows(part, codes: list[str], addresses: list[str] = (), phones: set[str] = frozenset(),
               markers: frozenset[str] = frozenset(), *, dry_run: bool = False) -> int:
    """Blank the personal values of the person's rows in ``part``; returns the rows concerned
    (that still held a personal value). ``dry_run``: count only."""
    table = _read(part)
    mask = _mask(table, list(codes), list(addresses), set(phones), frozenset(markers))
    if mask is None:
        return 0
    personal = [n for n in table.column_names if n in PERSONAL_COLUMNS or n in RAW_LINE_COLUMNS]
    held = None
    for name in personal:
        column = table.column(name)
        valid = pc.is_valid(column)
        if name == "email" and pa.types.is_string(column.type):  # a marker written earlier is not personal
            valid = pc.and_(valid, pc.invert(pc.fill_null(pc.starts_with(column, ERASED_PREFIX), False)))
        held = valid if held is None else pc.or_(held, valid)
    if held is None:
        return 0
    mask = pc.and_(mask, held)
    n = pc.sum(mask).as_py() or 0
    if n and not dry_run:
        _replace(part, _blank(table, mask, frozenset(markers)))
    return n


def blank_person(codes: list[str], addresses: list[str], phones: set[str], *, dry_run: bool = False) -> dict[str, int]:
    """The erasure's step: every work part of every run; returns {part: rows blanked}.
    ``phones``: digit strings (``phone_digits``)."""
    done = {}
    for part in storage.sorted_glob(storage.work_root(), "**/*.parquet"):
        if n := blank_rows(part, codes, addresses, phones, dry_run=dry_run):
            done[str(part)] = n
    return done


def blank_found(codes: list[str], addresses: list[str], phones: set[str], *, dry_run: bool = False) -> dict[str, int]:
    """The erasure's step for what validate found and the data_docs task has not recorded yet
    (``winecrm.etl.found``): the values of the person's lines (found in the parts beside, as
    ``blank_rows`` finds them) and any value that is theirs become missing; returns {record:
    values blanked}. Run before ``blank_person``, while the parts still show whose lines they are."""
    from winecrm.etl import found
    from winecrm.etl.readers import ROW_COLUMN

    done, lines_of = {}, {}
    for path in found.every_run_files():
        folder = str(path.parent)
        if folder not in lines_of:
            lines = set()
            for part in storage.sorted_glob(path.parent, "part-*.parquet"):
                table = _read(part)
                mask = _mask(table, list(codes), list(addresses), set(phones))
                if mask is not None and ROW_COLUMN in table.column_names:
                    lines.update(pc.filter(table.column(ROW_COLUMN), mask).to_pylist())
            lines_of[folder] = lines

        def theirs(line, value, lines=lines_of[folder]) -> bool:
            if line in lines:
                return True
            if not isinstance(value, str):
                return False
            mask = _mask(pa.table({"value": [value]}), list(codes), list(addresses), set(phones))
            return bool(mask is not None and mask[0].as_py())

        if n := found.blank_values(path, theirs, dry_run=dry_run):
            done[str(path)] = n
    return done


def blank_erased(folder, erased_codes: list[str], markers: frozenset[str]) -> int:
    """The ingest's step: the parts under ``folder`` (one run's) without the personal values of
    anyone erased before (their client codes, or an address whose marker is in the register)."""
    if not erased_codes and not markers:
        return 0
    return sum(blank_rows(part, erased_codes, markers=markers)
               for part in storage.sorted_glob(folder, "**/*.parquet"))


def _replace(part, table: pa.Table) -> None:
    tmp = part.with_name(part.name + ".erasing")
    _write(table, tmp)
    if storage.is_local(part):
        import os

        os.replace(str(getattr(tmp, "path", tmp)), str(getattr(part, "path", part)))
    else:
        part.fs.mv(tmp.path, part.path)


def _read(part) -> pa.Table:
    if storage.is_local(part):
        return pq.read_table(str(getattr(part, "path", part)))
    with part.open("rb") as fh:
        return pq.read_table(fh)


def _write(table: pa.Table, path) -> None:
    if storage.is_local(path):
        pq.write_table(table, str(getattr(path, "path", path)))
    else:
        with path.open("wb") as fh:
            pq.write_table(table, fh)
