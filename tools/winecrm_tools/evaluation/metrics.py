"""Ranking, calibration and targeting metrics of the backtest: AUC, top-share hit rate, calibration
per decile (noise-aware), Brier score and log loss with a paired bootstrap interval, hit-rate /
precision / recall at K, the paired hit-rate difference with its 95 % interval, and the coverage
of a spend interval."""

from __future__ import annotations

import math

K = 3
TOP_SHARE = 0.20


def auc(scores, labels) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None with a single class."""
    import pandas as pd

    scores, labels = pd.Series(scores, dtype=float), pd.Series(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = scores.rank(method="average")
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def top_share_hit_rate(scores, labels, tie_breaker, share: float = TOP_SHARE) -> float | None:
    """Share of buyers among the top ``share`` of customers by score (ties broken at random)."""
    import pandas as pd

    frame = pd.DataFrame({"s": scores, "t": tie_breaker, "y": labels})
    if frame.empty:
        return None
    top = frame.sort_values(["s", "t"], ascending=False).head(max(1, math.ceil(len(frame) * share)))
    return float(top["y"].mean())


def rates(rows: dict) -> dict:
    n = len(rows)
    return {"customers": n,
            "hit_rate": sum(h > 0 for h, _ in rows.values()) / n if n else None,
            "precision": sum(h for h, _ in rows.values()) / (K * n) if n else None,
            "recall": sum(h / r for h, r in rows.values()) / n if n else None}


def paired_hit_difference(ours: dict, baseline: dict) -> dict:
    """Hit-rate difference on the same (cutoff, customer) pairs, with a 95 % interval."""
    keys = ours.keys() & baseline.keys()
    diffs = [(ours[k][0] > 0) - (baseline[k][0] > 0) for k in keys]
    n = len(diffs)
    if n < 2:
        return {"difference": None, "ci95": None, "customers": n}
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = 1.96 * sd / math.sqrt(n)
    return {"difference": mean, "ci95": [mean - half, mean + half], "customers": n,
            "ours_only": sum(d > 0 for d in diffs), "baseline_only": sum(d < 0 for d in diffs)}


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def calibration_by_decile(probabilities, outcomes) -> dict:
    """Customers in ten equal groups by predicted probability (lowest first): per group the mean
    predicted probability, the observed buy rate, and the range a perfectly calibrated model's
    observed rate falls in 95 % of the time (sampling noise: the central 95 % of the binomial
    count of buyers, exact for small groups and rare buys; about +-7 points for 180 customers at
    50 %), with ``margin95`` its larger half. Summaries: how many deciles lie outside their range,
    the expected calibration error (ECE: the customers' mean |predicted - observed| of their
    decile) and the largest gap."""
    import numpy as np
    from scipy.stats import binom

    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    if p.size == 0:
        return {"deciles": [], "outside_margin": None, "ece": None, "largest_gap": None}
    order = np.argsort(p, kind="stable")
    deciles = []
    for number, members in enumerate(np.array_split(order, 10), start=1):
        if members.size == 0:
            continue
        predicted, observed = float(p[members].mean()), float(y[members].mean())
        low, high = binom.ppf([0.025, 0.975], members.size, min(max(predicted, 0.0), 1.0)) / members.size
        deciles.append({"decile": number, "customers": int(members.size), "mean_predicted": predicted,
                        "observed": observed, "range95": [float(low), float(high)],
                        "margin95": float(max(predicted - low, high - predicted)),
                        "outside": bool(observed < low or observed > high)})
    return {"deciles": deciles, "outside_margin": sum(d["outside"] for d in deciles),
            "ece": sum(d["customers"] * abs(d["mean_predicted"] - d["observed"]) for d in deciles) / p.size,
            "largest_gap": max(abs(d["mean_predicted"] - d["observed"]) for d in deciles)}


def brier(probabilities, outcomes):
    """Per-customer Brier score (squared error of the probability)."""
    import numpy as np

    return (np.asarray(probabilities, float) - np.asarray(outcomes, float)) ** 2


def log_loss(probabilities, outcomes, floor: float = 1e-3):
    """Per-customer log loss, probabilities kept within [floor, 1 - floor] (a rate of 0 or 1 read
    off a small group would otherwise cost infinity for one surprise)."""
    import numpy as np

    p = np.clip(np.asarray(probabilities, float), floor, 1 - floor)
    y = np.asarray(outcomes, float)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def bootstrap_mean_difference(ours, baseline, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean of ours - baseline over paired per-customer losses, with a 95 % percentile bootstrap
    interval (customers resampled with replacement); negative = ours is better."""
    import numpy as np

    d = np.asarray(ours, float) - np.asarray(baseline, float)
    if d.size < 2:
        return {"difference": None, "ci95": None, "customers": int(d.size)}
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    batch = max(1, 2_000_000 // d.size)  # keep the index matrix near 16 MB
    for start in range(0, resamples, batch):
        stop = min(resamples, start + batch)
        means[start:stop] = d[rng.integers(0, d.size, (stop - start, d.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"difference": float(d.mean()), "ci95": [float(low), float(high)], "customers": int(d.size)}


def interval_coverage(actual, low, high) -> float | None:
    """Share of customers whose actual value falls inside their [low, high] (cents of rounding
    allowed)."""
    import numpy as np

    actual, low, high = (np.asarray(v, float) for v in (actual, low, high))
    if actual.size == 0:
        return None
    return float(np.mean((actual >= low - 0.005) & (actual <= high + 0.005)))
