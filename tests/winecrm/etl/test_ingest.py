"""Ingest against real PostgreSQL: manifest by SHA-256, completeness, RAW immutability."""

from __future__ import annotations

import hashlib
import os
import time

from winecrm import pipeline
from winecrm.etl import ingest
from winecrm.etl.ingest import discover, export_date_of

from tests.conftest import MONDAY_RUN, sales_line, write_export


def _raw_fingerprint(raw):
    return {str(p.relative_to(raw)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
            for p in sorted(raw.rglob("*")) if p.is_file()}


def _start(conn, run_id="run_1"):
    window = pipeline.week_window(run_id, MONDAY_RUN)
    pipeline.prepare(conn, window)
    return window


def test_same_content_under_another_name_is_ingested_once(conn, crm_dirs):
    raw = crm_dirs["raw"]
    first = write_export(raw, "ventes_lignes", "ventes_lignes_2026-11-16.csv", [sales_line()])
    copy = first.with_name("ventes_lignes_2026-11-16 (copie).csv")
    copy.write_bytes(first.read_bytes())
    os.utime(copy, (first.stat().st_mtime + 60,) * 2)
    _start(conn)
    report = ingest.ingest(conn, "run_1")
    assert report.files_new == 1 and report.files_duplicate == 1
    assert "(copie)" in report.duplicates[0]
    assert conn.execute("SELECT count(*) FROM etl.file_manifest").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM etl.file_deliveries").fetchone()[0] == 2


def test_a_file_is_never_ingested_twice_across_runs(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [sales_line()])
    _start(conn, "run_1")
    pipeline.run_ingest(conn, "run_1")
    pipeline.run_validate(conn, "run_1")
    pipeline.run_load(conn, "run_1")
    _start(conn, "run_2")
    again = ingest.ingest(conn, "run_2")
    assert again.files_new == 0 and again.file_ids == [] and again.rows_read == 0


def test_raw_folder_is_never_modified(conn, crm_dirs):
    from winecrm_tools.samples import sampledata

    raw = crm_dirs["raw"]
    sampledata.write_sample_exports(raw, n_customers=150, years=1.0)
    before = _raw_fingerprint(raw)
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.run_all(conn, window)
    assert _raw_fingerprint(raw) == before


def test_recent_file_waits_until_settled_or_marked_done(conn, crm_dirs, monkeypatch):
    monkeypatch.setenv("CRM_FILE_SETTLE_SECONDS", "600")
    path = write_export(crm_dirs["raw"], "clients", "clients_2026-11-16.csv",
                        ["C1;Dupont;Jean;j@example.fr"], header="client_code;nom;prenom;email")
    _start(conn)
    report = ingest.ingest(conn, "run_1")
    assert report.files_new == 0
    assert "clients_2026-11-16.csv" in report.files_waiting[0] and "still being copied" in report.files_waiting[0]
    path.with_name(path.name + ".done").write_text("")
    report = ingest.ingest(conn, "run_1")
    assert report.files_new == 1 and report.rows_read == 1


def test_old_unmarked_file_is_complete(crm_dirs, monkeypatch):
    monkeypatch.setenv("CRM_FILE_SETTLE_SECONDS", "600")
    path = write_export(crm_dirs["raw"], "stock", "stock.csv", ["A;2020;Cave;5;bt"],
                        header="article;millesime;entrepot;quantite;unite")
    old = time.time() - 3600
    os.utime(path, (old, old))
    (found,) = discover(crm_dirs["raw"])
    assert found.complete and found.dataset == "stock"


def test_whole_file_rejections_are_recorded_with_their_reason(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "entete_seule_2026-11-16.csv", [])
    (raw / "isavigne" / "ventes_lignes" / "vide_2026-11-16.csv").write_bytes(b"")
    (raw / "isavigne" / "stock").mkdir(parents=True)
    (raw / "isavigne" / "stock" / "stock_2026-11-16.csv").write_bytes(os.urandom(2048) + b"\x00")
    write_export(raw, "clients", "clients_sans_email_2026-11-16.csv", ["C1;Dupont;Jean"], header="client_code;nom;prenom")
    _start(conn)
    report = ingest.ingest(conn, "run_1")
    assert report.files_quarantined == 4
    rows = conn.execute(
        "SELECT file_path, row_no, expectations, reason, column_name FROM etl.quarantine ORDER BY file_path").fetchall()
    by_file = {r[0].split("/")[-1]: r for r in rows}
    missing = by_file["clients_sans_email_2026-11-16.csv"]
    assert missing[2] == ["missing_columns"] and missing[4] == "email"
    assert "clients_sans_email_2026-11-16.csv: missing required column(s) email" in missing[3]
    assert by_file["entete_seule_2026-11-16.csv"][2] == ["no_data_rows"]
    assert by_file["vide_2026-11-16.csv"][2] == ["empty_file"]
    assert by_file["stock_2026-11-16.csv"][2] == ["binary_file"]
    assert all(r[1] is None for r in rows)
    statuses = {s for (s,) in conn.execute("SELECT status FROM etl.file_manifest")}
    assert statuses == {"quarantined"}


def test_file_growing_during_read_is_dropped_and_taken_complete_later(conn, crm_dirs, monkeypatch):
    path = write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [sales_line()])
    real_ingest_parts = ingest._write_parts

    def append_while_reading(*args, **kwargs):
        rows = real_ingest_parts(*args, **kwargs)
        with open(path, "ab") as fh:
            fh.write((sales_line(doc_no="F2") + "\r\n").encode())
        return rows

    monkeypatch.setattr(ingest, "_write_parts", append_while_reading)
    _start(conn)
    report = ingest.ingest(conn, "run_1")
    assert report.files_new == 1 and report.file_ids == []
    assert "changed while being read" in report.files_waiting[0]
    assert conn.execute("SELECT count(*) FROM etl.file_manifest").fetchone()[0] == 0
    monkeypatch.setattr(ingest, "_write_parts", real_ingest_parts)
    report = ingest.ingest(conn, "run_1")
    assert report.rows_read == 2


def test_export_date_comes_from_the_last_date_in_the_name():
    assert str(export_date_of("ventes_historique_2023-09-04_2026-10-18.csv", 0)) == "2026-10-18"
    assert str(export_date_of("clients_20261116.csv", 0)) == "2026-11-16"
    assert str(export_date_of("stock 16-11-2026.xlsx", 0)) == "2026-11-16"
