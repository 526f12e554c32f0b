"""Erase one person (GDPR art. 17) from the warehouse, the platform's files and Brevo — and keep
them erased whatever runs afterwards.

Why it works this way:

- **One catalogue, checked against the warehouse.** Where personal data lives, how the person's
  rows are found and what happens to them is declared once, in ``winecrm.privacy.catalogue``
  (also what an access export reads). The warehouse keeps growing (events, tags, tasks, consent
  log...): before changing anything the erasure compares the catalogue with
  ``information_schema`` and refuses, naming the table, when an ``etl``/``crm`` table or column
  that looks personal (client code, e-mail, phone, name, address, postcode, town, jsonb...) is not
  in it. After the policies it replaces the address and the full name wherever still written in
  free text (run details, quarantine reasons, notes) and finally scans every text/jsonb column of
  every table for the addresses, the full name and the phone numbers, and the derived tables for
  the client codes: if anything is left, nothing is committed and the error names the table and
  the column.
- **Policies** (``catalogue.Policy``). ``etl.clients`` is anonymised, not deleted: the client
  code stays so that the sales lines (revenue history) still join; its personal columns become
  NULL, ``opt_out`` true, ``email_valid`` false. ``etl.ventes_lignes`` keeps its rows (revenue,
  anonymously) without address, postcode and town. ``etl.quarantine`` rows holding the address
  or the client code in ``raw_values`` are deleted. ``crm.email_sends`` keeps its rows — the
  ledger proves what was sent and keeps the exactly-once guarantee of a rerun (unique on campaign +
  client code) — but loses the address, subject, bodies, products, token, message id, error and
  outbox path; a row not yet sent is marked ``skipped`` / ``erased``. The derived per-customer
  tables (scores, 360, recommendations, events, tags, tasks, actions, consent log...) lose the
  matching rows, children before parents.
- **Never again.** ``crm.suppressions`` loses the plain address and gets
  ``'erased:' || sha256(lower(btrim(address)))`` instead (``erased_marker``), which
  ``crm.email_blocked_reason`` checks (migration 011): the address is not kept, yet never
  e-mailed again. The consent history (``crm.consent_log``) loses the person's rows and ends with
  one opt-out per client code (source ``privacy_erase``, no address). ``crm.erasures`` (migration 014) records the client codes and those markers:
  the weekly scoring, the recommendations, the campaign audience and the events DAG skip these
  client codes (their sales still count in revenue, anonymously), and ``reapply_erasures`` —
  called by the load inside each dataset's transaction, before its commit — anonymises again a
  record an ERP export brings back, by client code (a re-export, maybe with a new address) or by
  address marker (a new client code with the old address, then recorded as erased too).
- **All or nothing, alone.** One transaction under the warehouse writer lock AND the events
  processor lock (``crm_events`` writes tags, actions and consent rows under its own lock: it
  must not add rows about the person while they are erased). Files are removed, and the dry-run
  SMS outbox (one JSON line per SMS) rewritten without the person's lines (temp file + rename),
  just before the commit (a failure there rolls the database back: a rerun finds everything
  again); the Brevo contact is deleted after the commit by the caller
  (``delete_brevo_contacts``): it cannot be rolled back, and a rerun with the same address finds
  nothing in the warehouse but still asks Brevo.
- **Nothing personal in the output** beyond what the operator typed: the summary gives the
  client codes (the ERP needs them to drop the person from its exports), tables, counts and
  file paths. The log line gives counts only.

RAW exports are immutable by design and are not rewritten (see ``RAW_NOTE``).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import graphlib
import json
import logging
import os
import re
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from winecrm.campaigns.brevo import DELETE_BY_HAND
from winecrm.core import db, settings
from winecrm.core.personal import ERASED_PREFIX, erased_marker, normalise_address  # noqa: F401 (erase's API)
from winecrm.privacy import work_files
from winecrm.privacy import catalogue
from winecrm.privacy.catalogue import Policy

log = logging.getLogger("winecrm.privacy")

SCHEMAS = ("etl", "crm")
SUPPRESSION_SOURCE = "privacy_erase"
REDACTED = "[erased]"
DEFAULT_MAX_RECORDS = 10

# The SQL twin of erased_marker(); crm.email_blocked_reason uses the same expression.
ERASED_MARKER_SQL = "'erased:' || encode(sha256(convert_to(lower(btrim({})), 'UTF8')), 'hex')"

# Where an (address, client code) pair is authoritative, to find every record of the person.
# Test campaigns are left out: their rows pair an internal tester's address with real customers.
IDENTITY_SOURCES = tuple(e.table for e in catalogue.CATALOGUE if e.identity_source)

CUSTOMER_MASTER = "etl.clients"           # anonymised: its personal columns
SEND_LEDGER = "crm.email_sends"           # rows kept, content cleared
SUPPRESSIONS = "crm.suppressions"         # plain address replaced by its erased marker
REGISTER = "crm.erasures"                 # who was erased: client codes and markers
SMS_OUTBOX = "sms"                        # <outbox>/sms/*.jsonl: one JSON line per dry-run SMS
PHONE_REGION = "FR"

TEXT_TYPES = ("text", "character varying", "character")
JSON_TYPES = ("json", "jsonb")
TEXT_ARRAY_UDTS = ("_text", "_varchar", "_bpchar", "_citext")
# Types that cannot hold an address; every other column (text, json, arrays, tsvector, enums,
# citext, xml...) is searched by the final check, even where no policy could rewrite it.
NOT_TEXT_TYPES = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean", "date",
                  "time without time zone", "time with time zone", "timestamp without time zone",
                  "timestamp with time zone", "interval", "uuid", "bytea", "oid", "money")

RAW_NOTE = ("RAW exports are immutable and were not rewritten: the ERP (iSaVigne) must drop or anonymise "
            "these client codes in its next exports; until then each weekly load anonymises them again inside "
            "its own transaction (crm.erasures names them; the erased marker stays in crm.suppressions, so they "
            "are never e-mailed, and scoring skips them). Old RAW files go with the RAW retention.")


class ErasureError(RuntimeError):
    """The erasure was refused or could not finish; nothing was changed (rolled back)."""




# --------------------------------------------------------------------------------------------
# the warehouse as information_schema describes it


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


@dataclass
class Person:
    typed_addresses: list[str]
    typed_codes: list[str]
    addresses: list[str] = field(default_factory=list)     # normalised; typed first, then found
    client_codes: list[str] = field(default_factory=list)
    unknown_codes: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)        # every written form of their numbers
    names: list[str] = field(default_factory=list)         # "prenom nom" and "nom prenom", lower-cased

    @property
    def params(self) -> dict:
        return {"addrs": self.addresses, "codes": self.client_codes}


def _pairs_query(tables: dict[str, Table], wanted: str) -> sql.Composable | None:
    """client codes for %(addrs)s (wanted='client_code') or addresses for %(codes)s (wanted='email')."""
    parts = []
    for name in IDENTITY_SOURCES:
        table = tables.get(name)
        if table is None or not (table.text_column("client_code") and table.text_column("email")):
            continue
        if wanted == "client_code":
            select = sql.SQL("SELECT s.client_code FROM {} s").format(table.ident)
            where = sql.SQL("lower(btrim(s.email)) = ANY(%(addrs)s::text[])")
        else:
            select = sql.SQL("SELECT lower(btrim(s.email)) FROM {} s").format(table.ident)
            where = sql.SQL("s.client_code = ANY(%(codes)s::text[]) AND nullif(btrim(s.email), '') IS NOT NULL")
        if name == SEND_LEDGER and "crm.campaigns" in tables and "campaign_id" in table.columns:
            where = sql.SQL("{} AND NOT EXISTS (SELECT 1 FROM crm.campaigns k WHERE k.campaign_id = s.campaign_id "
                            "AND k.kind = 'test')").format(where)
        parts.append(sql.SQL("{} WHERE {}").format(select, where))
    return sql.SQL(" UNION ").join(parts) if parts else None


def identify(conn: psycopg.Connection, tables: dict[str, Table], emails: list[str], client_codes: list[str],
             *, max_records: int = DEFAULT_MAX_RECORDS) -> Person:
    """Every client code and address of the person: from an address, the customers who have it;
    from a client code, its addresses; repeated until nothing new turns up (two ERP records of
    one person, an address changed over time)."""
    person = Person(typed_addresses=list(dict.fromkeys(normalise_address(e) for e in emails)),
                    typed_codes=list(dict.fromkeys(c.strip() for c in client_codes if c.strip())))
    addresses, codes = list(person.typed_addresses), list(person.typed_codes)
    codes_for, addresses_for = _pairs_query(tables, "client_code"), _pairs_query(tables, "email")
    while codes_for is not None:
        params = {"addrs": addresses, "codes": codes}
        new_codes = [c for (c,) in conn.execute(codes_for, params) if c not in codes]
        codes += sorted(new_codes)
        new_addresses = [a for (a,) in conn.execute(addresses_for, {"addrs": addresses, "codes": codes})
                         if a not in addresses]
        addresses += sorted(new_addresses)
        if len(codes) > max_records:
            raise ErasureError(
                f"refused: the address(es) and code(s) given lead to {len(codes)} customer records (more than "
                f"--max-records {max_records}); a shared address (family, company, a test address) would erase "
                "people who did not ask. Check the records in etl.clients, then give the client codes one by one "
                "or raise --max-records.")
        if not new_codes and not new_addresses:
            break
    person.addresses, person.client_codes = addresses, codes
    if person.typed_codes:
        holders = [tables[n] for n in IDENTITY_SOURCES if n in tables and tables[n].text_column("client_code")]
        known = sql.SQL(" UNION ").join(
            sql.SQL("SELECT client_code FROM {} WHERE client_code = ANY(%(codes)s::text[])").format(t.ident)
            for t in holders)
        present = {c for (c,) in conn.execute(known, {"codes": person.typed_codes})} if holders else set()
        person.unknown_codes = [c for c in person.typed_codes if c not in present]
    return person


def phone_forms(number: str | None, region: str = PHONE_REGION) -> list[str]:
    """A phone number as it may be written anywhere: as stored, E.164 (+33611223344), E.164
    without the plus (Brevo's SMS recipient, the SMS outbox), national digits (0611223344) and
    national spaced (06 11 22 33 44); only forms of 8 digits or more (shorter would match
    amounts and counts)."""
    import phonenumbers

    if not number or not str(number).strip():
        return []
    forms = {str(number).strip()}
    try:
        parsed = phonenumbers.parse(str(number), region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_possible_number(parsed):
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        forms |= {e164, e164.lstrip("+"), national, re.sub(r"\D", "", national)}
    return sorted(f for f in forms if sum(ch.isdigit() for ch in f) >= 8)


def _person_details(conn: psycopg.Connection, tables: dict[str, Table], person: Person) -> None:
    """The person's phone numbers (every form) and full names, read before anonymising: what the
    final check and the SMS outbox look for."""
    phones: set[str] = set()
    names: set[str] = set()
    for entry in catalogue.CATALOGUE:
        if entry.table not in tables or not entry.findable:
            continue
        wanted = list(entry.phones) + [c for c in ("nom", "prenom") if c in entry.personal]
        if not wanted:
            continue
        rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in wanted), entry.ident,
            catalogue.match(entry, with_json=False)), person.params).fetchall()
        for row in rows:
            values = dict(zip(wanted, row))
            for column in entry.phones:
                phones.update(phone_forms(values[column]))
            nom, prenom = (values.get("nom") or "").strip(), (values.get("prenom") or "").strip()
            if nom and prenom:
                names.update({f"{prenom} {nom}".lower(), f"{nom} {prenom}".lower()})
    person.phones = sorted(phones)
    person.names = sorted(n for n in names if len(n) >= 5)


# --------------------------------------------------------------------------------------------
# SQL building blocks (identifiers through psycopg.sql only)


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


@dataclass
class TableOutcome:
    deleted: int = 0
    anonymised: int = 0
    redacted: int = 0       # rows where the address was replaced by [erased] in free text

    @property
    def total(self) -> int:
        return self.deleted + self.anonymised + self.redacted


@dataclass
class ErasureReport:
    person: Person
    dry_run: bool
    tables: dict[str, TableOutcome] = field(default_factory=dict)
    suppressions_removed: int = 0
    markers_added: int = 0
    already_erased: list[str] = field(default_factory=list)     # addresses whose marker was there before
    files: list[Path] = field(default_factory=list)
    sms_lines: dict[Path, int] = field(default_factory=dict)   # SMS outbox file -> lines about the person removed
    sms_files_emptied: list[Path] = field(default_factory=list)  # ...of which held only the person (removed)
    work_parts: dict[str, int] = field(default_factory=dict)  # run work file -> rows whose personal values go
    register_rows: int = 0                                      # rows added to crm.erasures
    consent_rows: int = 0                                       # final opt-outs appended to crm.consent_log
    data_docs_rebuilt: bool | None = None                       # None: no Data Docs page removed
    brevo: dict[str, str] = field(default_factory=dict)  # address -> deleted | not_found | not_allowed | no_connection | error
    brevo_error: str | None = None

    @property
    def needs_a_person(self) -> bool:
        """Brevo failed, or holds a contact only a person can delete there."""
        return bool(self.brevo_error) or "not_allowed" in self.brevo.values()

    @property
    def found(self) -> bool:
        """Did the warehouse or the files hold anything about the person?"""
        return bool(sum(t.total for t in self.tables.values()) or self.suppressions_removed or self.files
                    or self.sms_lines or self.work_parts)

    def outcome(self, table: str) -> TableOutcome:
        return self.tables.setdefault(table, TableOutcome())


def _anonymise(conn: psycopg.Connection, table: Table, columns: list[str], match: sql.Composable,
               params: dict) -> int:
    """Blank ``columns`` (and set the opt_out / email_valid flags) in the matching rows that
    still hold something; returns the rows changed."""
    sets = [sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in columns]
    left = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns]
    if "opt_out" in table.columns and table.columns["opt_out"].data_type == "boolean":
        sets.append(sql.SQL("opt_out = true"))
        left.append(sql.SQL("opt_out IS NOT TRUE"))
    if "email_valid" in table.columns and table.columns["email_valid"].data_type == "boolean":
        sets.append(sql.SQL("email_valid = false"))
        left.append(sql.SQL("email_valid IS DISTINCT FROM false"))
    if not sets:
        return 0
    if "updated_at" in table.columns:
        sets.append(sql.SQL("updated_at = now()"))
    return conn.execute(sql.SQL("UPDATE {} SET {} WHERE {} AND ({})").format(
        table.ident, sql.SQL(", ").join(sets), match, sql.SQL(" OR ").join(left)), params).rowcount


def _clear_ledger(conn: psycopg.Connection, table: Table, columns, match: sql.Composable, params: dict) -> int:
    cleared = [c for c in columns if c in table.columns and table.columns[c].nullable]
    sets = [sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in cleared]
    left = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in cleared]
    if "status" in table.columns and "skip_reason" in table.columns:
        # not sent yet: it never will be (the send would skip it anyway: no address)
        sets = [sql.SQL("skip_reason = CASE WHEN status IN ('rendered', 'sending') THEN 'erased' ELSE skip_reason END"),
                sql.SQL("status = CASE WHEN status IN ('rendered', 'sending') THEN 'skipped' ELSE status END"), *sets]
        left.append(sql.SQL("status IN ('rendered', 'sending')"))
    if "updated_at" in table.columns:
        sets.append(sql.SQL("updated_at = now()"))
    return conn.execute(sql.SQL("UPDATE {} SET {} WHERE {} AND ({})").format(
        table.ident, sql.SQL(", ").join(sets), match, sql.SQL(" OR ").join(left)), params).rowcount


def _ledger_traces(conn: psycopg.Connection, table: Table, match: sql.Composable, params: dict) -> tuple[set, set]:
    """Unsubscribe tokens and outbox files of the person's e-mails, read before the ledger is
    cleared: the tokens find the rendered e-mails (previews) among the files."""
    if not {"unsubscribe_token", "outbox_path"} <= set(table.columns):
        return set(), set()
    tokens, paths = set(), set()
    for token, path in conn.execute(sql.SQL("SELECT unsubscribe_token, outbox_path FROM {} WHERE {}").format(
            table.ident, match), params):
        if token:
            tokens.add(token)
        if path:
            paths.add(path)
    return tokens, paths


def _redact_everywhere(conn: psycopg.Connection, tables: dict[str, Table], addresses: list[str],
                       report: ErasureReport, names: list[str] = ()) -> None:
    """Replace the addresses and the full names (whole words) by [erased] wherever they are
    still written (free text such as run details, quarantine reasons, a campaign's test address,
    a decision note, json documents)."""
    names = list(names)
    if not addresses and not names:
        return
    patterns = ([_address_regex(addresses)] if addresses else []) + ([_names_regex(names)] if names else [])
    params = {**_address_params(addresses), "pattern": "|".join(patterns),
              "names_re": _names_regex(names) if names else None}
    for name, table in sorted(tables.items()):
        columns = table.searchable_columns
        if not columns:
            continue
        sets, hits = [], []
        for column in columns:
            ident = sql.Identifier(column.name)
            hit = _text_hit(ident, len(addresses), bool(names))
            if column.is_json:
                new = sql.SQL("regexp_replace({}::text, %(pattern)s, {}, 'gi')::{}").format(
                    ident, sql.Literal(REDACTED), sql.SQL(column.data_type))
            elif column.is_text_array:
                new = sql.SQL("ARRAY(SELECT regexp_replace(x, %(pattern)s, {}, 'gi') FROM unnest({}) "
                              "WITH ORDINALITY u(x, n) ORDER BY n)").format(sql.Literal(REDACTED), ident)
            else:
                new = sql.SQL("regexp_replace({}, %(pattern)s, {}, 'gi')").format(ident, sql.Literal(REDACTED))
            sets.append(sql.SQL("{} = CASE WHEN {} THEN {} ELSE {} END").format(ident, hit, new, ident))
            hits.append(hit)
        try:
            with conn.transaction():  # a savepoint: the error below names the table
                rows = conn.execute(sql.SQL("UPDATE {} SET {} WHERE {}").format(
                    table.ident, sql.SQL(", ").join(sets), sql.SQL(" OR ").join(hits)), params).rowcount
        except psycopg.Error as exc:
            raise ErasureError(f"could not replace the address in {name} ({exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0]}); nothing was changed") from exc
        if rows:
            report.outcome(name).redacted += rows


def verify_absent(conn: psycopg.Connection, tables: dict[str, Table], needles: list[str],
                  names: list[str] = ()) -> list[tuple[str, str, int]]:
    """(table, column, rows) for every column of every etl/crm table that can hold text (text,
    json, arrays, tsvector...) and still holds one of ``needles`` (addresses, phone numbers:
    substrings, case-insensitive) or of ``names`` (full names, as whole words)."""
    left = []
    names = list(names)
    if not needles and not names:
        return left
    params = {**_address_params([n.lower() for n in needles]), "names_re": _names_regex(names) if names else None}
    for name, table in sorted(tables.items()):
        columns = table.verifiable_columns
        if not columns:
            continue
        counts = conn.execute(sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.SQL("count(*) FILTER (WHERE {})").format(
                _text_hit(sql.Identifier(c.name), len(needles), bool(names))) for c in columns), table.ident),
            params).fetchone()
        left += [(name, c.name, n) for c, n in zip(columns, counts) if n]
    return left


def codes_left(conn: psycopg.Connection, tables: dict[str, Table], codes: list[str]) -> list[tuple[str, str, int]]:
    """(table, how, rows) for every derived table (policy delete) still holding one of the client
    codes, in its client code column or under a "client_code" key of its jsonb."""
    left = []
    if not codes:
        return left
    for entry in catalogue.CATALOGUE:
        if entry.policy not in (Policy.DELETE_DERIVED, Policy.DELETE_RAW) or entry.table not in tables:
            continue
        condition = catalogue.match(entry, by_email=False)
        if condition is None:
            continue
        if entry.keep:
            condition = sql.SQL("{} AND NOT ({})").format(condition, sql.SQL(entry.keep))
        n = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(entry.ident, condition),
                         {"codes": codes, "addrs": []}).fetchone()[0]
        if n:
            left.append((entry.table, "client_code", n))
    return left


def check_catalogue(tables: dict[str, Table]) -> None:
    """Refuse (nothing changed yet) when the warehouse has personal-looking tables or columns the
    catalogue does not describe, or the catalogue names columns the warehouse does not have."""
    gaps, gone = catalogue.uncatalogued(tables), catalogue.missing(tables)
    if gaps:
        raise ErasureError(
            f"refused, nothing was changed: {'; '.join(gaps)} may hold personal data and "
            "winecrm/privacy/catalogue.py does not say how to erase it. Add its entry (how the person's rows "
            "are found, which columns are personal, which policy), then run again.")
    if gone:
        raise ErasureError(f"refused, nothing was changed: winecrm/privacy/catalogue.py names {', '.join(gone)}, "
                           "which the warehouse does not have (migrations not applied, or a renamed column)")


def _apply_policies(conn: psycopg.Connection, tables: dict[str, Table], params: dict, report: ErasureReport,
                    *, skip: tuple[Policy, ...] = ()) -> tuple[set[str], set[str], set[int]]:
    """Every catalogued table's policy on the rows about the person (``params``: %(codes)s,
    %(addrs)s). Returns the e-mails' unsubscribe tokens, their outbox files and the person's
    automation action ids (read before they go: they find the files and SMS lines)."""
    tokens: set[str] = set()
    ledger_paths: set[str] = set()
    action_ids: set[int] = set()
    to_delete = []
    for entry in catalogue.CATALOGUE:
        table = tables.get(entry.table)
        if table is None or not entry.findable or entry.policy in skip:
            continue
        match = catalogue.match(entry, with_json=entry.policy in (Policy.DELETE_DERIVED, Policy.DELETE_RAW))
        if entry.policy in (Policy.ANONYMISE_MASTER, Policy.BLANK_PERSONAL):
            columns = [c for c in entry.personal if c in table.columns and table.columns[c].nullable]
            report.outcome(entry.table).anonymised += _anonymise(conn, table, columns, match, params)
        elif entry.policy is Policy.CLEAR_LEDGER:
            found_tokens, found_paths = _ledger_traces(conn, table, match, params)
            tokens |= found_tokens
            ledger_paths |= found_paths
            report.outcome(entry.table).anonymised += _clear_ledger(conn, table, entry.personal, match, params)
        elif entry.policy in (Policy.DELETE_DERIVED, Policy.DELETE_RAW):
            to_delete.append(entry.table)
            if entry.table == "crm.automation_actions":
                action_ids |= {a for (a,) in conn.execute(sql.SQL("SELECT action_id FROM {} WHERE {}").format(
                    table.ident, match), params)}
    for name in _children_first(conn, to_delete):
        entry = catalogue.BY_TABLE[name]
        match = catalogue.match(entry, with_json=True)
        if entry.keep:
            match = sql.SQL("{} AND NOT ({})").format(match, sql.SQL(entry.keep))
        report.outcome(name).deleted += conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(tables[name].ident, match), params).rowcount
    return tokens, ledger_paths, action_ids


def _register(conn: psycopg.Connection, source: str, codes: list[str], addresses: list[str] = (),
              markers: list[str] = ()) -> int:
    """A row of crm.erasures: the client codes and the markers of the addresses (computed by the
    database, like crm.email_blocked_reason's)."""
    marker = sql.SQL(ERASED_MARKER_SQL).format(sql.SQL("a"))
    return conn.execute(sql.SQL(
        """INSERT INTO crm.erasures (source, client_codes, markers)
           SELECT %(source)s, %(codes)s::text[],
                  ARRAY(SELECT DISTINCT m FROM (SELECT {} AS m FROM unnest(%(addrs)s::text[]) a
                                                UNION SELECT unnest(%(markers)s::text[])) x ORDER BY m)""").format(marker),
        {"source": source, "codes": list(codes), "addrs": list(addresses), "markers": list(markers)}).rowcount


def erase(conn: psycopg.Connection, emails: list[str] = (), client_codes: list[str] = (), *, dry_run: bool = False,
          max_records: int = DEFAULT_MAX_RECORDS, with_files: bool = True) -> ErasureReport:
    """Erase the person known by ``emails`` and/or ``client_codes`` from the warehouse and the
    platform's files, in one transaction under the writer lock and the events processor lock
    (``dry_run``: report what would go, then roll back and leave every file). Brevo is the
    caller's next step (``delete_brevo_contacts`` with ``report.person.addresses``), after this
    commit."""
    from winecrm.events.processing import processor_lock

    emails, client_codes = list(emails), list(client_codes)
    bad = [e for e in emails if "@" not in e]
    if bad or not (emails or client_codes):
        raise ErasureError(f"an e-mail address is needed, got {bad[0]!r}" if bad else "give --email or --client")
    wait = settings.pipeline_config().warehouse.writer_wait_minutes * 60
    with db.warehouse_writer(conn, "privacy:erase"), processor_lock(conn, wait_seconds=wait):
        tables = catalog(conn)
        check_catalogue(tables)
        person = identify(conn, tables, emails, client_codes, max_records=max_records)
        _person_details(conn, tables, person)
        report = ErasureReport(person=person, dry_run=dry_run)
        params = person.params
        tokens, ledger_paths, action_ids = _apply_policies(conn, tables, params, report)

        if SUPPRESSIONS in tables and person.addresses:
            report.suppressions_removed = conn.execute(
                "DELETE FROM crm.suppressions WHERE lower(btrim(email)) = ANY(%s::text[])",
                (person.addresses,)).rowcount
            marker = sql.SQL(ERASED_MARKER_SQL).format(sql.SQL("a"))
            report.already_erased = [a for (a,) in conn.execute(
                sql.SQL("SELECT a FROM unnest(%s::text[]) a WHERE {} IN (SELECT email FROM crm.suppressions)").format(
                    marker), (person.addresses,))]

        _redact_everywhere(conn, tables, person.addresses, report, names=person.names)
        left = verify_absent(conn, tables, person.addresses + person.phones, names=person.names)
        left += codes_left(conn, tables, person.client_codes)
        if left:
            conn.rollback()
            where = "; ".join(f"{t}.{c} ({n} row{'s' if n > 1 else ''})" for t, c, n in left)
            raise ErasureError(f"the person's address, name, phone number or client code is still in {where} after "
                               "the erasure: nothing was changed (rolled back). That table needs a policy in "
                               "winecrm/privacy/catalogue.py.")
        if with_files:
            report.files = find_files(person, tokens, ledger_paths)
            sms_rewrites = sms_outbox_rewrites(person, action_ids)
            report.sms_lines = {path: removed for path, (removed, _) in sms_rewrites.items()}
            report.sms_files_emptied = [path for path, (_, kept) in sms_rewrites.items() if not kept]
            report.work_parts = work_files.blank_person(person.client_codes, person.addresses,
                                                        work_files.phone_digits(person.phones), dry_run=True)
        else:
            sms_rewrites = {}
        report.tables = {n: o for n, o in report.tables.items() if o.total}

        if report.found and SUPPRESSIONS in tables and person.addresses:
            marker = sql.SQL(ERASED_MARKER_SQL).format(sql.SQL("a"))
            report.markers_added = conn.execute(sql.SQL(
                "INSERT INTO crm.suppressions (email, reason, source) SELECT {}, 'erased', %s "
                "FROM unnest(%s::text[]) a ON CONFLICT (email) DO NOTHING").format(marker),
                (SUPPRESSION_SOURCE, person.addresses)).rowcount
        if report.found and REGISTER in tables:
            report.register_rows = _register(conn, SUPPRESSION_SOURCE, person.client_codes, person.addresses)
        if report.found and "crm.consent_log" in tables and "channel" in tables["crm.consent_log"].columns:
            from winecrm.privacy.consent import record_consent_change

            for code in person.client_codes:  # the proof of consent ends with the erasure's opt-out
                record_consent_change(conn, client_code=code, email=None, change="opt_out", source=SUPPRESSION_SOURCE,
                                      channel="all", detail="erasure on request (GDPR art. 17), see crm.erasures")
                report.consent_rows += 1
        if dry_run or not report.found:
            conn.rollback()
            return report
        removed_docs = False
        for done, path in enumerate(report.files):
            try:  # before the commit: if this fails, the rollback leaves a rerun everything to find
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise ErasureError(f"cannot remove {path} ({exc.strerror}); the warehouse was left unchanged "
                                   f"({done} file(s) already removed): fix the permissions and run again") from exc
            removed_docs = removed_docs or _under(path, settings.paths().docs_dir / "gx")
        for path, (_, kept) in sms_rewrites.items():
            try:
                _rewrite_atomically(path, kept)
            except OSError as exc:
                raise ErasureError(f"cannot rewrite {path} ({exc.strerror}); the warehouse was left unchanged: fix "
                                   "the permissions and run again") from exc
        if report.work_parts:  # before the commit too: a rerun finds whatever is left
            work_files.blank_person(person.client_codes, person.addresses, work_files.phone_digits(person.phones))
        conn.commit()
    if removed_docs:
        report.data_docs_rebuilt = _rebuild_data_docs()
    log.info("privacy erase: %d customer record(s), %d address(es); %s; suppressions: %d plain removed, %d erased "
             "marker(s) added; %d file(s) removed; %d SMS outbox line(s) removed; %d work file row(s) blanked",
             len(person.client_codes), len(person.addresses),
             ", ".join(f"{n}: {_counts(o)}" for n, o in sorted(report.tables.items())) or "no rows",
             report.suppressions_removed, report.markers_added, len(report.files), sum(report.sms_lines.values()),
             sum(report.work_parts.values()))
    return report


# --------------------------------------------------------------------------------------------
# the dry-run SMS outbox: one JSON line per SMS, many people per file


def sms_outbox_dir() -> Path:
    return settings.paths().outbox_dir / SMS_OUTBOX


def _sms_line_about(line: str, phones: set[str], action_ids: set[int], codes: list[str]) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        recipient = str(record.get("recipient") or "")
        if recipient and (recipient in phones or "+" + recipient.lstrip("+") in phones):
            return True
        if record.get("action_id") in action_ids:
            return True
        if str(record.get("client_code") or "") in codes:
            return True
    # a line we cannot read: by its text
    return any(p in line for p in phones if len(p) >= 10) or any(
        _code_pattern(c).search(line) for c in codes if _distinctive(c))


def sms_outbox_rewrites(person: Person, action_ids: set[int], folder: Path | None = None) -> dict[Path, tuple[int, list[str]]]:
    """For each SMS outbox file holding lines about the person (their phone numbers in any
    written form — E.164 without the plus is what the outbox records —, one of their automation
    actions, their client code): (lines removed, lines kept)."""
    folder = folder or sms_outbox_dir()
    phones = set(person.phones)
    found: dict[Path, tuple[int, list[str]]] = {}
    if not folder.is_dir() or not (phones or action_ids or person.client_codes):
        return found
    for path in sorted(folder.glob("*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except OSError as exc:
            raise ErasureError(f"cannot read {path} ({exc.strerror}): nothing was changed") from exc
        kept = [line for line in lines if not _sms_line_about(line, phones, action_ids, person.client_codes)]
        if len(kept) < len(lines):
            found[path] = (len(lines) - len(kept), kept)
    return found


def _rewrite_atomically(path: Path, lines: list[str]) -> None:
    """``path`` with only ``lines`` (removed when none is left): a temporary file in the same
    folder renamed over it, so a reader never sees half a file."""
    if not lines:
        path.unlink(missing_ok=True)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------
# files: outbox (.eml), reports (previews, weekly report), Data Docs


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _code_pattern(code: str) -> re.Pattern:
    """The client code as a whole token: C1 must not match C10."""
    return re.compile(r"(?<![0-9A-Za-z])" + re.escape(code) + r"(?![0-9A-Za-z])", re.IGNORECASE)


def _distinctive(code: str) -> bool:
    """A code worth looking for in file contents: a short all-digit code (1234) would match
    prices and counts in every report; those are found through the name of the file only."""
    return not code.isdigit() or len(code) >= 6


def _eml_text(data: bytes) -> str:
    """An .eml as a person reads it: decoded headers and decoded text/HTML parts (quoted-printable
    and base64 bodies hide the address from a plain byte search)."""
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
        texts = [f"{k}: {v}" for k, v in message.items()]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                texts.append(part.get_content())
        return "\n".join(texts)
    except Exception:  # noqa: BLE001 - a broken file is searched as bytes only
        return ""


def file_mentions(path: Path, data: bytes, addresses: list[str], codes: list[str], tokens: set[str]) -> bool:
    if any(_code_pattern(c).search(path.name) for c in codes):
        return True
    texts = [data.decode("utf-8", errors="replace")]
    if path.suffix.lower() == ".eml":
        texts.append(_eml_text(data))
    for text in texts:
        lowered = text.lower()
        if any(a in lowered for a in addresses) or any(t in text for t in tokens):
            return True
        if any(_code_pattern(c).search(text) for c in codes if _distinctive(c)):
            return True
    return False


def file_roots() -> list[Path]:
    paths = settings.paths()
    return list(dict.fromkeys([paths.outbox_dir, paths.reports_dir, paths.docs_dir]))


def find_files(person: Person, tokens: set[str] = frozenset(), ledger_paths: set[str] = frozenset(),
               roots: list[Path] | None = None) -> list[Path]:
    """Files under the outbox, reports and Data Docs folders whose name holds one of the client
    codes or whose content holds an address, a client code or the token of one of the person's
    e-mails; plus the .eml files the ledger says were written for them. The SMS outbox files
    hold many people: they are rewritten without the person's lines (``sms_outbox_rewrites``),
    not removed here."""
    found: dict[Path, None] = {}
    sms = sms_outbox_dir()
    for raw in ledger_paths:
        path = Path(raw)
        if path.is_file():
            found[path] = None
    for root in roots or file_roots():
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path in found or not path.is_file() or (path.suffix == ".jsonl" and _under(path, sms)):
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ErasureError(f"cannot read {path} ({exc.strerror}): nothing was changed") from exc
            if file_mentions(path, data, person.addresses, person.client_codes, tokens):
                found[path] = None
    return list(found)


def _rebuild_data_docs() -> bool:
    """The Data Docs index after pages were removed (the next run rebuilds it anyway)."""
    try:
        from winecrm.etl.gx_context import rebuild_data_docs

        rebuild_data_docs(settings.paths().docs_dir)
        return True
    except Exception as exc:  # noqa: BLE001 - the erasure is done; the next run rebuilds the site
        log.warning("Data Docs not rebuilt after the erasure (%s); the next run rebuilds them", exc)
        return False


# --------------------------------------------------------------------------------------------
# Brevo


def brevo_client_from_env():
    """A Brevo client from BREVO_API_KEY / BREVO_API_URL with campaigns.yaml's sending limits, or None."""
    from winecrm.campaigns import brevo

    return brevo.configured_client(brevo.credentials_from_env())


def delete_brevo_contacts(report: ErasureReport, client) -> ErasureReport:
    """Delete the person's Brevo contact(s), after the warehouse commit; ``client`` None means no
    Brevo connection. A Brevo error is recorded in ``report.brevo_error``; a contact Brevo does not
    let the API delete (405) is ``not_allowed``, for a person to delete in Brevo (the caller
    exits 2 for either: ``needs_a_person``)."""
    from winecrm.campaigns import brevo

    for address in report.person.addresses:
        if client is None:
            report.brevo[address] = "no_connection"
        elif report.brevo_error:
            report.brevo[address] = "error"  # not tried after the first failure
        else:
            try:
                report.brevo[address] = "deleted" if client.delete_contact(address) else "not_found"
            except brevo.BrevoNotAllowed:
                report.brevo[address] = "not_allowed"  # a person must delete it in Brevo; the others go on
            except brevo.BrevoError as exc:
                report.brevo[address] = "error"
                report.brevo_error = str(exc)
    return report


# --------------------------------------------------------------------------------------------
# the guard for the next ERP export


def _marker_of(email: sql.Composable) -> sql.Composable:
    """The erased marker of an address column — or the column itself when it already holds one:
    the ingest writes the marker in place of an erased person's address in the run's work files
    (``work_files.blank_erased``), so a new client code with their address is still recognised."""
    return sql.SQL("CASE WHEN starts_with({}, {}) THEN {} ELSE {} END").format(
        email, sql.Literal(ERASED_PREFIX), email, sql.SQL(ERASED_MARKER_SQL).format(email))


def erased_keys(conn: psycopg.Connection) -> tuple[list[str], list[str]]:
    """(client codes, address markers) of everyone erased: crm.erasures, plus the erased markers
    of crm.suppressions (erasures made before the register)."""
    has_register = conn.execute("SELECT to_regclass('crm.erasures') IS NOT NULL").fetchone()[0]
    codes = [c for (c,) in conn.execute("SELECT client_code FROM crm.erased_clients ORDER BY 1")] if has_register else []
    markers = [m for (m,) in conn.execute(
        "SELECT email FROM crm.suppressions WHERE reason = 'erased' AND email LIKE 'erased:%'"
        + (" UNION SELECT unnest(markers) FROM crm.erasures" if has_register else ""))]
    return codes, sorted(markers)


def reapply_erasures(conn: psycopg.Connection, *, run_id: str | None = None,
                     datasets: list[str] | None = None) -> int:
    """Anonymise again whoever an ERP export brought back after an erasure; returns the rows changed.

    Called by the load inside each dataset's transaction, after its upserts and before its
    commit (``datasets``: the one being loaded; ``run_id``: only the rows that run loaded or
    quarantined), so no other connection ever sees the person's columns again; it does not commit.

    A row of ``etl.clients`` / ``etl.ventes_lignes`` (the catalogue's anonymise/blank entries) is
    the erased person's when its client code is in ``crm.erasures`` — the ERP may re-export the
    same code with a new address — or when its address hashes to an erased marker — a new client
    code with the old address: that code is then recorded in ``crm.erasures`` too and everything
    derived about it goes (scores, events... as the erasure does). Such rows get the erasure's
    policy (personal columns NULL, opt_out true, email_valid false); quarantined rows of the run
    holding such an address or client code keep their place in the run's accounting but lose their
    raw values (as retention does).
    """
    codes, markers = erased_keys(conn)
    if not codes and not markers:
        return 0
    tables = catalog(conn)
    scope = [e for e in catalogue.CATALOGUE
             if e.schema == "etl" and e.policy in (Policy.ANONYMISE_MASTER, Policy.BLANK_PERSONAL)
             and e.table in tables and (datasets is None or e.name in datasets)]
    params = {"codes": codes, "markers": markers, "run_id": run_id}
    changed = 0
    by_marker = sql.SQL("({} IS NOT NULL AND {} = ANY(%(markers)s::text[]))")
    # a new client code with an erased address: recorded as erased, and erased
    new_codes: set[str] = set()
    new_markers: set[str] = set()
    for entry in scope:
        if not (entry.client_code and entry.email):
            continue
        email = sql.Identifier(entry.email)
        marker = _marker_of(email)
        only_run = (sql.SQL(" AND loaded_run = %(run_id)s")
                    if run_id is not None and "loaded_run" in tables[entry.table].columns else sql.SQL(""))
        for code, found in conn.execute(sql.SQL(
                "SELECT DISTINCT {}, {} FROM {} WHERE {} AND {} <> ALL(%(codes)s::text[]){}").format(
                sql.Identifier(entry.client_code), marker, entry.ident, by_marker.format(email, marker),
                sql.Identifier(entry.client_code), only_run), params):
            new_codes.add(code)
            new_markers.add(found)
    if new_codes:
        _register(conn, f"load:{run_id}" if run_id else "reapply_erasures", sorted(new_codes),
                  markers=sorted(new_markers))
        derived = ErasureReport(person=Person([], []), dry_run=False)
        _apply_policies(conn, tables, {"codes": sorted(new_codes), "addrs": []}, derived,
                        skip=(Policy.DELETE_RAW,))
        changed += sum(o.total for o in derived.tables.values())
        log.warning("Erasure re-applied: %d new client code(s) came with the address of a person erased earlier; "
                    "recorded in crm.erasures and erased (%s)", len(new_codes),
                    ", ".join(f"{n}: {_counts(o)}" for n, o in sorted(derived.tables.items())) or "nothing derived yet")
        codes = sorted(set(codes) | new_codes)
        params["codes"] = codes
    for entry in scope:
        table = tables[entry.table]
        parts = []
        if entry.client_code:
            parts.append(sql.SQL("{} = ANY(%(codes)s::text[])").format(sql.Identifier(entry.client_code)))
        if entry.email:
            email = sql.Identifier(entry.email)
            parts.append(by_marker.format(email, _marker_of(email)))
        match = sql.SQL("({})").format(sql.SQL(" OR ").join(parts))
        if run_id is not None and "loaded_run" in table.columns:
            match = sql.SQL("{} AND loaded_run = %(run_id)s").format(match)
        columns = [c for c in entry.personal if c in table.columns and table.columns[c].nullable]
        rows = _anonymise(conn, table, columns, match, params)
        if rows:
            log.info("Erasure re-applied: %d row(s) of %s brought back by an export anonymised again", rows,
                     entry.table)
        changed += rows
    changed += _reapply_to_quarantine(conn, tables, params, run_id, datasets)
    return changed


def reapply_erasures_to_quarantine(conn: psycopg.Connection, *, run_id: str) -> int:
    """The quarantine part of ``reapply_erasures`` for one run, after validation: rows rejected
    from an export (a file refused by the quality gate is never loaded) lose the raw values of
    an erased person. Does not commit."""
    codes, markers = erased_keys(conn)
    if not codes and not markers:
        return 0
    return _reapply_to_quarantine(conn, catalog(conn), {"codes": codes, "markers": markers, "run_id": run_id},
                                  run_id, None)


def _reapply_to_quarantine(conn: psycopg.Connection, tables: dict[str, Table], params: dict, run_id: str | None,
                           datasets: list[str] | None) -> int:
    changed = 0
    quarantine = tables.get("etl.quarantine")
    if quarantine is not None and {"raw_values", "reason", "dataset"} <= set(quarantine.columns):
        marker = _marker_of(sql.SQL("(v #>> '{}')"))
        only = sql.SQL("")
        if run_id is not None:
            only = sql.SQL("{} AND run_id = %(run_id)s").format(only)
        if datasets is not None:
            only = sql.SQL("{} AND dataset = ANY(%(datasets)s::text[])").format(only)
        rows = conn.execute(sql.SQL(
            """UPDATE etl.quarantine
               SET raw_values = NULL,
                   reason = file_path || coalesce(' line ' || row_no, '') || ': '
                            || coalesce(column_name || ': ', '') || array_to_string(expectations, ', ')
                            || ' (details erased: GDPR erasure)'
               WHERE raw_values IS NOT NULL{}
                 AND (btrim(raw_values ->> 'client_code') = ANY(%(codes)s::text[])
                      OR EXISTS (SELECT 1 FROM jsonb_path_query(raw_values, 'strict $.**') v
                                 WHERE jsonb_typeof(v) = 'string'
                                   AND (strpos(v #>> '{{}}', '@') > 0 OR starts_with(v #>> '{{}}', 'erased:'))
                                   AND {} = ANY(%(markers)s::text[])))""").format(only, marker),
            {**params, "datasets": list(datasets or [])}).rowcount
        if rows:
            log.info("Erasure re-applied: %d quarantined row(s) lost their raw values", rows)
        changed += rows
    return changed


# --------------------------------------------------------------------------------------------
# the summary a person reads


def _counts(outcome: TableOutcome, would: bool = False) -> str:
    verb = "would be " if would else ""
    parts = []
    if outcome.deleted:
        parts.append(f"{outcome.deleted} {verb}deleted")
    if outcome.anonymised:
        parts.append(f"{outcome.anonymised} {verb}anonymised")
    if outcome.redacted:
        parts.append(f"{outcome.redacted} {verb}redacted (address replaced by {REDACTED})")
    return ", ".join(parts)


BREVO_WORDS = {"deleted": "contact deleted", "not_found": "no contact (nothing to delete)",
               "no_connection": "NOT deleted: no Brevo connection (BREVO_API_KEY is not set)",
               "error": "NOT deleted: Brevo error (see below)",
               "not_allowed": "NOT deleted: Brevo does not let the API delete this contact (405: a contact registered "
                              f"with Brevo): {DELETE_BY_HAND}"}


def format_summary(report: ErasureReport) -> str:
    """What was (or, in a dry run, would be) erased. Addresses appear only as typed; an address
    found from a client code is shown only where a person must finish the job by hand (Brevo)."""
    person = report.person
    would = report.dry_run
    lines = []
    typed = person.typed_addresses + person.typed_codes
    lines.append(f"{'DRY RUN — nothing changed. ' if would else ''}Erasure of {', '.join(typed)}")
    if person.unknown_codes:
        lines.append(f"  unknown client code(s): {', '.join(person.unknown_codes)}")
    if not report.found:
        if report.already_erased or (person.typed_codes and not person.unknown_codes):
            lines.append("  Nothing left to erase: the warehouse and the files hold nothing more about this person "
                         "(already erased).")
        else:
            lines.append("  Nothing found: no customer, e-mail, event or file holds this address or client code; "
                         "nothing was erased (check the spelling).")
    else:
        found_addresses = len(person.addresses) - len([a for a in person.typed_addresses if a in person.addresses])
        lines.append(f"  customer records: {', '.join(person.client_codes) or 'none'}; addresses: "
                     f"{len(person.addresses)} ({found_addresses} found from the records)")
        width = max([len(n) for n in report.tables] + [len("crm.suppressions")])
        verb = "would be " if would else ""
        for name, outcome in sorted(report.tables.items()):
            lines.append(f"  {name:<{width}}  {_counts(outcome, would)}")
        lines.append(f"  {'crm.suppressions':<{width}}  {report.suppressions_removed} plain address row(s) "
                     f"{verb}removed, {report.markers_added} erased marker(s) {verb}added"
                     + (" (the marker was already there)" if report.already_erased and not report.markers_added else ""))
        if report.register_rows:
            lines.append(f"  {'crm.erasures':<{width}}  erasure {verb}recorded (client codes and address hashes: "
                         "scoring, campaigns and events skip them; each load anonymises them again)")
        if report.consent_rows:
            lines.append(f"  {'crm.consent_log':<{width}}  {report.consent_rows} final opt-out(s) {verb}recorded "
                         "(source privacy_erase, client code only)")
        roots = file_roots()
        lines.append(f"  files {verb}removed: {len(report.files)}")
        for path in report.files:
            root = next((r for r in roots if _under(path, r)), None)
            lines.append(f"    {path.relative_to(root) if root else path}"
                         + ("  (Data Docs page: rebuilt on the next run)" if _under(path, settings.paths().docs_dir)
                            else ""))
        for path, removed in sorted(report.sms_lines.items()):
            root = next((r for r in roots if _under(path, r)), None)
            lines.append(f"  SMS outbox {path.relative_to(root) if root else path}: {removed} line(s) about the person "
                         f"{verb}removed" + (f" (the file {verb}removed: it held only them)"
                                             if path in report.sms_files_emptied else ""))
        if report.work_parts:
            lines.append(f"  run work files: {sum(report.work_parts.values())} row(s) in {len(report.work_parts)} "
                         f"file(s) {verb}left without their personal values (names, contact details, raw line)")
        if report.data_docs_rebuilt is False:
            lines.append("  Data Docs index not rebuilt now: the next run rebuilds it.")
    if report.brevo:
        for i, address in enumerate(person.addresses):
            status = report.brevo.get(address)
            if status is None:
                continue
            shown = address if address in person.typed_addresses else f"address #{i + 1} (found from the records)"
            if status in ("no_connection", "error", "not_allowed") and address not in person.typed_addresses:
                shown = f"{address} (found from the records; delete this contact in Brevo by hand or rerun with --email)"
            lines.append(f"  Brevo: {shown}: {BREVO_WORDS[status]}")
    elif would:
        lines.append("  Brevo: contact(s) would be deleted after the commit")
    if report.brevo_error:
        lines.append(f"  Brevo error: {report.brevo_error}")
        lines.append("  The warehouse part is done. Run the same command again to delete the Brevo contact(s), "
                     "adding --email for any address shown above as found from the records (the erasure is "
                     "idempotent: a second run finds nothing more in the warehouse and asks Brevo again).")
    if report.found:
        lines.append(textwrap.fill(RAW_NOTE, width=100, initial_indent="  Note: ", subsequent_indent="        "))
    return "\n".join(lines)
