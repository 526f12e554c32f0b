"""Where the warehouse holds personal data: one declarative list, read by the erasure (and by an
access export).

Why a list and not only ``information_schema``: a generic scan finds columns, not meaning. It
cannot tell a customer master (anonymise, keep the client code so revenue still joins) from a
derived score (delete), a ledger (keep the row, clear its content: exactly-once sending depends
on it) or the erasure register (keep: it is the proof and the guard). Each table holding
personal data or keyed by customer says here how the person's rows are found (client code,
address, phone, jsonb), which columns are personal, what the erasure does with them, and its
French label for a person's access request.

Nothing is allowed to slip past the list:

- ``uncatalogued(tables)`` names every base table or column of ``etl``/``crm`` that looks
  personal (``PERSONAL_COLUMN``: client code, e-mail, phone, recipient, name, address, postcode,
  town, birth date, or any json/jsonb column) and is not listed; the erasure refuses to run
  while one exists, and a test fails;
- ``missing(tables)`` names what the list mentions and the warehouse does not have;
- the erasure still scans every text/jsonb column of every table at the end (``erase.verify_absent``).

A new migration that adds such a table or column adds its entry here in the same change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

import psycopg
from psycopg import sql


class Policy(str, Enum):
    """What the erasure does with the person's rows of a table."""

    ANONYMISE_MASTER = "anonymise master"        # keep the row (client code joins the sales), NULL the personal columns, opt_out
    BLANK_PERSONAL = "blank personal columns"    # keep the row (ERP history, revenue), NULL the personal columns
    DELETE_DERIVED = "delete derived"            # per-customer data we computed or collected: the rows go
    CLEAR_LEDGER = "clear ledger"                # keep the row (exactly-once sending), clear its content
    SUPPRESSION_MARKER = "marker for suppressions"  # the plain address replaced by erased:<sha256>
    DELETE_RAW = "delete raw quarantine"         # rejected input rows holding the person: deleted
    KEEP_REGISTER = "keep register"              # the erasure register: client codes and markers, no address
    REDACT_FREE_TEXT = "redact free text"        # no per-person rows; the address or name replaced by [erased] where written


@dataclass(frozen=True)
class Entry:
    table: str                                   # schema.name
    policy: Policy
    label_fr: str                                # what a person reads in an access export
    client_code: str | None = None               # column holding the client code
    email: str | None = None                     # column holding the address
    phones: tuple[str, ...] = ()                 # columns holding a phone number
    json: tuple[str, ...] = ()                   # jsonb searched for the address (anywhere) and "client_code" (top level)
    personal: tuple[str, ...] = ()               # columns cleared (anonymise / blank / ledger) and shown in an export
    free_text: tuple[str, ...] = ()              # free text that may quote an address or a name (redacted)
    identity_source: bool = False                # pairs (address, client code) found here are authoritative
    keep: str = ""                               # SQL: rows of the person a delete policy keeps (the erasure's own record)
    note: str = ""

    @property
    def schema(self) -> str:
        return self.table.split(".")[0]

    @property
    def name(self) -> str:
        return self.table.split(".")[1]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def columns(self) -> set[str]:
        """Every column the entry names."""
        return ({c for c in (self.client_code, self.email) if c} | set(self.phones) | set(self.json)
                | set(self.personal) | set(self.free_text))

    @property
    def findable(self) -> bool:
        return bool(self.client_code or self.email or self.json)


CATALOGUE: tuple[Entry, ...] = (
    # ---- etl: what the ERP exports
    Entry("etl.clients", Policy.ANONYMISE_MASTER, "Fiche client (export iSaVigne)",
          client_code="client_code", email="email", phones=("telephone",),
          personal=("nom", "prenom", "email", "telephone", "adresse", "code_postal", "ville", "pays"),
          identity_source=True,
          note="the client code stays so that the sales lines still join; opt_out true, email_valid false"),
    Entry("etl.ventes_lignes", Policy.BLANK_PERSONAL, "Lignes de vente (factures, avoirs)",
          client_code="client_code", email="email", personal=("email", "code_postal", "ville"),
          identity_source=True, note="revenue history: amounts and client code kept, anonymously"),
    Entry("etl.quarantine", Policy.DELETE_RAW, "Lignes d'export refusées (quarantaine)",
          json=("raw_values",), free_text=("reason", "column_name")),
    Entry("etl.runs", Policy.REDACT_FREE_TEXT, "Journal des traitements hebdomadaires",
          json=(), free_text=("details", "params", "stage_seconds", "error", "note")),
    Entry("etl.file_manifest", Policy.REDACT_FREE_TEXT, "Registre des fichiers reçus",
          free_text=("header_mapping", "warnings", "status_reason", "sheet_name")),
    # ---- crm: what we computed or collected per customer
    Entry("crm.customer_360", Policy.DELETE_DERIVED, "Vue client (achats, préférences)",
          client_code="client_code", email="email", identity_source=True),
    Entry("crm.rfm_scores", Policy.DELETE_DERIVED, "Scores RFM et segment", client_code="client_code"),
    Entry("crm.lead_scores", Policy.DELETE_DERIVED, "Score de prospect", client_code="client_code"),
    Entry("crm.lead_score_state", Policy.DELETE_DERIVED, "Dernier score de prospect vu", client_code="client_code"),
    Entry("crm.buy_probabilities", Policy.DELETE_DERIVED, "Probabilité d'achat", client_code="client_code"),
    Entry("crm.buy_probability_models", Policy.REDACT_FREE_TEXT, "Modèles de probabilité d'achat (agrégés)",
          free_text=("model", "lifetime_model"), note="aggregates only: no per-customer row"),
    Entry("crm.recommendations", Policy.DELETE_DERIVED, "Recommandations de vins", client_code="client_code"),
    Entry("crm.recommendation_exclusions", Policy.DELETE_DERIVED, "Exclusions des recommandations",
          client_code="client_code"),
    Entry("crm.email_sends", Policy.CLEAR_LEDGER, "E-mails envoyés ou préparés",
          client_code="client_code", email="email", json=(),
          personal=("email", "subject", "html", "text_body", "products", "unsubscribe_token", "brevo_message_id",
                    "error", "outbox_path"),
          identity_source=True,
          note="the row stays (never twice: unique per campaign and customer); test campaigns are not identity "
               "sources (an internal address paired with real customers)"),
    Entry("crm.campaigns", Policy.REDACT_FREE_TEXT, "Campagnes",
          free_text=("test_address", "decision_note", "decided_by")),
    Entry("crm.suppressions", Policy.SUPPRESSION_MARKER, "Adresses à ne plus contacter", email="email",
          note="the plain address replaced by erased:<sha256>: never e-mailed again, not kept"),
    Entry("crm.erasures", Policy.KEEP_REGISTER, "Registre des effacements (RGPD)",
          personal=("client_codes", "markers"),
          note="proof of the erasure and the guard for the next exports: client codes and address hashes only"),
    Entry("crm.webhook_events", Policy.DELETE_DERIVED, "Événements (ouvertures, clics, désinscriptions, achats)",
          client_code="client_code", email="email", json=("payload",),
          free_text=("message_key", "error", "intake_problem", "link", "custom")),
    Entry("crm.automation_actions", Policy.DELETE_DERIVED, "Actions des règles d'automatisation",
          client_code="client_code", email="email", json=("params", "result"), free_text=("error",)),
    Entry("crm.score_changes", Policy.DELETE_DERIVED, "Historique des points d'engagement",
          client_code="client_code", free_text=("reason",)),
    Entry("crm.customer_tags", Policy.DELETE_DERIVED, "Étiquettes client", client_code="client_code"),
    Entry("crm.tasks", Policy.DELETE_DERIVED, "Tâches et appels de l'équipe commerciale",
          client_code="client_code", free_text=("title",)),
    Entry("crm.campaign_pauses", Policy.DELETE_DERIVED, "Pauses des campagnes", client_code="client_code"),
    Entry("crm.consent_log", Policy.DELETE_DERIVED, "Historique du consentement",
          client_code="client_code", email="email", free_text=("detail",),
          keep="source = 'privacy_erase' AND email IS NULL",
          note="the history goes; the erasure then appends the person's final opt-out per client code "
               "(source privacy_erase, no address), which it keeps"),
)

BY_TABLE: dict[str, Entry] = {e.table: e for e in CATALOGUE}

# A text column that may hold personal data by its name (or any json/jsonb column, whatever its
# name). Numbers, dates and flags (email_valid, opt_out) cannot hold a person's details.
PERSONAL_COLUMN = re.compile(
    r"(client_code|e_?mail|phone|telephone|mobile|portable|recipient|^nom$|^prenom$|^(first_|last_|full_)?name$"
    r"|adresse|address|code_postal|postcode|zip_code|^ville$|^city$|^commune$|^pays$|^country$|naissance|birth"
    r"|civilite|societe)", re.I)
JSON_TYPES = ("json", "jsonb")
TEXT_LIKE = ("text", "character varying", "character", "ARRAY", "USER-DEFINED")

# Columns whose name looks personal and which are not, said here rather than silently skipped.
NOT_PERSONAL: dict[str, str] = {
    "etl.schema_migrations.name": "the migration file's name",
}


def looks_personal(column: str, data_type: str) -> bool:
    return data_type in JSON_TYPES or (data_type in TEXT_LIKE and bool(PERSONAL_COLUMN.search(column)))


def uncatalogued(tables) -> list[str]:
    """``schema.table`` or ``schema.table.column`` for every base table of etl/crm (``tables``:
    ``schema.catalog(conn)``) with a column that looks personal and that the catalogue does not
    list."""
    gaps = []
    for name, table in sorted(tables.items()):
        personal = [c.name for c in table.columns.values()
                    if looks_personal(c.name, c.data_type) and f"{name}.{c.name}" not in NOT_PERSONAL]
        if not personal:
            continue
        entry = BY_TABLE.get(name)
        if entry is None:
            gaps.append(f"{name} ({', '.join(personal)})")
            continue
        gaps += [f"{name}.{c}" for c in personal if c not in entry.columns]
    return gaps


def missing(tables) -> list[str]:
    """What the catalogue names and the warehouse does not have (a renamed or dropped column)."""
    gaps = []
    for entry in CATALOGUE:
        table = tables.get(entry.table)
        if table is None:
            gaps.append(entry.table)
            continue
        gaps += [f"{entry.table}.{c}" for c in sorted(entry.columns) if c not in table.columns]
    return gaps


def match(entry: Entry, *, with_json: bool = True, by_email: bool = True) -> sql.Composable | None:
    """SQL condition: the rows of ``entry`` about the person (%(codes)s client codes, %(addrs)s
    normalised addresses): client code, address, or a jsonb column holding the address anywhere
    or the client code under a top-level "client_code" key."""
    parts = []
    if entry.client_code:
        parts.append(sql.SQL("{} = ANY(%(codes)s::text[])").format(sql.Identifier(entry.client_code)))
    if entry.email and by_email:
        parts.append(sql.SQL("lower(btrim({})) = ANY(%(addrs)s::text[])").format(sql.Identifier(entry.email)))
    if with_json:
        for column in entry.json:
            ident = sql.Identifier(column)
            if by_email:
                parts.append(sql.SQL("EXISTS (SELECT 1 FROM unnest(%(addrs)s::text[]) a "
                                     "WHERE strpos(lower({}::text), a) > 0)").format(ident))
            parts.append(sql.SQL("btrim({} ->> 'client_code') = ANY(%(codes)s::text[])").format(ident))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts)) if parts else None


@dataclass
class PersonKeys:
    """How a person is found: normalised addresses and client codes (``identity.identify`` finds them)."""
    addresses: list[str] = field(default_factory=list)
    client_codes: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict:
        return {"addrs": self.addresses, "codes": self.client_codes}


def person_rows(conn: psycopg.Connection, person) -> dict[str, list[dict]]:
    """Every catalogued row about ``person`` (anything with ``addresses`` and ``client_codes``, such
    as ``identity.identify``'s result), per table: what an access export shows. The erasure register
    is left out (it holds no data about the person beyond the codes they gave)."""
    params = {"addrs": list(person.addresses), "codes": list(person.client_codes)}
    out: dict[str, list[dict]] = {}
    for entry in CATALOGUE:
        if not entry.findable or entry.policy is Policy.KEEP_REGISTER:
            continue
        condition = match(entry)
        cursor = conn.execute(sql.SQL("SELECT * FROM {} WHERE {}").format(entry.ident, condition), params)
        names = [d.name for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        if rows:
            out[entry.table] = rows
    return out
