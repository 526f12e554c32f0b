"""Task bodies: work files on an object store go through Airflow's ObjectStoragePath."""

from __future__ import annotations

from airflow.sdk import ObjectStoragePath

from tests.conftest import MONDAY_RUN, sales_line, write_export
from winecrm import pipeline
from winecrm.airflow import tasks
from winecrm.core import storage


def test_a_whole_run_through_a_storage_url(conn, crm_dirs, monkeypatch, tmp_path):
    store = tmp_path / "store"
    monkeypatch.setenv("CRM_WORK_URL", store.as_uri())  # any URL with a scheme goes through ObjectStoragePath
    tasks.use_airflow_storage()
    try:
        assert isinstance(storage.run_work_dir("run_1"), ObjectStoragePath)
        write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                     [sales_line(doc_no=f"F{i}") for i in range(30)] + [sales_line(doc_no="X", qty="z")])
        summary = pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
        assert summary["rows_written"] == 30 and summary["rows_quarantined"] == 1
        parts = [p.name for p in storage.run_work_dir("run_1").rglob("*.parquet")]
        assert "part-00000.parquet" in parts and "good-00000.parquet" in parts
        assert list(store.rglob("good-00000.parquet"))
    finally:
        storage.use_root_factory(None)
    monkeypatch.setenv("CRM_WORK_URL", str(crm_dirs["work"]))
    tasks.use_airflow_storage()
    assert not isinstance(storage.run_work_dir("run_1"), ObjectStoragePath)
