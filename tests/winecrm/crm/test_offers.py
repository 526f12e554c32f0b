"""Offers a merchant would sign, on real PostgreSQL through the pipeline: no trading down from a
premium wine, the newest vintage in stock (and the reason when it is not), a win-back offer with
one scope, an end date, its exclusions, and a quiet word to a customer gone for years."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from winecrm import pipeline
from winecrm.crm import recommend, scoring

from tests.conftest import MONDAY_RUN, sales_line, write_export

AS_OF = dt.date(2026, 11, 15)
CFG = {"rfm": {"method": "fixed"}, "affinity": {"min_pair_customers": 1}, "recommendations": {"control_share": 0.0}}
NBSP = "\u00a0"


@pytest.fixture
def estate(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "produits", "produits_2026-11-16.csv", [
        "PN-21;Pinot Noir 2021;2021;Pinot Noir;Pinot Noir;rouge;14,50",
        "PN-22;Pinot Noir 2022;2022;Pinot Noir;Pinot Noir;rouge;14,50",
        "PNF-20;Pinot Noir Fût de Chêne 2020;2020;Pinot Noir Fût de Chêne;Pinot Noir;rouge;21,00",
        "CRR;Crémant d'Alsace Rosé;;Crémant d'Alsace Rosé;Pinot Noir;effervescent;12,00",
        "RIES-21;Riesling 2021;2021;Riesling;Riesling;blanc;11,50",
        "RIES-22;Riesling 2022;2022;Riesling;Riesling;blanc;11,50",
        "RIES-23;Riesling 2023;2023;Riesling;Riesling;blanc;11,50",
        "RIES-23-MAG;Riesling 2023 Magnum;2023;Riesling;Riesling;blanc;26,00",
        "RIES-23-CAR;Riesling 2023 Carton 6;2023;Riesling;Riesling;blanc;64,00",
        "RGC-20;Riesling Grand Cru Schlossberg 2020;2020;Riesling Grand Cru Schlossberg;Riesling;blanc;24,00",
        "GEWU-22;Gewurztraminer 2022;2022;Gewurztraminer;Gewurztraminer;blanc;13,50"],
        header="article;produit;millesime;famille_crm;cepage;couleur;prix_ttc")
    write_export(raw, "stock", "stock_2026-11-16.csv", [
        f"{a};;Cave;24;bt" for a in ("PN-21", "PN-22", "PNF-20", "CRR", "RIES-21", "RIES-22", "RIES-23", "RIES-23-MAG",
                                     "RIES-23-CAR", "RGC-20", "GEWU-22")],
        header="article;millesime;entrepot;quantite;unite")
    write_export(raw, "clients", "clients_2026-11-16.csv", [
        f"{c};N;P;{c.lower()}@example.fr" for c in ("P1", "G1", "R1", "W1", "W2", "X1", "X2", "X3")],
        header="client_code;nom;prenom;email")
    lines, n = [], 0

    def buy(client, date, article, amount="100,00"):
        nonlocal n
        n += 1
        lines.append(sales_line(client=client, date=date, doc_no=f"F{n}", article=article, mt=amount))

    # P1 buys the Pinot Noir Fût de Chêne, G1 the Riesling Grand Cru (recent, regular: cross-sell)
    for month in ("06", "08", "09", "10"):
        buy("P1", f"02/{month}/2026", "PNF-20")
        buy("G1", f"02/{month}/2026", "RGC-20")
    # others link the premium wines to the entry-level ones and to other families
    for client in ("X1", "X2", "X3"):
        for article in ("PNF-20", "PN-22", "CRR", "GEWU-22", "RGC-20", "RIES-23"):
            buy(client, "05/10/2026", article)
    # R1: one order of the Riesling 2021 five months ago (fixed RFM: At Risk -> rebuy)
    buy("R1", "01/06/2026", "RIES-21", "20,00")
    # W1 lapsed 20 months ago, a carton buyer; W2 gone for more than two years (both Churn, > 100 EUR)
    buy("W1", "10/03/2025", "RIES-23-CAR", "300,00")
    buy("W1", "12/03/2025", "RIES-23-CAR", "300,00")
    buy("W1", "12/03/2025", "GEWU-22", "100,00")
    buy("W2", "01/06/2023", "GEWU-22", "300,00")
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", lines)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    scoring.score(conn, "run_1", AS_OF, CFG)
    return conn


def _recommend(conn, **rec):
    recommend.recommend(conn, "run_1", AS_OF, {**CFG, "recommendations": {"control_share": 0.0, **rec}})


def _recs(conn, client):
    return conn.execute(
        "SELECT rank, scenario, article, cuvee, reason_fr, offer_code, offer_discount_pct, offer_scope, offer_ends_on, "
        "offer_excludes, winback_tone FROM crm.recommendations WHERE as_of_date = %s AND client_code = %s "
        "ORDER BY rank", (AS_OF, client)).fetchall()


def _basic(conn, client):
    return conn.execute("SELECT rank, scenario, article, cuvee, reason_fr FROM crm.recommendations "
                        "WHERE as_of_date = %s AND client_code = %s ORDER BY rank", (AS_OF, client)).fetchall()


def _cuvees(conn, client):
    return {r[3] for r in _basic(conn, client)}


def test_a_premium_buyer_is_never_offered_the_entry_level_wine_of_the_family(estate):
    _recommend(estate)
    p1 = _cuvees(estate, "P1")
    assert "Pinot Noir" not in p1  # the Fût de Chêne buyer: no « next step » down to the plain Pinot Noir
    assert {"Crémant d'Alsace Rosé", "Gewurztraminer"} <= p1  # another colour, another grape: still proposed
    assert "Riesling" not in _cuvees(estate, "G1")  # the Grand Cru buyer
    reasons = [r[0] for r in estate.execute("SELECT reason_fr FROM crm.recommendations WHERE as_of_date = %s",
                                            (AS_OF,)).fetchall()]
    assert not [r for r in reasons if re.search(r"aimé notre (Pinot Noir Fût de Chêne|Riesling Grand Cru[^,]*), nous "
                                                r"pensons que le (Pinot Noir|Riesling) \d{4} ", r)]
    # the rule and the tiers are settings: without them, the co-purchases bring the entry-level wine back
    _recommend(estate, no_trading_down=False)
    assert "Pinot Noir" in _cuvees(estate, "P1")
    _recommend(estate, premium_markers=[])
    assert "Pinot Noir" in _cuvees(estate, "P1")
    # a tier from the catalogue's premium_tier column
    estate.execute("UPDATE etl.produits SET premium_tier = 'Prestige' WHERE article = 'PNF-20'")
    estate.commit()
    _recommend(estate, premium_markers=[], premium_catalogue_tiers=["Prestige"])
    assert "Pinot Noir" not in _cuvees(estate, "P1")


def test_the_newest_vintage_in_stock_and_the_reason_when_a_newer_one_is_sold_out(estate):
    _recommend(estate)
    (r1,) = _basic(estate, "R1")
    assert r1[1:3] == ("rebuy", "RIES-23")  # not the 2021 they bought, nor the 2022
    assert r1[4] == (f"Vous avez apprécié notre Riesling 2021{NBSP}: le Riesling 2023, notre nouveau millésime, "
                     "vous attend à la cave.")
    # the 2023 sold out (every format): the 2022, and the reason says why it is not the newest
    estate.execute("UPDATE etl.stock SET quantite = 0 WHERE article LIKE 'RIES-23%'")
    estate.commit()
    _recommend(estate)
    (r1,) = _basic(estate, "R1")
    assert r1[2] == "RIES-22"
    assert r1[4] == (f"Vous avez apprécié notre Riesling{NBSP}: le Riesling 2022 vous attend à la cave. "
                     "Le millésime 2022 est le plus récent qu'il nous reste en cave.")
    estate.execute("UPDATE etl.stock SET quantite = 0 WHERE article = 'RIES-22'")
    estate.commit()
    _recommend(estate)
    (r1,) = _basic(estate, "R1")
    assert r1[2] == "RIES-21" and r1[4].endswith(" Le millésime 2021 est le dernier qu'il nous reste en cave.")
    # no recommendation of the estate names an older vintage than the newest in stock of its cuvée
    older = estate.execute(
        """SELECT count(*) FROM crm.recommendations r
           WHERE r.as_of_date = %s AND r.millesime < (SELECT max(a.millesime) FROM crm.articles a
                                                      JOIN etl.stock s USING (article)
                                                      WHERE a.cuvee = r.cuvee AND s.quantite > 0)""",
        (AS_OF,)).fetchone()[0]
    assert older == 0


def test_the_winback_offer_has_one_scope_an_end_date_and_its_exclusions(estate):
    _recommend(estate)
    w1 = _recs(estate, "W1")
    assert [r[3] for r in w1] == ["Riesling", "Gewurztraminer"]
    first, second = w1
    # cartons and magnums are excluded by default: the carton buyer is offered the bottle
    assert first[2] == "RIES-23"
    assert first[5:] == ("RETOUR15", 15, "order", dt.date(2026, 12, 15), "cartons et magnums", "offer")
    assert first[4] == (f"Votre Riesling préféré (millésime 2023) vous attend à la cave{NBSP}: avec le code RETOUR15, "
                        f"profitez de -15{NBSP}% sur toute votre prochaine commande (hors cartons et magnums), "
                        "jusqu'au 15 décembre 2026.")
    assert second[4] == "Retrouvez aussi le Gewurztraminer 2022."  # the whole order: the code is not repeated
    # the other scope, another validity, no exclusions
    _recommend(estate, winback_offer_scope="wines", winback_offer_valid_days=10, winback_offer_excludes=[])
    first, second = _recs(estate, "W1")
    assert first[2] == "RIES-23-CAR"  # nothing excluded: the format they take
    assert first[7:10] == ("wines", dt.date(2026, 11, 25), None)
    assert first[4].startswith(f"Profitez de -15{NBSP}% sur votre Riesling préféré")
    assert first[4].endswith(" avec le code RETOUR15, jusqu'au 25 novembre 2026.") and "hors" not in first[4]
    assert second[4] == f"Le code RETOUR15 vaut aussi pour le Gewurztraminer 2022 (-15{NBSP}%)."


def test_a_customer_gone_for_years_gets_a_quiet_word_and_no_discount(estate):
    _recommend(estate)
    (w2,) = _recs(estate, "W2")
    assert w2[1] == "winback" and w2[10] == "soft"
    assert w2[5:10] == (None, None, None, None, None)  # no code, no discount, no end date
    assert w2[4] == "Votre Gewurztraminer préféré (millésime 2022) vous attend toujours à la cave."
    # the lapse is a setting: at 300 days W1 (gone 20 months) gets the quiet word too
    _recommend(estate, winback_soft_after_days=300)
    first = _recs(estate, "W1")[0]
    assert first[5] is None and first[10] == "soft" and "RETOUR15" not in first[4] and "%" not in first[4]
    assert first[2] == "RIES-23-CAR"  # no offer, no exclusion: the format they take


def test_reasons_follow_french_typography(estate):
    _recommend(estate)
    reasons = [r for (r,) in estate.execute("SELECT reason_fr FROM crm.recommendations WHERE as_of_date = %s",
                                            (AS_OF,))]
    assert len(reasons) >= 8
    for reason in reasons:
        assert not re.search(r" [:;!?%€]", reason), reason  # never an ordinary space that can wrap
        assert not re.search(r"\(\d+ commandes?\)", reason), reason  # no CRM counts
        assert "!" not in reason, reason  # no pressure
