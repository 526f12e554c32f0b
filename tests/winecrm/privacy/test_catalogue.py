"""The catalogue of personal data against the real, migrated warehouse: every etl/crm table or
column that may hold personal data is in it, everything it names exists, and the erasure refuses
to run while the warehouse has something it does not describe."""

from __future__ import annotations

import pytest
from winecrm.privacy import catalogue, erase, identity, schema
from winecrm.privacy.catalogue import Policy

from tests.fakes.estate import seed_warehouse


def test_every_personal_table_and_column_of_the_warehouse_is_catalogued(conn):
    tables = schema.catalog(conn)
    assert catalogue.uncatalogued(tables) == [], (
        "a migration added a table or column that may hold personal data: add it to winecrm/privacy/catalogue.py")
    assert catalogue.missing(tables) == []


def test_a_new_personal_table_or_column_is_noticed(conn):
    conn.execute("CREATE TABLE crm.zz_leads (client_code text, nom text, score integer)")
    conn.execute("CREATE TABLE etl.zz_feed (payload jsonb)")
    conn.execute("ALTER TABLE crm.tasks ADD COLUMN mobile text")
    conn.execute("ALTER TABLE crm.customer_tags ADD COLUMN date_naissance text")
    conn.execute("ALTER TABLE crm.rfm_scores ADD COLUMN notes jsonb")
    conn.execute("ALTER TABLE crm.tasks ADD COLUMN phone_checked boolean")  # a flag holds no number
    assert catalogue.uncatalogued(schema.catalog(conn)) == [
        "crm.customer_tags.date_naissance", "crm.rfm_scores.notes", "crm.tasks.mobile",
        "crm.zz_leads (client_code, nom)", "etl.zz_feed (payload)"]


def test_a_catalogued_column_the_warehouse_lost_is_noticed(conn):
    conn.execute("ALTER TABLE crm.score_changes DROP COLUMN reason")
    conn.execute("ALTER TABLE etl.ventes_lignes RENAME COLUMN ville TO commune")
    assert sorted(catalogue.missing(schema.catalog(conn))) == ["crm.score_changes.reason", "etl.ventes_lignes.ville"]


def test_the_erasure_refuses_while_a_personal_column_is_not_catalogued(conn, crm_dirs):
    seed_warehouse(conn, 2)
    conn.execute("ALTER TABLE crm.customer_tags ADD COLUMN telephone text")
    conn.execute("INSERT INTO crm.customer_tags (client_code, tag, telephone) VALUES ('C000000', 'vip', '0611223344')")
    conn.commit()
    with pytest.raises(erase.ErasureError, match=r"refused, nothing was changed: crm\.customer_tags\.telephone"):
        erase.erase(conn, client_codes=["C000000"])
    assert conn.execute("SELECT nom, email FROM etl.clients WHERE client_code = 'C000000'").fetchone() == (
        "Nom", "client0@example.fr")
    assert conn.execute("SELECT count(*) FROM crm.customer_tags").fetchone()[0] == 1


def test_each_entry_says_how_to_find_the_person_when_its_policy_acts_on_their_rows():
    acting = (Policy.ANONYMISE_MASTER, Policy.BLANK_PERSONAL, Policy.DELETE_DERIVED, Policy.CLEAR_LEDGER,
              Policy.SUPPRESSION_MARKER, Policy.DELETE_RAW)
    for entry in catalogue.CATALOGUE:
        assert entry.label_fr.strip(), entry.table
        if entry.policy in acting:
            assert entry.findable, entry.table
        if entry.policy in (Policy.ANONYMISE_MASTER, Policy.BLANK_PERSONAL, Policy.CLEAR_LEDGER):
            assert entry.personal, entry.table
    assert len({e.table for e in catalogue.CATALOGUE}) == len(catalogue.CATALOGUE)


def test_person_rows_gives_an_access_export_everything_about_the_person(conn):
    seed_warehouse(conn, 3)
    conn.execute("INSERT INTO crm.customer_tags (client_code, tag) VALUES ('C000001', 'vip'), ('C000002', 'x')")
    conn.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES ('client1@example.fr', 'unsubscribed', "
                 "'unsubscribe_link')")
    person = identity.identify(conn, schema.catalog(conn), ["client1@example.fr"], [])
    rows = catalogue.person_rows(conn, person)
    assert set(rows) == {"etl.clients", "crm.recommendations", "crm.customer_tags", "crm.suppressions"}
    assert [r["email"] for r in rows["etl.clients"]] == ["client1@example.fr"]
    assert {r["client_code"] for r in rows["crm.recommendations"]} == {"C000001"}
    assert [r["tag"] for r in rows["crm.customer_tags"]] == ["vip"]


def test_the_catalogue_recognises_every_column_the_masking_list_calls_personal():
    """winecrm/core/personal.py lists the delivered personal columns (masked in logs): a warehouse
    column of any of those names must be caught by the catalogue's check too."""
    from winecrm.core.personal import PERSONAL_COLUMNS

    assert [c for c in sorted(PERSONAL_COLUMNS) if not catalogue.looks_personal(c, "text")] == []
