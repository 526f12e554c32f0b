"""Loading a document whose new export has lines in quarantine (issue 19, item 4).

A document's previous valid version stays in the warehouse until its new version arrives
complete; a file a person accepted despite its bad lines replaces its documents, and the run
says how many lines and how much revenue the old version had more. Either way it is said: in
the load report, the task log and the run's French note.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from winecrm import pipeline
from winecrm.core.run_params import RunParams

from tests.conftest import MONDAY_RUN, sales_line, use_config, write_export

NBSP = "\u00a0"


def _run(conn, run_id, logical_date=MONDAY_RUN, params: RunParams | None = None) -> dict:
    """ingest → validate → load, then the run closed with its note (no scoring: not needed here)."""
    window = pipeline.week_window(run_id, logical_date, params)
    pipeline.prepare(conn, window)
    for stage in pipeline.stages_until(pipeline.run_load):
        stage(conn, run_id)
    return pipeline.finish_checked(conn, run_id, require_week=False)  # these files span weeks on purpose


def _document(conn, doc_no):
    return conn.execute("SELECT article, qty_line::float, mt_ht::float FROM etl.ventes_lignes WHERE document_no = %s "
                        "ORDER BY source_row", (doc_no,)).fetchall()


def _revenue(conn) -> float:
    return float(conn.execute("SELECT coalesce(sum(mt_ht), 0) FROM etl.ventes_lignes").fetchone()[0])


def _incomplete(summary) -> dict:
    return summary["details"]["load"]["ventes_lignes"]["incomplete_documents"]


def _first_export(raw):
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [
        sales_line(doc_no="F1", article="A"), sales_line(doc_no="F1", article="B"),
        sales_line(doc_no="F2", article="A"), sales_line(doc_no="F3", article="A")])


def test_a_reexported_document_with_a_bad_line_keeps_its_previous_version(conn, crm_dirs, caplog):
    raw = crm_dirs["raw"]
    _first_export(raw)
    _run(conn, "run_1")
    assert _revenue(conn) == 4 * 57.5
    # Re-exported: F1's line A corrected (12 bottles), its line B unreadable; F2 and F3 unchanged.
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1", article="A", qty="12", mt="115,00"), sales_line(doc_no="F1", article="B", qty="deux"),
        sales_line(doc_no="F2", article="A"), sales_line(doc_no="F3", article="A")])
    caplog.set_level(logging.INFO, logger="winecrm.pipeline")
    summary = _run(conn, "run_2")
    assert summary["status"] == "success" and summary["rows_quarantined"] == 1
    # F1 as the first export had it: both lines, its revenue counted in full
    assert _document(conn, "F1") == [("A", 6.0, 57.5), ("B", 6.0, 57.5)]
    assert _revenue(conn) == 4 * 57.5
    # counted: the document held back, its good line not written, its line in quarantine
    assert _incomplete(summary)["held_back"] == {"documents": 1, "good_lines": 1, "quarantined_lines": 1}
    assert _incomplete(summary)["loaded_new"]["documents"] == 0
    assert summary["rows_written"] == 2 and summary["rows_skipped"] == 0
    assert summary["rows_validated"] == summary["rows_written"] + summary["rows_skipped"] + 1
    assert ("1 document gardé dans sa version précédente (1 ligne valide non chargée, 1 en quarantaine)"
            in summary["note"]), summary["note"]
    assert "ventes_lignes: 1 document with lines in quarantine kept in its previous version" in caplog.text
    manifest = conn.execute("SELECT rows_loaded, rows_skipped FROM etl.file_manifest WHERE file_path LIKE "
                            "'%v_2026-11-16.csv'").fetchone()
    assert manifest == (2, 0)


def test_the_next_complete_reexport_replaces_the_kept_version(conn, crm_dirs):
    raw = crm_dirs["raw"]
    _first_export(raw)
    _run(conn, "run_1")
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1", article="A", qty="12", mt="115,00"), sales_line(doc_no="F1", article="B", qty="deux"),
        sales_line(doc_no="F2", article="A"), sales_line(doc_no="F3", article="A")])
    _run(conn, "run_2")
    # The estate fixes line B: the complete version replaces both lines of the kept one.
    write_export(raw, "ventes_lignes", "v_2026-11-23.csv", [
        sales_line(doc_no="F1", article="A", qty="12", mt="115,00"),
        sales_line(doc_no="F1", article="B", qty="3", mt="28,75")])
    summary = _run(conn, "run_3", MONDAY_RUN + dt.timedelta(days=7))
    assert _document(conn, "F1") == [("A", 12.0, 115.0), ("B", 3.0, 28.75)]
    assert (summary["rows_written"], summary["rows_superseded"]) == (2, 2)
    assert _incomplete(summary)["held_back"]["documents"] == 0
    assert "gardé" not in summary["note"] and "incomplet" not in summary["note"]


def test_an_accepted_file_replaces_its_documents_and_says_what_the_old_version_had_more(
        conn, crm_dirs, monkeypatch, tmp_path, caplog):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [
        sales_line(doc_no="F1", article="A"), sales_line(doc_no="F1", article="B", mt="100,00", ttc="120,00"),
        sales_line(doc_no="F1", article="C", mt="145,50", ttc="174,60"), sales_line(doc_no="F2")])
    _run(conn, "run_1")
    use_config(tmp_path, monkeypatch, quality_gate={"max_bad_row_share": 0.05, "min_bad_rows_to_reject": 1})
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1", article="A"), sales_line(doc_no="F1", article="B", date="31/02/2026"),
        sales_line(doc_no="F1", article="C", qty="?"), sales_line(doc_no="F2")])
    with pytest.raises(pipeline.FilesRejected):
        _run(conn, "run_2")
    assert len(_document(conn, "F1")) == 3  # rejected: nothing of it loaded
    # A person lets the file through: F1 is replaced by its one good line, and that is said.
    caplog.set_level(logging.INFO, logger="winecrm.pipeline")
    summary = _run(conn, "run_3", params=RunParams.parse({"accept_files": ["v_2026-11-16.csv"]}))
    assert summary["status"] == "success"
    assert _document(conn, "F1") == [("A", 6.0, 57.5)]
    replaced = _incomplete(summary)["accepted_replaced"]
    assert replaced == {"documents": 1, "quarantined_lines": 2, "old_lines": 3, "new_lines": 1, "lines_removed": 2,
                        "mt_ht_removed": 245.5, "mt_ttc_removed": 294.6,
                        "files": ["isavigne/ventes_lignes/v_2026-11-16.csv"]}
    assert _incomplete(summary)["held_back"]["documents"] == 0
    said = f"fichier accepté{NBSP}: 2 lignes et 245,50{NBSP}€{NBSP}HT de moins que l'ancienne version"
    assert said in summary["note"], summary["note"]
    assert ("ventes_lignes: accepted file(s) isavigne/ventes_lignes/v_2026-11-16.csv replaced 1 document with lines "
            "in quarantine: 2 warehouse lines and 245.50 EUR excl. VAT (294.60 incl. VAT) fewer than the previous "
            "version") in caplog.text


def test_a_new_document_with_a_bad_line_still_loads_its_good_lines(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [sales_line(doc_no="F0")])
    _run(conn, "run_1")  # the warehouse is not empty: the arbitrated path, not the first-load one
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1", article="A"), sales_line(doc_no="F1", article="B", qty="deux"),
        sales_line(doc_no="F2"), sales_line(doc_no="F3")])
    summary = _run(conn, "run_2")
    assert _document(conn, "F1") == [("A", 6.0, 57.5)]
    assert _incomplete(summary)["loaded_new"] == {"documents": 1, "good_lines": 1, "quarantined_lines": 1}
    assert _incomplete(summary)["held_back"]["documents"] == 0
    assert summary["rows_written"] == 3
    assert "1 document chargé incomplet (1 ligne en quarantaine)" in summary["note"], summary["note"]


def test_first_load_counts_an_incomplete_document(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1", article="A"), sales_line(doc_no="F1", article="B", qty="deux"),
        sales_line(doc_no="F1", article="C", mt="?"), sales_line(doc_no="F2"), sales_line(doc_no="F3")])
    summary = _run(conn, "run_1")
    assert _document(conn, "F1") == [("A", 6.0, 57.5)]
    assert _incomplete(summary)["loaded_new"] == {"documents": 1, "good_lines": 1, "quarantined_lines": 2}
    assert "1 document chargé incomplet (2 lignes en quarantaine)" in summary["note"], summary["note"]


def test_in_one_run_an_incomplete_newer_export_does_not_replace_a_complete_older_one(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [
        sales_line(doc_no="F1", article="A"), sales_line(doc_no="F1", article="B"), sales_line(doc_no="F2")])
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [
        sales_line(doc_no="F1", article="A", qty="12", mt="115,00"), sales_line(doc_no="F1", article="B", qty="deux"),
        sales_line(doc_no="F2"), sales_line(doc_no="F3")])
    summary = _run(conn, "run_1")
    # the same outcome as loading the two files in two runs: the complete version is kept
    assert _document(conn, "F1") == [("A", 6.0, 57.5), ("B", 6.0, 57.5)]
    assert _incomplete(summary)["held_back"] == {"documents": 1, "good_lines": 1, "quarantined_lines": 1}


def test_a_line_quarantined_only_as_an_exact_duplicate_does_not_hold_its_document_back(conn, crm_dirs):
    """Guard of a design choice (passes before and after the change): the duplicate adds nothing
    the document's good lines lack, so its new version is complete."""
    raw = crm_dirs["raw"]
    _first_export(raw)
    _run(conn, "run_1")
    corrected = sales_line(doc_no="F1", article="A", qty="12", mt="115,00")
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [
        corrected, corrected, sales_line(doc_no="F1", article="B"), sales_line(doc_no="F2", article="A")])
    summary = _run(conn, "run_2")
    assert summary["rows_quarantined"] == 1
    assert _document(conn, "F1") == [("A", 12.0, 115.0), ("B", 6.0, 57.5)]
