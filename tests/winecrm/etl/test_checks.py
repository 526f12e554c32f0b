"""The suites evaluated by winecrm.etl.checks give what Great Expectations' own pandas engine gives:
the same quarantine, the same stored validation results, the same Data Docs pages."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from winecrm import pipeline
from winecrm_tools.samples import sampledata

from tests.conftest import MONDAY_RUN, sales_line, write_export

# What differs between two runs of the same suites on the same frames: when they ran, and GX's ids.
_VOLATILE_KEYS = {"id", "validation_id", "checkpoint_id", "ge_load_time", "run_time", "validation_time"}
_VOLATILE_TEXT = re.compile(
    r"\d{8}T\d{6}\.\d{6}Z"                                   # GX's run-time folders and load times
    r"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?"  # ISO times
    r"|\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}"                 # Paris times on the pages
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # ids
    r"|'_run_time_sort': -?[0-9.]+")


def _without_volatile(value):
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _artifacts(conn, run_id: str) -> dict:
    """What one validate call of the run leaves: quarantine rows, good rows, counters, the
    validation results GX stored and the pages it rendered (by suite and batch)."""
    from winecrm.core import settings, storage
    from winecrm.core.storage import run_work_dir

    paths = settings.paths()
    stored_dir = paths.docs_dir / "gx" / "uncommitted" / "validations"
    site = paths.data_docs_site
    before_json, before_pages = set(stored_dir.rglob("*.json")), set(site.glob("validations/*/*/*/*.html"))
    summary = pipeline.run_validate(conn, run_id)
    pipeline.run_data_docs(conn, run_id)  # the direct path's results are stored and rendered there
    stored = {}
    for path in sorted(set(stored_dir.rglob("*.json")) - before_json):
        suite = path.relative_to(stored_dir).parts[0]
        stored.setdefault(suite, []).append(_without_volatile(json.loads(path.read_text(encoding="utf-8"))))
    pages = {}
    for page in sorted(set(site.glob("validations/*/*/*/*.html")) - before_pages):
        pages.setdefault(page.relative_to(site).parts[1], []).append(
            _VOLATILE_TEXT.sub("<volatile>", page.read_text(encoding="utf-8")))
    quarantine = conn.execute("SELECT file_id, row_no, column_name, expectations, reason, raw_values "
                              "FROM etl.quarantine ORDER BY file_id, row_no").fetchall()
    good = {part.relative_to(run_work_dir(run_id)).as_posix(): storage.read_parquet(part)
            for part in sorted(run_work_dir(run_id).glob("file-*/good-*.parquet"))}
    return {"summary": summary["datasets"], "quarantine": quarantine, "good": good, "stored": stored, "pages": pages}


EDGE_LINES = [
    sales_line(doc_no="E1", qty="1\u202f200"),          # a narrow no-break space between thousands
    sales_line(doc_no="E2", qty="0"),                   # 0 is outside (0, max]: strict minimum
    sales_line(doc_no="E3", pu="5000,00"),              # the maximum itself is inside
    sales_line(doc_no="E4", pu="5000,01"),
    sales_line(doc_no="E5", date=""),                   # no date: a null in the integer date column
    sales_line(doc_no="E6", date="16/11/2026"),
    sales_line(doc_no="E7", date="31/12/2099"),
    sales_line(doc_no="E8", doc_type="avoir"),          # lower case: not in the set
    sales_line(doc_no="E9", email="JEAN@EXAMPLE.FR"),
    sales_line(doc_no="E10", email=""),
    sales_line(doc_no="E11", mt="-1,5"),
    sales_line(doc_no="E12", qty="deux", mt="x", date="hier"),
    *[sales_line(doc_no=f"N{i}", qty=f"{i}x") for i in range(230)],  # more failures than GX lists (200)
    sales_line(doc_no="E13", label='"Gewurztraminer\nVT 2019"'),  # a line break inside a quoted value
]


def test_direct_evaluation_gives_what_great_expectations_engine_gives(conn, crm_dirs, monkeypatch):
    from winecrm.etl import gx_context, validate

    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=150, years=1.0, seed=5)
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_bords_2026-11-16.csv",
                 [sales_line(doc_no=f"G{i}") for i in range(700)] + EDGE_LINES)
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    pipeline.run_ingest(conn, "run_1")

    engine_runs = []
    real_run = gx_context.Validator.run

    def counted_run(self, *args, **kwargs):
        engine_runs.append(1)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(gx_context.Validator, "run", counted_run)
    direct = _artifacts(conn, "run_1")
    assert engine_runs == []  # every chunk evaluated directly
    monkeypatch.setattr(validate, "DIRECT", False)  # every chunk through GX's engine (checkpoint.run)
    through_engine = _artifacts(conn, "run_1")
    assert len(engine_runs) >= 5

    assert direct["summary"] == through_engine["summary"]
    sales = direct["summary"]["ventes_lignes"]
    assert sales["quarantined"] >= 240 and sales["warnings"]  # the checks did find things
    assert direct["quarantine"] == through_engine["quarantine"]
    assert direct["good"].keys() == through_engine["good"].keys()
    for name, frame in direct["good"].items():
        pd.testing.assert_frame_equal(frame, through_engine["good"][name])
    assert direct["stored"].keys() == through_engine["stored"].keys() and len(direct["stored"]) >= 5
    for suite, results in direct["stored"].items():
        assert results == through_engine["stored"][suite], suite
    assert direct["pages"] == through_engine["pages"] and len(direct["pages"]) >= 5
    many = [r["result"] for validation in direct["stored"]["isavigne_ventes_lignes"] for r in validation["results"]
            if r["result"].get("unexpected_count", 0) > 200]
    assert many and all(len(r["unexpected_list"]) == 200 and len(r["unexpected_index_list"]) == r["unexpected_count"]
                        for r in many)


@pytest.mark.parametrize("kwargs", [dict(mostly=0.9), dict(row_condition='col("x")>0', condition_parser="great_expectations")])
def test_what_the_direct_path_does_not_know_goes_to_great_expectations(kwargs):
    from winecrm.etl import checks

    frame = pd.DataFrame({"x": [1, 2]})
    assert checks.supported("expect_column_values_to_be_between", {"column": "x", "min_value": 0}, frame)
    assert not checks.supported("expect_column_values_to_be_between", {"column": "x", "min_value": 0, **kwargs},
                                frame)
    assert not checks.supported("expect_column_values_to_be_between", {"column": "y", "min_value": 0}, frame)
    assert not checks.supported("expect_column_values_to_be_between", {"column": "x"}, frame)
    assert not checks.supported("expect_column_values_to_be_between", {"column": "x", "min_value": 2, "max_value": 1},
                                frame)
    assert not checks.supported("expect_column_values_to_be_unique", {"column": "x"}, frame)
    dates = pd.DataFrame({"x": pd.to_datetime(["2026-11-02", "2026-11-09"])})
    assert not checks.supported("expect_column_values_to_be_between", {"column": "x", "min_value": "2026-01-01"},
                                dates)


_EDGES = st.sampled_from(["", " ", "6", "-3", "0", "12,5", "1\u202f200,00", "5000", "5000,01", "1.5",
                          "02/11/2026", "31/02/2026", "2026-11-02", "16/11/2099", "VENTE", "avoir", "AVOIR",
                          "DEVIS", "a@b.fr", "JEAN@EXAMPLE.FR", "x", "12\n", "NaN", "None"])
_TEXT = st.one_of(_EDGES, _EDGES, _EDGES, st.text(max_size=6))  # three edges for one free text


# No shrinking: a failure prints its example as drawn (shrinking GX runs takes minutes).
@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({"client_code": _TEXT, "date_livraison": _TEXT, "qty_line": _TEXT,
                                             "pu_ht": _TEXT, "mt_ht": _TEXT, "document_type": _TEXT,
                                             "document_no": _TEXT, "article": _TEXT, "email": _TEXT}),
                     min_size=1, max_size=12))
def test_any_sales_chunk_gets_the_results_great_expectations_gives(rows, tmp_path_factory):
    """Random delivered values (numbers French and not, impossible dates, blanks, text a rule
    never expects): what ``Validator.record`` stores from winecrm.etl.checks is what
    ``checkpoint.run`` stores, and the same rows fail the same rules."""
    import datetime as dt

    from winecrm.core import settings as crm_settings
    from winecrm.etl import checks, found
    from winecrm.etl.contract import DATASETS
    from winecrm.etl.gx_context import Validator
    from winecrm.etl.parsing import build_frame
    from winecrm.etl.readers import MALFORMED_COLUMN, RAW_LINE_COLUMN, ROW_COLUMN
    from winecrm.etl.rules import rules_for

    dataset = DATASETS["ventes_lignes"]
    raw = pd.DataFrame({name: pd.array([row.get(name, "") for row in rows], dtype="string")
                        for name in dataset.column_names})
    raw[ROW_COLUMN] = pd.array(range(2, len(rows) + 2), dtype="int64")
    raw[MALFORMED_COLUMN] = pd.array([None] * len(rows), dtype="string")
    raw[RAW_LINE_COLUMN] = pd.array([None] * len(rows), dtype="string")
    frame = build_frame(dataset, raw)
    export_date, cfg = dt.date(2026, 11, 16), crm_settings.pipeline_config().validation
    docs = tmp_path_factory.mktemp("gx")
    validator = Validator(docs, "prop")
    rules = rules_for(dataset, export_date, cfg)
    view = checks.checked_columns(frame, rules)
    metrics = checks.check_chunk(rules, view)
    assert metrics is not None
    # through the record the data_docs task reads: every value comes back with its type
    now = dt.datetime.now(dt.timezone.utc)
    folder = tmp_path_factory.mktemp("found")
    found.save(folder, 0, found.Found(dataset.name, export_date, cfg.model_dump(mode="json"),
                                      found.run_name_of("prop", "direct"), now, checks.fingerprint(view), metrics))
    kept = found.load(folder / "found-00000.json")
    validator.record(dataset, export_date, type(cfg).model_validate(kept.settings), kept.metrics, kept.fingerprint,
                     kept.run_name, kept.run_time)
    through_engine = validator.run(dataset, frame, export_date, cfg, "engine", now)
    direct = checks.outcomes(rules, metrics)
    assert [(r.label, s, sorted(i)) for r, _, s, i, _ in direct] \
        == [(r.label, s, sorted(i)) for r, _, s, i, _ in sorted(through_engine, key=lambda o: rules.index(o[0]))]
    stored = {}
    for path in (docs / "gx" / "uncommitted" / "validations").rglob("*.json"):
        suite, run_name = path.relative_to(docs / "gx" / "uncommitted" / "validations").parts[:2]
        stored[(suite, run_name.rsplit("__", 1)[1])] = _without_volatile(json.loads(path.read_text(encoding="utf-8")))
    for suite in {suite for suite, _ in stored}:
        direct_result, engine_result = stored[(suite, "direct")], stored[(suite, "engine")]
        direct_result["meta"]["run_id"].pop("run_name"), engine_result["meta"]["run_id"].pop("run_name")
        assert direct_result == engine_result, suite
