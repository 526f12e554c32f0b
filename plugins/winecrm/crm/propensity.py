"""A calibrated chance to buy (issue 9, point 4): per customer and as of a date, the probability
of placing an order within the next ``horizon_days``, and the revenue that chance is worth.

Fitted on the estate's own history with a time split, never with look-ahead: only sales dated
<= as_of are read. The training examples are the customers known at past cutoffs
``as_of - k * horizon`` (k = 1..N), whose outcome window (cutoff, cutoff + horizon] ended by
as_of; the label is "ordered in that window". All cutoffs' examples are pooled into one
scikit-learn ``LogisticRegression``. Features (``FEATURES``), per customer and cutoff:

- within-cutoff percentile ranks of recency, frequency, net revenue, how overdue the customer is
  (days since the last order / their mean gap between order days; one-order customers get the
  cutoff's median gap) and recent orders: ranks carry the ordering the RFM quintile sum is good
  at, whatever the size and age of the customer base at each cutoff;
- the absolute levels of the same facts, log-scaled, plus the customer's tenure: a rank says
  nothing about the level of the buy rate, and without them a history whose buy rate falls as
  its customers age (CDNOW: one cohort) is over-predicted at the latest cutoff.

"Recent orders" is an exponentially decayed count (an order counts 1 today, 1/2 after
``recent_orders_half_life_days``, 1/4 after twice that), not a count in a fixed window: a window
makes a step at its edge (a customer 91 days out looked much colder than one 89 days out), and on a
history barely longer than the window it equals the order count at every training cutoff, then
differs from it at as_of -- the model cannot learn a weight for that and extrapolates wildly.

The pooled model's level is an average over the cutoffs; base rates drift, so (by default) it is
recalibrated on the most recent training cutoff, the closest in time to as_of: a one-feature
logistic regression (Platt scaling) on its logit. That keeps the ranking (AUC) unchanged.

The logistic chance is then averaged with the BG/NBD model's chance to order in the horizon
(``bgnbd_weight``, 0.7): the logistic model reads what customers like this one did in past
windows, whose level lags when customers drop out as they age (a panel of households, a cohort);
the BG/NBD model reads each customer's own rhythm as of today and models that dropping out. On
real one-year histories the average kept AUC and cut the calibration error (bench/RESULTS.md).

With too little history (fewer than two training cutoffs -- one cutoff's customers are all
younger than today's, and recalibrating on the cutoff the model was fitted on checks nothing --
or fewer examples, buyers or non-buyers than the ``buy_probability`` minimums of scoring.yaml)
the logistic model is not trusted and the BG/NBD model of ``winecrm.crm.lifetime`` takes over
(method ``bgnbd``): fitted on every customer's own rhythm as of today, it needs no ended outcome
window, and its level is the estate's own buying rate, each customer shrunk towards it as far as
their history is thin. Never a fixed default rate.

Either way, each date states its uncertainty: an 80 % interval on the number of buyers in the
horizon (every customer's own chance, plus -- on estates small enough for it to matter -- the
spread of refits on resampled data), and each customer's expected net spend over the next 12
months with an 80 % interval (``lifetime.spend_ahead``).

Expected revenue = probability x the customer's mean net spend in the past horizon-long windows
(aligned on as_of) in which they ordered: what they usually spend in a horizon when they do buy
(one order's value would under-count those who order twice a quarter).

Everything is vectorised with numpy / pandas over one read of the orders (a few seconds on the
1M-line, 50,000-customer benchmark estate).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
import psycopg

from winecrm.core import settings
from winecrm.crm import lifetime
from winecrm.core.settings import BuyProbabilityConfig, ScoringConfig

log = logging.getLogger(__name__)

EPOCH = dt.date(2000, 1, 1)  # days are counted from here (negative before): integer arithmetic
RANKED = ["recency", "frequency", "monetary", "overdue", "recent_orders"]
FEATURES = [f"rank_{name}" for name in RANKED] + [
    "log_recency_days", "log_orders", "log_monetary", "log_overdue", "log_recent_orders", "log_tenure_days"]
GROUP_QUARTILES = 4  # the prior: recency quartile x frequency quartile


# --------------------------------------------------------------------------- reading

class Sales:
    """The sales known as of a date, as integer arrays (client index, day number)."""

    def __init__(self, lines: pd.DataFrame):
        # lines: client_code, document_no, is_sale, day, amount (one row per document and day)
        codes = lines["client_code"].astype("category")
        self._arrange(pd.Index(codes.cat.categories), codes.cat.codes.to_numpy(np.int32),
                      pd.factorize(lines["document_no"])[0], lines["is_sale"].to_numpy(bool),
                      lines["day"].to_numpy(np.int32), lines["amount"].to_numpy(float))

    @classmethod
    def from_codes(cls, clients: pd.Index, client: np.ndarray, document: np.ndarray, is_sale: np.ndarray,
                   day: np.ndarray, amount: np.ndarray) -> "Sales":
        """The same from integer codes: ``client`` indexes ``clients`` (sorted), ``document``
        numbers each document."""
        sales = cls.__new__(cls)
        sales._arrange(clients, client, document, is_sale, day, amount)
        return sales

    def _arrange(self, clients: pd.Index, client: np.ndarray, document: np.ndarray, sale: np.ndarray,
                 day: np.ndarray, amount: np.ndarray) -> None:
        self.clients = clients
        # one order whichever order the rows came in (read or kept): by client, day, kind and
        # amount; rows alike in all four are interchangeable (only their document differs)
        # (client, day, kind as one integer key: a third less time than four keys)
        row = np.lexsort((amount, (client.astype(np.int64) << 32)
                          | ((day.astype(np.int64) - (int(day.min()) if day.size else 0)) << 1) | sale))
        client, document, sale, day = client[row], document[row], sale[row], day[row]
        self.money_client, self.money_day, self.money_amount = client, day, amount[row]
        # an order is a sales document (client, number) dated by its first day, as in
        # score_customers.sql (its first row here); credit notes only lower the net revenue
        client, document, day = client[sale], document[sale], day[sale]
        first = ~pd.Series(client.astype(np.int64) * (int(document.max()) + 1 if document.size else 1)
                           + document).duplicated().to_numpy()
        # both kinds of pairs sorted by (client, day): each client's first and last day are then the
        # ends of its run (lifetime.first_and_last), at every cutoff
        self.order_client, self.order_day = client[first].astype(np.int32), day[first].astype(np.int32)
        # distinct (client, day) with a sale: gaps between order days, and who bought when
        new_day = np.ones(client.size, bool)
        new_day[1:] = (client[1:] != client[:-1]) | (day[1:] != day[:-1])
        self.sale_client, self.sale_day = client[new_day].astype(np.int32), day[new_day].astype(np.int32)

    @property
    def n_clients(self) -> int:
        return len(self.clients)

    @property
    def first_day(self) -> int | None:
        return int(self.order_day.min()) if self.order_day.size else None


def day_number(date: dt.date) -> int:
    return (date - EPOCH).days


ROW_COLUMNS = ["client_code", "document_no", "is_sale", "day", "cents"]


class KeptSales(NamedTuple):
    """The previous scoring's sales rows (``sales_cache``) and each kept customer's fingerprint."""

    rows: object  # pyarrow.Table
    prints: dict[str, str]


def kept_sales(sale_types: list[str], counted_types: list[str]) -> KeptSales | None:
    """The rows kept by the previous scoring, ready for ``read_sales`` (what the scoring's thread
    prepares while the server computes the fingerprints it waits for); None when there are none."""
    import pyarrow.compute as pc

    from winecrm.crm import sales_cache

    kept = sales_cache.load(sale_types, counted_types)
    if kept is None:
        return None
    names = pc.unique(kept["client_code"])
    first_row = pc.index_in(names, kept["client_code"])
    return KeptSales(kept, dict(zip(names.to_pylist(), pc.take(kept["fingerprint"], first_row).to_pylist())))


_NOT_GIVEN = object()


def read_sales(conn: psycopg.Connection, as_of: dt.date, sale_types: list[str], counted_types: list[str],
               fingerprints: dict[str, str] | None = None, keep: bool = False, kept=_NOT_GIVEN) -> Sales:
    """Sales and credit notes dated <= as_of, one row per (client, document, day).

    ``fingerprints`` (each customer's line fingerprint as of ``as_of``, ``score_customers.sql``):
    the rows of customers whose fingerprint is the one kept with the previous scoring's rows are
    taken from there (``sales_cache``; ``kept``: ``kept_sales``' result when prepared already),
    only the others read; ``keep``: keep this scoring's rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from winecrm.crm import sales_cache

    if fingerprints is None:
        kept = None
    elif kept is _NOT_GIVEN:
        kept = kept_sales(sale_types, counted_types)
    if kept is not None:
        kept, kept_prints = kept
        changed = [code for code, sum_ in fingerprints.items() if kept_prints.get(code) != sum_]
        if len(changed) > len(fingerprints) // 2:
            kept = None  # most customers changed: one pass over every line costs less
    if kept is None:
        rows = _grouped(_read_lines(conn, as_of, sale_types, counted_types))
    else:
        unchanged = pa.array([code for code, sum_ in fingerprints.items() if kept_prints.get(code) == sum_],
                             pa.string())
        rows = kept.filter(pc.is_in(kept["client_code"], value_set=unchanged)).select(ROW_COLUMNS)
        if changed:
            rows = pa.concat_tables([rows, _grouped(_read_lines(conn, as_of, sale_types, counted_types, changed))])
    clients = pc.dictionary_encode(rows["client_code"]).combine_chunks()
    if keep and fingerprints is not None:
        prints = pa.array([fingerprints.get(code) for code in clients.dictionary.to_pylist()], pa.string())
        sales_cache.save(rows.append_column("fingerprint", prints.take(clients.indices)), sale_types, counted_types)
    return _sales(rows, clients)


def _read_lines(conn: psycopg.Connection, as_of: dt.date, sale_types: list[str], counted_types: list[str],
                clients: list[str] | None = None):
    """The counted lines dated <= as_of (of ``clients`` only, when given), ungrouped: COPY is the
    fastest way out of PostgreSQL for a million lines, and the server would spend a second grouping
    them by two text keys where this process spends a tenth once Arrow's CSV reader (0.1 s where
    pandas took 0.65) has coded the keys as integers. ``clients`` joined as a set (a hash join):
    ``= ANY(array)`` is a linear search per line where the server does not hash the array
    (embedded PostgreSQL 16.2: 22 s for 2,600 customers on a million lines, against 0.2)."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    buffer = io.BytesIO()
    query = f"""COPY (
        SELECT client_code, document_no, document_type = ANY(%(sale_types)s),
               date_livraison - DATE '2000-01-01', mt_ht
        FROM etl.ventes_lignes
        WHERE date_livraison <= %(as_of)s AND document_type = ANY(%(counted_types)s)
              {"AND client_code IN (SELECT unnest(%(clients)s::text[]))" if clients is not None else ""}
    ) TO STDOUT (FORMAT csv)"""
    params = {"as_of": as_of, "sale_types": sale_types, "counted_types": counted_types, "clients": clients}
    with conn.cursor().copy(query, params) as copy:
        for block in copy:
            buffer.write(block)
    coded = pa.dictionary(pa.int32(), pa.string())
    if not buffer.tell():  # no line (Arrow's reader refuses an empty input)
        return pa.table({"client_code": pa.array([], coded), "document_no": pa.array([], coded),
                         "is_sale": pa.array([], pa.bool_()), "day": pa.array([], pa.int32()),
                         "amount": pa.array([], pa.float64())})
    return arrow_csv.read_csv(
        pa.py_buffer(buffer.getbuffer()),
        read_options=arrow_csv.ReadOptions(column_names=["client_code", "document_no", "is_sale", "day", "amount"]),
        convert_options=arrow_csv.ConvertOptions(
            column_types={"client_code": coded, "document_no": coded, "is_sale": pa.bool_(), "day": pa.int32(),
                          "amount": pa.float64()},
            true_values=["t"], false_values=["f"], strings_can_be_null=False)).unify_dictionaries().combine_chunks()


def _grouped(lines):
    """One row per (client, document, sale or credit, day), its amount summed in cents: exactly
    the server's numeric sum."""
    import pyarrow as pa

    if not lines.num_rows:  # (no chunk to take the codes from)
        return pa.table({"client_code": pa.array([], pa.string()), "document_no": pa.array([], pa.string()),
                         "is_sale": pa.array([], pa.bool_()), "day": pa.array([], pa.int32()),
                         "cents": pa.array([], pa.int64())})
    client, document = lines["client_code"].chunk(0), lines["document_no"].chunk(0)
    frame = pd.DataFrame({"client": client.indices.to_numpy(zero_copy_only=False),
                          "doc": document.indices.to_numpy(zero_copy_only=False),
                          "is_sale": lines["is_sale"].to_numpy(), "day": lines["day"].to_numpy(),
                          "cents": np.rint(lines["amount"].to_numpy() * 100).astype(np.int64)})
    grouped = frame.groupby(["client", "doc", "is_sale", "day"], sort=False)["cents"].sum()
    keys = grouped.index
    return pa.table({"client_code": client.dictionary.take(pa.array(keys.get_level_values("client").to_numpy())),
                     "document_no": document.dictionary.take(pa.array(keys.get_level_values("doc").to_numpy())),
                     "is_sale": pa.array(keys.get_level_values("is_sale").to_numpy(bool)),
                     "day": pa.array(keys.get_level_values("day").to_numpy(np.int32)),
                     "cents": pa.array(grouped.to_numpy(np.int64))})


def _sales(rows, clients) -> Sales:
    """``Sales`` from grouped rows (read or kept), clients sorted by code as pandas' categories
    (``clients``: the rows' client codes, dictionary-encoded)."""
    import pyarrow.compute as pc

    names = np.asarray(clients.dictionary.to_pylist(), dtype=object)
    order = np.argsort(names, kind="stable")
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    client = rank[clients.indices.to_numpy(zero_copy_only=False)]
    document = pc.dictionary_encode(rows["document_no"]).combine_chunks().indices.to_numpy(zero_copy_only=False)
    return Sales.from_codes(pd.Index(names[order]), client, document, rows["is_sale"].to_numpy(),
                            rows["day"].to_numpy().astype(np.int32), rows["cents"].to_numpy() / 100)


# --------------------------------------------------------------------------- features

def features_at(sales: Sales, cutoff: int, recent_half_life: float = 180) -> pd.DataFrame:
    """One row per customer with an order on or before ``cutoff`` (a day number), indexed by
    client index: the RFM facts, the model's features and the prior's group."""
    k = sales.n_clients
    on = sales.order_day <= cutoff
    client, day = sales.order_client[on], sales.order_day[on]
    orders = np.bincount(client, minlength=k)
    known = np.flatnonzero(orders)
    if known.size == 0:
        return pd.DataFrame(columns=["recency", "frequency", "monetary", "overdue", *FEATURES, "group"])
    first, last = lifetime.first_and_last(client, day, k)
    s_on = sales.sale_day <= cutoff
    order_days = np.bincount(sales.sale_client[s_on], minlength=k)
    recent = np.bincount(client, weights=0.5 ** ((cutoff - day) / recent_half_life), minlength=k)
    m_on = sales.money_day <= cutoff
    monetary = np.bincount(sales.money_client[m_on], weights=sales.money_amount[m_on], minlength=k)

    recency = (cutoff - last[known]).astype(float)
    tenure = (cutoff - first[known]).astype(float)
    n_days = order_days[known]
    gap = np.where(n_days > 1, (tenure - recency) / np.maximum(n_days - 1, 1), np.nan)
    typical = np.nanmedian(gap) if np.isfinite(gap).any() else np.nan
    if not np.isfinite(typical) or typical <= 0:
        typical = 365.0  # nobody has ordered twice yet: a year, the wine buyer's usual cycle
    gap = np.where(np.isfinite(gap) & (gap > 0), gap, typical)
    frame = pd.DataFrame({"recency": recency, "frequency": orders[known].astype(float),
                          "monetary": monetary[known], "overdue": recency / gap,
                          "recent_orders": recent[known]}, index=known)
    # ranks oriented so that high = more likely to buy; ties share their average rank
    frame["rank_recency"] = pct_rank(-recency)
    frame["rank_overdue"] = pct_rank(-frame["overdue"].to_numpy())
    for name in ("frequency", "monetary", "recent_orders"):
        frame[f"rank_{name}"] = pct_rank(frame[name].to_numpy())
    frame["log_recency_days"] = np.log1p(frame["recency"])
    frame["log_orders"] = np.log1p(frame["frequency"])
    frame["log_monetary"] = np.log1p(frame["monetary"].clip(lower=0))
    frame["log_overdue"] = np.log1p(frame["overdue"])
    frame["log_recent_orders"] = np.log1p(frame["recent_orders"])
    frame["log_tenure_days"] = np.log1p(tenure)
    r_quartile = np.minimum(GROUP_QUARTILES - 1, (frame["rank_recency"] * GROUP_QUARTILES).astype(int))
    f_quartile = np.minimum(GROUP_QUARTILES - 1, (frame["rank_frequency"] * GROUP_QUARTILES).astype(int))
    frame["group"] = r_quartile * GROUP_QUARTILES + f_quartile
    return frame


def pct_rank(values: np.ndarray) -> np.ndarray:
    """``pd.Series(values).rank(pct=True)`` (ties share their average rank, divided by the count)
    for finite values, to the bit, from one sort (pandas' rank took 2.5x the time)."""
    if not np.isfinite(values).all():
        return pd.Series(values).rank(pct=True).to_numpy()
    _, group, size = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(size)
    return (last - (size - 1) / 2)[group] / values.size


def bought_between(sales: Sales, start: int, end: int) -> np.ndarray:
    """Per client index: ordered in (start, end]."""
    inside = (sales.sale_day > start) & (sales.sale_day <= end)
    return np.bincount(sales.sale_client[inside], minlength=sales.n_clients) > 0


def training_set(sales: Sales, as_of: int, cfg: BuyProbabilityConfig) -> tuple[pd.DataFrame, list[int]]:
    """Examples pooled over the past cutoffs as_of - k * horizon (k = 1..N, newest first) that
    have known customers, each with its label, its cutoff and its weight."""
    frames, cutoffs = [], []
    first = sales.first_day
    for k in range(1, cfg.training_cutoffs + 1):
        cutoff = as_of - k * cfg.horizon_days
        if first is None or cutoff < first:
            break
        frame = features_at(sales, cutoff, cfg.recent_orders_half_life_days)
        frame["bought"] = bought_between(sales, cutoff, cutoff + cfg.horizon_days)[frame.index]
        half_life = cfg.recency_half_life_cutoffs  # 0: every cutoff weighs the same
        frame["weight"] = 0.5 ** ((k - 1) / half_life) if half_life else 1.0
        frame["cutoff"] = cutoff
        frames.append(frame)
        cutoffs.append(cutoff)
    if not frames:
        return pd.DataFrame(columns=[*FEATURES, "group", "bought", "weight", "cutoff"]), []
    return pd.concat(frames, ignore_index=True), cutoffs


# --------------------------------------------------------------------------- fitting

def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).reshape(-1, 1)


class BuyModel:
    """The pooled logistic regression, then (optionally) Platt scaling on the newest cutoff."""

    def __init__(self, train: pd.DataFrame, newest_cutoff: int, cfg: BuyProbabilityConfig):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = train[FEATURES].to_numpy(float)
        y = train["bought"].to_numpy(bool)
        # newton-cholesky: many examples, few features (5x faster than lbfgs on the bench estate)
        self.model = make_pipeline(StandardScaler(), LogisticRegression(
            C=cfg.regularisation_c, solver="newton-cholesky", max_iter=100))
        self.model.fit(x, y, logisticregression__sample_weight=train["weight"].to_numpy(float))
        self.calibration = None
        newest = (train["cutoff"] == newest_cutoff).to_numpy()
        buyers = int(y[newest].sum())
        if cfg.recalibrate_on_newest_cutoff and min(buyers, int(newest.sum()) - buyers) >= cfg.min_buyers:
            # an unpenalised 1-feature logistic regression on the model's logit (Platt scaling)
            platt = LogisticRegression(C=1e6, solver="newton-cholesky", max_iter=100)
            platt.fit(_logit(self.model.predict_proba(x[newest])[:, 1]), y[newest])
            if platt.coef_[0, 0] > 0:  # never invert the ranking
                self.calibration = platt

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        p = self.model.predict_proba(features[FEATURES].to_numpy(float))[:, 1]
        if self.calibration is not None:
            p = self.calibration.predict_proba(_logit(p))[:, 1]
        return p

    def explain(self) -> dict:
        """Coefficients per unit of each feature (the scaler folded in) and the calibration."""
        scaler, logistic = self.model[0], self.model[-1]
        coef = logistic.coef_[0] / np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        intercept = float(logistic.intercept_[0] - (coef * scaler.mean_).sum())
        out = {"intercept": round(intercept, 6), **{n: round(float(c), 6) for n, c in zip(FEATURES, coef)}}
        if self.calibration is not None:
            out["calibration"] = {"slope": round(float(self.calibration.coef_[0, 0]), 6),
                                  "intercept": round(float(self.calibration.intercept_[0]), 6)}
        return out


def spend_per_bought_window(sales: Sales, as_of: int, horizon: int) -> np.ndarray:
    """Per client index: mean net revenue of the horizon-long windows ending at as_of, as_of -
    horizon, ... in which they ordered (0 when none)."""
    frame = pd.DataFrame({"client": sales.money_client, "window": (as_of - sales.money_day) // horizon,
                          "amount": sales.money_amount})
    per_window = frame.groupby(["client", "window"], sort=False)["amount"].sum()
    ordered = pd.DataFrame({"client": sales.sale_client, "window": (as_of - sales.sale_day) // horizon}) \
        .drop_duplicates()
    per_window = per_window.reindex(pd.MultiIndex.from_frame(ordered)).fillna(0.0)
    means = per_window.groupby(level=0).mean()
    spend = np.zeros(sales.n_clients)
    spend[means.index.to_numpy()] = np.maximum(0.0, means.to_numpy())
    return spend


def quintile_sum(frame: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """The classic RFM quintile sum (3-15) of the customers of ``features_at``: recency,
    frequency and revenue each cut into five equal groups (ties broken by client code, as the
    backtest's baseline does)."""
    n = len(frame)
    total = np.zeros(n, int)
    for values in (-frame["recency"].to_numpy(float), frame["frequency"].to_numpy(float),
                   frame["monetary"].to_numpy(float)):
        order = np.lexsort((codes, values))
        tile = np.empty(n, int)
        tile[order] = np.arange(n) * 5 // max(n, 1) + 1
        total += tile
    return total


def order_day_spend(sales: Sales) -> np.ndarray:
    """Net revenue of each (client, order day) of ``sales.sale_client`` / ``sales.sale_day``
    (credit notes dated that day included; a day's net below 0 counts as 0 spent)."""
    money = pd.DataFrame({"c": sales.money_client, "d": sales.money_day, "a": sales.money_amount}) \
        .groupby(["c", "d"], sort=False)["a"].sum()
    keys = pd.MultiIndex.from_arrays([sales.sale_client, sales.sale_day])
    return money.reindex(keys).fillna(0.0).to_numpy(float)


HISTORY_VIEWS = ("acquisition", "already_customers")


def lifetime_histories(sales: Sales, today: int, view: str = "acquisition",
                       spend: np.ndarray | None = None) -> tuple[np.ndarray, lifetime.Histories]:
    """The histories the MBG/NBD model reads, in one of ``HISTORY_VIEWS`` (``lifetime.histories``):
    a customer's clock starts at their first order, or at the history's first day. ``spend``:
    ``order_day_spend(sales)`` when the caller already has it."""
    start = sales.first_day if view == "already_customers" else None
    spend = order_day_spend(sales) if spend is None else spend
    return lifetime.histories(sales.sale_client, sales.sale_day, spend, sales.n_clients, today, history_start=start)


def choose_history_view(sales: Sales, today: int, horizon: int, spend: np.ndarray | None = None,
                        min_customers: int = 30) -> tuple[str, dict]:
    """Which reading of the first order day predicts this history better: both fitted as of a past
    day and judged (log loss) on who then ordered up to today, over one horizon, or over half the
    history when it is shorter than two. A cohort that joined at its first order (CDNOW) picks
    "acquisition"; customers who were there before the history began (a one-year household panel,
    an estate's first export months) pick "already_customers", and then a customer first seen
    late is read as a slow buyer, not a new one. Too little to judge: "acquisition"."""
    first = sales.first_day
    if first is None:
        return "acquisition", {}
    window = min(horizon, (today - first) // 2)
    past = today - window
    ordered = bought_between(sales, past, today)
    losses = {}
    for view in HISTORY_VIEWS:
        known, histories = lifetime_histories(sales, past, view, spend)
        bought = ordered[known]
        if known.size < min_customers or bought.all() or not bought.any():
            return "acquisition", {}
        chance = np.clip(lifetime.fit_bgnbd(histories).p_order_within(histories, window), 1e-4, 1 - 1e-4)
        losses[view] = float(-np.mean(np.where(bought, np.log(chance), np.log1p(-chance))))
    return min(losses, key=losses.get), {"judged_days": int(window), "log_loss": {
        view: round(loss, 6) for view, loss in losses.items()}}


def bgnbd_blend(bgnbd_probability: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The small-estate chance to buy: half the customer's BG/NBD chance, half the mean BG/NBD
    chance of their RFM quintile-sum group. The level stays the model's (the estate's own buying
    rate); the order borrows from the quintile sum, which adds revenue to recency and frequency
    (on 1,200-customer CDNOW years: AUC +0.002 on average over the quintile sum, against -0.007
    for BG/NBD alone)."""
    group_mean = pd.Series(bgnbd_probability).groupby(groups).transform("mean").to_numpy(float)
    return 0.5 * bgnbd_probability + 0.5 * group_mean


def buyers_interval(probability: np.ndarray, refits: list[np.ndarray], level_sd: float = 0.0,
                    level: float = 0.80) -> tuple[float, float]:
    """An interval on the number of buyers in the horizon, from three independent sources of
    error: each customer buys or not with their chance (sampling); the chances themselves are
    uncertain (the spread of the sums over refits on resampled data, on estates small enough for
    it to matter); and the estate's buying level moves from one horizon to the next in ways no
    past window shows (season, weather, a competitor), ``level_sd`` on the logit scale: every
    customer's chance shifted together by that many standard deviations."""
    from scipy.special import expit, logit
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    expected = float(probability.sum())
    variance = float((probability * (1 - probability)).sum())
    if len(refits) > 1:
        variance += float(np.var([r.sum() for r in refits], ddof=1))
    half = z * np.sqrt(variance)
    below = above = 0.0
    if level_sd > 0 and probability.size:
        logits = logit(np.clip(probability, 1e-6, 1 - 1e-6))
        below = expected - float(expit(logits - z * level_sd).sum())
        above = float(expit(logits + z * level_sd).sum()) - expected
    return (max(0.0, expected - float(np.hypot(half, below))),
            min(float(len(probability)), expected + float(np.hypot(half, above))))


def predict(sales: Sales, as_of: dt.date, cfg: BuyProbabilityConfig,
            customers: set[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Probability, expected spend and 12-month spend interval for every customer with an order on
    or before ``as_of`` (of ``customers`` only, when given: the models still learn from all), and
    how they were obtained (method, training cutoffs, examples, buyers,
    coefficients, the lifetime model, the interval on the number of buyers)."""
    return finish(sales, as_of, cfg, fit(sales, as_of, cfg), customers)


def fit(sales: Sales, as_of: dt.date, cfg: BuyProbabilityConfig) -> dict:
    """The part of ``predict`` that needs no list of customers (features, training set, models,
    every customer's probability and refits): what scoring runs beside its SQL."""
    today = day_number(as_of)
    current = features_at(sales, today, cfg.recent_orders_half_life_days)
    train, cutoffs = training_set(sales, today, cfg)
    examples = len(train)
    buyers = int(train["bought"].sum()) if examples else 0
    info: dict = {"training_cutoffs": [EPOCH + dt.timedelta(days=c) for c in cutoffs],
                  "examples": examples, "buyers": buyers}
    index = current.index.to_numpy(int)
    spend = order_day_spend(sales)
    view, judged = ((cfg.history_view, {}) if cfg.history_view != "auto"
                    else choose_history_view(sales, today, cfg.horizon_days, spend))
    info["history_view"] = {"view": view, **judged}
    known, histories = lifetime_histories(sales, today, view, spend)
    assert np.array_equal(known, index), "features and histories disagree on who is a customer"
    rng = np.random.default_rng(cfg.seed)
    refits: list[np.ndarray] = []
    bgnbd = lifetime.fit_bgnbd(histories) if len(index) else None
    gamma_gamma = lifetime.fit_gamma_gamma(histories) if len(index) else None
    trusted = (len(cutoffs) >= cfg.min_training_cutoffs and examples >= cfg.min_examples
               and min(buyers, examples - buyers) >= cfg.min_buyers)
    if not len(index):
        probability = np.zeros(0)
        info.update(method="bgnbd", model={})
    elif trusted:
        model = BuyModel(train, cutoffs[0], cfg)
        own_rhythm = bgnbd.p_order_within(histories, cfg.horizon_days)
        weight = cfg.bgnbd_weight

        def averaged(logistic: np.ndarray) -> np.ndarray:
            return (1 - weight) * logistic + weight * own_rhythm

        probability = averaged(model.predict(current))
        info.update(method="logistic", model={**model.explain(), "bgnbd_weight": weight})
        if examples <= cfg.uncertainty_max_examples:
            for _ in range(cfg.uncertainty_refits):
                sample = train.iloc[rng.integers(0, examples, examples)]
                if 0 < sample["bought"].sum() < len(sample):
                    refits.append(averaged(BuyModel(sample, cutoffs[0], cfg).predict(current)))
    else:
        groups = quintile_sum(current, sales.clients[index].to_numpy())
        probability = bgnbd_blend(bgnbd.p_order_within(histories, cfg.horizon_days), groups)
        info.update(method="bgnbd", model={
            "chance": "half the BG/NBD chance to order in the horizon, half its mean over the customer's RFM "
                      "quintile-sum group", "estate_rate": round(float(probability.mean()), 6)})
        if examples <= cfg.uncertainty_max_examples:
            n = len(index)
            for _ in range(cfg.uncertainty_refits):
                pick = rng.integers(0, n, n)
                refit = lifetime.fit_bgnbd(lifetime.subset(histories, pick))
                refits.append(bgnbd_blend(refit.p_order_within(histories, cfg.horizon_days), groups))
    probability = np.clip(np.asarray(probability, float), 0.0, 1.0)
    return {"today": today, "info": info, "index": index, "histories": histories, "refits": refits,
            "bgnbd": bgnbd, "gamma_gamma": gamma_gamma, "probability": probability}


def _among(codes, wanted: set) -> np.ndarray:
    """Which of ``codes`` are in ``wanted``, by a set lookup each: np.isin on object arrays sorts
    the strings (22 s for 50,000 customers) and pandas' isin on its string type took 0.18 s. The
    codes as a list first: iterating pandas' Arrow-backed strings one by one took 0.05 s."""
    return np.fromiter((code in wanted for code in codes.tolist()), bool, len(codes))


def finish(sales: Sales, as_of: dt.date, cfg: BuyProbabilityConfig, fitted: dict,
           customers: set[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """``predict``'s result from ``fit``'s, for ``customers`` only when given."""
    today, info, index, histories = fitted["today"], dict(fitted["info"]), fitted["index"], fitted["histories"]
    refits, bgnbd, gamma_gamma, probability = fitted["refits"], fitted["bgnbd"], fitted["gamma_gamma"], fitted["probability"]
    codes = sales.clients[index].to_numpy()
    keep = _among(codes, customers) if customers is not None else np.ones(len(index), bool)
    probability, codes, index = probability[keep], codes[keep], index[keep]
    histories = lifetime.subset(histories, np.flatnonzero(keep))
    low, high = buyers_interval(probability, [r[keep] for r in refits], cfg.level_sd)
    info["expected_buyers_interval"] = (round(low, 1), round(high, 1))
    spend = spend_per_bought_window(sales, today, cfg.horizon_days)
    result = pd.DataFrame({"client_code": codes, "probability": probability, "spend": spend[index]})
    if bgnbd is not None and len(index):
        ahead = lifetime.spend_ahead(bgnbd, gamma_gamma, histories, cfg.spend_days, draws=cfg.spend_draws,
                                     interval=cfg.spend_interval, seed=cfg.seed)
        result["p_alive"] = bgnbd.p_alive(histories)
        result["spend_12m"], result["spend_12m_low"], result["spend_12m_high"] = \
            ahead["mean"], ahead["low"], ahead["high"]
        info["lifetime"] = {"bgnbd": {k: round(v, 6) for k, v in vars(bgnbd).items()},
                            "gamma_gamma": ({k: round(v, 6) for k, v in vars(gamma_gamma).items()}
                                            if gamma_gamma else None),
                            "history_view": info.get("history_view"),
                            "time_unit_days": lifetime.DAYS_PER_UNIT, "spend_days": cfg.spend_days,
                            "interval": cfg.spend_interval, "draws": cfg.spend_draws}
        info["spend_12m_total"] = tuple(round(float(v), 2) for v in ahead["total"])
    return result, info


# --------------------------------------------------------------------------- storing

def _read_and_fit(conn: psycopg.Connection, as_of: dt.date, bp: BuyProbabilityConfig,
                  fingerprints: dict[str, str] | None = None, ahead: bool = False,
                  kept=_NOT_GIVEN) -> tuple[Sales, dict, tuple | None]:
    """The sales (``read_sales``: with ``fingerprints``, the unchanged customers' from the last
    scoring's, this scoring's kept), the fitted models and, when ``ahead``, ``finish``'s result
    for the customers the scoring will keep unless something changes meanwhile (every one but the
    erased)."""
    started = time.perf_counter()
    revenue = settings.pipeline_config().revenue.query_parameters()
    sales = read_sales(conn, as_of, revenue["sale_types"], revenue["counted_types"], fingerprints,
                       keep=fingerprints is not None, kept=kept)
    read = time.perf_counter()
    fitted = fit(sales, as_of, bp)
    fitted["seconds"] = {"read": round(read - started, 3), "fit": round(time.perf_counter() - read, 3)}
    if not ahead:
        return sales, fitted, None
    erased = {code for (code,) in conn.execute("SELECT client_code FROM crm.erased_clients")}
    finishing = time.perf_counter()
    finished = finish(sales, as_of, bp, fitted, set(sales.clients).difference(erased))
    fitted["seconds"]["finish"] = round(time.perf_counter() - finishing, 3)
    return sales, fitted, finished


def nothing_written_yet(conn: psycopg.Connection) -> bool:
    """True when ``conn``'s transaction has written nothing: another connection sees its sales."""
    return conn.execute("SELECT pg_current_xact_id_if_assigned() IS NULL").fetchone()[0] is True


def _import_models() -> None:
    """What fitting imports (scikit-learn, SciPy: 0.7 s in a fresh task process), imported by
    the thread while the scoring computes the fingerprints it waits for."""
    from winecrm.core.imports import collector_paused

    with collector_paused():
        import scipy.optimize  # noqa: F401
        import scipy.special  # noqa: F401
        import scipy.stats  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sklearn.pipeline  # noqa: F401
        import sklearn.preprocessing  # noqa: F401


def fit_beside(conn: psycopg.Connection, as_of: dt.date, cfg: ScoringConfig | dict | None = None,
               fingerprints: "dict[str, str] | Future | None" = None, *, checked: bool = False,
               run_id: str | None = None):
    """Start reading the sales and fitting the models in a thread, on a connection of its own,
    while ``conn`` runs the scoring SQL (the server works on one core, numpy and scikit-learn on
    the other); ``compute(..., fitting=...)`` takes the result. ``fingerprints``: ``read_sales``'s,
    or a future the caller completes once it has them (the thread imports its models meanwhile);
    ``run_id``: the thread also prepares the rows to write.
    None when ``conn``'s transaction has written anything yet (``checked``: the caller saw it had
    not): a second connection would not see it, so ``compute`` reads on ``conn`` itself."""
    if not checked and not nothing_written_yet(conn):
        return None
    from concurrent.futures import Future, ThreadPoolExecutor

    bp = settings.scoring_from(cfg).buy_probability
    dsn, password = conn.info.dsn, conn.info.password

    def read_and_fit():
        from threadpoolctl import threadpool_limits

        _import_models()
        # while the server computes the fingerprints: the kept rows read and indexed, the
        # connection opened (0.05-0.2 s off the scoring's longest path)
        revenue = settings.pipeline_config().revenue.query_parameters()
        kept = kept_sales(revenue["sale_types"], revenue["counted_types"]) if fingerprints is not None else None
        # one BLAS/OpenMP thread: the server holds the other core, and OpenBLAS's second thread
        # spinning against it doubled the fit's time (1.6 -> 3.2 s on the 1M-line estate)
        with threadpool_limits(limits=1), \
                psycopg.connect(dsn, password=password, application_name="winecrm:score:buy-probability") as own:
            known = fingerprints.result() if isinstance(fingerprints, Future) else fingerprints
            sales, fitted, (predicted, info) = _read_and_fit(own, as_of, bp, known, ahead=True, kept=kept)
        prepared = _rows(predicted, info, as_of, bp.horizon_days, run_id) if run_id is not None else None
        return sales, fitted, (predicted, info, prepared)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buy-probability")
    try:
        return pool.submit(read_and_fit)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one job


def _rows(predicted: pd.DataFrame, info: dict, as_of: dt.date, horizon_days: int,
          run_id: str) -> tuple[pd.Series, pd.Series, bytes]:
    """The rounded probabilities and expected revenues, and the crm.buy_probabilities rows as
    COPY's CSV (prepared by the thread when it finishes ahead: the scoring then only sends them).
    Written by Arrow's CSV writer (a csv writer per row took 0.22 s for 43,000 customers, this
    0.03): every value quoted, so that only a missing one (an unquoted empty field) reads as
    NULL; numbers rounded by numpy, written as their shortest exact text."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    probability = predicted["probability"].round(5)
    expected = (probability * predicted["spend"]).round(2)
    size = len(predicted)

    def rounded(column: str, digits: int) -> pa.Array:
        if column not in predicted:
            return pa.nulls(size, pa.float64())
        return pa.array(np.round(predicted[column].to_numpy(float), digits))

    table = pa.table({
        "as_of_date": pa.array([as_of] * size, pa.date32()),
        "client_code": pa.array(predicted["client_code"].astype(str).to_numpy(object), pa.string()),
        "horizon_days": pa.array(np.full(size, horizon_days, np.int64)),
        "probability": pa.array(probability.to_numpy(float)), "expected": pa.array(expected.to_numpy(float)),
        "method": pa.array([info["method"]] * size, pa.string()), "run": pa.array([run_id] * size, pa.string()),
        "p_alive": rounded("p_alive", 5), "spend_12m": rounded("spend_12m", 2),
        "spend_12m_low": rounded("spend_12m_low", 2), "spend_12m_high": rounded("spend_12m_high", 2)})
    out = io.BytesIO()
    arrow_csv.write_csv(table, out, arrow_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return probability, expected, out.getvalue()


def compute(conn: psycopg.Connection, run_id: str, as_of: dt.date, cfg: ScoringConfig | dict | None = None,
            fitting=None, fingerprints: dict[str, str] | None = None) -> dict:
    """Fit, predict for the customers scored at ``as_of`` (crm.rfm_scores), and write
    crm.buy_probabilities and crm.buy_probability_models (a rerun replaces the date's rows).
    Runs in the caller's transaction: the caller commits. ``fitting``: ``fit_beside``'s future."""
    started = time.perf_counter()
    bp = settings.scoring_from(cfg).buy_probability
    # what needs only this connection first, while the thread may still be finishing
    scored = {code for (code,) in conn.execute("SELECT client_code FROM crm.rfm_scores WHERE as_of_date = %s",
                                               (as_of,))}
    conn.execute("DELETE FROM crm.buy_probabilities WHERE as_of_date = %s", (as_of,))
    conn.execute("DELETE FROM crm.buy_probability_models WHERE as_of_date = %s", (as_of,))
    try:
        sales, fitted, ahead = (fitting.result() if fitting is not None
                                else _read_and_fit(conn, as_of, bp, fingerprints))
    except psycopg.OperationalError as exc:  # no second connection (the server's limit, a network cut)
        log.warning("buy probability: read on the scoring connection instead (%s)", exc.__class__.__name__)
        sales, fitted, ahead = _read_and_fit(conn, as_of, bp, fingerprints)
    read = time.perf_counter()
    # the thread finished for the customers it expected scored (the 12-month spend's simulation
    # included); taken when they are exactly the ones scored, else finished again for those
    customers = sales.clients[fitted["index"]]
    if ahead is not None and np.array_equal(ahead[0]["client_code"].to_numpy(),
                                            customers[_among(customers, scored)].to_numpy()):
        predicted, info, prepared = ahead
    else:
        (predicted, info), prepared = finish(sales, as_of, bp, fitted, scored), None
    probability, expected, rows = prepared or _rows(predicted, info, as_of, bp.horizon_days, run_id)
    fitted_at = time.perf_counter()

    with conn.cursor().copy("COPY crm.buy_probabilities (as_of_date, client_code, horizon_days, probability, "
                            "expected_revenue_ht, method, computed_run, p_alive, spend_12m_ht, spend_12m_low_ht, "
                            "spend_12m_high_ht) FROM STDIN (FORMAT csv)") as copy:
        copy.write(rows)
    buyers_low, buyers_high = info["expected_buyers_interval"]
    spend_total = info.get("spend_12m_total", (None, None, None))
    summary = {"method": info["method"], "horizon_days": bp.horizon_days,
               "training_cutoffs": len(info["training_cutoffs"]), "examples": info["examples"],
               "buyers": info["buyers"], "customers": len(predicted),
               "mean_probability": round(float(probability.mean()), 5) if len(predicted) else None,
               "expected_buyers": round(float(probability.sum()), 1),
               "expected_buyers_interval": [buyers_low, buyers_high],
               "expected_revenue_ht": round(float(expected.sum()), 2),
               "spend_12m_ht": spend_total[0], "spend_12m_interval": list(spend_total[1:])}
    conn.execute(
        """INSERT INTO crm.buy_probability_models (as_of_date, horizon_days, method, training_cutoffs, examples,
               buyers, features, model, customers, mean_probability, expected_buyers, expected_revenue_ht,
               computed_run, expected_buyers_low, expected_buyers_high, spend_12m_ht, spend_12m_low_ht,
               spend_12m_high_ht, lifetime_model)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (as_of, bp.horizon_days, info["method"], info["training_cutoffs"], info["examples"], info["buyers"],
         FEATURES if info["method"] == "logistic" else None, json.dumps(info["model"]), summary["customers"],
         summary["mean_probability"], summary["expected_buyers"], summary["expected_revenue_ht"], run_id,
         buyers_low, buyers_high, *spend_total, json.dumps(info.get("lifetime"))))
    # waited for the thread (or read and fitted here), finished here, in all; and the reading's parts
    summary["seconds"] = {"read": round(read - started, 3), "fit": round(fitted_at - read, 3),
                          "total": round(time.perf_counter() - started, 3), "parts": fitted.get("seconds")}
    log.info("buy probability as of %s: %s", as_of, summary)
    return summary
