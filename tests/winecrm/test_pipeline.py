"""The whole weekly pipeline on the sample estate, reruns, the run record and the sensor logic."""

from __future__ import annotations

import datetime as dt

import pytest
from winecrm import pipeline
from winecrm.demo import sampledata

from tests.conftest import MONDAY_RUN


@pytest.fixture
def sample(crm_dirs):
    return sampledata.write_sample_exports(crm_dirs["raw"], n_customers=400, years=1.5)


def _warehouse_state(conn):
    return {
        "sales": conn.execute("SELECT count(*), sum(qty_line), sum(mt_ht), md5(string_agg(md5(v::text), '' "
                              "ORDER BY document_type, document_no, source_row)) FROM (SELECT document_type, document_no, "
                              "client_code, date_livraison, article, qty_line, mt_ht, file_id, source_row "
                              "FROM etl.ventes_lignes) v").fetchone(),
        "clients": conn.execute("SELECT count(*) FROM etl.clients").fetchone()[0],
        "produits": conn.execute("SELECT count(*) FROM etl.produits").fetchone()[0],
        "stock": conn.execute("SELECT count(*) FROM etl.stock").fetchone()[0],
        "quarantine": conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0],
    }


def test_sample_estate_loads_and_quarantines_exactly_the_planted_bad_rows(conn, sample):
    summary = pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    assert summary["status"] == "success"
    found = {(d, p.split("/")[-1].replace(" (copie)", ""), r) for d, p, r in conn.execute(
        "SELECT dataset, file_path, row_no FROM etl.quarantine WHERE row_no IS NOT NULL")}
    assert found == {(b.dataset, b.file_name, b.row_no) for b in sample.bad_rows}
    # nothing lost: every row read was loaded or quarantined
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_quarantined"]
    # no double counting: the overlapping re-export and the copy did not add lines
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == sample.sales_lines_total  # bad lines were fixed by the re-export
    assert summary["files_duplicate"] == 1 and summary["files_new"] == len(sample.files) - 1
    # credit notes are negative and reduce revenue
    negative = conn.execute("SELECT count(*), max(mt_ht) FROM etl.ventes_lignes WHERE document_type = 'AVOIR'").fetchone()
    assert negative[0] > 0 and negative[1] < 0
    assert conn.execute("SELECT count(*) FROM etl.produits").fetchone()[0] == sample.products
    # the run record holds what happened
    assert set(summary["stage_seconds"]) == {"ingest", "validate", "load", "score", "recommend", "purge"}
    assert summary["details"]["validate"]["datasets"]["ventes_lignes"]["quarantined"] == 8


def test_rerunning_the_same_logical_date_changes_nothing_and_keeps_each_attempt(conn, sample):
    window = pipeline.week_window("run_1", MONDAY_RUN)
    first = pipeline.run_all(conn, window)
    before = _warehouse_state(conn)
    again = pipeline.run_all(conn, window)
    assert _warehouse_state(conn) == before
    assert (again["files_new"], again["rows_read"], again["rows_loaded"]) == (0, 0, 0)
    # the rerun is a second attempt: the first one still says what it did
    attempts = conn.execute("SELECT attempt, status, files_new, rows_read, rows_loaded, details ? 'load' "
                            "FROM etl.runs WHERE run_id = 'run_1' ORDER BY attempt").fetchall()
    assert attempts == [(1, "success", first["files_new"], first["rows_read"], first["rows_loaded"], True),
                        (2, "success", 0, 0, 0, True)]
    assert first["rows_read"] > 0 and again["attempt"] == 2


def test_a_live_run_keeps_its_files_a_dead_one_hands_them_over(conn, sample):
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    pipeline.run_ingest(conn, "run_1")
    pipeline.run_validate(conn, "run_1")  # ...and run_1 is still at work (or its worker died)
    other = pipeline.week_window("run_2", MONDAY_RUN + dt.timedelta(days=7))
    pipeline.prepare(conn, other)
    report = pipeline.run_ingest(conn, "run_2")
    assert report["files_new"] == 0 and len(report["files_owned_elsewhere"]) == len(sample.files)
    assert all("being processed by run run_1" in line for line in report["files_owned_elsewhere"])
    assert {r for (r,) in conn.execute("SELECT DISTINCT run_id FROM etl.file_manifest")} == {"run_1"}
    # run_1 silent for longer than timeouts.run_hours: dead (Airflow has failed it by then)
    conn.execute("UPDATE etl.runs SET heartbeat_at = now() - interval '21 hours' WHERE run_id = 'run_1'")
    conn.commit()
    summary = pipeline.run_all(conn, pipeline.week_window("run_3", MONDAY_RUN + dt.timedelta(days=7)))
    assert summary["rows_loaded"] > 0
    assert {s for (s,) in conn.execute("SELECT DISTINCT status FROM etl.file_manifest")} == {"loaded"}
    assert _warehouse_state(conn)["quarantine"] == len(sample.bad_rows)


def test_week_window_is_the_monday_to_sunday_before_the_logical_date():
    window = pipeline.week_window("r", dt.datetime(2026, 11, 16, 5, tzinfo=dt.timezone.utc))
    assert (window.week_start, window.week_end) == (dt.date(2026, 11, 9), dt.date(2026, 11, 15))
    # 23:30 UTC on Sunday is already Monday in Paris
    late = pipeline.week_window("r", dt.datetime(2026, 3, 29, 23, 30, tzinfo=dt.timezone.utc))
    assert late.week_start == dt.date(2026, 3, 23)
    assert pipeline.RunWindow.from_dict(window.as_dict()) == window


def test_sensor_waits_then_fails_naming_what_is_missing(crm_dirs, monkeypatch):
    from tests.conftest import sales_line, write_export

    window = pipeline.week_window("r", MONDAY_RUN)
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-16.csv", [sales_line()])
    ready, missing = pipeline.exports_status(window)
    assert not ready
    assert [m.split(":")[0] for m in missing] == ["clients", "produits", "stock"]
    assert "no file in" in missing[0] and "10/11/2026–17/11/2026" in missing[0]
    assert pipeline.check_exports(window, now=MONDAY_RUN + dt.timedelta(hours=1)) is False
    with pytest.raises(pipeline.ExportsMissing) as info:
        pipeline.check_exports(window, now=MONDAY_RUN + dt.timedelta(hours=7))
    assert "09/11/2026–15/11/2026" in str(info.value) and "clients" in str(info.value)


def test_sensor_names_a_file_still_being_written(crm_dirs, monkeypatch):
    from tests.conftest import write_export

    monkeypatch.setenv("CRM_FILE_SETTLE_SECONDS", "600")
    write_export(crm_dirs["raw"], "stock", "stock_2026-11-16.csv", ["A;2020;Cave;5;bt"],
                 header="article;millesime;entrepot;quantite;unite")
    _, missing = pipeline.exports_status(pipeline.week_window("r", MONDAY_RUN))
    assert any(m.startswith("stock: isavigne/stock/stock_2026-11-16.csv modified") for m in missing)


def test_sensor_accepts_a_backfill_whose_files_are_long_there(sample):
    old_week = pipeline.week_window("backfill", MONDAY_RUN)
    assert pipeline.exports_status(old_week)[0]
    assert pipeline.check_exports(old_week, now=MONDAY_RUN + dt.timedelta(days=400)) is True


def test_a_late_file_of_the_week_is_waited_for_never_left_out(conn, crm_dirs, monkeypatch):
    """A missed export dropped just before the run: older files satisfy every dataset, the new one
    is still settling. The sensor waits for it; if it lands after the sensor, ingest fails naming it."""
    import os
    import time

    from tests.conftest import sales_line, write_export

    raw = crm_dirs["raw"]
    window = pipeline.week_window("run_1", MONDAY_RUN)
    for dataset, name, header, line in (
            ("clients", "clients_2026-11-10.csv", "client_code;nom;prenom;email", "C1;Dupont;Jean;j@example.fr"),
            ("produits", "produits_2026-11-10.csv", "produit;article;millesime;famille_crm;prix_ttc",
             "Riesling 2022;RIES-22;2022;Riesling;11,50"),
            ("stock", "stock_2026-11-10.csv", "article;millesime;entrepot;quantite", "RIES-22;2022;Cave;12")):
        write_export(raw, dataset, name, [line], header=header)
    write_export(raw, "ventes_lignes", "ventes_2026-11-10.csv", [sales_line(doc_no="OLD")])
    old = time.time() - 3600
    for path in raw.rglob("*.csv"):
        os.utime(path, (old, old))
    monkeypatch.setenv("CRM_FILE_SETTLE_SECONDS", "600")
    late = write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", [sales_line(doc_no="LATE")])  # 0 s old
    future = write_export(raw, "ventes_lignes", "ventes_2026-12-07.csv", [sales_line(doc_no="NEXT")])  # next month's
    ready, waiting = pipeline.exports_status(window)
    assert not ready and len(waiting) == 1
    assert waiting[0].startswith("ventes_lignes: isavigne/ventes_lignes/ventes_2026-11-16.csv modified")
    pipeline.prepare(conn, window)
    with pytest.raises(pipeline.FilesStillArriving) as info:
        pipeline.run_ingest(conn, "run_1")
    assert "ventes_2026-11-16.csv" in str(info.value) and "2026-12-07" not in str(info.value)
    # the task's retry, once the file is complete: nothing is left out
    late.with_name(late.name + ".done").write_text("")
    pipeline.run_ingest(conn, "run_1")
    pipeline.run_validate(conn, "run_1")
    pipeline.run_load(conn, "run_1")
    docs = {d for (d,) in conn.execute("SELECT document_no FROM etl.ventes_lignes")}
    assert docs == {"OLD", "LATE"} and future.exists()
