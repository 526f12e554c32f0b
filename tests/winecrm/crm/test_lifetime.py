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
