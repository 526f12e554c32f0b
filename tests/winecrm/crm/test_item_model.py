"""The wine-aware item model against real PostgreSQL: an article is a cuvée in one vintage and one
format; rebuy offers the best article of a cuvée the customer knows, cross-sell only cuvées they
never bought, and every reason reads as correct French."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from winecrm import pipeline
from winecrm.crm import recommend, scoring
from winecrm_tools.samples import sampledata

from tests.conftest import MONDAY_RUN, sales_line, write_export

AS_OF = dt.date(2026, 11, 15)
CFG = {"rfm": {"method": "fixed"}, "affinity": {"min_pair_customers": 1},
       "recommendations": {"control_share": 0.0}}


@pytest.mark.parametrize("label, contenance, article, pack, unit_cl, bottles, format_fr, label_cuvee", [
    ("Riesling 2023", None, "RIES-23", 1, 75, 1, None, "Riesling"),
    ("Riesling 2023 Carton 6", None, "RIES-23-CAR", 6, 75, 6, "carton de 6", "Riesling"),
    ("Crémant d'Alsace Brut Magnum", None, "CREBRUT-MAG", 1, 150, 2, "magnum", "Crémant d'Alsace Brut"),
    ("Crémant d'Alsace Brut", None, "CREBRUT-MAG", 1, 150, 2, "magnum", "Crémant d'Alsace Brut"),  # code says MAG
    ("Caisse de 6 magnums Pinot Noir 2020", None, "X", 6, 150, 12, "carton de 6 magnums", "Pinot Noir"),
    ("Gewurztraminer Vendanges Tardives 2015 50 cl", None, "X", 1, 50, 0.67, "bouteille de 50 cl",
     "Gewurztraminer Vendanges Tardives"),
    ("Pinot Gris 2021 1,5 L", None, "X", 1, 150, 2, "magnum", "Pinot Gris"),
    ("Muscat 2022 demi-bouteille", None, "X", 1, 37.5, 0.5, "demi-bouteille", "Muscat"),
    ("Sylvaner 2022", "6 x 75 cl", "X", 6, 75, 6, "carton de 6", "Sylvaner"),
    # the label says jéroboam: shown as written; the format name is only for labels that do not
    ("Riesling Grand Cru Schlossberg 2019 Jéroboam", None, "X", 1, 300, 4, "format 3 L",
     "Riesling Grand Cru Schlossberg"),
    ("Le Clos des 5 Lieux 2020", None, "X", 1, 75, 1, None, "Le Clos des 5 Lieux"),
    # « demi-sec » is a taste, not a half bottle
    ("Vouvray Demi-Sec 2022", None, "X", 1, 75, 1, None, "Vouvray Demi-Sec"),
    ("Riesling demi sec 2021 Magnum", None, "X", 1, 150, 2, "magnum", "Riesling demi sec"),
    # bag-in-box and other volumes are written out, never given a bottle's name
    ("Pinot Blanc BIB 5 L", None, "X", 1, 500, 6.67, "format 5 L", "Pinot Blanc"),
    ("Rosé Bag-in-Box 3L", None, "X", 1, 300, 4, "format 3 L", "Rosé"),
    # packs as catalogues write them
    ("Riesling x6", None, "X", 6, 75, 6, "carton de 6", "Riesling"),
    ("RIESLING 2023 6 bouteilles", None, "X", 6, 75, 6, "carton de 6", "RIESLING"),
    ("Riesling 2023 (6 btl)", None, "X", 6, 75, 6, "carton de 6", "Riesling"),
    ("Carton de 6 x 75 cl Riesling", None, "X", 6, 75, 6, "carton de 6", "Riesling"),
    ("Edelzwicker 2023 12 x 37,5 cl", None, "X", 12, 37.5, 6, "carton de 12 demi-bouteilles", "Edelzwicker"),
    # the catalogue's contenance is read on its own, before the label
    ("Pinot Noir 2022", "150", "X", 1, 150, 2, "magnum", "Pinot Noir"),
    ("Pinot Noir 2022", "0,75", "PN-MAG", 1, 75, 1, None, "Pinot Noir"),
    ("Pinot Noir 2022 Magnum", "carton de 6", "X", 6, 150, 12, "carton de 6 magnums", "Pinot Noir"),
])
def test_format_and_cuvee_are_read_from_the_catalogue_or_the_label(conn, label, contenance, article, pack, unit_cl,
                                                                    bottles, format_fr, label_cuvee):
    got = conn.execute(
        """SELECT p, u, round(p * u / 75, 2)::float8, crm.wine_format_fr(p, u), crm.wine_label_cuvee(%(l)s)
           FROM (SELECT crm.article_pack(%(c)s, %(l)s) AS p, crm.article_unit_cl(%(c)s, %(l)s, %(a)s) AS u) x""",
        {"c": contenance, "a": article, "l": label}).fetchone()
    assert got == (pack, unit_cl, pytest.approx(bottles), format_fr, label_cuvee)


@pytest.mark.parametrize("names", [
    ("Riesling", "RIESLING 6 bouteilles", "Riesling x6", "Riesling (6 btl)", "Carton de 6 x 75 cl Riesling",
     "riesling magnum"),
    ("Crémant d'Alsace Brut", "CREMANT D'ALSACE BRUT", "Crémant d’Alsace - Brut"),
])
def test_one_cuvee_key_however_the_catalogue_writes_it(conn, names):
    keys = {conn.execute("SELECT crm.wine_cuvee_key(%s)", (n,)).fetchone()[0] for n in names}
    assert len(keys) == 1 and None not in keys
    (other,) = conn.execute("SELECT crm.wine_cuvee_key('Riesling Grand Cru Schlossberg')").fetchone()
    assert other not in keys


def test_a_mixed_catalogue_names_each_wine_once(conn, crm_dirs):
    """Articles with famille_crm and articles without (named from their label, in capitals or
    with their packing) are one cuvée, named as famille_crm writes it."""
    raw = crm_dirs["raw"]
    write_export(raw, "produits", "produits_2026-11-16.csv", [
        "R23;Riesling 2023;2023;Riesling;12,00;", "R23C;RIESLING 2023 6 bouteilles;2023;;70,00;",
        "R22X;Riesling 2022 x6;2022;;70,00;", "R21B;Riesling 2021 (6 btl);2021;;70,00;",
        "PB5;Pinot Blanc BIB 5 L;;;30,00;", "PB;Pinot Blanc 2023;2023;;9,00;",
        "GC;Riesling Grand Cru Schlossberg 2020;2020;;25,00;", "VDS;Vouvray Demi-Sec 2022;2022;;11,00;75 cl"],
        header="article;produit;millesime;famille_crm;prix_ttc;contenance")
    write_export(raw, "clients", "clients_2026-11-16.csv", ["C1;N;P;c1@example.fr"], header="client_code;nom;prenom;email")
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv",
                 [sales_line(client="C1", date="02/10/2026", doc_no="F1", article="R23")])
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    scoring.score(conn, "run_1", AS_OF, CFG)
    got = dict(conn.execute("SELECT article, cuvee || ' | ' || coalesce(format_fr, '-') FROM crm.articles"))
    assert {a: got[a] for a in ("R23", "R23C", "R22X", "R21B", "PB5", "PB", "GC", "VDS")} == {
        "R23": "Riesling | -", "R23C": "Riesling | carton de 6", "R22X": "Riesling | carton de 6",
        "R21B": "Riesling | carton de 6", "PB5": "Pinot Blanc | format 5 L", "PB": "Pinot Blanc | -",
        "GC": "Riesling Grand Cru Schlossberg | -", "VDS": "Vouvray Demi-Sec | -"}


def test_cuvee_comes_from_the_cuvee_column_then_famille_crm_then_the_label_then_the_code(conn):
    row = conn.execute("SELECT crm.wine_cuvee('Cuvée Marguerite', 'Gewurztraminer', 'Gewurztraminer 2022', 'G22'), "
                       "crm.wine_cuvee(NULL, 'Gewurztraminer', 'Gewurztraminer 2022 Magnum', 'G22'), "
                       "crm.wine_cuvee(' ', '', 'Gewurztraminer 2022 Magnum', 'G22'), "
                       "crm.wine_cuvee(NULL, NULL, NULL, 'P123')").fetchone()
    assert row == ("Cuvée Marguerite", "Gewurztraminer", "Gewurztraminer", "P123")


@pytest.fixture
def cellar(conn, crm_dirs):
    """A Riesling in three vintages and three formats, a Grand Cru, a Pinot Noir; customers with
    different habits."""
    raw = crm_dirs["raw"]
    write_export(raw, "produits", "produits_2026-11-16.csv", [
        "RIES-19;Riesling 2019;2019;Riesling;Riesling;blanc;12,00", "RIES-21;Riesling 2021;2021;Riesling;Riesling;blanc;12,00",
        "RIES-23;Riesling 2023;2023;Riesling;Riesling;blanc;12,00",
        "RIES-23-MAG;Riesling 2023 Magnum;2023;Riesling;Riesling;blanc;12,00",
        "RIES-23-CAR;Riesling 2023 Carton 6;2023;Riesling;Riesling;blanc;12,00",
        "RGC-20;Riesling Grand Cru Schlossberg 2020;2020;Riesling Grand Cru Schlossberg;Riesling;blanc;12,00",
        "PN-22;Pinot Noir 2022;2022;Pinot Noir;Pinot Noir;rouge;12,00",
        "EDEL-23;Edelzwicker 2023;2023;Edelzwicker;Assemblage;blanc;12,00"],
        header="article;produit;millesime;famille_crm;cepage;couleur;prix_ttc")
    write_export(raw, "stock", "stock_2026-11-16.csv", [
        f"{a};;Cave;24;bt" for a in ("RIES-19", "RIES-21", "RIES-23", "RIES-23-MAG", "RIES-23-CAR", "RGC-20",
                                     "PN-22", "EDEL-23")], header="article;millesime;entrepot;quantite;unite")
    write_export(raw, "clients", "clients_2026-11-16.csv", [
        f"{c};N;P;{c.lower()}@example.fr" for c in ("B1", "B2", "C1", "O1", "X1", "X2")],
        header="client_code;nom;prenom;email")
    lines, n = [], 0

    def buy(client, date, article, amount="100,00"):
        nonlocal n
        n += 1
        lines.append(sales_line(client=client, date=date, doc_no=f"F{n}", article=article, mt=amount))

    # B1: bottles of Riesling 2021 in 2022-2023, lapsed since -> rebuy of the current vintage, a bottle
    # B2: same history, but in cartons of six -> the carton
    # C1: a Riesling lover who once took a magnum: cross-sell must not offer another Riesling
    # O1: buys old vintages (a 2019 in 2026, eight years after the harvest... and the 2021 five years
    #     on) -> the oldest vintage of the cuvée rather than the current one
    for date in ("10/03/2023", "12/05/2023"):
        buy("B1", date, "RIES-21")
        buy("B2", date, "RIES-23-CAR")
    buy("B2", "01/02/2023", "RIES-21")
    buy("O1", "10/01/2026", "RIES-19")
    buy("O1", "10/02/2026", "RIES-19")
    buy("O1", "11/03/2026", "RIES-21")
    for month in ("03", "05", "07", "09", "10"):
        buy("C1", f"02/{month}/2026", "RIES-21")
    buy("C1", "04/11/2026", "RIES-23-MAG")
    # others make the co-purchase links: Riesling buyers also take the Grand Cru and the Pinot Noir
    for client in ("X1", "X2"):
        buy(client, "02/10/2026", "RIES-23")
        buy(client, "03/10/2026", "RGC-20")
        buy(client, "04/10/2026", "PN-22")
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", lines)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    scoring.score(conn, "run_1", AS_OF, CFG)
    return conn


def _recs(conn, client):
    return conn.execute("SELECT scenario, article, cuvee, reason_fr FROM crm.recommendations "
                        "WHERE as_of_date = %s AND client_code = %s ORDER BY rank", (AS_OF, client)).fetchall()


def test_every_article_is_mapped_to_its_cuvee_vintage_and_format(cellar):
    articles = {a: rest for a, *rest in cellar.execute(
        "SELECT article, cuvee, cuvee_from, millesime, bottles, format_fr, taste, taste_kind FROM crm.articles")}
    assert articles["RIES-23-CAR"] == ["Riesling", "famille_crm", 2023, 6, "carton de 6", "Riesling", "grape"]
    assert articles["RIES-23-MAG"][3:5] == [2, "magnum"]
    assert articles["EDEL-23"][5:] == ["blanc", "colour"]  # a blend is not a grape: the taste is the colour


def test_rebuy_offers_the_current_vintage_in_the_format_the_customer_takes(cellar):
    recommend.recommend(cellar, "run_1", AS_OF, {**CFG, "recommendations": {
        "control_share": 0.0, "scenario_by_segment": {"VIP": "rebuy", "Standard": "rebuy", "At Risk": "rebuy",
                                                      "Churn": "rebuy"}}})
    (b1,) = [r for r in _recs(cellar, "B1") if r[2] == "Riesling"]
    assert b1[1] == "RIES-23"  # not the 2021 they bought, still in stock: the estate has moved on
    # a new vintage of their own wine is « le nouveau millésime », never a « découverte »
    assert b1[3] == ("Vous avez apprécié notre Riesling 2021\u00a0: le Riesling 2023, notre nouveau millésime, "
                     "vous attend à la cave.")
    (b2,) = [r for r in _recs(cellar, "B2") if r[2] == "Riesling"]
    assert b2[1] == "RIES-23-CAR"  # two of their three orders were cases of six
    (o1,) = [r for r in _recs(cellar, "O1") if r[2] == "Riesling"]
    assert o1[1] == "RIES-23"  # the newest vintage in stock, even to a buyer of older ones


def test_cross_sell_never_offers_a_vintage_or_format_of_a_cuvee_already_bought(cellar):
    recommend.recommend(cellar, "run_1", AS_OF, CFG)
    recs = _recs(cellar, "C1")
    assert recs and {r[0] for r in recs} == {"cross_sell"}
    assert "Riesling" not in {r[2] for r in recs}  # RIES-19, RIES-23, the carton: all the same wine
    by_cuvee = {r[2]: r for r in recs}
    assert by_cuvee["Riesling Grand Cru Schlossberg"][3] == (
        "Parce que vous avez aimé notre Riesling, nous pensons que le Riesling Grand Cru Schlossberg 2020 vous plaira.")


def test_no_cross_sell_names_a_cuvee_already_bought_on_the_sample_estate(conn, crm_dirs):
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=800, years=2.0)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    recommend.recommend(conn, "run_1", AS_OF, {"recommendations": {"control_share": 0.0}})
    counts = dict(conn.execute("SELECT scenario, count(*) FROM crm.recommendations WHERE as_of_date = %s GROUP BY 1",
                               (AS_OF,)))
    assert counts.get("cross_sell", 0) > 300 and counts.get("rebuy", 0) + counts.get("winback", 0) > 30
    known = conn.execute(
        """SELECT count(*) FROM crm.recommendations r
           WHERE r.as_of_date = %s AND r.scenario = 'cross_sell'
             AND EXISTS (SELECT 1 FROM etl.ventes_lignes v JOIN crm.articles a ON a.article = v.article
                         WHERE v.client_code = r.client_code AND a.cuvee = r.cuvee AND v.date_livraison <= %s)""",
        (AS_OF, AS_OF)).fetchone()[0]
    assert known == 0
    # no scenario names an older vintage than the newest in stock of the cuvée
    older = conn.execute(
        """SELECT count(*) FROM crm.recommendations r
           WHERE r.as_of_date = %s
             AND r.millesime < (SELECT max(a.millesime) FROM crm.articles a JOIN etl.stock s USING (article)
                                WHERE a.cuvee = r.cuvee AND s.quantite > 0)""", (AS_OF,)).fetchone()[0]
    assert older == 0
    # no trading down: a buyer of a family's premium wine (same grape and colour) is never offered
    # its entry-level wine as a cross-sell
    premium = r"(grand cru|vendanges tardives|grains nobles|lieu-dit|f[ûu]t de ch[êe]ne)"
    trading_down = conn.execute(
        """WITH fam AS (SELECT a.article, a.cuvee, a.taste || '|' || p.couleur AS family, a.cuvee ~* %(premium)s AS premium
                        FROM crm.articles a JOIN etl.produits p USING (article) WHERE a.taste_kind = 'grape')
           SELECT count(*) FROM crm.recommendations r JOIN fam f ON f.article = r.article
           WHERE r.as_of_date = %(as_of)s AND r.scenario = 'cross_sell' AND NOT f.premium
             AND EXISTS (SELECT 1 FROM etl.ventes_lignes v JOIN fam b ON b.article = v.article
                         WHERE v.client_code = r.client_code AND v.date_livraison <= %(as_of)s
                           AND b.premium AND b.family = f.family)""", {"as_of": AS_OF, "premium": premium}).fetchone()[0]
    assert trading_down == 0
    # « notre nouveau millésime » only for the newest vintage of the cuvée in stock
    not_newest = conn.execute(
        """SELECT count(*) FROM crm.recommendations r
           WHERE r.as_of_date = %s AND r.reason_fr LIKE '%%nouveau millésime%%'
             AND r.millesime < (SELECT max(a.millesime) FROM crm.articles a JOIN etl.stock s USING (article)
                                WHERE a.cuvee = r.cuvee AND s.quantite > 0)""", (AS_OF,)).fetchone()[0]
    assert not_newest == 0
    # customers of a scenario are ranked by their chance to buy, each customer once
    by_scenario: dict[str, list] = {}
    for scenario, place, probability in conn.execute(
            "SELECT DISTINCT scenario, scenario_rank, buy_probability FROM crm.recommendations "
            "WHERE as_of_date = %s ORDER BY scenario, scenario_rank", (AS_OF,)):
        by_scenario.setdefault(scenario, []).append((place, probability))
    for scenario, places in by_scenario.items():
        assert [p for p, _ in places] == list(range(1, len(places) + 1)), scenario
        chances = [float(c) for _, c in places]
        assert chances == sorted(chances, reverse=True), scenario
    # the same cuvée is never recommended twice to one customer
    twice = conn.execute("SELECT count(*) FROM (SELECT 1 FROM crm.recommendations WHERE as_of_date = %s "
                         "GROUP BY client_code, cuvee HAVING count(*) > 1) d", (AS_OF,)).fetchone()[0]
    assert twice == 0


ELISION_MISSED = re.compile(r"\b(le|de|que) [AEIOUYÀÂÉÈÊÎÔÛaeiouyéèê]")
DOUBLE_ARTICLE = re.compile(r"\b(le|la|les|l'|notre|votre) (Le|La|Les|L')\b")


def _scenario_cases():
    catalogue = sampledata.build_catalogue()
    extra = [("Auxerrois 2022", "Auxerrois", 2022, None), ("Cuvée Marguerite 2021", "Cuvée Marguerite", 2021, None),
             ("Éclat de Pinot", "Éclat de Pinot", None, None), ("Riesling", "Riesling", 2022, "magnum"),
             ("Les Princes Abbés 2021", "Les Princes Abbés", 2021, None), ("La Colline", "La Colline", None, None),
             ("L'Ancienne Vigne 2020", "L'Ancienne Vigne", 2020, None),
             ("Vouvray Demi-Sec", "Vouvray Demi-Sec", 2022, "carton de 6")]
    rows = [(r.produit, r.famille_crm, r.millesime if r.millesime == r.millesime else None,
             {2: "magnum", 6: "carton de 6"}.get(r.bottles)) for r in catalogue.itertuples()]
    return rows + extra


def test_every_catalogue_name_reads_as_correct_french_in_every_scenario(conn):
    """One reason generator, every catalogue name x scenario: elision, the name as the estate
    writes it, the vintage and the format when the label does not say them, never a wine
    recommended because the customer liked itself."""
    cases = _scenario_cases()
    for produit, cuvee, millesime, format_fr in cases:
        millesime = int(millesime) if millesime else None
        for scenario, rank, last_vintage, source, taste, kind in (
                ("rebuy", 1, millesime, None, None, None), ("rebuy", 2, (millesime or 2020) - 2, None, None, None),
                ("winback", 1, millesime, None, None, None), ("winback", 2, millesime, None, None, None),
                ("cross_sell", 1, None, "Edelzwicker", None, None),
                ("cross_sell", 2, None, None, "Auxerrois", "grape"), ("cross_sell", 3, None, None, "rosé", "colour"),
                ("cross_sell", 1, None, cuvee, None, None)):
            (reason,) = conn.execute(
                "SELECT crm.reason_fr(%s, %s, %s, %s, %s, %s, 3, %s, %s, %s, %s, %s, 15, 'REVIENS15')",
                (scenario, rank, produit, cuvee, millesime, format_fr, last_vintage, millesime, source, taste,
                 kind)).fetchone()
            where = f"{scenario} {produit!r} (source {source!r}, taste {taste!r}): {reason!r}"
            assert reason and reason.endswith(".") and "  " not in reason and "None" not in reason, where
            assert not ELISION_MISSED.search(reason), where
            assert not DOUBLE_ARTICLE.search(reason), where
            # the estate's own label, as written (win-back may say « votre Riesling préféré (2023 Magnum) »)
            assert produit in reason or (scenario == "winback" and produit.startswith(cuvee + " ")
                                         and f"{cuvee} préféré" in reason and produit[len(cuvee) + 1:] in reason), where
            if millesime and str(millesime) not in produit:
                assert str(millesime) in reason, where
            if format_fr and not re.search(r"carton|caisse|magnum", produit, re.I):
                assert format_fr in reason, where
            assert not re.search(rf"aimé notre {re.escape(cuvee)},", reason), where  # never "because you liked" itself
            if scenario == "winback" and not re.match(r"(Le|La|Les|L') ", cuvee):
                assert "-15\u00a0%" in reason and "REVIENS15" in reason, where
                assert reason.startswith("Profitez de") == (rank == 1), where  # the offer is made once
    (reason,) = conn.execute("SELECT crm.reason_fr('winback', 1, 'Cuvée Marguerite', 'Cuvée Marguerite', NULL, NULL, 1, "
                             "NULL, NULL, NULL, NULL, NULL, 15, 'REVIENS15')").fetchone()
    assert reason == "Profitez de -15\u00a0% sur votre Cuvée Marguerite préférée avec le code REVIENS15."
    (reason,) = conn.execute("SELECT crm.reason_fr('cross_sell', 1, 'Auxerrois 2022', 'Auxerrois', 2022, NULL, NULL, "
                             "NULL, NULL, 'Edelzwicker', NULL, NULL, 15, 'X')").fetchone()
    assert reason == "Parce que vous avez aimé notre Edelzwicker, nous pensons que l'Auxerrois 2022 vous plaira."
    # a colour of several words is plural word by word; no offer configured: no code, no discount
    (reason,) = conn.execute("SELECT crm.reason_fr('cross_sell', 2, 'Sylvaner 2023', 'Sylvaner', 2023, NULL, NULL, "
                             "NULL, NULL, NULL, 'Blanc Sec', 'colour', NULL, NULL)").fetchone()
    assert reason == "Vous aimez les vins blancs secs\u00a0: découvrez notre Sylvaner 2023."
    reasons = [conn.execute("SELECT crm.reason_fr('winback', %s, 'Sylvaner 2023', 'Sylvaner', 2023, NULL, 2, 2023, "
                            "2023, NULL, NULL, NULL, NULL, NULL)", (rank,)).fetchone()[0] for rank in (1, 2)]
    assert reasons == ["Votre Sylvaner préféré (millésime 2023) vous attend toujours à la cave.",
                       "Retrouvez aussi le Sylvaner 2023."]
