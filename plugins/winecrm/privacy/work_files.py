"""The person's rows taken out of the runs' work files (Parquet parts of the exports a run read).

A run keeps what it read from RAW as Parquet parts under ``CRM_WORK_URL`` until the work-file
retention deletes them (an accepted file is loaded from them later). They hold the ERP's rows as
delivered — names, addresses, phones — so an erasure rewrites every part that holds the person:
without their rows, the other rows untouched, written beside and moved over (a reader sees the
old part or the new one, never half of one). RAW itself stays immutable (see ``erase.RAW_NOTE``).

A row is the person's when one of its text cells is one of their client codes (whole cell), holds
one of their addresses (case-insensitive), or is one of their phone numbers (compared as digits
in E.164, French numbering by default, as the SMS actions read them).
"""

from __future__ import annotations

import re

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winecrm.core import storage

DEFAULT_REGION = "FR"


def e164(number: str | None, region: str = DEFAULT_REGION) -> str | None:
    """``+33612345678`` for any way a French (or international) number is written, else None."""
    if not number or not re.search(r"\d{6,}", re.sub(r"[\s.\-/()]", "", str(number))):
        return None
    try:
        parsed = phonenumbers.parse(str(number), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def phone_digits(phones: set[str]) -> set[str]:
    """The digit strings a number in E.164 is written as: 33612345678, 0033612345678, 0612345678
    (never the bare 612345678: nine digits alone could be a document number)."""
    out = set()
    for phone in phones:
        parsed = phonenumbers.parse(phone, None)
        national = str(parsed.national_number)
        out |= {phone.lstrip("+"), "00" + phone.lstrip("+"), "0" + national}
    return out


def _mask(table: pa.Table, codes: list[str], addresses: list[str], phones: set[str]) -> pa.Array | None:
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
        if phones:
            digits = pc.replace_substring_regex(column, r"[^0-9]", "")
            found = pc.is_in(digits, value_set=pa.array(sorted(phone_digits(phones)), pa.string()))
            hits = found if hits is None else pc.or_(hits, found)
        if hits is not None:
            hits = pc.fill_null(hits, False)
            mask = hits if mask is None else pc.or_(mask, hits)
    return mask


def parts_about(codes: list[str], addresses: list[str], phones: set[str]) -> list[tuple[object, int]]:
    """(part, rows about the person) for every work part that holds them."""
    found = []
    for part in storage.sorted_glob(storage.work_root(), "**/*.parquet"):
        table = _read(part)
        mask = _mask(table, codes, addresses, phones)
        if mask is not None and (n := pc.sum(mask).as_py() or 0):
            found.append((part, n))
    return found


def remove_rows(part, codes: list[str], addresses: list[str], phones: set[str]) -> int:
    """Rewrite ``part`` without the person's rows; returns the rows removed."""
    table = _read(part)
    mask = _mask(table, codes, addresses, phones)
    if mask is None or not (n := pc.sum(mask).as_py() or 0):
        return 0
    kept = table.filter(pc.invert(mask))
    tmp = part.with_name(part.name + ".erasing")
    _write(kept, tmp)
    if storage.is_local(part):
        import os

        os.replace(str(getattr(tmp, "path", tmp)), str(getattr(part, "path", part)))
    else:
        part.fs.mv(tmp.path, part.path)
    return n


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
