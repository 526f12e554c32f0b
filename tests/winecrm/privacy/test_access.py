"""A person's access request (GDPR art. 15 and 20) on the sample estate after a real weekly run:
everything held about them in JSON, the letter in French, Brevo's contact asked over HTTP."""

from __future__ import annotations

import json
import re

import pytest
from winecrm.privacy import __main__ as privacy_cli
from winecrm.privacy import access

from tests.conftest import WEEKLY_RUN_SAMPLE_ESTATE, template_for
from tests.fakes.brevo import FakeBrevoServer


warehouse_template = template_for(estate=WEEKLY_RUN_SAMPLE_ESTATE)


@pytest.fixture
def estate(conn, crm_dirs, prepared, monkeypatch):
    """The sample estate after a real weekly run (the test's own warehouse and folders), and a
    person of it with everything a profile holds."""
    prepared(*WEEKLY_RUN_SAMPLE_ESTATE).restore(crm_dirs, monkeypatch)
    code, address = conn.execute("""
        SELECT c.client_code, lower(btrim(c.email)) FROM etl.clients c
        WHERE c.email LIKE '%@%' AND c.telephone IS NOT NULL
          AND EXISTS (SELECT 1 FROM crm.recommendations r WHERE r.client_code = c.client_code AND NOT r.is_control)
          AND EXISTS (SELECT 1 FROM crm.email_sends s WHERE s.client_code = c.client_code)
        ORDER BY c.client_code LIMIT 1""").fetchone()
    return code, address


def test_the_export_holds_every_place_the_erasure_would_touch(conn, estate, crm_dirs):
    from winecrm.privacy import erase

    code, address = estate
    export = access.collect(conn, [address])
    assert export.person.client_codes == [code]
    held = {table for table, rows in export.tables.items() if rows}
    assert {"etl.clients", "etl.ventes_lignes", "crm.customer_360", "crm.rfm_scores", "crm.lead_scores",
            "crm.buy_probabilities", "crm.recommendations", "crm.email_sends"} <= held
    # the same rows a dry-run erasure reports, table by table
    report = erase.erase(conn, [address], dry_run=True)
    would = {t for t, o in report.tables.items() if o.deleted or o.anonymised}
    assert would - {"crm.suppressions"} <= held
    # the consent history starts at the ERP export that brought them in
    assert export.consent and export.consent[0]["source"] == "erp_export"
    assert export.consent[0]["change"] in ("opt_in", "opt_out")
    assert export.consent[0]["source_file"].endswith(".csv") or export.consent[0]["source_file"].endswith(".xlsx")


def test_the_files_say_it_in_json_and_in_french(conn, estate, crm_dirs, tmp_path):
    code, address = estate
    with FakeBrevoServer() as server:
        server.fake.lists[4] = {"name": "Clients du domaine (CRM)", "folderId": 1}
        server.fake.import_contacts({"listIds": [4], "jsonBody": [{"email": address}]})
        from winecrm.campaigns import brevo

        client = brevo.BrevoClient(brevo.BrevoCredentials(server.fake.api_key, server.url), sleep=lambda s: None)
        export = access.collect(conn, [], [code], brevo=client)
    data_path, letter_path = access.write(export, tmp_path)
    assert data_path.name == f"acces-{code}-{export.generated_at:%Y-%m-%d}.json"
    data = json.loads(data_path.read_text(encoding="utf-8"))
    assert data["client_codes"] == [code] and data["email_addresses"] == [address]
    assert data["brevo"][address]["listIds"] == [4]
    reasons = [r["reason_fr"] for r in data["warehouse"]["crm.recommendations"]]
    assert reasons and all(reasons)
    letter = letter_path.read_text(encoding="utf-8")
    for heading in ("Qui vous êtes pour nous", "Vos achats", "Ce que nous en déduisons", "Nos suggestions de vins",
                    "E-mails du domaine", "Votre consentement", "Chez notre prestataire d'envoi", "Vos droits"):
        assert heading in letter, heading
    assert address in letter and code in letter
    assert "fiche client de notre logiciel de cave (fichier clients_" in letter
    # French typography (FRENCH-COPY.md): no ordinary space before : ; ! ? % €, dates in words
    assert not re.search(r" [:;!?%€»]", letter), re.findall(r".{20} [:;!?%€»]", letter)[:3]
    assert not re.search(r"(?<![_\d-])\d{4}-\d\d-\d\d(?![\d.])", letter)  # file names keep theirs

    assert re.search(r"\d{1,2}(er)?[ \u00a0](janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|"
                     r"décembre) \d{4}", letter)


def test_someone_we_do_not_know_gets_a_letter_saying_so(conn, crm_dirs, tmp_path, capsys):
    assert privacy_cli.main(["export", "--email", "personne@inconnu.example", "--out", str(tmp_path)]) == 0
    (letter,) = tmp_path.glob("acces-*.txt")
    assert "Nous ne détenons aucune donnée à votre sujet" in letter.read_text(encoding="utf-8")
    assert "personne@inconnu.example" not in letter.name
    assert "nothing held" in capsys.readouterr().out


def test_an_erasure_removes_the_access_files_it_finds(conn, estate, crm_dirs):
    from winecrm.privacy import erase

    code, address = estate
    data_path, letter_path = access.write(access.collect(conn, [address]))  # under the reports folder
    report = erase.erase(conn, [address])
    assert data_path in report.files and letter_path in report.files
    assert not data_path.exists() and not letter_path.exists()


def test_the_export_waits_for_a_load_that_empties_and_refills_the_sales(conn, estate, warehouse_url):
    """A re-delivered sales history is loaded by emptying the table and refilling it in one
    transaction (etl/load.py, keep_unreplaced). TRUNCATE is not MVCC-safe: a REPEATABLE READ
    snapshot taken before its commit would read the table empty afterwards. The export locks the
    table before its first query, so it waits for the load and reads what it wrote."""
    import threading
    import time

    import psycopg

    code, address = estate
    lines = conn.execute("SELECT count(*) FROM etl.ventes_lignes WHERE client_code = %s", (code,)).fetchone()[0]
    assert lines > 0
    conn.commit()  # (its read lock would hold the load's TRUNCATE up)
    with psycopg.connect(warehouse_url) as loader:
        loader.execute("CREATE TEMP TABLE kept AS SELECT * FROM etl.ventes_lignes")
        loader.execute("TRUNCATE etl.ventes_lignes")
        loader.execute("INSERT INTO etl.ventes_lignes SELECT * FROM kept")
        exported = {}

        def export():
            with psycopg.connect(warehouse_url) as reader:
                exported["tables"] = access.collect(reader, [address], with_files=False).tables

        reader_thread = threading.Thread(target=export)
        reader_thread.start()
        time.sleep(1.0)  # the export has started (and, without its lock, taken its snapshot)
        assert reader_thread.is_alive(), "the export did not wait for the load's transaction"
        loader.commit()
        reader_thread.join(timeout=60)
    assert len(exported["tables"]["etl.ventes_lignes"]) == lines
