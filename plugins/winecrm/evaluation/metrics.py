"""Ranking and targeting metrics of the backtest: AUC, top-share hit rate, hit-rate / precision /
recall at K, and the paired hit-rate difference with its 95 % interval."""

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


def calibration_by_decile(probabilities, outcomes) -> tuple[list[dict], float | None]:
    """Customers in ten equal groups by predicted probability (lowest first): per group the mean
    predicted probability, the observed buy rate and ``margin95``, the half-width of the 95 %
    interval a perfectly calibrated model's observed rate would fall in (sampling noise: about
    7 points for 180 customers at 50 %); and the largest |mean predicted - observed| gap."""
    import numpy as np

    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    if p.size == 0:
        return [], None
    order = np.argsort(p, kind="stable")
    deciles = []
    for number, members in enumerate(np.array_split(order, 10), start=1):
        if members.size == 0:
            continue
        predicted, observed = float(p[members].mean()), float(y[members].mean())
        deciles.append({"decile": number, "customers": int(members.size), "mean_predicted": predicted,
                        "observed": observed,
                        "margin95": 1.96 * math.sqrt(predicted * (1 - predicted) / members.size)})
    return deciles, max(abs(d["mean_predicted"] - d["observed"]) for d in deciles)
