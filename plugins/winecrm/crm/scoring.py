"""Customer scoring as of a date: customer 360, RFM + segment, lead score with its components,
co-purchase affinities between articles, families and grapes.

All set-based SQL (``include/sql/queries/score_customers.sql``) in one transaction; the as-of
date makes backfills reproduce history, and rerunning a date replaces that date's rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import psycopg

from winecrm.core import settings
from winecrm.core.queries import named_steps, run_steps

log = logging.getLogger(__name__)


def scoring_config() -> dict:
    return settings.scoring_config()


def parameters(as_of: dt.date, run_id: str, cfg: dict | None = None) -> dict:
    cfg = cfg or scoring_config()
    rfm, seg, lead = cfg.get("rfm", {}), cfg.get("segments", {}), cfg.get("lead_score", {})
    affinity = cfg.get("affinity", {})
    fixed = rfm.get("fixed", {})
    r_days = fixed.get("recency_days", [30, 90, 180])
    f_orders = fixed.get("orders", [2, 4, 8])
    m_revenue = fixed.get("revenue_ht", [150, 400, 1000])
    method = rfm.get("method", "quartiles")
    if method not in ("quartiles", "fixed"):
        raise ValueError(f"include/config/scoring.yaml: rfm.method must be quartiles or fixed, not {method!r}")
    return {
        "as_of": as_of, "run_id": run_id, "method": method,
        "r_days_4": r_days[0], "r_days_3": r_days[1], "r_days_2": r_days[2],
        "f_orders_2": f_orders[0], "f_orders_3": f_orders[1], "f_orders_4": f_orders[2],
        "m_revenue_2": m_revenue[0], "m_revenue_3": m_revenue[1], "m_revenue_4": m_revenue[2],
        "churn_days": seg.get("churn_after_days", 180), "vip_min": seg.get("vip_min", 3.5),
        "standard_min": seg.get("standard_min", 1.5),
        "base": lead.get("base", 50), "per_rfm_point": lead.get("per_rfm_point", 10),
        "rfm_cap": lead.get("rfm_cap", 40), "per_event": lead.get("per_engagement_event", 2),
        "engagement_cap": lead.get("engagement_cap", 20), "per_purchase": lead.get("per_purchase", 5),
        "purchase_cap": lead.get("purchase_cap", 25),
        "min_pair_customers": int(affinity.get("min_pair_customers", 2)),
    }


def score(conn: psycopg.Connection, run_id: str, as_of: dt.date, cfg: dict | None = None) -> dict:
    """Compute every score as of ``as_of`` (inclusive); returns row counts and segment sizes."""
    started = time.perf_counter()
    params = parameters(as_of, run_id, cfg)
    counts = {label: rows for label, (rows, _) in run_steps(conn, named_steps("score_customers"), params).items()}
    segments = dict(conn.execute(
        "SELECT segment, count(*) FROM crm.rfm_scores WHERE as_of_date = %s GROUP BY 1 ORDER BY 1", (as_of,)))
    conn.commit()
    return {"as_of": as_of.isoformat(), "customers": counts.get("customer_360", 0), "segments": segments,
            "affinity_pairs": counts.get("product_affinity", 0),
            "seconds": round(time.perf_counter() - started, 3)}
