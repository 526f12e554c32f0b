"""The chance to buy's sales rows, kept from one scoring to the next.

A week changes the lines of a few thousand customers out of tens of thousands; the chance to buy
reads every customer's sales (one row per client, document, sale-or-credit and day, the amount in
cents). The rows of the last scoring are kept in one Arrow file with each customer's line
fingerprint (the sum the customer 360 compares, ``score_customers.sql``: equal sums over a
customer's counted lines, the same lines). The next scoring reads from the warehouse only the
customers whose fingerprint differs and takes the others' rows from the file: the same rows, since
the rows are made of nothing but those lines.

The file is a cache: missing, unreadable, written for other document types, or outdated for most
customers, the scoring reads every line. It holds what the warehouse keeps of a sale (client code,
document number, day, amount); an erasure deletes it all the same (``forget``). Written beside and
moved over, so a reader sees a whole file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pyarrow as pa

from winecrm.core import settings

log = logging.getLogger(__name__)

VERSION = "1"
SCHEMA = pa.schema([("client_code", pa.string()), ("document_no", pa.string()), ("is_sale", pa.bool_()),
                    ("day", pa.int32()), ("cents", pa.int64()), ("fingerprint", pa.string())])


def path() -> Path:
    return settings.paths().data_dir / "cache" / "buy-probability-sales.arrow"


def _types(sale_types: list[str], counted_types: list[str]) -> str:
    return json.dumps({"version": VERSION, "sale_types": sorted(sale_types), "counted_types": sorted(counted_types)})


def load(sale_types: list[str], counted_types: list[str], where: Path | None = None) -> pa.Table | None:
    """The kept rows, or None when there are none for these document types."""
    where = where or path()
    try:
        with pa.memory_map(str(where)) as source:
            table = pa.ipc.open_file(source).read_all()
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowInvalid) as exc:
        log.warning("buy probability: the kept sales in %s are unreadable (%s); every line is read", where, exc)
        return None
    if (table.schema.metadata or {}).get(b"types") != _types(sale_types, counted_types).encode() \
            or not table.schema.equals(SCHEMA):
        return None
    return table


def save(rows: pa.Table, sale_types: list[str], counted_types: list[str], where: Path | None = None) -> None:
    """Keep ``rows`` (``SCHEMA``'s columns) for the next scoring."""
    where = where or path()
    where.parent.mkdir(parents=True, exist_ok=True)
    beside = where.with_name(f".{where.name}.{os.getpid()}")
    table = rows.select(SCHEMA.names).cast(SCHEMA).replace_schema_metadata(
        {"types": _types(sale_types, counted_types)})
    try:
        with pa.OSFile(str(beside), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(beside, where)
    except OSError as exc:  # a cache: the scoring is done either way
        log.warning("buy probability: the sales could not be kept in %s (%s)", where, exc)
        beside.unlink(missing_ok=True)


def forget(where: Path | None = None) -> bool:
    """Delete the kept rows (an erasure); True when there were some."""
    where = where or path()
    existed = where.exists()
    where.unlink(missing_ok=True)
    return existed
