"""Recommendations as of a date: a scenario per segment, up to N products with a score and a
French reason, guard-rails with the reason each customer was left out, and a deterministic
control group. Set-based SQL in ``include/sql/queries/recommend.sql``."""

from __future__ import annotations

import datetime as dt
import time

import psycopg

from winecrm.core.queries import named_steps, run_steps
from winecrm.crm.scoring import scoring_config

SCENARIOS = ("cross_sell", "rebuy", "winback")
SIMILARITIES = ("cosine", "jaccard", "confidence")


def parameters(as_of: dt.date, run_id: str, cfg: dict | None = None) -> dict:
    rec = (cfg or scoring_config()).get("recommendations", {})
    by_segment = {"VIP": "cross_sell", "Standard": "cross_sell", "At Risk": "rebuy", "Churn": "winback",
                  **rec.get("scenario_by_segment", {})}
    for segment, scenario in by_segment.items():
        if scenario not in SCENARIOS:
            raise ValueError(f"include/config/scoring.yaml: recommendations.scenario_by_segment.{segment} "
                             f"must be one of {', '.join(SCENARIOS)}, not {scenario!r}")
    similarity = rec.get("cross_sell_similarity", "confidence")
    if similarity not in SIMILARITIES:
        raise ValueError(f"include/config/scoring.yaml: recommendations.cross_sell_similarity must be one of "
                         f"{', '.join(SIMILARITIES)}, not {similarity!r}")
    taste_weight = float(rec.get("taste_weight", 0.5))
    if not 0 <= taste_weight <= 1:
        raise ValueError("include/config/scoring.yaml: recommendations.taste_weight must be in [0, 1]")
    half_life_cycles = float(rec.get("recency_half_life_cycles", 3))
    floor = float(rec.get("recency_floor", 0.3))
    if half_life_cycles <= 0 or not 0 <= floor <= 1:
        raise ValueError("include/config/scoring.yaml: recommendations.recency_half_life_cycles must be > 0 "
                         "and recency_floor in [0, 1]")
    share = float(rec.get("control_share", 0.10))
    if not 0 <= share < 1:
        raise ValueError("include/config/scoring.yaml: recommendations.control_share must be in [0, 1)")
    return {
        "as_of": as_of, "run_id": run_id,
        "scenario_vip": by_segment["VIP"], "scenario_standard": by_segment["Standard"],
        "scenario_at_risk": by_segment["At Risk"], "scenario_churn": by_segment["Churn"],
        "max_products": int(rec.get("max_products", 3)), "silence_days": int(rec.get("silence_days", 135)),
        "recent_purchase_days": int(rec.get("recent_purchase_days", 60)),
        "winback_min_revenue": float(rec.get("winback_min_revenue_ht", 100)),
        "winback_offer_code": str(rec.get("winback_offer_code", "REVIENS15")),
        "winback_discount_pct": int(rec.get("winback_discount_pct", 15)),
        "control_share": share,
        "neighbours_per_article": int(rec.get("neighbours_per_article", 20)),
        "recency_half_life_cycles": half_life_cycles, "recency_floor": floor,
        "due_boost": float(rec.get("rebuy_due_boost", 0)),
        "similarity": similarity, "taste_weight": taste_weight,
    }


def ranking_steps() -> list[tuple[str, str]]:
    """The steps of recommend.sql that rank candidates (history .. candidates): they read only
    the temp tables rec_customers and rec_in_stock, so the backtest can run them as they are."""
    steps = named_steps("recommend")
    labels = [label for label, _ in steps]
    return steps[labels.index("history"):labels.index("candidates") + 1]


def recommend(conn: psycopg.Connection, run_id: str, as_of: dt.date, cfg: dict | None = None) -> dict:
    started = time.perf_counter()
    params = parameters(as_of, run_id, cfg)
    done = run_steps(conn, named_steps("recommend"), params)
    step_seconds = {label: round(seconds, 3) for label, (_, seconds) in done.items()}
    summary = {
        "as_of": as_of.isoformat(),
        "recommended": dict(conn.execute(
            """SELECT scenario || CASE WHEN is_control THEN ' (control)' ELSE '' END, count(DISTINCT client_code)
               FROM crm.recommendations WHERE as_of_date = %s GROUP BY 1 ORDER BY 1""", (as_of,))),
        "excluded": dict(conn.execute(
            "SELECT reason, count(*) FROM crm.recommendation_exclusions WHERE as_of_date = %s GROUP BY 1 ORDER BY 2 DESC",
            (as_of,))),
    }
    conn.commit()
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["step_seconds"] = {k: v for k, v in step_seconds.items() if v >= 0.05}
    return summary
