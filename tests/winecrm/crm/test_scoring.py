"""Customer scoring against real PostgreSQL: 360 facts, RFM and segments, lead-score components,
as-of reproducibility and reruns."""

from __future__ import annotations

import datetime as dt

import pytest
from winecrm import pipeline
from winecrm.crm import scoring

from tests.conftest import MONDAY_RUN, sales_line, write_export

AS_OF = dt.date(2026, 11, 15)
FIXED = {"rfm": {"method": "fixed", "fixed": {"recency_days": [30, 90, 180], "orders": [2, 4, 8],
                                              "revenue_ht": [150, 400, 1000]}}}

PRODUCTS = ["RIES-22;Riesling 2022;2022;Riesling;11,50;Riesling;blanc",
            "RIES-22-MAG;Riesling 2022 Magnum;2022;Riesling;26,00;Riesling;blanc",
            "PNOI-22-CAR;Pinot Noir 2022 Carton 6;2022;Pinot Noir;80,00;Pinot Noir;rouge"]


@pytest.fixture
def estate(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "produits", "produits_2026-11-16.csv", PRODUCTS,
                 header="article;produit;millesime;famille_crm;prix_ttc;cepage;couleur")
    write_export(raw, "clients", "clients_2026-11-16.csv", [
        "A;Muller;Anne;anne@example.fr;non", "B;Klein;Bruno;bruno@example.fr;oui", "C;Roth;Chloé;chloe@example.fr;non"],
        header="client_code;nom;prenom;email;refus_email")
    lines = [
        # A: 3 orders (1 Sep, 1 Oct, 5 Nov), a magnum and a case, one credit note
        sales_line(client="A", date="01/09/2026", doc_no="F1", article="RIES-22", qty="6", mt="57,50"),
        sales_line(client="A", date="01/10/2026", doc_no="F2", article="RIES-22-MAG", label="Riesling 2022 Magnum",
                   qty="2", mt="43,34"),
        sales_line(client="A", date="05/11/2026", doc_no="F3", article="PNOI-22-CAR", label="Pinot Noir 2022 Carton 6",
                   qty="1", mt="66,67"),
        sales_line(client="A", date="06/11/2026", doc_no="A1", doc_type="AVOIR", article="RIES-22", qty="1", mt="9,58"),
        # B: one old order, long ago (churn)
        sales_line(client="B", date="02/01/2026", doc_no="F4", article="RIES-22", qty="3", mt="28,75"),
        # C: one order in the future of the as-of date (must not count before it)
        sales_line(client="C", date="20/11/2026", doc_no="F5", article="RIES-22", qty="12", mt="115,00"),
    ]
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", lines)
    write_export(raw, "stock", "stock_2026-11-16.csv", ["RIES-22;2022;Cave;10;bt"],
                 header="article;millesime;entrepot;quantite;unite")
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)
    return conn


def _row(conn, table, client, as_of=AS_OF):
    cursor = conn.execute(f"SELECT * FROM {table} WHERE as_of_date = %s AND client_code = %s", (as_of, client))
    names = [d.name for d in cursor.description]
    row = cursor.fetchone()
    return dict(zip(names, row)) if row else None


def test_customer_360_facts(estate):
    scoring.score(estate, "run_1", AS_OF, FIXED)
    a = _row(estate, "crm.customer_360", "A")
    assert (a["first_purchase"], a["last_purchase"]) == (dt.date(2026, 9, 1), dt.date(2026, 11, 5))
    assert a["orders"] == 3  # the credit note is not an order
    assert float(a["bottles"]) == 6 + 2 * 2 + 1 * 6 - 1  # magnum = 2, case of 6 = 6, credit note -1
    assert float(a["revenue_ht"]) == pytest.approx(57.50 + 43.34 + 66.67 - 9.58)
    assert float(a["avg_basket_ht"]) == pytest.approx((57.50 + 43.34 + 66.67 - 9.58) / 3, abs=0.01)
    assert (a["favourite_family"], a["favourite_colour"], a["families_bought"]) == ("Riesling", "blanc", 2)
    assert float(a["typical_days_between_orders"]) == 32.5  # gaps 30 and 35 days
    assert a["email_valid"] is True and a["opted_out"] is False and a["suppressed"] is False
    assert _row(estate, "crm.customer_360", "B")["opted_out"] is True
    assert _row(estate, "crm.customer_360", "C") is None  # first purchase after the as-of date


def test_rfm_fixed_boundaries_and_segments(estate):
    scoring.score(estate, "run_1", AS_OF, FIXED)
    a = _row(estate, "crm.rfm_scores", "A")
    assert (a["recency_days"], a["frequency"]) == (10, 3)
    assert (a["r_score"], a["f_score"], a["m_score"]) == (4, 2, 2)  # 157.93 EUR >= 150
    assert float(a["rfm_score"]) == 2.67 and a["segment"] == "Standard"
    b = _row(estate, "crm.rfm_scores", "B")
    assert b["recency_days"] == 317 and b["segment"] == "Churn"  # > 180 days overrides the score


def test_quartile_scores_give_ties_the_same_score(estate):
    scoring.score(estate, "run_1", AS_OF)  # default: quartiles
    scores = {r[0]: r[1:] for r in estate.execute(
        "SELECT client_code, r_score, f_score, m_score FROM crm.rfm_scores WHERE as_of_date = %s", (AS_OF,))}
    assert scores["B"] == (1, 1, 1)  # oldest, fewest orders, least revenue: the bottom group scores 1
    assert scores["A"][0] > scores["B"][0]


def test_lead_score_components_follow_the_formula(estate):
    scoring.score(estate, "run_1", AS_OF, FIXED)
    a = _row(estate, "crm.lead_scores", "A")
    assert (a["base_points"], float(a["rfm_points"]), a["purchase_points"], a["recency_penalty"]) == (50, 26.7, 15, 0)
    assert float(a["score"]) == 91.7
    b = _row(estate, "crm.lead_scores", "B")
    # 50 + 10 x 1.0 + 5 x 1 - 30 = 35
    assert (float(b["rfm_points"]), b["purchase_points"], b["recency_penalty"], float(b["score"])) == (10.0, 5, -30, 35.0)


def test_score_is_clamped_to_100(estate):
    scoring.score(estate, "run_1", AS_OF, {**FIXED, "lead_score": {"base": 90}})
    a = _row(estate, "crm.lead_scores", "A")
    assert (float(a["raw_score"]), float(a["score"])) == (131.7, 100.0)


def test_as_of_reproducibility_and_reruns(estate):
    early = dt.date(2026, 9, 15)
    first = scoring.score(estate, "run_1", early, FIXED)
    snapshot = estate.execute("SELECT client_code, orders, revenue_ht FROM crm.customer_360 WHERE as_of_date = %s "
                              "ORDER BY 1", (early,)).fetchall()
    assert snapshot == [("A", 1, pytest.approx(57.50)), ("B", 1, pytest.approx(28.75))]
    scoring.score(estate, "run_2", AS_OF, FIXED)  # a later week
    again = scoring.score(estate, "run_3", early, FIXED)  # a backfill of the early week
    assert again["customers"] == first["customers"] == 2
    assert estate.execute("SELECT client_code, orders, revenue_ht FROM crm.customer_360 WHERE as_of_date = %s "
                          "ORDER BY 1", (early,)).fetchall() == snapshot
    per_date = dict(estate.execute("SELECT as_of_date, count(*) FROM crm.rfm_scores GROUP BY 1"))
    assert per_date == {early: 2, AS_OF: 2}


def test_suppressed_address_is_flagged(estate):
    estate.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES ('anne@example.fr', 'hard_bounce', 'manual')")
    scoring.score(estate, "run_1", AS_OF, FIXED)
    assert _row(estate, "crm.customer_360", "A")["suppressed"] is True


def test_bad_method_is_refused_with_the_file_named():
    with pytest.raises(ValueError, match="scoring.yaml: rfm.method"):
        scoring.parameters(AS_OF, "r", {"rfm": {"method": "deciles"}})


def test_product_affinity_support_confidence_and_jaccard(estate):
    scoring.score(estate, "run_1", AS_OF, {**FIXED, "affinity": {"min_pair_customers": 1}})
    rows = {(lvl, a, b): (ca, cb, both, float(sup), float(conf), float(jac)) for lvl, a, b, ca, cb, both, sup, conf, jac
            in estate.execute("SELECT level, item_a, item_b, customers_a, customers_b, customers_both, support, "
                              "confidence, jaccard FROM crm.product_affinity WHERE as_of_date = %s", (AS_OF,))}
    # buyers as of AS_OF: A (RIES-22, RIES-22-MAG, PNOI-22-CAR) and B (RIES-22): co-purchase is
    # between cuvées, a magnum of the Riesling is the Riesling
    assert rows[("cuvee", "Riesling", "Pinot Noir")] == (2, 1, 1, 0.5, 0.5, 0.5)
    assert rows[("cuvee", "Pinot Noir", "Riesling")] == (1, 2, 1, 0.5, 1.0, 0.5)
    assert not [key for key in rows if key[0] == "cuvee" and key[1] == key[2]]
    assert {key[0] for key in rows} == {"cuvee", "grape"}
    # the default threshold (2 customers) drops pairs seen once
    scoring.score(estate, "run_1", AS_OF, FIXED)
    assert estate.execute("SELECT count(*) FROM crm.product_affinity WHERE as_of_date = %s", (AS_OF,)).fetchone()[0] == 0


def _360(conn, as_of):
    cursor = conn.execute("SELECT * FROM crm.customer_360 WHERE as_of_date = %s ORDER BY client_code", (as_of,))
    names = [d.name for d in cursor.description]
    return [{k: v for k, v in zip(names, row) if k not in ("computed_run", "computed_at")} for row in cursor]


def _full_recompute(conn, as_of, cfg=FIXED):
    """What a scoring with nothing to carry over writes: the reference."""
    conn.execute("DELETE FROM crm.customer_360_basis")
    result = scoring.score(conn, "full", as_of, cfg)
    assert result["customers_recomputed"] == result["customers"]
    return _360(conn, as_of)


def _add_line(conn, client, doc_no, date, article="RIES-22", qty=6, mt=57.5, doc_type="VENTE"):
    conn.execute(
        "INSERT INTO etl.ventes_lignes (document_type, document_no, client_code, date_livraison, article, qty_line, "
        "mt_ht, file_id, source_row, loaded_run) SELECT %s, %s, %s, %s, %s, %s, %s, min(file_id), "
        "1000 + (SELECT count(*) FROM etl.ventes_lignes), 'test' FROM etl.file_manifest",
        (doc_type, doc_no, client, date, article, qty, mt))


def test_the_weekly_360_recomputes_only_the_changed_customers_and_matches_a_full_one(estate):
    """A customer whose counted lines up to the date are unchanged keeps the previous scoring's
    facts, with today's address, consent and suppression; everything else is computed. The
    result must equal a scoring that computes every customer, whichever way the lines changed
    (added, corrected, moved to another customer), after a catalogue change, and for a backfill
    computed after later weeks."""
    conn, week1, week2 = estate, dt.date(2026, 11, 8), AS_OF
    _add_line(conn, "D", "F6", "2026-10-01")
    _add_line(conn, "E", "F7", "2026-10-02", article="RIES-22-MAG", qty=2, mt=43.34)
    _add_line(conn, "G", "F8", "2026-09-15", article="PNOI-22-CAR", qty=1, mt=66.67)
    conn.execute("DELETE FROM crm.customer_360_basis")  # the fixture's run scored week 2: start from nothing
    first = scoring.score(conn, "week_1", week1, FIXED)
    assert first["customers"] == first["customers_recomputed"] == 5  # A, B, D, E, G: nothing to carry yet

    _add_line(conn, "A", "F9", "2026-11-10", article="PNOI-22-CAR", qty=2, mt=133.34)  # a new order
    conn.execute("UPDATE etl.ventes_lignes SET mt_ht = 60.00 WHERE document_no = 'F8'")  # a corrected amount
    conn.execute("UPDATE etl.ventes_lignes SET client_code = 'E' WHERE document_no = 'F6'")  # moved from D to E
    conn.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES ('bruno@example.fr', 'hard_bounce', "
                 "'manual')")  # B's lines are unchanged, his address is not
    weekly = scoring.score(conn, "week_2", week2, FIXED)
    assert (weekly["customers"], weekly["customers_recomputed"]) == (4, 3)  # A, E, G computed; B carried; D gone
    incremental = _360(conn, week2)
    assert [r["client_code"] for r in incremental] == ["A", "B", "E", "G"]
    assert next(r for r in incremental if r["client_code"] == "B")["suppressed"] is True
    assert incremental == _full_recompute(conn, week2)

    # the catalogue changes what a line means (family, grape, colour, bottles): everyone again
    conn.execute("UPDATE etl.produits SET famille_crm = 'Riesling Grand Cru' WHERE article = 'RIES-22'")
    again = scoring.score(conn, "week_2_rerun", week2, FIXED)
    assert again["customers_recomputed"] == again["customers"] == 4
    assert _360(conn, week2) == _full_recompute(conn, week2)

    # a backfill of week 1 after week 2: customers whose lines up to week 1 did not change since
    # are carried from the later scoring
    scoring.score(conn, "week_2_again", week2, FIXED)
    backfill = scoring.score(conn, "backfill", week1, FIXED)
    assert backfill["customers_recomputed"] < backfill["customers"]
    assert _360(conn, week1) == _full_recompute(conn, week1)


def test_a_customers_fingerprint_changes_with_any_column_of_any_line(estate):
    """The lines' fingerprint a customer is carried over by changes when any column the 360 reads
    changes on any line, and when two lines swap values (a line is hashed as a whole)."""
    from winecrm.core.queries import named_steps

    conn = estate
    _add_line(conn, "Z", "Z1", "2026-10-01", article="RIES-22", qty=6, mt=57.5)
    _add_line(conn, "Z", "Z2", "2026-10-08", article="PNOI-22-CAR", qty=1, mt=66.67)
    steps = dict(named_steps("score_customers"))
    params = scoring.parameters(AS_OF, "fingerprints", FIXED)

    def fingerprint() -> str:
        conn.execute(steps["drop_360_worktables"])
        conn.execute(steps["line_fingerprints"], params)
        return conn.execute("SELECT fingerprint::text FROM pg_temp.scoring_fingerprints WHERE client_code = 'Z'"
                            ).fetchone()[0]

    seen = {fingerprint()}
    for change in ("document_type = 'FACTURE'", "document_no = 'Z9'", "date_livraison = DATE '2026-10-02'",
                   "article = 'PNOI-22'", "qty_line = 7", "mt_ht = 57.51"):
        conn.execute("SAVEPOINT one_change")
        conn.execute(f"UPDATE etl.ventes_lignes SET {change} WHERE document_no = 'Z1'")
        seen.add(fingerprint())
        conn.execute("ROLLBACK TO SAVEPOINT one_change")
    conn.execute("UPDATE etl.ventes_lignes SET article = CASE document_no WHEN 'Z1' THEN 'PNOI-22-CAR' ELSE 'RIES-22' "
                 "END WHERE document_no IN ('Z1', 'Z2')")
    seen.add(fingerprint())
    assert len(seen) == 8
    conn.rollback()


ALL_PAIRS = {**FIXED, "affinity": {"min_pair_customers": 1}}


def _affinity(conn, as_of):
    return conn.execute("SELECT level, item_a, item_b, customers_a, customers_b, customers_both, support, confidence, "
                        "jaccard FROM crm.product_affinity WHERE as_of_date = %s ORDER BY 1, 2, 3", (as_of,)).fetchall()


def _full_affinity(conn, as_of):
    conn.execute("DELETE FROM crm.customer_360_basis")
    assert scoring.score(conn, "full", as_of, ALL_PAIRS)["affinity_from"] is None
    return _affinity(conn, as_of)


def test_the_weekly_co_purchase_counts_follow_the_changed_customers_and_match_a_full_count(estate, monkeypatch):
    """The counts start from the previous scoring's, minus the baskets it does not carry over, plus
    the ones computed today; they must equal a full count, whichever way the lines changed, after an
    erasure (the erased customer's rows are gone from every date, their lines still count) and on
    the week after it."""
    from winecrm.crm import sales_cache
    from winecrm.privacy import erase

    conn, week1, week2, week3 = estate, dt.date(2026, 11, 8), AS_OF, AS_OF + dt.timedelta(days=7)
    _add_line(conn, "D", "F6", "2026-10-01", article="PNOI-22-CAR", qty=1, mt=66.67)
    _add_line(conn, "E", "F7", "2026-10-02", article="RIES-22-MAG", qty=2, mt=43.34)
    _add_line(conn, "E", "F7b", "2026-10-03", article="PNOI-22-CAR", qty=1, mt=66.67)
    _add_line(conn, "G", "F8", "2026-09-15", article="PNOI-22-CAR", qty=1, mt=66.67)
    conn.execute("DELETE FROM crm.customer_360_basis")
    assert scoring.score(conn, "week_1", week1, ALL_PAIRS)["affinity_from"] is None
    assert _affinity(conn, week1)  # pairs to compare

    _add_line(conn, "G", "F9", "2026-11-10", article="RIES-22", qty=6, mt=57.5)  # a new cuvée for G
    conn.execute("UPDATE etl.ventes_lignes SET client_code = 'G' WHERE document_no = 'F6'")  # D's basket moves to G
    conn.execute("UPDATE etl.ventes_lignes SET document_type = 'AVOIR' WHERE document_no = 'F7b'")  # no longer a sale
    weekly = scoring.score(conn, "week_2", week2, ALL_PAIRS)
    assert weekly["affinity_from"] == week1.isoformat()
    incremental = _affinity(conn, week2)
    assert incremental == _full_affinity(conn, week2)

    # E is erased: their 360 rows go from every date (week 1's counts can no longer be taken apart),
    # their purchases still count, anonymously
    assert scoring.score(conn, "week_1_again", week1, ALL_PAIRS)["affinity_from"] == week2.isoformat()
    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: True)
    assert sales_cache.path().exists()  # the chance to buy's sales, E's included
    assert erase.erase(conn, client_codes=["E"], with_files=False).caches_removed == 1
    assert not sales_cache.path().exists()
    rerun = scoring.score(conn, "week_2_after_erasure", week2, ALL_PAIRS)
    assert rerun["customers_recomputed"] < rerun["customers"]  # the 360 still carries from week 1
    assert rerun["affinity_from"] is None  # week 1's counts include E, whose row there is gone
    assert _affinity(conn, week2) == incremental

    # the week after: from week 2's counts, E's share added from their lines
    _add_line(conn, "B", "F10", "2026-11-20", article="PNOI-22-CAR", qty=1, mt=66.67)
    after = scoring.score(conn, "week_3", week3, ALL_PAIRS)
    assert after["affinity_from"] == week2.isoformat()
    assert _affinity(conn, week3) == _full_affinity(conn, week3)
    buyers = {(a, b): (n_a, n) for level, a, b, n_a, _, n, *_ in _affinity(conn, week3) if level == "cuvee"}
    assert buyers[("Riesling", "Pinot Noir")] == (5, 3)  # Riesling: A, B, C, E (erased), G; with Pinot Noir: A, B, G
