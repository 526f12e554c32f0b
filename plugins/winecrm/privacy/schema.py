"""The warehouse's tables and columns as the erasure sees them (``information_schema``):
which columns can hold text, and the order to delete in (children before parents)."""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

SCHEMAS = ("etl", "crm")
REDACTED = "[erased]"
CUSTOMER_MASTER = "etl.clients"           # anonymised: its personal columns
SEND_LEDGER = "crm.email_sends"           # rows kept, content cleared
SUPPRESSIONS = "crm.suppressions"         # plain address replaced by its erased marker
REGISTER = "crm.erasures"                 # who was erased: client codes and markers

TEXT_TYPES = ("text", "character varying", "character")
JSON_TYPES = ("json", "jsonb")
TEXT_ARRAY_UDTS = ("_text", "_varchar", "_bpchar", "_citext")
# Types that cannot hold an address; every other column (text, json, arrays, tsvector, enums,
# citext, xml...) is searched by the final check, even where no policy could rewrite it.
NOT_TEXT_TYPES = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean", "date",
                  "time without time zone", "time with time zone", "timestamp without time zone",
                  "timestamp with time zone", "interval", "uuid", "bytea", "oid", "money")


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    udt_name: str
    nullable: bool

    @property
    def is_text(self) -> bool:
        return self.data_type in TEXT_TYPES or self.udt_name == "citext"

    @property
    def is_json(self) -> bool:
        return self.data_type in JSON_TYPES

    @property
    def is_text_array(self) -> bool:
        return self.data_type == "ARRAY" and self.udt_name in TEXT_ARRAY_UDTS

    @property
    def searchable(self) -> bool:
        """Text the erasure can rewrite (NULL it, replace the address in it)."""
        return self.is_text or self.is_json or self.is_text_array

    @property
    def verifiable(self) -> bool:
        """Could hold the address, as text: what the final check scans."""
        return self.data_type not in NOT_TEXT_TYPES


@dataclass
class Table:
    schema: str
    name: str
    columns: dict[str, Column] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def text_column(self, name: str) -> bool:
        return name in self.columns and self.columns[name].is_text

    @property
    def json_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.is_json]

    @property
    def searchable_columns(self) -> list[Column]:
        return [c for c in self.columns.values() if c.searchable]

    @property
    def verifiable_columns(self) -> list[Column]:
        return [c for c in self.columns.values() if c.verifiable]


def catalog(conn: psycopg.Connection) -> dict[str, Table]:
    """Every base table of the etl and crm schemas, with its columns (views are left out)."""
    tables: dict[str, Table] = {}
    for schema, name, column, data_type, udt_name, nullable in conn.execute(
            """SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.udt_name, c.is_nullable = 'YES'
               FROM information_schema.columns c
               JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
               WHERE c.table_schema = ANY(%s) AND t.table_type = 'BASE TABLE'
               ORDER BY c.table_schema, c.table_name, c.ordinal_position""", (list(SCHEMAS),)):
        table = tables.setdefault(f"{schema}.{name}", Table(schema, name))
        table.columns[column] = Column(column, data_type, udt_name, nullable)
    return tables


def _children_first(conn: psycopg.Connection, names: list[str]) -> list[str]:
    """``names`` ordered so that a table referencing another (foreign key) comes before it."""
    wanted = set(names)
    graph: dict[str, set[str]] = {n: set() for n in names}
    for child, parent in conn.execute(
            """SELECT sn.nspname || '.' || s.relname, tn.nspname || '.' || t.relname
               FROM pg_constraint c
               JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
               JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
               WHERE c.contype = 'f'"""):
        if child in wanted and parent in wanted and child != parent:
            graph[parent].add(child)
    try:
        return list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        return sorted(names)


# --------------------------------------------------------------------------------------------
# who the person is
