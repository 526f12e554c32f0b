"""The chance to buy (winecrm.crm.propensity) against real PostgreSQL: no look-ahead, the prior on a
short history, reruns, sensible ordering and expected revenue, and the calibration table."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pandas as pd
import pytest
from winecrm.core import settings
from winecrm.crm import propensity, scoring
from winecrm_tools.evaluation import backtest
from winecrm_tools.evaluation.metrics import calibration_by_decile

AS_OF = dt.date(2026, 11, 15)
CFG = {"buy_probability": {"training_cutoffs": 4}}


def insert_orders(conn, orders: list[tuple]) -> None:
    """(client, date, amount[, document_type]) -> one sales line per order, straight into the warehouse."""
    start = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    with conn.cursor().copy("COPY etl.ventes_lignes (document_type, document_no, client_code, date_livraison, "
                            "article, qty_line, mt_ht, file_id, source_row, loaded_run) FROM STDIN") as copy:
        for n, (client, date, amount, *doc_type) in enumerate(orders, start=start + 1):
            kind = doc_type[0] if doc_type else "VENTE"
            copy.write_row((kind, f"D{n}", client, date, "RIES", -1 if kind == "AVOIR" else 1,
                            -amount if kind == "AVOIR" else amount, 1, n, "test"))
    conn.commit()


def estate_orders(as_of: dt.date = AS_OF, customers: int = 300, seed: int = 3) -> list[tuple]:
    """Three years of customers buying at their own pace until they lapse, plus two named ones:
    FREQ (every 30 days, 50 EUR, last 10 days ago) and LAPSED (one order, 700 days ago)."""
    rng = random.Random(seed)
    orders = []
    for i in range(customers):
        day = rng.randint(0, 730)  # joins within the first two years
        gap = rng.choice([20, 45, 90, 180, 365])
        lapse = day + rng.choice([60, 200, 400, 2000])
        while day <= min(lapse, 1095):
            orders.append((f"C{i:03d}", as_of - dt.timedelta(days=1095 - day), round(rng.uniform(20, 200), 2)))
            day += max(1, int(rng.expovariate(1 / gap)))
    orders += [("FREQ", as_of - dt.timedelta(days=10 + 30 * j), 50.0) for j in range(24)]
    orders.append(("LAPSED", as_of - dt.timedelta(days=700), 80.0))
    return orders


def probabilities(conn, as_of: dt.date = AS_OF) -> dict[str, tuple]:
    return {code: (float(p), float(revenue), method) for code, p, revenue, method in conn.execute(
        "SELECT client_code, probability, expected_revenue_ht, method FROM crm.buy_probabilities "
        "WHERE as_of_date = %s", (as_of,))}


@pytest.fixture
def estate(conn):
    insert_orders(conn, estate_orders())
    return conn


def test_fitted_probabilities_are_sensible(estate):
    summary = scoring.score(estate, "run_1", AS_OF, CFG)["buy_probability"]
    assert summary["method"] == "logistic" and summary["training_cutoffs"] == 4
    rows = probabilities(estate)
    scored = {c for (c,) in estate.execute("SELECT client_code FROM crm.rfm_scores WHERE as_of_date = %s", (AS_OF,))}
    assert set(rows) == scored  # one probability per scored customer
    assert all(0 <= p <= 1 and revenue >= 0 and method == "logistic" for p, revenue, method in rows.values())
    assert rows["FREQ"][0] > 0.8 and rows["LAPSED"][0] < 0.1  # a recent frequent buyer vs a long-lapsed one
    assert summary["expected_buyers"] == pytest.approx(sum(p for p, _, _ in rows.values()), abs=0.1)
    # expected revenue: probability x the usual spend in a 90-day window with orders (3 x 50 EUR)
    assert rows["FREQ"][1] == pytest.approx(rows["FREQ"][0] * 150, abs=0.01)
    model = estate.execute("SELECT method, cardinality(training_cutoffs), examples, buyers, features, model "
                           "FROM crm.buy_probability_models WHERE as_of_date = %s", (AS_OF,)).fetchone()
    assert model[:4] == ("logistic", 4, summary["examples"], summary["buyers"])
    assert set(model[4]) <= set(model[5]) and "calibration" in model[5]  # every coefficient is stored


def test_sales_after_the_date_change_nothing(estate):
    scoring.score(estate, "run_1", AS_OF, CFG)
    before = probabilities(estate)
    model_before = estate.execute("SELECT model::text FROM crm.buy_probability_models").fetchone()
    # everyone buys the next day and for months after, and newcomers arrive
    later = [(code, AS_OF + dt.timedelta(days=d), 500.0) for code in before for d in (1, 30, 200)]
    insert_orders(estate, later + [("NEW", AS_OF + dt.timedelta(days=1), 90.0)])
    scoring.score(estate, "run_2", AS_OF, CFG)
    assert probabilities(estate) == before
    assert estate.execute("SELECT model::text FROM crm.buy_probability_models").fetchone() == model_before


def test_rerun_replaces_the_dates_rows(estate):
    scoring.score(estate, "run_1", AS_OF, CFG)
    other = AS_OF - dt.timedelta(days=7)
    scoring.score(estate, "run_1", other, CFG)
    count = estate.execute("SELECT count(*) FROM crm.buy_probabilities WHERE as_of_date = %s", (AS_OF,)).fetchone()[0]
    scoring.score(estate, "run_2", AS_OF, CFG)
    runs = dict(estate.execute("SELECT as_of_date, array_agg(DISTINCT computed_run) FROM crm.buy_probabilities "
                               "GROUP BY 1"))
    assert runs == {AS_OF: ["run_2"], other: ["run_1"]}
    assert estate.execute("SELECT count(*) FROM crm.buy_probabilities WHERE as_of_date = %s",
                          (AS_OF,)).fetchone()[0] == count
    assert estate.execute("SELECT count(*) FROM crm.buy_probability_models").fetchone()[0] == 2


def test_a_short_history_uses_the_estates_own_rhythm_never_a_default(conn):
    # 10 customers first bought 110 days before the date, 4 of them again 60 days before it: one
    # past cutoff (as_of - 90) with 10 examples, too few to trust the logistic model
    orders = [(f"C{i}", AS_OF - dt.timedelta(days=110), 40.0) for i in range(10)]
    orders += [(f"C{i}", AS_OF - dt.timedelta(days=60), 40.0) for i in range(4)]
    orders += [("C9", AS_OF - dt.timedelta(days=5), 40.0, "AVOIR")]  # a credit note is no order
    insert_orders(conn, orders)
    summary = scoring.score(conn, "run_1", AS_OF)["buy_probability"]
    facts = (summary["method"], summary["training_cutoffs"], summary["examples"], summary["buyers"])
    assert facts == ("bgnbd", 1, 10, 4)
    rows = probabilities(conn)
    assert len(rows) == 10 and {m for _, _, m in rows.values()} == {"bgnbd"}
    came_back = [rows[f"C{i}"][0] for i in range(4)]
    once = [rows[f"C{i}"][0] for i in range(4, 10)]
    # those who came back are likelier to come back again; nobody is certain either way
    assert min(came_back) > max(once) and 0 < min(once) and max(came_back) < 1
    # the level is the estate's own: 4 of 10 came back within ~50 days, so a 90-day chance well
    # above 4 % and well below certainty, and not the old 25 % default for everyone
    assert 0.1 < sum(p for p, _, _ in rows.values()) / 10 < 0.8
    low, high = summary["expected_buyers_interval"]
    assert low < summary["expected_buyers"] < high  # stated with its uncertainty
    model = conn.execute("SELECT method, features, expected_buyers_low, expected_buyers_high, lifetime_model->'bgnbd' "
                         "FROM crm.buy_probability_models").fetchone()
    assert model[:2] == ("bgnbd", None) and model[2] < model[3] and set(model[4]) == {"r", "alpha", "a", "b"}


def test_no_finished_horizon_still_follows_each_customer(conn):
    insert_orders(conn, [("A", AS_OF - dt.timedelta(days=40), 60.0), ("B", AS_OF - dt.timedelta(days=3), 20.0),
                         ("B", AS_OF - dt.timedelta(days=20), 20.0)])
    summary = scoring.score(conn, "run_1", AS_OF)["buy_probability"]
    assert (summary["method"], summary["training_cutoffs"], summary["examples"]) == ("bgnbd", 0, 0)
    rows = probabilities(conn)
    assert rows["B"][0] > rows["A"][0] > 0  # two recent orders beat one older one
    assert 0.25 not in {p for p, _, _ in rows.values()}


def test_each_customer_gets_a_12_month_spend_with_its_interval(estate):
    scoring.score(estate, "run_1", AS_OF, CFG)
    rows = estate.execute("SELECT client_code, spend_12m_ht, spend_12m_low_ht, spend_12m_high_ht, p_alive "
                          "FROM crm.buy_probabilities WHERE as_of_date = %s", (AS_OF,)).fetchall()
    assert rows and all(low <= high and low <= mean and 0 <= alive <= 1 for _, mean, low, high, alive in rows)
    by_code = {code: (float(mean), float(low), float(high), float(alive)) for code, mean, low, high, alive in rows}
    # FREQ buys 50 EUR every 30 days: about 600 EUR a year ahead, well inside a range that is
    # not zero; LAPSED bought once 700 days ago: likely gone, a range starting at 0
    assert 300 < by_code["FREQ"][0] < 900 and by_code["FREQ"][1] > 0 and by_code["FREQ"][3] > 0.9
    assert by_code["LAPSED"][1] == 0 and by_code["LAPSED"][0] < 40 and by_code["LAPSED"][3] < 0.9
    total, low, high = estate.execute("SELECT spend_12m_ht, spend_12m_low_ht, spend_12m_high_ht "
                                      "FROM crm.buy_probability_models WHERE as_of_date = %s", (AS_OF,)).fetchone()
    assert low < total < high
    assert float(total) == pytest.approx(sum(v[0] for v in by_code.values()), rel=0.01)


def test_the_backtest_judges_the_probability(estate):
    cutoff = AS_OF - dt.timedelta(days=90)
    result = backtest.evaluate_cutoff(estate, cutoff, 90, CFG, has_products=False)
    ours = result["targeting"]["buy probability (ours)"]["auc"]
    assert ours is not None and ours > result["targeting"]["random"]["auc"]
    deciles = result["calibration"]["deciles"]
    assert len(deciles) == 10 and sum(d["customers"] for d in deciles) == result["customers"]
    # calibrated in the large: as many buyers expected as there really were, give or take
    expected = sum(d["mean_predicted"] * d["customers"] for d in deciles)
    assert expected == pytest.approx(result["buyers"], rel=0.1)
    summary = backtest.summarise([result])
    assert summary["calibration"]["cutoff"] == cutoff.isoformat()
    assert any(name.startswith("buy probability calibration") for name in summary["checks"])


def test_calibration_by_decile_on_a_known_input():
    # 100 customers, ten groups of ten predicted 5 %, 15 %, ... 95 %; in group k, k of the ten
    # bought, except group 3 (predicted 25 %) where eight did
    probabilities, outcomes = [], []
    for k in range(10):
        bought = 8 if k == 2 else k
        probabilities += [k / 10 + 0.05] * 10
        outcomes += [True] * bought + [False] * (10 - bought)
    pairs = list(zip(probabilities, outcomes))
    random.Random(1).shuffle(pairs)  # the input order does not matter
    table = calibration_by_decile([p for p, _ in pairs], [y for _, y in pairs])
    deciles = table["deciles"]
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert all(d["customers"] == 10 for d in deciles)
    assert [d["mean_predicted"] for d in deciles] == pytest.approx([k / 10 + 0.05 for k in range(10)])
    assert [d["observed"] for d in deciles] == [0.0, 0.1, 0.8, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # 8 buyers of 10 at 25 %: outside the binomial 95 % range (0-5 buyers); the others inside
    assert deciles[2]["range95"] == pytest.approx([0.0, 0.5]) and deciles[2]["outside"]
    assert table["outside_margin"] == 1
    assert table["largest_gap"] == pytest.approx(0.55)
    assert table["ece"] == pytest.approx((0.55 + 9 * 0.05) / 10)
    assert calibration_by_decile([], [])["deciles"] == []


def test_the_quality_bar_judges_every_cutoff_and_says_which_it_cannot():
    def cutoff(date, outside, ece, judged=True):
        return {"cutoff": date, "judged": judged, "customers": 1000, "buyers": 200,
                "targeting": {name: {"auc": 0.7, "top20_hit_rate": 0.5} for name in backtest.TARGETING_METHODS.values()},
                "segments": {}, "calibration": {"deciles": [], "outside_margin": outside, "ece": ece, "largest_gap": ece}}
    bar = next(name for name in backtest.summarise([cutoff("2026-01-01", 0, 0.01)])["checks"]
               if name.startswith("buy probability calibration"))
    assert backtest.summarise([cutoff("2026-01-01", 2, 0.049), cutoff("2026-04-01", 1, 0.02)])["checks"][bar]
    # the first cutoff counts: 3 deciles outside there fails the bar, as does an ECE above 5 points
    assert not backtest.summarise([cutoff("2026-01-01", 3, 0.02), cutoff("2026-04-01", 0, 0.01)])["checks"][bar]
    assert not backtest.summarise([cutoff("2026-01-01", 0, 0.051)])["checks"][bar]
    # a cutoff with too little history is reported but not judged
    assert backtest.summarise([cutoff("2026-01-01", 9, 0.3, judged=False), cutoff("2026-04-01", 0, 0.01)])["checks"][bar]


def test_config_section_is_optional_and_validated():
    assert settings.ScoringConfig.model_validate({}).buy_probability.horizon_days == 90  # older YAML
    with pytest.raises(settings.ConfigError, match="buy_probability.horizon_days"):
        settings.parse_config(settings.ScoringConfig, {"buy_probability": {"horizon_days": 0}}, "scoring.yaml")


def test_models_fitted_beside_the_sql_give_the_rows_fitted_after_it(estate, monkeypatch):
    """Scoring reads the sales and fits the chance to buy in a thread, on a connection of its own,
    while its SQL runs: the rows are those of reading and fitting on the scoring connection."""
    from winecrm.crm import propensity

    started = propensity.fit_beside(estate, AS_OF, CFG)
    assert started is not None  # nothing written yet in the transaction: the thread's path
    started.result()
    estate.rollback()
    finished, real_finish = [], propensity.finish
    monkeypatch.setattr(propensity, "finish", lambda *args: finished.append(args[-1]) or real_finish(*args))
    scoring.score(estate, "run_1", AS_OF, CFG)
    assert len(finished) == 1  # in the thread, for the customers the scoring then kept
    beside = probabilities(estate)

    def models():
        return estate.execute("SELECT model::text, expected_buyers_low, spend_12m_ht, spend_12m_low_ht, "
                              "spend_12m_high_ht FROM crm.buy_probability_models").fetchone()

    model = models()
    # the thread expected other customers than the scoring kept: finished again, for the kept ones
    real_read_and_fit = propensity._read_and_fit

    def guessed_wrong(*args, **kwargs):
        sales, fitted, (predicted, info) = real_read_and_fit(*args, **kwargs)
        return sales, fitted, (predicted.iloc[1:], info)

    monkeypatch.setattr(propensity, "_read_and_fit", guessed_wrong)
    finished.clear()
    scoring.score(estate, "run_2", AS_OF, CFG)
    assert len(finished) == 2 and probabilities(estate) == beside and models() == model
    monkeypatch.setattr(propensity, "_read_and_fit", real_read_and_fit)
    monkeypatch.setattr(propensity, "fit_beside", lambda *args, **kwargs: None)
    scoring.score(estate, "run_3", AS_OF, CFG)
    assert probabilities(estate) == beside and len(beside) > 300
    assert models() == model


def test_sales_not_yet_committed_are_read_on_the_scoring_connection(estate):
    """A caller that loads and scores in one transaction: another connection would not see the
    new sales, so the chance to buy reads them on the caller's own connection."""
    from winecrm.crm import propensity

    estate.execute("INSERT INTO etl.ventes_lignes (document_type, document_no, client_code, date_livraison, article, "
                   "qty_line, mt_ht, file_id, source_row, loaded_run) "
                   "VALUES ('VENTE', 'LATE-1', 'LATE', %s, 'RIES', 1, 40, 1, 999999, 'test')",
                   (AS_OF - dt.timedelta(days=3),))
    assert propensity.fit_beside(estate, AS_OF, CFG) is None
    scoring.score(estate, "run_1", AS_OF, CFG)
    assert "LATE" in probabilities(estate)


def test_without_a_second_connection_the_scoring_connection_reads(estate, monkeypatch):
    """The server refuses another connection (max_connections): the chance to buy is read and
    fitted on the scoring connection, the same rows as ever."""
    import psycopg
    from winecrm.crm import propensity

    scoring.score(estate, "run_1", AS_OF, CFG)
    expected = probabilities(estate)
    real_connect = psycopg.connect

    def refused(*args, **kwargs):
        if kwargs.get("application_name") == "winecrm:score:buy-probability":
            raise psycopg.OperationalError("FATAL: sorry, too many clients already")
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(propensity.psycopg, "connect", refused)
    scoring.score(estate, "run_2", AS_OF, CFG)
    assert probabilities(estate) == expected


def test_the_buyers_interval_allows_for_the_level_moving():
    """Estates whose whole buying level moves from one horizon to the next (a common shock on the
    logit scale, as seasons do): the 80 % interval holds the real number of buyers about 80 % of
    the time when it knows the shock's size, and far less often when it ignores it."""
    from scipy.special import expit, logit

    rng = np.random.default_rng(3)
    inside = {0.0: 0, 0.3: 0}
    estates = 300
    for _ in range(estates):
        chance = rng.beta(2, 2, 600)
        truth = expit(logit(chance) + rng.normal(0, 0.3))
        buyers = (rng.random(600) < truth).sum()
        for level_sd in inside:
            low, high = propensity.buyers_interval(chance, [], level_sd)
            inside[level_sd] += low <= buyers <= high
    assert 0.72 <= inside[0.3] / estates <= 0.88
    assert inside[0.0] / estates < 0.5
    # no shock, nothing added: the sampling interval alone
    chance = np.full(100, 0.5)
    assert propensity.buyers_interval(chance, [], 0.0) == pytest.approx((50 - 1.2816 * 5, 50 + 1.2816 * 5), abs=0.01)


def test_the_sales_read_are_the_lines_the_server_would_group(conn):
    """read_sales takes the lines ungrouped and sums them itself: the same clients in the same
    order, the same orders and days, and amounts equal to the server's numeric sums, for codes that
    need quoting, a document number shared by a sale and a credit note, lines of one document on
    two days, cents that a float sum would not keep, and lines outside the date or the types."""
    import pandas as pd

    lines = [("VENTE", "F1", "Ü,1\"q", "2026-11-01", 0.10), ("VENTE", "F1", "Ü,1\"q", "2026-11-01", 0.20),
             ("VENTE", "F1", "Ü,1\"q", "2026-11-03", 19.99), ("AVOIR", "F1", "Ü,1\"q", "2026-11-04", -0.30),
             ("VENTE", "F2", "Zoé", "2026-10-01", 1234567.89), ("VENTE", "F3", "A", "2026-09-01", 0.07),
             ("VENTE", "F3", "A", "2026-09-01", 0.07), ("VENTE", "F3", "A", "2026-09-01", 0.07),
             ("VENTE", "F4", "Éric", "2026-08-01", 10.00), ("VENTE", "F5", "A", "2026-11-20", 99.0),  # after the date
             ("BL", "F6", "B", "2026-11-01", 50.0)]  # not counted
    with conn.cursor().copy("COPY etl.ventes_lignes (document_type, document_no, client_code, date_livraison, "
                            "article, qty_line, mt_ht, file_id, source_row, loaded_run) FROM STDIN") as copy:
        for n, (kind, doc, client, date, amount) in enumerate(lines, start=1):
            copy.write_row((kind, doc, client, date, "RIES", 1, amount, 1, n, "test"))
    sale_types, counted = ["VENTE"], ["VENTE", "AVOIR"]
    read = propensity.read_sales(conn, AS_OF, sale_types, counted)
    grouped = pd.DataFrame(conn.execute(
        "SELECT client_code, document_no, document_type = ANY(%s), date_livraison - DATE '2000-01-01', sum(mt_ht)::float8 "
        "FROM etl.ventes_lignes WHERE date_livraison <= %s AND document_type = ANY(%s) GROUP BY 1, 2, 3, 4",
        (sale_types, AS_OF, counted)).fetchall(), columns=["client_code", "document_no", "is_sale", "day", "amount"])
    expected = propensity.Sales(grouped)
    assert list(read.clients) == list(expected.clients) == sorted(["Ü,1\"q", "Zoé", "A", "Éric"])
    for name in ("order_client", "order_day", "sale_client", "sale_day"):
        assert np.array_equal(getattr(read, name), getattr(expected, name)), name

    def money(sales):
        return sorted(zip(sales.money_client.tolist(), sales.money_day.tolist(), sales.money_amount.tolist()))

    assert money(read) == money(expected)
    assert len(money(read)) == 6  # F1 on two days and its credit note, F2, F3 once, F4
    nothing = propensity.read_sales(conn, dt.date(2026, 1, 1), sale_types, counted)
    assert nothing.n_clients == 0 and nothing.order_day.size == nothing.money_amount.size == 0


def _spends(conn) -> list[tuple]:
    return conn.execute("SELECT client_code, p_alive, spend_12m_ht, spend_12m_low_ht, spend_12m_high_ht "
                        "FROM crm.buy_probabilities ORDER BY 1").fetchall()


def test_a_scoring_reads_only_the_customers_whose_lines_changed_since_the_kept_sales(estate, monkeypatch):
    """The chance to buy keeps its sales rows with each customer's line fingerprint; the next
    scoring reads only the customers whose fingerprint changed (a new order, a corrected amount, a
    document moved to another customer) and drops those with no line left. The rows, hence every
    probability and spend, are those of reading every line; other document types, an unreadable
    file or an erasure make it read everything."""
    from winecrm.crm import sales_cache

    sales_cache.forget()
    scoring.score(estate, "run_1", AS_OF, CFG)
    assert sales_cache.path().exists()

    insert_orders(estate, [("C001", AS_OF - dt.timedelta(days=2), 75.0)])
    estate.execute("UPDATE etl.ventes_lignes SET mt_ht = mt_ht + 0.01 WHERE source_row = "
                   "(SELECT min(source_row) FROM etl.ventes_lignes WHERE client_code = 'C002')")
    estate.execute("UPDATE etl.ventes_lignes SET client_code = 'C004' WHERE source_row = "
                   "(SELECT max(source_row) FROM etl.ventes_lignes WHERE client_code = 'C003')")
    estate.execute("DELETE FROM etl.ventes_lignes WHERE client_code = 'C005'")
    estate.commit()
    read, real_read_lines = [], propensity._read_lines
    monkeypatch.setattr(propensity, "_read_lines",
                        lambda *args: read.append(args[4] if len(args) > 4 else None) or real_read_lines(*args))
    scoring.score(estate, "run_2", AS_OF, CFG)
    assert [sorted(clients) for clients in read] == [["C001", "C002", "C003", "C004"]]
    from_kept = (probabilities(estate), _spends(estate))
    assert "C005" not in from_kept[0]

    assert sales_cache.forget()
    read.clear()
    scoring.score(estate, "run_3", AS_OF, CFG)
    assert read == [None]  # every line
    assert (probabilities(estate), _spends(estate)) == from_kept

    # kept for other document types, or unreadable: every line again
    types = settings.pipeline_config().revenue.query_parameters()
    assert sales_cache.load(types["sale_types"], types["counted_types"]) is not None
    assert sales_cache.load(types["sale_types"][:1], types["counted_types"]) is None
    sales_cache.path().write_bytes(b"not an arrow file")
    read.clear()
    scoring.score(estate, "run_4", AS_OF, CFG)
    assert read == [None] and probabilities(estate) == from_kept[0]


def test_ranks_are_pandas_average_percent_ranks():
    rng = np.random.default_rng(6)
    for values in (rng.poisson(2, 500).astype(float), rng.gamma(1.0, 1.0, 500), -rng.integers(0, 40, 500) * 1.0,
                   np.array([3.0]), np.zeros(0), np.array([1.0, np.nan, 1.0, np.inf])):
        want = pd.Series(values).rank(pct=True).to_numpy()
        assert np.array_equal(propensity.pct_rank(values), want, equal_nan=True)


def test_the_rows_copied_are_what_the_server_stores(conn):
    """The buy-probability rows as COPY reads them, whatever a client code holds (a comma, a
    quote, nothing, what reads as NULL elsewhere), with the lifetime columns or without them
    (NULL), large and small numbers alike."""
    codes = ["C1", 'A,"b"', "\\N", "", "x y\nz", "é"]
    predicted = pd.DataFrame({"client_code": codes, "probability": [0.123456, 1.0, 0.0, 0.5, 1 / 3, 1e-7],
                              "spend": [100.0, 0.0, 12.5, 3.333, 7.0, 1e9],
                              "p_alive": [0.999999, 0.5, 0.0, 0.25, 2 / 3, 1e-6],
                              "spend_12m": [1234.5678, 0.0, 1.005, 2.675, 1e6 / 3, 1234567890.125],
                              "spend_12m_low": [0.0, 0.0, 0.0, 0.125, 1.0, 0.004],
                              "spend_12m_high": [5000.0, 0.0, 2.0, 9.999, 1e6, 1234567890.125]})
    lifetime_columns = ["p_alive", "spend_12m", "spend_12m_low", "spend_12m_high"]
    for as_of, frame in ((AS_OF, predicted), (AS_OF - dt.timedelta(days=7), predicted.drop(columns=lifetime_columns))):
        probability, expected, rows = propensity._rows(frame, {"method": "logistic"}, as_of, 90, 'run,"1"')
        with conn.cursor().copy("COPY crm.buy_probabilities (as_of_date, client_code, horizon_days, probability, "
                                "expected_revenue_ht, method, computed_run, p_alive, spend_12m_ht, spend_12m_low_ht, "
                                "spend_12m_high_ht) FROM STDIN (FORMAT csv)") as copy:
            copy.write(rows)
        stored = {code: rest for code, *rest in conn.execute(
            "SELECT client_code, probability::float8, expected_revenue_ht::float8, method, computed_run, "
            "p_alive::float8, spend_12m_ht::float8, spend_12m_low_ht::float8, spend_12m_high_ht::float8 "
            "FROM crm.buy_probabilities WHERE as_of_date = %s", (as_of,))}
        assert sorted(stored) == sorted(codes)
        for i, code in enumerate(codes):
            assert stored[code][:4] == [probability[i], expected[i], "logistic", 'run,"1"']
            digits = {"p_alive": 5}  # the others are euros: 2
            assert stored[code][4:] == ([float(np.round(frame[c][i], digits.get(c, 2))) for c in lifetime_columns]
                                        if "p_alive" in frame else [None] * 4)
    conn.rollback()
