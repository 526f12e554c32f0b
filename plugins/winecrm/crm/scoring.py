"""Customer scoring as of a date: customer 360, RFM + segment, lead score with its components,
co-purchase affinities between articles, families and grapes, and the chance to buy
(``winecrm.crm.propensity``).

All set-based SQL (``include/sql/queries/score_customers.sql``) in one transaction; the as-of
date makes backfills reproduce history, and rerunning a date replaces that date's rows. The
customer 360 is incremental: a customer whose lines up to the date are those of a previous
scoring with the same basis keeps that scoring's facts (migration 018); a week's rescoring
computes only the customers whose lines changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from concurrent.futures import Future

import psycopg

from winecrm.core import settings
from winecrm.core.queries import named_steps, run_steps
from winecrm.core.settings import ScoringConfig

log = logging.getLogger(__name__)


def scoring_config() -> ScoringConfig:
    return settings.scoring_config()


def revenue_parameters() -> dict:
    """Which document types are sales and which are credit notes (pipeline.yaml, revenue)."""
    return settings.pipeline_config().revenue.query_parameters()


def queries_version(steps: list[tuple[str, str]]) -> str:
    """The scoring queries' own text, hashed: part of the 360's basis (a changed query recomputes
    every customer instead of carrying rows computed the old way)."""
    return hashlib.md5("\n".join(sql for _, sql in steps).encode()).hexdigest()


def parameters(as_of: dt.date, run_id: str, cfg: ScoringConfig | dict | None = None,
               steps: list[tuple[str, str]] | None = None) -> dict:
    cfg = settings.scoring_from(cfg)
    fixed, seg, lead = cfg.rfm.fixed, cfg.segments, cfg.lead_score
    return {
        "as_of": as_of, "run_id": run_id, "method": cfg.rfm.method,
        "r_days_4": fixed.recency_days[0], "r_days_3": fixed.recency_days[1], "r_days_2": fixed.recency_days[2],
        "f_orders_2": fixed.orders[0], "f_orders_3": fixed.orders[1], "f_orders_4": fixed.orders[2],
        "m_revenue_2": fixed.revenue_ht[0], "m_revenue_3": fixed.revenue_ht[1], "m_revenue_4": fixed.revenue_ht[2],
        "churn_days": seg.churn_after_days, "vip_min": seg.vip_min, "standard_min": seg.standard_min,
        "base": lead.base, "per_rfm_point": lead.per_rfm_point, "rfm_cap": lead.rfm_cap,
        "engagement_cap": lead.engagement_cap,
        "per_purchase": lead.per_purchase, "purchase_cap": lead.purchase_cap,
        "min_pair_customers": cfg.affinity.min_pair_customers,
        "queries_version": queries_version(steps if steps is not None else named_steps("score_customers")),
        **revenue_parameters(),
    }


def score(conn: psycopg.Connection, run_id: str, as_of: dt.date, cfg: ScoringConfig | dict | None = None) -> dict:
    """Compute every score as of ``as_of`` (inclusive); returns row counts and segment sizes."""
    started = time.perf_counter()
    steps = named_steps("score_customers")
    params = parameters(as_of, run_id, cfg, steps)
    # the chance to buy, beside the lead score, in the same transaction (pandas and scikit-learn
    # are imported here, not when the DAG file is parsed); its sales are read and its models
    # fitted in a thread while the server runs the SQL below, once the lines' fingerprints tell
    # which customers' sales the previous scoring's still are
    from winecrm.crm import propensity

    fingerprints_known: Future = Future()
    fitting = (propensity.fit_beside(conn, as_of, cfg, fingerprints_known, checked=True, run_id=run_id)
               if propensity.nothing_written_yet(conn) else None)
    try:
        # Sorts of a million lines spill to disk at the default 4 MB; compiling these plans (JIT)
        # costs more than it saves (customer_360: 4.3 s -> 3.3 s on 1M lines).
        conn.execute("SELECT set_config('work_mem', '256MB', true), set_config('jit', 'off', true)")
        first = [i for i, (label, _) in enumerate(steps) if label == "line_fingerprints"][0] + 1
        done = run_steps(conn, steps[:first], params)
        fingerprints = dict(conn.execute("SELECT client_code, fingerprint::text FROM pg_temp.scoring_fingerprints"))
    except BaseException as exc:
        fingerprints_known.set_exception(exc)  # the thread stops waiting
        raise
    fingerprints_known.set_result(fingerprints)
    if fitting is not None:
        # the other core is the thread's from now on: parallel workers took it and did not even
        # speed the SQL up (weekly rescoring on 1M lines: score 6.0 -> 5.3 s, alternated runs)
        conn.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
    done |= run_steps(conn, steps[first:], params)
    counts = {label: rows for label, (rows, _) in done.items()}
    # the co-purchase counts' starting point (None: every basket was counted)
    affinity_from = conn.execute("SELECT max(as_of_date) FROM pg_temp.affinity_reference").fetchone()[0]
    segments = dict(conn.execute(
        "SELECT segment, count(*) FROM crm.rfm_scores WHERE as_of_date = %s GROUP BY 1 ORDER BY 1", (as_of,)))
    buy_probability = propensity.compute(conn, run_id, as_of, cfg, fitting=fitting, fingerprints=fingerprints)
    conn.commit()
    log.info("Customer 360 as of %s: %d customers computed from their lines, %d unchanged and carried over",
             as_of, counts.get("customer_360", 0), counts.get("carry_360", 0))
    return {"as_of": as_of.isoformat(), "customers": counts.get("customer_360", 0) + counts.get("carry_360", 0),
            "customers_recomputed": counts.get("customer_360", 0), "segments": segments,
            "affinity_pairs": counts.get("product_affinity", 0),
            "affinity_from": affinity_from and affinity_from.isoformat(), "buy_probability": buy_probability,
            # where the time went (steps of a tenth of a second or more): the run's details keep it
            "sql_seconds": {label: round(seconds, 2) for label, (_, seconds) in done.items() if seconds >= 0.1},
            "seconds": round(time.perf_counter() - started, 3)}
