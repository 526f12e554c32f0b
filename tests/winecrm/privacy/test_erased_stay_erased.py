"""An erasure must hold whatever runs afterwards: the weekly scoring of the same week, and the
next ERP export bringing the person back (same client code with a new address, or a new client
code with the old address). Real exports through the real pipeline stages, on real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from winecrm import pipeline
from winecrm.etl import load
from winecrm.privacy import erase

from tests.conftest import MONDAY_RUN, sales_line, template_for, write_export

CLIENTS_HEADER = "client_code;nom;prenom;email;telephone;adresse;code_postal;ville"
PERSON = "C1"
ADDRESS = "hildegarde@example.fr"
PER_CUSTOMER = ("crm.customer_360", "crm.rfm_scores", "crm.lead_scores", "crm.buy_probabilities",
                "crm.recommendations", "crm.recommendation_exclusions")


def _clients(raw, name, rows):
    write_export(raw, "clients", name, rows, header=CLIENTS_HEADER)


def _first_week(conn, raw) -> None:
    """Six customers with a few orders each, their details, stock to recommend from; run_1 goes
    as far as the recommendations."""
    _clients(raw, "clients_2026-11-09.csv", [
        f"{PERSON};Zuckerstein;Hildegarde;{ADDRESS};06 11 22 33 44;7 rue des Vignes;68340;Riquewihr",
        *[f"C{i};Nom{i};Prenom{i};client{i}@example.fr;06 00 00 00 0{i};{i} rue Haute;67000;Strasbourg"
          for i in range(2, 7)]])
    lines = []
    for i in range(1, 7):
        for k, (day, article) in enumerate([("02/03/2026", "RIES-22"), ("10/06/2026", "CREBRUT"),
                                            ("05/11/2026", "GEWU-21")][: 1 + i % 3]):
            lines.append(sales_line(client=f"C{i}", date=day, doc_no=f"F{i}{k}", article=article,
                                    email=ADDRESS if i == 1 else f"client{i}@example.fr",
                                    cp="68340" if i == 1 else "67000", ville="Riquewihr" if i == 1 else "Strasbourg"))
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", lines)
    write_export(raw, "stock", "stock_2026-11-09.csv",
                 ["RIES-22;2022;Cave;10;bt", "CREBRUT;0;Cave;4;bt", "GEWU-21;2021;Cave;8;bt"],
                 header="article;millesime;entrepot;quantite;unite")
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    for stage in pipeline.stages_until(pipeline.run_recommend):
        stage(conn, "run_1")


def _rows_about(conn, code) -> dict[str, int]:
    counts = {t: conn.execute(f"SELECT count(*) FROM {t} WHERE client_code = %s", (code,)).fetchone()[0]
              for t in PER_CUSTOMER}
    conn.rollback()
    return counts


def _revenue(conn) -> tuple:
    row = conn.execute("SELECT count(*), sum(mt_ht), count(*) FILTER (WHERE client_code = %s), "
                       "sum(mt_ht) FILTER (WHERE client_code = %s) FROM etl.ventes_lignes", (PERSON, PERSON)).fetchone()
    conn.rollback()
    return row


def _first_week_then_erasure(conn, dirs):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(erase, "_rebuild_data_docs", lambda: True)
        _first_week(conn, dirs["raw"])
        profiled = _rows_about(conn, PERSON)
        assert profiled["crm.customer_360"] and profiled["crm.rfm_scores"] and profiled["crm.lead_scores"]
        assert profiled["crm.buy_probabilities"]
        assert profiled["crm.recommendations"] or profiled["crm.recommendation_exclusions"]
        revenue = _revenue(conn)
        report = erase.erase(conn, [ADDRESS])
        assert report.person.client_codes == [PERSON]
        assert not any(_rows_about(conn, PERSON).values())  # the erasure itself deleted them
        return revenue


ERASED = (("six customers", "run_1 until recommend, then PERSON erased"), _first_week_then_erasure)


warehouse_template = template_for(erased=ERASED)


@pytest.fixture
def erased(conn, crm_dirs, prepared, monkeypatch):
    """The first week run and PERSON erased (the test's own warehouse and folders); the sales
    figures from before the erasure."""
    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: True)
    state = prepared(*ERASED)
    state.restore(crm_dirs, monkeypatch)
    return state.value


def test_the_next_scoring_of_the_week_does_not_profile_an_erased_customer_again(conn, erased):
    others_before = _rows_about(conn, "C2")
    pipeline.run_score(conn, "run_1")       # the weekly scoring of the same week, run again
    pipeline.run_recommend(conn, "run_1")
    assert _rows_about(conn, PERSON) == dict.fromkeys(PER_CUSTOMER, 0)
    assert _rows_about(conn, "C2") == others_before  # everyone else is scored as before
    # their sales still count, anonymously: the lines and the revenue are all there
    assert _revenue(conn) == erased
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes WHERE client_code = %s AND email IS NULL "
                        "AND ville IS NULL", (PERSON,)).fetchone()[0] == erased[2]
    # and the register says who, without the address
    assert conn.execute("SELECT client_codes, markers, source FROM crm.erasures").fetchall() == [
        ([PERSON], [erase.erased_marker(ADDRESS)], "privacy_erase")]


def test_the_campaign_audience_leaves_an_erased_customer_out_whatever_an_older_run_left(conn, erased):
    """Recommendations rendered before the register existed (or restored from a backup) do not
    put the person back in a campaign."""
    from winecrm.core.queries import named_steps

    conn.execute("INSERT INTO crm.recommendations (as_of_date, client_code, rank, scenario, segment, article, score, "
                 "reason_fr, is_control, computed_run) VALUES ('2026-11-15', %s, 1, 'rebuy', 'VIP', 'RIES-22', 1, "
                 "'x', false, 'old')", (PERSON,))
    recipients = dict(named_steps("campaign"))["recipients"]
    codes = [r[0] for r in conn.execute(recipients, {"as_of": "2026-11-15", "silence_days": 135,
                                                     "campaign_id": "hebdo-2026-11-15"})]
    assert PERSON not in codes


def test_an_export_bringing_the_person_back_is_anonymised_before_anyone_can_read_it(conn, erased, crm_dirs,
                                                                                   warehouse_url):
    """The ERP re-exports the same client code with a new address, and a new client code with the
    old address. The run stops right after the load (each dataset committed): a second
    connection finds the personal columns empty, and the new code recorded as erased."""
    raw = crm_dirs["raw"]
    write_export(raw, "clients", "clients_2026-11-16.csv", [
        f"{PERSON};Zuckerstein;Hildegarde;nouvelle@example.fr;06 11 22 33 44;8 rue Neuve;68340;Riquewihr;non",
        f"C9;Zuckerstein;Hildegarde;{ADDRESS.upper()};06 11 22 33 44;7 rue des Vignes;68340;Riquewihr;non",
        "C2;Nom2;Prenom2;client2@example.fr;06 00 00 00 02;2 rue Haute;67000;Strasbourg;non"],
        header=CLIENTS_HEADER + ";opt_out")
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(client=PERSON, date="12/11/2026", doc_no="G1", email="nouvelle@example.fr", cp="68340",
                   ville="Riquewihr"),
        sales_line(client="C9", date="13/11/2026", doc_no="G2", email=ADDRESS, cp="68340", ville="Riquewihr"),
        sales_line(client="C2", date="13/11/2026", doc_no="G3", email="client2@example.fr")])
    pipeline.prepare(conn, pipeline.week_window("run_2", MONDAY_RUN))
    pipeline.run_ingest(conn, "run_2")
    pipeline.run_validate(conn, "run_2")
    load.load(conn, "run_2")  # each dataset commits; nothing runs after it

    with psycopg.connect(warehouse_url) as other:
        clients = other.execute("SELECT client_code, nom, prenom, email, telephone, adresse, ville, opt_out "
                                "FROM etl.clients WHERE client_code IN (%s, 'C9', 'C2') ORDER BY 1",
                                (PERSON,)).fetchall()
        assert clients == [
            (PERSON, None, None, None, None, None, None, True),
            ("C2", "Nom2", "Prenom2", "client2@example.fr", "06 00 00 00 02", "2 rue Haute", "Strasbourg", False),
            ("C9", None, None, None, None, None, None, True)]
        assert other.execute("SELECT count(*) FROM etl.ventes_lignes WHERE client_code IN (%s, 'C9') "
                             "AND (email IS NOT NULL OR ville IS NOT NULL OR code_postal IS NOT NULL)",
                             (PERSON,)).fetchone()[0] == 0
        assert other.execute("SELECT count(*) FROM etl.ventes_lignes WHERE document_no IN ('G1', 'G2')").fetchone()[0] == 2
        assert other.execute("SELECT ville FROM etl.ventes_lignes WHERE document_no = 'G3'").fetchone()[0] == "Strasbourg"
        assert other.execute("SELECT array_agg(client_code ORDER BY client_code) FROM crm.erased_clients"
                             ).fetchone()[0] == [PERSON, "C9"]
        assert other.execute("SELECT source FROM crm.erasures WHERE 'C9' = ANY(client_codes)").fetchone()[0] == "load:run_2"
        # the export's consent column starts no new history for them (it does for C2)
        assert other.execute("SELECT client_code FROM crm.consent_log WHERE source = 'erp_export' ORDER BY 1"
                             ).fetchall() == [("C2",)]
    # and the new code is not profiled either
    pipeline.run_score(conn, "run_2")
    assert _rows_about(conn, "C9") == dict.fromkeys(PER_CUSTOMER, 0) | {"crm.recommendations": 0}


def test_rows_of_an_erased_person_refused_by_validation_lose_their_raw_values(conn, erased, crm_dirs):
    """A customers export with a rejected row about the erased person (no client code, their
    address): the validate stage itself clears its raw values — a file refused by the quality
    gate never reaches the load, which would otherwise do it."""
    _clients(crm_dirs["raw"], "clients_2026-11-16.csv", [
        f"{PERSON};Zuckerstein;Hildegarde;pas-une-adresse {ADDRESS};06 11 22 33 44;7 rue des Vignes;68340;Riquewihr",
        f";Zuckerstein;Hildegarde;{ADDRESS};06 11 22 33 44;7 rue des Vignes;68340;Riquewihr"])
    pipeline.prepare(conn, pipeline.week_window("run_2", MONDAY_RUN))
    pipeline.run_ingest(conn, "run_2")
    pipeline.run_validate(conn, "run_2")
    rows = conn.execute("SELECT raw_values, reason FROM etl.quarantine WHERE run_id = 'run_2'").fetchall()
    assert rows and all(raw is None and "Zuckerstein" not in reason and ADDRESS not in reason.lower()
                        for raw, reason in rows), rows


def test_a_person_erased_between_validate_and_the_data_docs_is_in_no_page_they_write(conn, crm_dirs, monkeypatch):
    """validate keeps what it found for the data_docs task, which runs beside the load: a person
    erased in between shows in none of the pages it then writes — their lines' values are blanked
    in those records, found by the client code of the line even where the value itself (a
    mistyped address) would not say whose it is. Another customer's value still shows."""
    from winecrm.core import settings
    from winecrm.core.storage import run_work_dir

    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: True)
    raw = crm_dirs["raw"]
    _first_week(conn, raw)
    typo = "hildegarde.zuckerstein@example"  # no top-level domain: the e-mail format rule flags it
    write_export(raw, "clients", "clients_2026-11-16.csv", [  # every column: checked without GX's engine
        f"{PERSON};Zuckerstein;Hildegarde;{typo};06 11 22 33 44;7 rue des Vignes;68340;Riquewihr;France;non",
        "C2;Nom2;Prenom2;pas-une-adresse;06 00 00 00 02;2 rue Haute;67000;Strasbourg;France;non"],
        header=CLIENTS_HEADER + ";pays;opt_out")
    pipeline.prepare(conn, pipeline.week_window("run_2", MONDAY_RUN))
    pipeline.run_ingest(conn, "run_2")
    pipeline.run_validate(conn, "run_2")
    kept = "".join(p.read_text(encoding="utf-8") for p in run_work_dir("run_2").rglob("found-*.json"))
    assert typo in kept and "pas-une-adresse" in kept  # the test has teeth

    report = erase.erase(conn, [ADDRESS])
    assert report.person.client_codes == [PERSON] and any("found-" in path for path in report.work_parts)
    pipeline.run_data_docs(conn, "run_2")

    pages = [p.read_text(encoding="utf-8") for p in settings.paths().data_docs_site.rglob("*.html")]
    assert any("pas-une-adresse" in page for page in pages)
    assert not [page for page in pages if "zuckerstein" in page.lower() or "hildegarde" in page.lower()]
