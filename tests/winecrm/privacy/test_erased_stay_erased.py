"""An erasure must hold whatever runs afterwards: the weekly scoring of the same week, and the
next ERP export bringing the person back (same client code with a new address, or a new client
code with the old address). Real exports through the real pipeline stages, on real PostgreSQL."""

from __future__ import annotations

import pytest
from winecrm import pipeline
from winecrm.privacy import erase

from tests.conftest import MONDAY_RUN, sales_line, write_export

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


@pytest.fixture
def erased(conn, crm_dirs, monkeypatch):
    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: True)
    _first_week(conn, crm_dirs["raw"])
    profiled = _rows_about(conn, PERSON)
    assert profiled["crm.customer_360"] and profiled["crm.rfm_scores"] and profiled["crm.lead_scores"]
    assert profiled["crm.buy_probabilities"]
    assert profiled["crm.recommendations"] or profiled["crm.recommendation_exclusions"]
    revenue = _revenue(conn)
    report = erase.erase(conn, [ADDRESS])
    assert report.person.client_codes == [PERSON]
    assert not any(_rows_about(conn, PERSON).values())  # the erasure itself deleted them
    return revenue


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
