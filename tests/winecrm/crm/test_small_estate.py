"""A 55-customer estate with six months of sales, through the whole weekly run: its own buying
rate (no fixed default), segments in order, the uncertainty stated in the report, and a backtest
that says which cutoffs have too little history instead of printing "n/a"."""

from __future__ import annotations

import datetime as dt

import pytest
from winecrm import pipeline
from winecrm.campaigns.report import reports_dir
from winecrm_tools.samples import sampledata
from winecrm_tools.evaluation import backtest

from tests.conftest import MONDAY_RUN


@pytest.fixture
def small_estate(conn, crm_dirs):
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=55, years=0.5, seed=11)
    run = pipeline.run_all(conn, pipeline.week_window("small_1", MONDAY_RUN))
    assert run["status"] == "success"
    return run


def test_a_55_customer_estate_gets_estimates_of_its_own(conn, small_estate):
    as_of = conn.execute("SELECT max(as_of_date) FROM crm.buy_probabilities").fetchone()[0]
    model = conn.execute(
        """SELECT method, customers, expected_buyers, expected_buyers_low, expected_buyers_high,
                  spend_12m_ht, spend_12m_low_ht, spend_12m_high_ht
           FROM crm.buy_probability_models WHERE as_of_date = %s""", (as_of,)).fetchone()
    method, customers, buyers, buyers_low, buyers_high, spend, spend_low, spend_high = model
    assert method == "bgnbd" and 30 <= customers <= 55
    assert buyers_low < buyers < buyers_high and spend_low < spend < spend_high
    rows = conn.execute(
        """SELECT r.segment, b.probability::float8, b.spend_12m_low_ht <= b.spend_12m_high_ht
           FROM crm.buy_probabilities b JOIN crm.rfm_scores r USING (as_of_date, client_code)
           WHERE b.as_of_date = %s""", (as_of,)).fetchall()
    probabilities = [p for _, p, _ in rows]
    assert all(ok for _, _, ok in rows)
    # the estate's own rates: spread out, never one default for everyone
    assert len({round(p, 3) for p in probabilities}) > 10 and 0.25 not in probabilities
    assert 0 < min(probabilities) and max(probabilities) < 1
    # what the estate really does: in its six months, how many customers came back at all?
    came_back = conn.execute(
        """SELECT avg((n > 1)::int)::float8 FROM (
               SELECT client_code, count(DISTINCT date_livraison) AS n FROM etl.ventes_lignes
               WHERE document_type = 'VENTE' GROUP BY 1) t""").fetchone()[0]
    assert came_back > 0.1 and sum(probabilities) / len(probabilities) > 0.05
    # segments in order: the mean chance falls from VIP to Churn (segments with 3+ customers)
    by_segment: dict[str, list[float]] = {}
    for segment, p, _ in rows:
        by_segment.setdefault(segment, []).append(p)
    means = [sum(v) / len(v) for s in backtest.SEGMENT_ORDER if len(v := by_segment.get(s, [])) >= 3]
    assert len(means) >= 2 and means == sorted(means, reverse=True)


def test_the_report_states_the_uncertainty(conn, small_estate):
    report = next(reports_dir().rglob("rapport-hebdo.html")).read_text(encoding="utf-8")
    assert "Prévisions" in report and "8 chances sur 10" in report
    assert "Historique encore court" in report  # says why the estimates are what they are
    assert "\u00a0€" in report and " €" not in report.replace("&nbsp;€", "")


def test_the_backtest_says_which_cutoffs_have_too_little_history(conn, small_estate):
    last = conn.execute("SELECT max(date_livraison) FROM etl.ventes_lignes").fetchone()[0]
    cutoffs = backtest.auto_cutoffs(conn, 90, 4)
    assert cutoffs[0] < last - dt.timedelta(days=182)  # the first falls before the data
    notes = [backtest.history_note(conn, c, *conn.execute(
        "SELECT count(DISTINCT client_code), 0 FROM etl.ventes_lignes WHERE date_livraison <= %s", (c,)).fetchone())
        for c in cutoffs]
    assert notes[0] == (False, notes[0][1]) and "before the first sale" in notes[0][1]
    assert all(not judged and ("too little history" in note or "before the first sale" in note)
               for judged, note in notes)
