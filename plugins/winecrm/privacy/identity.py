"""Who the person is: every client code and address that leads to them, in every table the
catalogue names as a source of identity, and the phone numbers and names their records hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from winecrm.core.personal import normalise_address
from winecrm.privacy import ErasureError, catalogue
from winecrm.privacy.schema import SEND_LEDGER, Table

DEFAULT_MAX_RECORDS = 10

# Where an (address, client code) pair is authoritative, to find every record of the person.
# Test campaigns are left out: their rows pair an internal tester's address with real customers.
IDENTITY_SOURCES = tuple(e.table for e in catalogue.CATALOGUE if e.identity_source)
PHONE_REGION = "FR"


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
