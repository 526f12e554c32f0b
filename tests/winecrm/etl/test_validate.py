"""Validation: each bad row quarantined with file, line, column, expectation and raw values."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from winecrm import pipeline

from tests.conftest import MONDAY_RUN, sales_line, use_config, write_export


def _run_until_validate(conn, run_id="run_1"):
    window = pipeline.week_window(run_id, MONDAY_RUN)
    pipeline.prepare(conn, window)
    pipeline.run_ingest(conn, run_id)
    summary = pipeline.run_validate(conn, run_id)
    pipeline.run_data_docs(conn, run_id)  # the task beside the load
    return summary


def _quarantine(conn):
    return {row[0]: row[1:] for row in conn.execute(
        "SELECT row_no, column_name, expectations, reason, raw_values FROM etl.quarantine ORDER BY row_no")}


BAD_CASES = [
    # (line kwargs, column, expectation fragment, reason fragment)
    (dict(date="31/02/2026"), "date_livraison", "expect_column_values_to_be_null(date_livraison_unparsed)", "'31/02/2026' is not a valid date"),
    (dict(date="2026/11/02"), "date_livraison", "expect_column_values_to_match_regex(date_livraison_text)", "not a dd/mm/yyyy date"),
    (dict(date="02/11/1999"), "date_livraison", "expect_column_values_to_be_between(date_livraison_yyyymmdd)", "outside the plausible range"),
    (dict(qty="deux"), "qty_line", "expect_column_values_to_match_regex(qty_line_text)", "'deux' is not a number"),
    (dict(qty="-3"), "qty_line", "expect_column_values_to_be_between(qty_line)", "quantity '-3' out of range"),
    (dict(qty="99999"), "qty_line", "expect_column_values_to_be_between(qty_line)", "'99999' out of range"),
    (dict(mt="12,5,0"), "mt_ht", "expect_column_values_to_match_regex(mt_ht_text)", "'12,5,0' is not a number"),
    (dict(pu="-4,00"), "pu_ht", "expect_column_values_to_be_between(pu_ht)", "unit price"),
    (dict(doc_type="DEVIS"), "document_type", "expect_column_values_to_be_in_set(document_type)", "unknown document type 'DEVIS'"),
    (dict(client="  "), "client_code", "expect_column_values_to_not_be_null(client_code)", "client_code: missing value"),
    (dict(article=""), "article", "expect_column_values_to_not_be_null(article)", "article: missing value"),
]


@pytest.mark.parametrize("kwargs,column,expectation,reason", BAD_CASES)
def test_each_kind_of_bad_row_is_quarantined_with_a_clear_reason(conn, crm_dirs, kwargs, column, expectation, reason):
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_2026-11-16.csv",
                 [sales_line(doc_no="F1"), sales_line(doc_no="F2", **kwargs), sales_line(doc_no="F3")])
    summary = _run_until_validate(conn)
    assert summary["datasets"]["ventes_lignes"]["quarantined"] == 1 and summary["datasets"]["ventes_lignes"]["good"] == 2
    (row_no, (col, expectations, text, raw)), = _quarantine(conn).items()
    assert row_no == 3  # header is line 1
    assert col == column
    assert expectation in expectations
    assert reason in text
    assert text.startswith("isavigne/ventes_lignes/ventes_2026-11-16.csv line 3:")
    assert raw["document_no"] == "F2"


def test_good_rows_of_a_file_with_bad_rows_are_all_loaded(conn, crm_dirs):
    lines = [sales_line(doc_no=f"F{i}") for i in range(50)] + [sales_line(doc_no="BAD", qty="x")]
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", lines)
    window = pipeline.week_window("run_1", MONDAY_RUN)
    summary = pipeline.run_all(conn, window, require_week=False)
    assert (summary["rows_read"], summary["rows_validated"], summary["rows_quarantined"]) == (51, 50, 1)
    assert (summary["rows_written"], summary["rows_superseded"], summary["rows_skipped"]) == (50, 0, 0)
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 50


def test_exact_duplicate_line_keeps_the_first_copy(conn, crm_dirs):
    line = sales_line(doc_no="F1")
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [line, sales_line(doc_no="F2"), line])
    _run_until_validate(conn)
    (row_no, (col, expectations, text, _)), = _quarantine(conn).items()
    assert row_no == 4 and col is None
    assert expectations == ["expect_column_values_to_be_null(_duplicate_of_row)"]
    assert "exact duplicate of line 2" in text


def test_two_different_lines_of_one_document_are_both_kept(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1", article="RIES-22"),
        sales_line(doc_no="F1", article="RIES-22", qty="1", pu="0,00", mt="0,00", ttc="0,00", marge="0,00"),
    ])
    summary = _run_until_validate(conn)
    assert summary["datasets"]["ventes_lignes"]["good"] == 2


def test_malformed_row_is_quarantined_with_its_fields(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                 [sales_line(doc_no="F1"), sales_line(doc_no="F2") + ";oops"])
    _run_until_validate(conn)
    (row_no, (col, expectations, text, raw)), = _quarantine(conn).items()
    assert row_no == 3
    assert expectations == ["expect_column_values_to_be_null(_malformed)"]
    assert "15 fields, header has 14" in text
    assert raw["_fields"][-1] == "oops"


def test_invalid_email_is_loaded_with_a_flag_not_quarantined(conn, crm_dirs):
    write_export(crm_dirs["raw"], "clients", "clients_2026-11-16.csv",
                 ["C1;Dupont;Jean; Jean.Dupont@Example.FR ", "C2;Martin;Marie;marie at example.fr", "C3;Roth;Luc;"],
                 header="client_code;nom;prenom;email")
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.run_all(conn, window, require_week=False)
    rows = dict((c, (e, v)) for c, e, v in conn.execute("SELECT client_code, email, email_valid FROM etl.clients"))
    assert rows == {"C1": ("jean.dupont@example.fr", True), "C2": ("marie at example.fr", False), "C3": (None, None)}
    assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == 0


def test_duplicate_customer_key_keeps_the_later_row(conn, crm_dirs):
    write_export(crm_dirs["raw"], "clients", "clients_2026-11-16.csv",
                 ["C1;Dupont;Jean;old@example.fr", "C2;Martin;Marie;m@example.fr", "C1;Dupont;Jean;new@example.fr"],
                 header="client_code;nom;prenom;email")
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.run_all(conn, window, require_week=False)
    assert conn.execute("SELECT email FROM etl.clients WHERE client_code = 'C1'").fetchone()[0] == "new@example.fr"
    (row_no, (col, _, text, _)), = _quarantine(conn).items()
    assert row_no == 2 and col == "client_code" and "as line 4, which supersedes it" in text


def test_credit_note_sign_is_normalised_whatever_the_export_says(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1"),
        sales_line(doc_no="A1", doc_type="avoir", qty="2", mt="19,17", ttc="23,00", marge="8,05"),
        sales_line(doc_no="A2", doc_type="AVOIR", qty="-1", mt="-9,58", ttc="-11,50", marge="-4,02"),
    ])
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.run_all(conn, window, require_week=False)
    rows = {d: (float(q), float(m)) for d, q, m in conn.execute(
        "SELECT document_no, qty_line, mt_ht FROM etl.ventes_lignes")}
    assert rows == {"F1": (6.0, 57.5), "A1": (-2.0, -19.17), "A2": (-1.0, -9.58)}
    net = conn.execute("SELECT sum(qty_line) FROM etl.ventes_lignes").fetchone()[0]
    assert float(net) == 3.0


def test_formula_in_a_label_is_stored_as_plain_text(conn, crm_dirs):
    formula = '=HYPERLINK("http://evil.invalid","Riesling")'
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [sales_line(label=formula)])
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)
    assert conn.execute("SELECT produit_label FROM etl.ventes_lignes").fetchone()[0] == formula


def test_mojibake_labels_are_repaired(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                 [sales_line(label="CrÃ©mant d'Alsace RosÃ©")], encoding="cp1252")
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)
    assert conn.execute("SELECT produit_label FROM etl.ventes_lignes").fetchone()[0] == "Crémant d'Alsace Rosé"


def test_quality_gate_rejects_the_file_and_no_longer_blocks_later_weeks(conn, crm_dirs, monkeypatch, tmp_path):
    use_config(tmp_path, monkeypatch, quality_gate={"max_bad_row_share": 0.05, "min_bad_rows_to_reject": 1})
    raw = crm_dirs["raw"]
    lines = [sales_line(doc_no=f"F{i}") for i in range(10)] + [sales_line(doc_no=f"B{i}", qty="?") for i in range(2)]
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", lines)
    write_export(raw, "clients", "clients_2026-11-16.csv", ["C1;Dupont;Jean;jean@example.fr"],
                 header="client_code;nom;prenom;email")
    with pytest.raises(pipeline.FilesRejected) as info:
        pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)
    message = str(info.value)
    assert "isavigne/ventes_lignes/v_2026-11-16.csv rejected by the quality gate: 2 of 12 rows bad (16.7% > 5.0%" in message
    # examples with the line and the value as delivered, the Data Docs page, the way out
    assert "line 12: qty_line: '?' is not a number" in message and "line 13: qty_line: '?' is not a number" in message
    assert "Data Docs of this file: " in message and "/validations/isavigne_ventes_lignes/run_1__file1_v_2026-11-16" in message
    # validate named the page before the data_docs task wrote it: it is there now
    from pathlib import Path

    linked = Path(re.search(r"Data Docs of this file: (\S+)", message).group(1))
    assert linked.is_file() and "qty_line" in linked.read_text(encoding="utf-8")
    assert "'accept_files' = isavigne/ventes_lignes/v_2026-11-16.csv" in message
    assert "isavigne/ventes_lignes/v_2026-11-16.csv.accept" in message
    assert "other files were loaded" in message
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM etl.clients").fetchone()[0] == 1  # the good file went on
    assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == 2
    assert conn.execute("SELECT status FROM etl.file_manifest WHERE dataset = 'ventes_lignes'").fetchone()[0] == "rejected"
    status, error = conn.execute("SELECT status, error FROM etl.runs WHERE run_id = 'run_1'").fetchone()
    assert status == "failed" and "Quality gate" in error

    # Next Monday: a good export arrives; the rejected file is not taken again and blocks nothing.
    write_export(raw, "ventes_lignes", "v_2026-11-23.csv", [sales_line(doc_no=f"G{i}") for i in range(10)])
    summary = pipeline.run_all(conn, pipeline.week_window("run_2", MONDAY_RUN + dt.timedelta(days=7)), require_week=False)
    assert summary["status"] == "success" and summary["files_new"] == 1
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 10
    assert conn.execute("SELECT run_id FROM etl.file_manifest WHERE status = 'rejected'").fetchone()[0] == "run_1"

    # The way out, for a scheduled run: a marker next to the file. The next run takes it again;
    # its good rows load, its bad rows stay in quarantine; later runs leave it alone.
    (raw / "isavigne" / "ventes_lignes" / "v_2026-11-16.csv.accept").write_text("")
    summary = pipeline.run_all(conn, pipeline.week_window("run_3", MONDAY_RUN + dt.timedelta(days=14)), require_week=False)
    assert summary["status"] == "success" and summary["details"]["ingest"]["files_taken_again"] == [
        "isavigne/ventes_lignes/v_2026-11-16.csv (was rejected)"]
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 20
    assert conn.execute("SELECT status, accepted_by FROM etl.file_manifest WHERE file_path LIKE '%v_2026-11-16.csv'"
                        ).fetchone() == ("loaded", "marker isavigne/ventes_lignes/v_2026-11-16.csv.accept")
    assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == 2
    again = pipeline.run_all(conn, pipeline.week_window("run_4", MONDAY_RUN + dt.timedelta(days=21)), require_week=False)
    assert again["files_new"] == 0 and again["details"]["ingest"]["files_taken_again"] == []

    # The estate re-delivers other content under the same name: the old marker does not cover it.
    import os
    import time

    marker = raw / "isavigne" / "ventes_lignes" / "v_2026-11-16.csv.accept"
    old = time.time() - 3600
    os.utime(marker, (old, old))
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no=f"N{i}") for i in range(3)]
                 + [sales_line(doc_no="NB", qty="?")])
    with pytest.raises(pipeline.FilesRejected, match="v_2026-11-16.csv rejected by the quality gate: 1 of 4"):
        pipeline.run_all(conn, pipeline.week_window("run_5", MONDAY_RUN + dt.timedelta(days=28)), require_week=False)


def test_a_bad_row_or_two_of_a_small_weekly_file_never_fail_the_week(conn, crm_dirs, monkeypatch, tmp_path):
    """The shipped gate (5 % and at least 3 bad rows): 2 bad rows of 16 (12.5 %) are quarantined
    with their reasons and the file loads; 3 bad rows of 16 reject it."""
    use_config(tmp_path, monkeypatch, quality_gate={"max_bad_row_share": 0.05})
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no=f"F{i}") for i in range(14)]
                 + [sales_line(doc_no="B1", qty="?"), sales_line(doc_no="B2", date="31/02/2026")])
    summary = pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)
    assert summary["status"] == "success"
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 14
    reasons = [r for (r,) in conn.execute("SELECT reason FROM etl.quarantine ORDER BY row_no")]
    assert len(reasons) == 2 and "'?' is not a number" in reasons[0] and "'31/02/2026' is not a valid date" in reasons[1]
    assert conn.execute("SELECT status FROM etl.file_manifest").fetchone()[0] == "loaded"

    write_export(raw, "ventes_lignes", "v_2026-11-23.csv", [sales_line(doc_no=f"G{i}") for i in range(13)]
                 + [sales_line(doc_no=f"C{i}", qty="?") for i in range(3)])
    with pytest.raises(pipeline.FilesRejected, match=r"3 of 16 rows bad \(18.8% > 5.0%, quality_gate.max_bad_row_share, "
                                                      r"and 3 >= 3, quality_gate.min_bad_rows_to_reject\)"):
        pipeline.run_all(conn, pipeline.week_window("run_2", MONDAY_RUN + dt.timedelta(days=7)), require_week=False)


def test_quality_gate_overrides_per_dataset(conn, crm_dirs, monkeypatch, tmp_path):
    from winecrm.core import settings

    gate = settings.QualityGateConfig(max_bad_row_share=0.05, min_bad_rows_to_reject=3, per_dataset={
        "clients": 0.2, "stock": {"min_bad_rows_to_reject": 1}, "produits": {"max_bad_row_share": 0.5,
                                                                          "min_bad_rows_to_reject": 10}})
    assert (gate.limit("ventes_lignes"), gate.min_bad_rows("ventes_lignes")) == (0.05, 3)
    assert (gate.limit("clients"), gate.min_bad_rows("clients")) == (0.2, 3)
    assert (gate.limit("stock"), gate.min_bad_rows("stock")) == (0.05, 1)
    assert (gate.limit("produits"), gate.min_bad_rows("produits")) == (0.5, 10)
    # through the pipeline: one bad row of a sales file is enough when the dataset says so
    use_config(tmp_path, monkeypatch, quality_gate={"max_bad_row_share": 0.05,
                                                    "per_dataset": {"ventes_lignes": {"min_bad_rows_to_reject": 1}}})
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                 [sales_line(doc_no=f"F{i}") for i in range(15)] + [sales_line(doc_no="B1", qty="?")])
    with pytest.raises(pipeline.FilesRejected, match="1 of 16 rows bad"):
        pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)


def test_accept_and_reingest_params_take_a_file_again(conn, crm_dirs, monkeypatch, tmp_path):
    from winecrm.core.run_params import RunParams

    use_config(tmp_path, monkeypatch, quality_gate={"max_bad_row_share": 0.05, "min_bad_rows_to_reject": 1})
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv",
                 [sales_line(doc_no=f"F{i}") for i in range(10)] + [sales_line(doc_no="B", qty="?")])
    with pytest.raises(pipeline.FilesRejected):
        pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)
    # accept_files in the trigger form: the rejected file is taken again and let through
    accept = RunParams.parse({"accept_files": ["v_2026-11-16.csv"]})
    summary = pipeline.run_all(conn, pipeline.week_window("run_2", MONDAY_RUN, accept), require_week=False)
    assert summary["status"] == "success" and summary["rows_written"] == 10
    assert conn.execute("SELECT accepted_by FROM etl.file_manifest").fetchone()[0] == "param accept_files of run run_2"
    # reingest_files: a loaded file read, validated and loaded again; nothing doubles
    reingest = RunParams.parse({"reingest_files": ["isavigne/ventes_lignes/v_2026-11-16.csv"],
                                "accept_files": ["v_2026-11-16.csv"]})
    again = pipeline.run_all(conn, pipeline.week_window("run_3", MONDAY_RUN, reingest), require_week=False)
    assert again["details"]["ingest"]["files_taken_again"] == ["isavigne/ventes_lignes/v_2026-11-16.csv (was loaded)"]
    assert (again["rows_read"], again["rows_written"], again["rows_superseded"]) == (11, 10, 10)
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 10
    assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == 1


def test_revalidating_after_a_retry_does_not_duplicate_quarantine_rows(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                 [sales_line(doc_no=f"F{i}") for i in range(30)] + [sales_line(doc_no="X", qty="z")])
    _run_until_validate(conn)
    pipeline.run_validate(conn, "run_1")  # the task retried
    assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == 1


def test_data_docs_are_built_and_need_no_internet(conn, crm_dirs):
    from winecrm.core import settings
    from winecrm.etl import datadocs

    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [sales_line()])
    _run_until_validate(conn)
    site = settings.paths().data_docs_index.parent
    pages = list(site.rglob("*.html"))
    assert settings.paths().data_docs_index.exists() and len(pages) >= 3
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert datadocs.external_assets(html) == [], page
    assert (site / "static" / "vendor" / "bootstrap.min.css").exists()
    assert "isavigne_ventes_lignes" in settings.paths().data_docs_index.read_text(encoding="utf-8")


def test_exact_duplicates_are_found_across_chunks_of_a_big_file(conn, crm_dirs, monkeypatch, tmp_path):
    from tests.conftest import use_config

    use_config(tmp_path, monkeypatch, files={"chunk_rows": 4}, quality_gate={"max_bad_row_share": 0.5})
    lines = [sales_line(doc_no=f"F{i}") for i in range(10)]
    lines.insert(7, lines[1])   # line 9 repeats line 3, four rows later: another chunk
    lines.append(lines[9])      # and a repeat inside the last chunk
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", lines)
    summary = _run_until_validate(conn)
    assert summary["datasets"]["ventes_lignes"]["quarantined"] == 2
    texts = {row: text for row, (_, _, text, _) in _quarantine(conn).items()}
    assert texts[9].endswith("exact duplicate of line 3 of the same file")
    assert texts[13].endswith("exact duplicate of line 11 of the same file")


def test_data_docs_show_warnings_as_warnings_and_delivered_values_not_nat(conn, crm_dirs):
    """A malformed e-mail only flags its row: no red ✗ for that file. A bad date shows as delivered."""
    import re

    from winecrm.core import settings

    raw = crm_dirs["raw"]
    write_export(raw, "clients", "clients_2026-11-16.csv", ["C1;Dupont;Jean;jean@example.fr", "C2;Kœnig;Anne;anne@@x"],
                 header="client_code;nom;prenom;email")
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no=f"F{i}") for i in range(30)]
                 + [sales_line(doc_no="BAD", date="31/02/2026")])
    _run_until_validate(conn)
    site = settings.paths().data_docs_site
    index = settings.paths().data_docs_index.read_text(encoding="utf-8")
    rows = re.findall(r"\{'validation_success': .*?'asset_name': '[^']*'\}", index, re.S)
    status = {re.search(r"'_expectation_suite_name_sort': '([^']+)'", r).group(1) + "/" + r.split("'asset_name': ")[1]:
              re.search(r"'_validation_success_text': '([^']+)'", r).group(1) for r in rows}
    assert status["isavigne_clients/'clients'}"] == "Success"  # nothing quarantined: no ✗
    assert status["isavigne_clients_warnings/'clients'}"] == "Warnings"
    assert status["isavigne_ventes_lignes/'ventes_lignes'}"] == "Failed"  # a row really quarantined
    warning_row = next(r for r in rows if "isavigne_clients_warnings'" in r)
    assert "ge-failed-icon" not in warning_row and "fa-exclamation-triangle" in warning_row
    warnings_page, = site.glob("validations/isavigne_clients_warnings/*/*/*.html")
    page_html = warnings_page.read_text(encoding="utf-8")
    assert "Warnings (rows loaded with a flag, nothing quarantined)" in page_html and "anne@@x" in page_html
    sales_page, = site.glob("validations/isavigne_ventes_lignes/*/*/*.html")
    sales_html = sales_page.read_text(encoding="utf-8")
    assert "31/02/2026" in sales_html and "NaT" not in sales_html
    assert conn.execute("SELECT email_valid FROM etl.clients WHERE client_code = 'C2'").fetchone() is None  # not loaded yet


@pytest.mark.parametrize("machine_tz", ["UTC", "Europe/Paris"])
def test_data_docs_show_run_times_in_paris_time(conn, crm_dirs, machine_tz):
    """GX prints run times in the machine's zone (the index) or marked « Z » whatever their zone
    (the pages): people read Paris time, said so, on a UTC server as on a worker set to Paris."""
    import re
    import time
    from zoneinfo import ZoneInfo

    import tzlocal

    from winecrm.core import settings

    import os

    before = os.environ.get("TZ")
    os.environ["TZ"] = machine_tz
    time.tzset()
    tzlocal.reload_localzone()
    try:
        write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                     [sales_line(doc_no="F1"), sales_line(doc_no="BAD", date="31/02/2026")])
        _run_until_validate(conn)
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
        tzlocal.reload_localzone()
    site = settings.paths().data_docs_site
    page, = site.glob("validations/isavigne_ventes_lignes/*/*/*.html")
    ran = dt.datetime.strptime(page.parent.name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.timezone.utc)  # GX's key: UTC
    paris = f"{ran.astimezone(ZoneInfo('Europe/Paris')):%d/%m/%Y %H:%M:%S} (Paris)"
    html = page.read_text(encoding="utf-8")
    assert f"/ {paris}</li>" in html and f">{paris}</div>" in html  # breadcrumb and « Run Time »
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", html)
    index = settings.paths().data_docs_index.read_text(encoding="utf-8")
    assert f"'run_time': '{paris}'" in index
    assert not re.search(r"'run_time': '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", index)


def _validated_again(conn, run_id):
    """Validate the run's files again; what that call left: counters, quarantine rows, good rows
    in chunk order, and the Data Docs pages it wrote (by run name)."""
    import pandas as pd
    from winecrm.core import settings, storage
    from winecrm.core.storage import run_work_dir

    site = settings.paths().data_docs_site
    before = set(site.glob("validations/*/*/*/*.html"))
    summary = pipeline.run_validate(conn, run_id)
    pipeline.run_data_docs(conn, run_id)
    quarantine = [row for row in conn.execute(
        "SELECT row_no, column_name, expectations, reason FROM etl.quarantine ORDER BY row_no")]
    parts = sorted(run_work_dir(run_id).glob("file-*/good-*.parquet"))
    good = pd.concat([storage.read_parquet(p) for p in parts], ignore_index=True)
    pages = sorted(f"{p.parent.parent.parent.name}/{p.parent.parent.name}"
                   for p in set(site.glob("validations/*/*/*/*.html")) - before)
    return summary["datasets"], quarantine, [p.name for p in parts], good, pages


def test_chunks_checked_side_by_side_give_what_one_process_gives(conn, crm_dirs, monkeypatch, tmp_path):
    """A checking process forked beside the task's (which also takes chunks, here every other
    one): same quarantine rows and reasons, same good rows in the same chunk files, same Data Docs
    pages as checking the chunks one after the other."""
    import pandas as pd

    bad = [dict(date="31/02/2026"), dict(qty="deux"), dict(doc_type="DEVIS"), dict(client="  "),
           dict(mt="12,5,0"), dict(email="pas-un-email")]
    lines = [sales_line(doc_no=f"F{i}", **(bad[i // 7] if i % 7 == 3 and i // 7 < len(bad) else {}))
             for i in range(40)]
    lines.insert(30, lines[2])  # an exact duplicate of a line five chunks earlier
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", lines)
    use_config(tmp_path, monkeypatch, files={"chunk_rows": 5}, validation={"workers": 1},
               quality_gate={"max_bad_row_share": 0.9})
    _run_until_validate(conn)
    from winecrm.etl import validate as validate_module

    outcomes = {}
    for variant, workers in (("one", 1), ("two", 2), ("shared", 2), ("one", 1)):
        use_config(tmp_path, monkeypatch, files={"chunk_rows": 5}, validation={"workers": workers},
                   quality_gate={"max_bad_row_share": 0.9})
        with monkeypatch.context() as patch:
            if variant == "shared":  # the checking process leaves every other chunk to the task's process
                patch.setattr(validate_module._Shares, "checker_takes", lambda self, chunk: chunk % 2 == 0)
            outcomes[variant] = _validated_again(conn, "run_1")
    one = outcomes["one"]
    assert one[0]["ventes_lignes"]["quarantined"] == 6
    assert any("exact duplicate of line 4" in row[3] for row in one[1])
    assert len(one[2]) == 9 and len(one[4]) == 18  # two suites per chunk
    for other in (outcomes["two"], outcomes["shared"]):
        assert one[0] == other[0] and one[1] == other[1] and one[2] == other[2] and one[4] == other[4]
        pd.testing.assert_frame_equal(one[3], other[3])


def test_a_chunk_failing_in_a_worker_fails_the_call_and_keeps_no_quarantine(conn, crm_dirs, monkeypatch, tmp_path):
    from winecrm.etl import validate as validate_module

    use_config(tmp_path, monkeypatch, files={"chunk_rows": 3}, validation={"workers": 2})
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                 [sales_line(doc_no=f"F{i}", qty="x" if i == 0 else "6") for i in range(9)])
    real = validate_module.build_frame

    def fails_on_the_first_chunk(dataset, chunk, *args, **kwargs):
        # the first chunk goes to the forked worker (forked after this patch: it has it too)
        if int(chunk[validate_module.ROW_COLUMN].min()) == 2:
            raise RuntimeError("disk full while typing chunk 1")
        return real(dataset, chunk, *args, **kwargs)

    monkeypatch.setattr(validate_module, "build_frame", fails_on_the_first_chunk)
    with pytest.raises(RuntimeError, match="disk full while typing chunk 1"):
        _run_until_validate(conn)
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == 0


def test_a_daemonic_process_checks_its_chunks_itself(monkeypatch):
    """A Celery worker runs each task in a daemonic process, which may not start another: the
    chunks are then checked in the task's process (the Celery run in tests/deploy goes through it)."""
    import multiprocessing
    from types import SimpleNamespace

    from winecrm.etl import validate as validate_module

    files = [(object(), [object()])]
    assert validate_module.PartChecker(files, workers=2).forked is (multiprocessing.cpu_count() > 1)
    monkeypatch.setattr(multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    assert validate_module.PartChecker(files, workers=2).forked is False
