"""Recommendations as of a date: a scenario per segment, up to N products with a score and a
French reason, guard-rails with the reason each customer was left out, and a deterministic
control group. Set-based SQL in ``include/sql/queries/recommend.sql``."""

from __future__ import annotations

import datetime as dt
import re
import time
import unicodedata

import psycopg

from winecrm.core import settings
from winecrm.core.queries import named_steps, run_steps
from winecrm.core.settings import ScoringConfig
from winecrm.crm.scoring import revenue_parameters

# How win-back exclusions read in an offer: « (hors magnums et cartons) ».
FORMATS_FR = {"carton": "cartons", "magnum": "magnums", "grand_format": "grands formats",
              "petit_format": "petits formats"}


def fold(text: str) -> str:
    """Lower case without accents, as crm.fold does."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def premium_pattern(markers: list[str]) -> str | None:
    """A PostgreSQL regular expression matching any marker as whole words of a folded name."""
    words = [re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", fold(m).strip()) for m in markers if m.strip()]
    return r"\m(" + "|".join(words) + r")\M" if words else None


def french_list(items: list[str]) -> str | None:
    """« magnums », « magnums et cartons », « cartons, magnums et grands formats »."""
    if not items:
        return None
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " et " + items[-1]


def parameters(as_of: dt.date, run_id: str, cfg: ScoringConfig | dict | None = None) -> dict:
    rec = settings.scoring_from(cfg).recommendations
    return {
        "as_of": as_of, "run_id": run_id,
        "scenario_vip": rec.scenario("VIP"), "scenario_standard": rec.scenario("Standard"),
        "scenario_at_risk": rec.scenario("At Risk"), "scenario_churn": rec.scenario("Churn"),
        "max_products": rec.max_products, "silence_days": rec.silence_days,
        "recent_purchase_days": rec.recent_purchase_days,
        "winback_min_revenue": rec.winback_min_revenue_ht,
        "winback_offer_code": rec.winback_offer_code,
        "winback_discount_pct": rec.winback_discount_pct,
        "control_share": rec.control_share,
        "neighbours_per_article": rec.neighbours_per_article,
        "recency_half_life_cycles": rec.recency_half_life_cycles, "recency_floor": rec.recency_floor,
        "due_boost": rec.rebuy_due_boost,
        "similarity": rec.cross_sell_similarity, "taste_weight": rec.taste_weight,
        "no_trading_down": rec.no_trading_down, "premium_pattern": premium_pattern(rec.premium_markers),
        "premium_tiers": list(rec.premium_catalogue_tiers),
        "winback_offer_scope": rec.winback_offer_scope, "winback_offer_valid_days": rec.winback_offer_valid_days,
        "winback_excluded_formats": list(rec.winback_offer_excludes),
        "winback_offer_excludes": french_list([FORMATS_FR[f] for f in rec.winback_offer_excludes]),
        "winback_soft_after_days": rec.winback_soft_after_days,
        **revenue_parameters(),
    }


def ranking_steps() -> list[tuple[str, str]]:
    """The steps of recommend.sql that rank candidates (in_stock .. analyze_candidates): they read only
    the temp tables rec_customers and rec_available and the warehouse, so the backtest can run
    them as they are."""
    steps = named_steps("recommend")
    labels = [label for label, _ in steps]
    return steps[labels.index("in_stock"):labels.index("analyze_candidates") + 1]


def recommend(conn: psycopg.Connection, run_id: str, as_of: dt.date, cfg: ScoringConfig | dict | None = None) -> dict:
    started = time.perf_counter()
    params = parameters(as_of, run_id, cfg)
    done = run_steps(conn, named_steps("recommend"), params)
    step_seconds = {label: round(seconds, 3) for label, (_, seconds) in done.items()}
    summary = {
        "as_of": as_of.isoformat(),
        "recommended": dict(conn.execute(
            """SELECT scenario || CASE WHEN is_control THEN ' (control)' ELSE '' END, count(DISTINCT client_code)
               FROM crm.recommendations WHERE as_of_date = %s GROUP BY 1 ORDER BY 1""", (as_of,))),
        # the buyers each scenario can expect among the customers it will email (not the control
        # group): the sum of their chances to buy in the horizon (crm.buy_probabilities)
        "expected_buyers": {scenario: round(float(buyers), 1) for scenario, buyers in conn.execute(
            """SELECT scenario, sum(buy_probability) FROM crm.recommendations
               WHERE as_of_date = %s AND rank = 1 AND NOT is_control AND buy_probability IS NOT NULL
               GROUP BY 1 ORDER BY 1""", (as_of,))},
        "excluded": dict(conn.execute(
            "SELECT reason, count(*) FROM crm.recommendation_exclusions WHERE as_of_date = %s GROUP BY 1 ORDER BY 2 DESC",
            (as_of,))),
    }
    conn.commit()
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["step_seconds"] = {k: v for k, v in step_seconds.items() if v >= 0.05}
    return summary
