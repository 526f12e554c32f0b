"""Loading: no double counting on re-delivery, newest export wins, one transaction per dataset."""

from __future__ import annotations

import os

import pytest
from winecrm import pipeline
from winecrm.etl import load

from tests.conftest import MONDAY_RUN, sales_line, write_export


def _run(conn, run_id):
    return pipeline.run_all(conn, pipeline.week_window(run_id, MONDAY_RUN), require_week=False)


def _sales(conn):
    return conn.execute(
        "SELECT document_no, source_row, article, qty_line::float, file_id FROM etl.ventes_lignes "
        "ORDER BY document_no, source_row").fetchall()


def test_overlapping_redelivery_does_not_double_count(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [sales_line(doc_no="F1"), sales_line(doc_no="F2")])
    _run(conn, "run_1")
    # A two-week re-export: F1, F2 again (F2 corrected), plus F3.
    write_export(raw, "ventes_lignes", "v_2026-11-16_2semaines.csv", [
        sales_line(doc_no="F1"), sales_line(doc_no="F2", qty="12", mt="115,00"), sales_line(doc_no="F3")])
    _run(conn, "run_2")
    rows = _sales(conn)
    assert [(d, q) for d, _, _, q, _ in rows] == [("F1", 6.0), ("F2", 12.0), ("F3", 6.0)]
    assert float(conn.execute("SELECT sum(mt_ht) FROM etl.ventes_lignes").fetchone()[0]) == 57.5 + 115 + 57.5


def test_overlap_within_one_run_keeps_the_latest_file(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [sales_line(doc_no="F1", qty="1")])
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no="F1", qty="3")])
    _run(conn, "run_1")
    ((doc, seq, _, qty, file_id),) = _sales(conn)
    assert qty == 3.0
    path = conn.execute("SELECT file_path FROM etl.file_manifest WHERE file_id = %s", (file_id,)).fetchone()[0]
    assert path.endswith("v_2026-11-16.csv")


def test_an_older_export_delivered_late_never_overwrites_newer_data(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no="F1", qty="3")])
    _run(conn, "run_1")
    write_export(raw, "ventes_lignes", "v_2026-11-02.csv", [sales_line(doc_no="F1", qty="1"), sales_line(doc_no="F0")])
    _run(conn, "run_2")
    assert [(d, q) for d, _, _, q, _ in _sales(conn)] == [("F0", 6.0), ("F1", 3.0)]


def test_a_document_that_lost_a_line_in_the_new_export_loses_it_in_the_warehouse(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv",
                 [sales_line(doc_no="F1", article="A"), sales_line(doc_no="F1", article="B")])
    _run(conn, "run_1")
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no="F1", article="B")])
    _run(conn, "run_2")
    assert [(d, s, a) for d, s, a, _, _ in _sales(conn)] == [("F1", 2, "B")]


def test_every_loaded_row_keeps_its_source_file_and_line(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no="F1"), sales_line(doc_no="F2")])
    _run(conn, "run_1")
    rows = conn.execute("""SELECT v.document_no, v.source_row, m.file_path, v.loaded_run FROM etl.ventes_lignes v
                           JOIN etl.file_manifest m USING (file_id) ORDER BY 1""").fetchall()
    assert rows == [("F1", 2, "isavigne/ventes_lignes/v_2026-11-16.csv", "run_1"),
                    ("F2", 3, "isavigne/ventes_lignes/v_2026-11-16.csv", "run_1")]


def test_reference_data_upserts_and_keeps_columns_the_export_did_not_carry(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "clients", "clients_2026-11-09.csv", ["C1;Dupont;Jean;j@example.fr;0601020304"],
                 header="client_code;nom;prenom;email;telephone")
    write_export(raw, "stock", "stock_2026-11-09.csv", ["RIES-22;2022;Cave;10;bt", "CREBRUT;0;Cave;4;bt"],
                 header="article;millesime;entrepot;quantite;unite")
    _run(conn, "run_1")
    write_export(raw, "clients", "clients_2026-11-16.csv", ["C1;Dupont;Jean;jean@example.fr"],
                 header="client_code;nom;prenom;email")
    write_export(raw, "stock", "stock_2026-11-16.csv", ["RIES-22;2022;Cave;0;bt"],
                 header="article;millesime;entrepot;quantite;unite")
    _run(conn, "run_2")
    assert conn.execute("SELECT email, telephone FROM etl.clients").fetchone() == ("jean@example.fr", "0601020304")
    stock = dict(((a, m), float(q)) for a, m, q in conn.execute("SELECT article, millesime, quantite FROM etl.stock"))
    assert stock == {("RIES-22", 2022): 0.0, ("CREBRUT", 0): 4.0}


def test_a_failure_inside_the_load_leaves_the_warehouse_untouched_and_retry_works(conn, crm_dirs, monkeypatch):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no=f"F{i}") for i in range(20)])
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    pipeline.run_ingest(conn, "run_1")
    pipeline.run_validate(conn, "run_1")
    real_copy = load.copy_frames

    class WorkerKilled(Exception):
        pass

    def crash_after_copying_lines(conn_, table, frames):
        sent = real_copy(conn_, table, frames)
        if table == "etl.ventes_lignes":
            raise WorkerKilled(f"{sent} lines sent, then the worker died before commit")
        return sent

    monkeypatch.setattr(load, "copy_frames", crash_after_copying_lines)
    with pytest.raises(WorkerKilled):
        pipeline.run_load(conn, "run_1")
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM etl.file_manifest").fetchone()[0] == "validated"
    monkeypatch.setattr(load, "copy_frames", real_copy)
    pipeline.run_load(conn, "run_1")  # the retry
    pipeline.run_load(conn, "run_1")  # and a stray second retry: nothing left to load
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 20


def test_killed_worker_mid_load_then_new_run_loads_everything_once(conn, crm_dirs, warehouse_url):
    """A real process killed (SIGKILL) while loading: its transaction dies with it."""
    import signal
    import subprocess
    import sys
    import time

    from winecrm_tools.samples import sampledata

    path = crm_dirs["raw"] / "isavigne" / "ventes_lignes" / "big_2026-11-16.csv"
    lines = sampledata.write_sales_file(path, 150_000, n_customers=5000)
    old = time.time() - 3600
    os.utime(path, (old, old))
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    pipeline.run_ingest(conn, "run_1")
    pipeline.run_validate(conn, "run_1")
    conn.commit()
    script = ("import os, psycopg; from winecrm import pipeline; "
              "c = psycopg.connect(os.environ['CRM_DATABASE_URL']); pipeline.run_load(c, 'run_1')")
    worker = subprocess.Popen([sys.executable, "-c", script])
    # Wait until its COPY is under way, then kill it without warning.
    deadline = time.time() + 60
    copying = False
    while time.time() < deadline and worker.poll() is None and not copying:
        copying = conn.execute("SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'COPY etl.ventes_lignes%'"
                               ).fetchone()[0]
        conn.commit()
        time.sleep(0.02)
    assert copying, "the worker never reached its COPY"
    worker.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == 0
    assert _has_primary_key(conn), "the bulk path dropped the key inside the killed transaction only"
    # Airflow marks the task failed and the failure callback closes the run's attempt; from then on
    # another run may take its files over (never while it is still running).
    pipeline.finish(conn, "run_1", error="load: worker killed")
    summary = pipeline.run_all(conn, pipeline.week_window("run_2", MONDAY_RUN), require_week=False)
    loaded = conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0]
    assert loaded == lines == summary["rows_read"] - summary["rows_quarantined"]
    assert summary["details"]["load"]["ventes_lignes"]["steps"]["primary_key_rebuilt"] == 1
    assert _has_primary_key(conn)


def _has_primary_key(conn) -> bool:
    return conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'ventes_lignes_pkey' "
                        "AND contype = 'p'").fetchone()[0] == 1


def test_bulk_key_rebuild_only_for_big_loads(conn):
    assert load.estimated_rows(conn, "etl.ventes_lignes") <= 0  # fresh table
    assert not load.bulk_rebuild_worthwhile(5_000, 0)
    assert load.bulk_rebuild_worthwhile(150_000, -1)  # first load
    assert not load.bulk_rebuild_worthwhile(150_000, 10_000_000)  # a delta into a big table
    assert load.bulk_rebuild_worthwhile(3_000_000, 10_000_000)  # a big backfill


def test_a_load_that_changes_much_of_the_table_leaves_fresh_planner_statistics(conn, crm_dirs):
    """Scoring runs right after the load: without statistics its self-joins plan for an empty
    table (74 s instead of 3 s on 1M lines)."""
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [sales_line(doc_no=f"F{i}") for i in range(60)])
    summary = _run(conn, "run_1")
    assert summary["details"]["load"]["ventes_lignes"]["steps"]["analyzed"] == 1
    assert load.estimated_rows(conn, "etl.ventes_lignes") == 60  # ANALYZE's count, not the -1 of a new table
    assert load.statistics_stale(60, -1) and load.statistics_stale(50 + 10_000, 100_000)
    assert not load.statistics_stale(5_000, 1_000_000)  # a weekly delta: autovacuum's business


def _reexport_scenario(conn, raw) -> list[dict]:
    """A history, then a re-export of most of it in a run that also brings an older file:
    corrected, shortened, incomplete, new and absent documents."""
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [
        sales_line(doc_no=f"F{i}", article=article, client=f"C{i % 7}")
        for i in range(1, 31) for article in ("A", "B")])
    reports = [_load_report(conn, "run_1")]
    lines = []
    for i in range(1, 26):
        if i == 2:
            lines += [sales_line(doc_no="F2", article="A", qty="12", mt="115,00"), sales_line(doc_no="F2", article="B")]
        elif i == 3:
            lines += [sales_line(doc_no="F3", article="A")]  # lost a line
        elif i == 4:
            lines += [sales_line(doc_no="F4", article="A", qty="3"), sales_line(doc_no="F4", article="B", date="31/02/2026")]
        else:
            lines += [sales_line(doc_no=f"F{i}", article=a, client=f"C{i % 7}") for a in ("A", "B")]
    lines += [sales_line(doc_no="F31", article="A")]  # new; F26-F30 not re-exported
    write_export(raw, "ventes_lignes", "v_2026-11-16_reexport.csv", lines)
    # an older export delivered late, in the same run: F26 must keep the 11-09 version
    write_export(raw, "ventes_lignes", "v_2026-11-02.csv", [sales_line(doc_no="F26", article="A", qty="1")])
    reports.append(_load_report(conn, "run_2"))
    return reports


def _load_report(conn, run_id) -> dict:
    report = _run(conn, run_id)["details"]["load"]["ventes_lignes"]
    return {key: report[key] for key in ("rows_staged", "rows_written", "rows_superseded", "rows_skipped",
                                         "rows_held_back", "incomplete_documents")} | {"steps": report["steps"]}


@pytest.mark.parametrize("mode", ["rewrite", "delete"])
def test_a_bulk_reexport_loads_the_same_lines_whichever_way_old_ones_go(mode, pg_admin_url, template_db, crm_dirs,
                                                                        tmp_path, monkeypatch):
    """The bulk path (key rebuilt after the COPY) either deletes the replaced documents' lines or,
    when they are most of the table, sets the others aside, empties the table and puts them back.
    Both end with the same lines and the same report as the row-by-row path."""
    import psycopg

    from tests.conftest import cloned_database

    outcomes = {}
    for path in ("row_by_row", mode):
        for name in ("raw", "work", "quality"):
            (tmp_path / path / name).mkdir(parents=True)
        monkeypatch.setenv("CRM_RAW_DIR", str(tmp_path / path / "raw"))
        monkeypatch.setenv("CRM_WORK_URL", str(tmp_path / path / "work"))
        monkeypatch.setenv("CRM_DOCS_DIR", str(tmp_path / path / "quality"))
        if path != "row_by_row":
            monkeypatch.setattr(load, "BULK_MIN_LINES", 0)
            monkeypatch.setattr(load, "REWRITE_SHARE_OF_TABLE", 0.5 if mode == "rewrite" else 2.0)
        with cloned_database(pg_admin_url, template_db) as url, psycopg.connect(url) as conn:
            monkeypatch.setenv("CRM_DATABASE_URL", url)
            reports = _reexport_scenario(conn, tmp_path / path / "raw")
            rows = conn.execute(
                "SELECT v.document_no, v.source_row, v.article, v.qty_line::float, v.mt_ht::float, m.file_path "
                "FROM etl.ventes_lignes v JOIN etl.file_manifest m USING (file_id) "
                "ORDER BY 1, 2, 3").fetchall()
            keyed = conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'ventes_lignes_pkey'").fetchone()[0]
        steps = reports[1].pop("steps")
        reports[0].pop("steps")
        outcomes[path] = (rows, reports, steps, keyed)
    rows, reports, steps, keyed = outcomes[mode]
    assert (rows, reports) == outcomes["row_by_row"][:2]
    assert keyed == 1 and steps["primary_key_rebuilt"] == 1
    assert ("keep_unreplaced" in steps) == (mode == "rewrite")
    assert outcomes["row_by_row"][2]["primary_key_rebuilt"] == 0 and "keep_unreplaced" not in outcomes["row_by_row"][2]
    # what the scenario means, whichever path
    by_doc = {}
    for doc, _, article, qty, _, path in rows:
        by_doc.setdefault(doc, []).append((article, qty, path.rsplit("/", 1)[-1]))
    assert by_doc["F2"] == [("A", 12.0, "v_2026-11-16_reexport.csv"), ("B", 6.0, "v_2026-11-16_reexport.csv")]
    assert [a for a, _, _ in by_doc["F3"]] == ["A"]
    assert by_doc["F4"] == [("A", 6.0, "v_2026-11-09.csv"), ("B", 6.0, "v_2026-11-09.csv")]  # held back
    assert by_doc["F26"] == [("A", 6.0, "v_2026-11-09.csv"), ("B", 6.0, "v_2026-11-09.csv")]  # older export skipped
    assert {d for d in by_doc} == {f"F{i}" for i in range(1, 32)}
    assert reports[1]["rows_superseded"] == 2 * 23 + 2  # F1-F25 but F4 (held back): 23 docs x 2 lines + F3's 2
    assert reports[1]["rows_held_back"] == 1 and reports[1]["rows_skipped"] == 1


def test_older_exports_are_looked_for_only_when_one_is_known(conn, crm_dirs):
    """skip_older_exports joins every delivered document with the warehouse: a week whose file is
    newer than every other sales file in the manifest skips it, and a late older export does not."""
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "v_2026-11-09.csv", [sales_line(doc_no="F1", qty="3")])
    _run(conn, "run_1")
    write_export(raw, "ventes_lignes", "v_2026-11-16.csv", [sales_line(doc_no="F1", qty="4")])
    newest = _run(conn, "run_2")["details"]["load"]["ventes_lignes"]
    assert "skip_older_exports" not in newest["step_seconds"] and newest["rows_superseded"] == 1
    # the usual week (one file, the newest, complete): its staged documents are the accepted ones
    assert "latest_delivery_in_run" not in newest["step_seconds"]
    write_export(raw, "ventes_lignes", "v_2026-11-12.csv", [sales_line(doc_no="F1", qty="5")])
    late = _run(conn, "run_3")["details"]["load"]["ventes_lignes"]
    assert "skip_older_exports" in late["step_seconds"] and late["rows_skipped"] == 1
    assert [(d, q) for d, _, _, q, _ in _sales(conn)] == [("F1", 4.0)]
