"""Recommendations against real PostgreSQL: scenario per segment, guard-rails with reasons,
French reasons, out-of-stock and recent-purchase exclusions, deterministic control group."""

from __future__ import annotations

import datetime as dt

import pytest
from winecrm import pipeline
from winecrm.crm import recommend, scoring
from winecrm_tools.samples import sampledata

from tests.conftest import MONDAY_RUN, sales_line, write_export

AS_OF = dt.date(2026, 11, 15)
CFG = {"rfm": {"method": "fixed"}, "affinity": {"min_pair_customers": 1},
       "recommendations": {"control_share": 0.0}}


@pytest.fixture
def shop(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "produits", "produits_2026-11-16.csv", [
        "RIES;Riesling 2022;2022;Riesling;11,50;blanc", "GEWU;Gewurztraminer 2022;2022;Gewurztraminer;13,50;blanc",
        "PNOI;Pinot Noir 2022;2022;Pinot Noir;14,50;rouge", "CREM;Crémant Brut;;Crémant;10,20;effervescent",
        "SYLV;Sylvaner 2023;2023;Sylvaner;7,90;blanc"], header="article;produit;millesime;famille_crm;prix_ttc;couleur")
    write_export(raw, "stock", "stock_2026-11-16.csv", [
        "RIES;;Cave;50;bt", "GEWU;;Cave;50;bt", "PNOI;;Cave;50;bt", "CREM;;Cave;0;bt", "SYLV;;Cave;9;bt"],
        header="article;millesime;entrepot;quantite;unite")
    write_export(raw, "clients", "clients_2026-11-16.csv", [
        "V1;A;A;v1@example.fr", "V2;B;B;v2@example.fr", "V3;C;C;v3@example.fr", "R1;D;D;r1@example.fr",
        "W1;E;E;w1@example.fr", "W2;F;F;w2@example.fr", "X1;G;G;not-an-email"],
        header="client_code;nom;prenom;email")
    lines, n = [], 0

    def buy(client, date, article, amount="100,00", doc=None):
        nonlocal n
        n += 1
        lines.append(sales_line(client=client, date=date, doc_no=doc or f"F{n}", article=article, mt=amount))

    # V1/V2/V3 buy often and recently (VIP/Standard -> cross-sell); V2, V3 also took GEWU and CREM
    for client in ("V1", "V2", "V3"):
        for month in ("05", "07", "09", "10"):
            buy(client, f"02/{month}/2026", "RIES")
        buy(client, "01/11/2026", "PNOI")
    buy("V2", "03/11/2026", "GEWU")
    buy("V3", "03/11/2026", "GEWU")
    buy("V2", "04/11/2026", "CREM")
    # R1: one old-ish order of two lines -> rebuy scenario under fixed boundaries (R2 F1 M1 -> At Risk)
    buy("R1", "01/06/2026", "SYLV", "20,00", doc="R-1")
    buy("R1", "01/06/2026", "RIES", "20,00", doc="R-1")
    # W1 churned with > 100 EUR; W2 churned with < 100 EUR; X1 has no valid email
    buy("W1", "01/01/2026", "GEWU", "300,00")
    buy("W2", "01/01/2026", "GEWU", "30,00")
    buy("X1", "01/10/2026", "RIES")
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", lines)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    scoring.score(conn, "run_1", AS_OF, CFG)
    return conn


def _recs(conn, client):
    return [r for r in conn.execute(
        "SELECT rank, scenario, article, reason_fr, offer_code, is_control FROM crm.recommendations "
        "WHERE as_of_date = %s AND client_code = %s ORDER BY rank", (AS_OF, client))]


def _excluded(conn):
    return dict(conn.execute("SELECT client_code, reason FROM crm.recommendation_exclusions WHERE as_of_date = %s",
                             (AS_OF,)))


def test_cross_sell_suggests_never_bought_products_in_stock_with_a_reason(shop):
    recommend.recommend(shop, "run_1", AS_OF, CFG)
    recs = _recs(shop, "V1")
    articles = [r[2] for r in recs]
    assert articles == ["GEWU", "SYLV"]  # CREM is out of stock; RIES, PNOI already bought
    assert recs[0][1] == "cross_sell"
    # the reason names the bought cuvée that contributes most: V1 took the Riesling four times
    assert recs[0][3] == "Parce que vous avez aimé notre Riesling, nous pensons que le Gewurztraminer 2022 vous plaira."


def test_rebuy_skips_recent_purchases_and_winback_carries_the_offer(shop):
    recommend.recommend(shop, "run_1", AS_OF, CFG)
    segments = dict(shop.execute("SELECT client_code, segment FROM crm.rfm_scores WHERE as_of_date = %s", (AS_OF,)))
    assert segments["R1"] == "At Risk" and segments["W1"] == "Churn"
    rebuy = _recs(shop, "R1")
    assert {r[2] for r in rebuy} == {"SYLV", "RIES"} and all(r[1] == "rebuy" for r in rebuy)
    # no order count (a CRM internal), French typography
    assert {r[2]: r[3] for r in rebuy}["SYLV"] == "Vous avez apprécié notre Sylvaner\u00a0: le Sylvaner 2023 vous attend à la cave."
    (winback,) = _recs(shop, "W1")
    assert winback[1:3] == ("winback", "GEWU") and winback[4] == "RETOUR15"
    # one scope (the whole next order), the exclusions and the end date (scoring.yaml defaults)
    assert winback[3] == ("Votre Gewurztraminer préféré (millésime 2022) vous attend à la cave\u00a0: avec le code "
                          "RETOUR15, profitez de -15\u00a0% sur toute votre prochaine commande (hors cartons et "
                          "magnums), jusqu'au 15 décembre 2026.")


def test_every_left_out_customer_has_a_reason(shop):
    shop.execute("INSERT INTO crm.email_sends (client_code, email, scenario, sent_at) "
                 "VALUES ('V3', 'v3@example.fr', 'cross_sell', '2026-09-01')")
    shop.execute("UPDATE etl.stock SET quantite = 0 WHERE article = 'SYLV'")  # V2 then has bought all in stock
    shop.commit()
    recommend.recommend(shop, "run_1", AS_OF, CFG)
    excluded = _excluded(shop)
    assert excluded["W2"] == "winback_min_revenue"
    assert excluded["X1"] == "invalid_email"
    assert excluded["V3"] == "silence_window"
    assert excluded["V2"] == "no_candidate"  # bought everything in stock
    recommended = {c for (c,) in shop.execute("SELECT DISTINCT client_code FROM crm.recommendations")}
    scored = {c for (c,) in shop.execute("SELECT client_code FROM crm.rfm_scores WHERE as_of_date = %s", (AS_OF,))}
    assert recommended | set(excluded) == scored and not recommended & set(excluded)


def test_suppressed_and_opted_out_are_never_recommended(shop):
    shop.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES ('v1@example.fr', 'unsubscribed', 'manual')")
    shop.execute("UPDATE etl.clients SET opt_out = true WHERE client_code = 'R1'")
    shop.commit()
    scoring.score(shop, "run_1", AS_OF, CFG)
    recommend.recommend(shop, "run_1", AS_OF, CFG)
    assert _excluded(shop)["V1"] == "suppressed" and _excluded(shop)["R1"] == "opted_out"
    assert _recs(shop, "V1") == [] and _recs(shop, "R1") == []


def test_at_most_max_products_and_rerun_replaces(shop):
    cfg = {**CFG, "recommendations": {"control_share": 0.0, "max_products": 1}}
    recommend.recommend(shop, "run_1", AS_OF, cfg)
    assert len(_recs(shop, "R1")) == 1
    recommend.recommend(shop, "run_2", AS_OF, cfg)
    assert shop.execute("SELECT count(*) FROM crm.recommendations WHERE client_code = 'R1'").fetchone()[0] == 1


def test_control_group_is_deterministic_and_near_the_configured_share(conn, crm_dirs):
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=1500, years=2.0)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    cfg = {"recommendations": {"control_share": 0.10}}
    recommend.recommend(conn, "run_1", AS_OF, cfg)
    first = dict(conn.execute("SELECT client_code, bool_or(is_control) FROM crm.recommendations "
                              "WHERE as_of_date = %s GROUP BY 1", (AS_OF,)))
    recommend.recommend(conn, "run_2", AS_OF, cfg)
    again = dict(conn.execute("SELECT client_code, bool_or(is_control) FROM crm.recommendations "
                              "WHERE as_of_date = %s GROUP BY 1", (AS_OF,)))
    assert first == again and len(first) > 300
    share = sum(first.values()) / len(first)
    assert 0.06 < share < 0.14
    # a customer's lines are all control or all not
    mixed = conn.execute("SELECT count(*) FROM (SELECT client_code FROM crm.recommendations WHERE as_of_date = %s "
                         "GROUP BY 1 HAVING count(DISTINCT is_control) > 1) m", (AS_OF,)).fetchone()[0]
    assert mixed == 0
    # another week draws differently
    other = dt.date(2026, 11, 8)
    scoring.score(conn, "run_3", other)
    recommend.recommend(conn, "run_3", other, cfg)
    other_draw = dict(conn.execute("SELECT client_code, bool_or(is_control) FROM crm.recommendations "
                                   "WHERE as_of_date = %s GROUP BY 1", (other,)))
    common = set(first) & set(other_draw)
    assert any(first[c] != other_draw[c] for c in common)


def test_taste_profile_brings_wines_of_the_family_with_no_co_purchase_yet(shop):
    # a new Riesling cuvée nobody has bought: no affinity links it to anything, only the taste profile
    shop.execute("UPDATE etl.produits SET cepage = famille_crm")
    shop.execute("INSERT INTO etl.produits (article, produit, famille_crm, cepage, file_id, source_row, loaded_run) "
                 "SELECT 'RIGC', 'Riesling Grand Cru 2021', 'Riesling Grand Cru', 'Riesling', file_id, 99, 'run_1' "
                 "FROM etl.produits LIMIT 1")
    shop.execute("INSERT INTO etl.stock (article, entrepot, quantite, snapshot_date, file_id, source_row, loaded_run) "
                 "SELECT 'RIGC', 'Cave', 12, snapshot_date, file_id, 99, 'run_1' FROM etl.stock LIMIT 1")
    shop.commit()
    scoring.score(shop, "run_1", AS_OF, CFG)  # the item model is rebuilt from the catalogue by the scoring
    recommend.recommend(shop, "run_1", AS_OF, CFG)
    recs = {r[2]: r for r in _recs(shop, "V1")}
    assert "RIGC" in recs and recs["RIGC"][3] == "Vous aimez le Riesling\u00a0: découvrez notre Riesling Grand Cru 2021."
    scores = shop.execute("SELECT count(*) FROM crm.recommendations WHERE score IS NULL").fetchone()[0]
    assert scores == 0
    # with the taste blend off, only co-purchases count: the new wine is not proposed
    recommend.recommend(shop, "run_2", AS_OF, {**CFG, "recommendations": {"control_share": 0.0, "taste_weight": 0}})
    assert "RIGC" not in {r[2] for r in _recs(shop, "V1")}


def test_bad_scenario_in_config_is_refused():
    with pytest.raises(ValueError, match="scenario_by_segment.VIP"):
        recommend.parameters(AS_OF, "r", {"recommendations": {"scenario_by_segment": {"VIP": "upsell"}}})


@pytest.mark.parametrize("bad", [{"cross_sell_similarity": "lift"}, {"taste_weight": 2},
                                 {"recency_half_life_cycles": 0}, {"recency_floor": -0.1}])
def test_bad_ranking_settings_are_refused(bad):
    with pytest.raises(ValueError, match="scoring.yaml"):
        recommend.parameters(AS_OF, "r", {"recommendations": bad})


def test_wine_names_take_the_right_french_article(conn):
    """« le Riesling », « l'Edelzwicker », « l'Auxerrois », for every name of the sample catalogue."""
    catalogue = sampledata.build_catalogue()
    names = sorted(set(catalogue["produit"]) | set(catalogue["famille_crm"]) | {"Auxerrois", "Éclat de Pinot"})
    for name in names:
        (with_article,) = conn.execute("SELECT crm.le_vin(%s)", (name,)).fetchone()
        expected = ("l'" if name[0].lower() in "aeiouyàâäéèêëîïôöùûü" else "le ") + name
        assert with_article == expected, name
    assert conn.execute("SELECT crm.le_vin('Edelzwicker 2023')").fetchone()[0] == "l'Edelzwicker 2023"
