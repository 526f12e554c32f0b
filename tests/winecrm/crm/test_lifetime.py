"""The MBG/NBD and Gamma-Gamma models (winecrm.crm.lifetime) on populations simulated from known
parameters: the fit finds them, the chance to order matches what the simulated customers then do,
and the 80 % spend interval holds 75-85 % of the customers' real next year."""

from __future__ import annotations

import numpy as np
import pytest
from winecrm.crm import lifetime

TRUE = lifetime.BgNbd(r=0.6, alpha=8.0, a=0.8, b=3.0)  # weeks: a purchase every ~13 weeks, in
TRUE_GG = lifetime.GammaGamma(p=4.0, q=5.0, gamma=60.0)  # median; about 80 EUR an order


def simulate(n: int, weeks_observed: float, weeks_ahead: float, seed: int = 1):
    """Customers joining at random over the observed period, buying as BG/NBD says (Poisson
    orders, drop-out after each order with chance p: MBG/NBD) and spending as Gamma-Gamma says. Returns the
    histories as of the end of the period and each customer's spend in the ``weeks_ahead`` after."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(TRUE.r, 1 / TRUE.alpha, n)
    drop = rng.beta(TRUE.a, TRUE.b, n)
    nu = rng.gamma(TRUE_GG.q, 1 / TRUE_GG.gamma, n)
    first = rng.uniform(0, weeks_observed * 0.8, n)
    client, day, amount, ahead = [], [], [], np.zeros(n)
    for i in range(n):
        t, alive = first[i], True
        while alive and t <= weeks_observed + weeks_ahead:
            value = rng.gamma(TRUE_GG.p, 1 / nu[i])
            if t <= weeks_observed:
                client.append(i)
                day.append(int(t * lifetime.DAYS_PER_UNIT))
                amount.append(value)
            else:
                ahead[i] += value
            alive = rng.random() >= drop[i]  # the first order may be the last
            t += rng.exponential(1 / rate[i])
    today = int(weeks_observed * lifetime.DAYS_PER_UNIT)
    # one order per (client, day), as the warehouse's order days are
    keys, inverse = np.unique(np.stack([client, day], axis=1), axis=0, return_inverse=True)
    spend = np.bincount(inverse.ravel(), weights=amount)
    known, histories = lifetime.histories(keys[:, 0], keys[:, 1], spend, n, today)
    return known, histories, ahead[known]


@pytest.fixture(scope="module")
def population():
    return simulate(6000, weeks_observed=104, weeks_ahead=52)


def test_the_fit_finds_the_parameters_it_was_simulated_with(population):
    _, histories, _ = population
    fitted = lifetime.fit_bgnbd(histories)
    # the shape of the buying rates and of the drop-out, within sampling error of 6,000 customers
    assert fitted.r == pytest.approx(TRUE.r, rel=0.25)
    assert fitted.alpha == pytest.approx(TRUE.alpha, rel=0.35)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(TRUE.a / (TRUE.a + TRUE.b), rel=0.3)
    gg = lifetime.fit_gamma_gamma(histories)
    # the population's mean order value, p * gamma / (q - 1)
    assert gg.p * gg.gamma / (gg.q - 1) == pytest.approx(TRUE_GG.p * TRUE_GG.gamma / (TRUE_GG.q - 1), rel=0.1)


def test_the_chance_to_order_matches_what_customers_then_do(population):
    _, histories, ahead = population
    model = lifetime.fit_bgnbd(histories)
    p = model.p_order_within(histories, 365)
    bought = ahead > 0
    assert p.mean() == pytest.approx(bought.mean(), abs=0.02)
    # and it ranks: the likeliest fifth buys far more often than the least likely fifth
    order = np.argsort(p)
    fifth = len(p) // 5
    assert bought[order[-fifth:]].mean() > 3 * bought[order[:fifth]].mean()
    # dead certainty is never claimed
    assert (p > 0).all() and (p < 1).all()


def test_the_80_percent_spend_interval_holds_80_percent_of_next_year(population):
    _, histories, ahead = population
    model, gg = lifetime.fit_bgnbd(histories), lifetime.fit_gamma_gamma(histories)
    out = lifetime.spend_ahead(model, gg, histories, 365, draws=300, seed=3)
    inside = (ahead >= out["low"] - 1e-9) & (ahead <= out["high"] + 1e-9)
    assert 0.75 <= inside.mean() <= 0.85
    assert (out["low"] <= out["high"]).all() and (out["low"] <= out["mean"] + 1e-9).all()
    # the estate's total: predicted within its own interval of the truth, give or take a little
    mean, low, high = out["total"]
    assert low < mean < high
    assert ahead.sum() == pytest.approx(mean, rel=0.1)


def test_a_likely_zero_starts_the_interval_at_zero_and_the_result_does_not_depend_on_threads():
    # someone who bought once long ago: a spend of 0 is likely, so the range is [0, 80th percentile]
    h = lifetime.Histories(x=np.array([0.0, 12.0]), t_x=np.array([0.0, 100.0]), T=np.array([150.0, 101.0]),
                           order_days=np.array([1.0, 13.0]), mean_spend=np.array([60.0, 90.0]))
    out = lifetime.spend_ahead(TRUE, TRUE_GG, h, 365, draws=400, seed=5, chunk=1, threads=2)
    assert out["p_zero"][0] > 0.5 and out["low"][0] == 0.0
    assert out["low"][1] > 0 and out["high"][1] > out["low"][1]  # a regular buyer: a central range
    again = lifetime.spend_ahead(TRUE, TRUE_GG, h, 365, draws=400, seed=5, chunk=1, threads=1)
    assert all(np.array_equal(out[k], again[k]) for k in ("mean", "low", "high"))


def test_degenerate_histories_still_give_finite_estimates():
    # a brand-new estate: everyone has one order, nobody has come back yet
    h = lifetime.Histories(x=np.zeros(50), t_x=np.zeros(50), T=np.linspace(0.5, 10, 50),
                           order_days=np.ones(50), mean_spend=np.full(50, 40.0))
    model = lifetime.fit_bgnbd(h)
    p = model.p_order_within(h, 90)
    assert np.isfinite(p).all() and (p > 0).all() and (p < 1).all()
    assert lifetime.fit_gamma_gamma(h) is not None


def simulate_panel(n: int, weeks_observed: float, weeks_ahead: float, seed: int = 2, joining: bool = False):
    """Customers who were all customers before the history began (a household panel, an export's
    first months): each may be gone from the start (MBG/NBD's drop-out chance), orders as
    BG/NBD says from week 0, and is seen only once they order. ``joining``: instead, customers
    who become customers at their first order, at random over the period (an estate's new
    customers). Returns the order (client, day) pairs up to the end of the period and who orders
    in the ``weeks_ahead`` after."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(TRUE.r, 1 / TRUE.alpha, n)
    drop = rng.beta(TRUE.a, TRUE.b, n)
    client, day, ahead = [], [], np.zeros(n, bool)
    for i in range(n):
        if joining:
            alive, t = True, rng.uniform(0, weeks_observed * 0.8)
        else:
            alive, t = rng.random() >= drop[i], rng.exponential(1 / rate[i])
        while alive and t <= weeks_observed + weeks_ahead:
            if t <= weeks_observed:
                client.append(i)
                day.append(int(t * lifetime.DAYS_PER_UNIT))
            else:
                ahead[i] = True
            alive = rng.random() >= drop[i]
            t += rng.exponential(1 / rate[i])
    keys = np.unique(np.stack([client, day], axis=1), axis=0)
    return keys[:, 0], keys[:, 1], ahead


def test_customers_there_before_the_history_began_are_read_as_such():
    """On a panel, the "already customers" view (clock from the history's first day, fit
    conditioned on being seen) finds the parameters and predicts who orders next quarter,
    including the customers first seen late; the acquisition view takes those for new customers
    at the population's rate and over-predicts them."""
    client, day, ahead = simulate_panel(6000, weeks_observed=52, weeks_ahead=13)
    today = 52 * 7
    spend = np.ones(client.size)
    known, panel = lifetime.histories(client, day, spend, 6000, today, history_start=0)
    fitted = lifetime.fit_bgnbd(panel)
    assert panel.truncated and lifetime.subset(panel, np.arange(3)).truncated
    assert fitted.r == pytest.approx(TRUE.r, rel=0.3)
    assert fitted.alpha == pytest.approx(TRUE.alpha, rel=0.4)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(TRUE.a / (TRUE.a + TRUE.b), rel=0.3)
    _, cohort = lifetime.histories(client, day, spend, 6000, today)
    first_seen_late = (today - cohort.T * lifetime.DAYS_PER_UNIT) > 26 * 7  # first order in the second half
    observed = ahead[known]
    as_panel = fitted.p_order_within(panel, 13 * 7)
    as_cohort = lifetime.fit_bgnbd(cohort).p_order_within(cohort, 13 * 7)
    assert abs(as_panel.mean() - observed.mean()) < 0.02
    assert abs(as_panel[first_seen_late].mean() - observed[first_seen_late].mean()) < 0.03
    assert as_cohort[first_seen_late].mean() - observed[first_seen_late].mean() > 0.05


@pytest.mark.parametrize("joining, expected", [(False, "already_customers"), (True, "acquisition")])
def test_each_history_picks_the_reading_that_predicts_it(joining, expected):
    """The chance to buy picks the reading of the first order day that predicted the last quarter
    better: a panel reads as customers already there, a cohort joining over time as new ones."""
    import pandas as pd
    from winecrm.crm import propensity

    client, day, _ = simulate_panel(3000, weeks_observed=52, weeks_ahead=0, seed=4, joining=joining)
    sales = propensity.Sales(pd.DataFrame({"client_code": [f"C{c}" for c in client], "document_no": range(client.size),
                                           "is_sale": True, "day": day.astype(np.int32), "amount": 1.0}))
    view, judged = propensity.choose_history_view(sales, 52 * 7, 91)
    assert view == expected and judged["judged_days"] == 91
    assert judged["log_loss"][expected] < min(judged["log_loss"].values()) + 1e-12


@pytest.mark.parametrize("truncated", [False, True], ids=["acquisition", "already_customers"])
def test_the_likelihoods_gradient_is_its_derivative(population, truncated):
    """The fit follows the exact gradient: checked against central differences of the likelihood
    at points far from and near the optimum, in both readings of the history."""
    _, h, _ = population
    x = h.x + 1 if truncated else h.x  # the panel reading counts every order day
    weight = np.ones(x.size)
    for point in (np.log([1.0, 10.0, 1.0, 3.0]), np.log([0.6, 8.0, 0.8, 3.0]), np.array([0.3, -1.0, 2.0, -0.5])):
        _, gradient = lifetime._bgnbd_log_likelihood(point, x, h.t_x, h.T, weight, truncated)
        step = 1e-5
        numeric = [(lifetime._bgnbd_log_likelihood(point + step * unit, x, h.t_x, h.T, weight, truncated)[0]
                    - lifetime._bgnbd_log_likelihood(point - step * unit, x, h.t_x, h.T, weight, truncated)[0])
                   / (2 * step) for unit in np.eye(4)]
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-3)


def test_first_and_last_days_whatever_the_order():
    rng = np.random.default_rng(3)
    client, day = rng.integers(0, 50, 2000), rng.integers(-400, 4000, 2000)
    first, last = lifetime.first_and_last(client, day, 60)
    expected_first, expected_last = np.full(60, np.iinfo(np.int64).max), np.full(60, np.iinfo(np.int64).min)
    np.minimum.at(expected_first, client, day)
    np.maximum.at(expected_last, client, day)
    assert np.array_equal(first, expected_first) and np.array_equal(last, expected_last)
    order = np.lexsort((day, client))  # the sorted fast path gives the same
    assert all(np.array_equal(got, want) for got, want in
               zip(lifetime.first_and_last(client[order], day[order], 60), (expected_first, expected_last)))


def test_the_spend_likelihoods_gradient_is_its_derivative():
    """The Gamma-Gamma fit follows its exact gradient too (central differences, far from and near
    the optimum)."""
    rng = np.random.default_rng(4)
    n = rng.integers(1, 12, 500).astype(float)
    m = rng.gamma(3.0, 40.0, 500)
    for point in (np.log([2.0, 3.0, 100.0]), np.log([1.1, 6.3, 589.0]), np.array([-0.5, 2.5, 1.0])):
        _, gradient = lifetime._gamma_gamma_log_likelihood(point, n, m, np.log(n), np.log(m))
        step = 1e-6
        numeric = [(lifetime._gamma_gamma_log_likelihood(point + step * unit, n, m, np.log(n), np.log(m))[0]
                    - lifetime._gamma_gamma_log_likelihood(point - step * unit, n, m, np.log(n), np.log(m))[0])
                   / (2 * step) for unit in np.eye(3)]
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("draws", [1, 2, 7, 200, 201])
def test_quantiles_of_sorted_rows_are_numpys(draws):
    rng = np.random.default_rng(draws)
    rows = rng.gamma(1.0, 100.0, (40, draws)) * (rng.random((40, draws)) < 0.3)
    for quantiles in ([0.1, 0.9, 0.8], [0.025, 0.975, 0.95], [0.0, 1.0, 0.5], [1 / 3, 2 / 3]):
        got = lifetime.sorted_quantiles(np.sort(rows, axis=1), quantiles)
        for want, have in zip(np.quantile(rows, quantiles, axis=1), got):
            assert np.array_equal(want, have)


def test_distinct_histories_are_numpys_unique_rows():
    rng = np.random.default_rng(5)
    for size in (0, 1, 500):
        h = lifetime.Histories(x=rng.poisson(2, size).astype(float), t_x=rng.integers(0, 5, size) / 7,
                               T=rng.integers(3, 6, size) / 7, order_days=np.ones(size), mean_spend=np.ones(size))
        x, t_x, T, counts = lifetime.distinct_histories(h)
        rows, want_counts = np.unique(np.stack([h.x, h.t_x, h.T], axis=1), axis=0, return_counts=True)
        assert np.array_equal(np.stack([x, t_x, T], axis=1), rows) and np.array_equal(counts, want_counts)
