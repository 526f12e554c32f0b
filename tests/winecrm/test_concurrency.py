"""One writer per warehouse: runs started together (a backfill beside the Monday run, two manual
triggers, the CLI beside Airflow) end in exactly the warehouse a single run gives."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from winecrm import pipeline
from winecrm.core import db
from winecrm_tools.samples import sampledata
from winecrm.etl import load

from tests.conftest import MONDAY_RUN, WEEKLY_RUN_SAMPLE_ESTATE, cloned_database, sales_line, write_export


def _sales(conn):
    """The warehouse's sales as content (file ids and run ids differ between warehouses)."""
    return sorted(conn.execute(
        "SELECT document_type, document_no, source_row, client_code, date_livraison, article, qty_line, mt_ht "
        "FROM etl.ventes_lignes").fetchall())


def _state(conn):
    return {"sales": _sales(conn),
            "clients": conn.execute("SELECT count(*), md5(string_agg(client_code || coalesce(email, ''), ',' "
                                    "ORDER BY client_code)) FROM etl.clients").fetchone(),
            "stock": conn.execute("SELECT count(*), sum(quantite) FROM etl.stock").fetchone(),
            "quarantine": conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0],
            "revenue": conn.execute("SELECT sum(revenue_ht) FROM crm.customer_360 WHERE as_of_date = '2026-11-15'"
                                    ).fetchone()[0]}


@pytest.fixture
def second_warehouse(pg_admin_url, template_db):
    name = f"winecrm_ref_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db)))
    yield make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_two_loads_of_overlapping_files_at_once_count_each_document_once(conn, crm_dirs, warehouse_url,
                                                                        second_warehouse, monkeypatch):
    raw = crm_dirs["raw"]
    week = [sales_line(doc_no=f"F{i}", client=f"C{i}") for i in range(40)]
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", week)
    pipeline.prepare(conn, pipeline.week_window("run_a", MONDAY_RUN))
    pipeline.run_ingest(conn, "run_a")
    pipeline.run_validate(conn, "run_a")
    # A re-export of the same documents (corrected amounts) lands; a second run of the week takes it.
    reexport = [sales_line(doc_no=f"F{i}", client=f"C{i}", mt="60,00") for i in range(40)]
    write_export(raw, "ventes_lignes", "ventes_2026-11-16_reexport.csv", ["", *reexport])  # other line numbers
    pipeline.prepare(conn, pipeline.week_window("run_b", MONDAY_RUN))
    pipeline.run_ingest(conn, "run_b")
    pipeline.run_validate(conn, "run_b")

    # Both loads start together; each waits (up to 3 s) for the other inside its COPY, so without
    # a single writer they would replace and write the same documents at the same time.
    both_copying = threading.Barrier(2, timeout=3)
    real_copy = load.copy_frames

    def copy_when_both_are_there(connection, table, frames):
        if table == "etl.ventes_lignes":
            try:
                both_copying.wait()
            except threading.BrokenBarrierError:
                pass  # the other load is waiting for the warehouse: expected
        return real_copy(connection, table, frames)

    monkeypatch.setattr(load, "copy_frames", copy_when_both_are_there)
    errors = []

    def run_load(run_id):
        try:
            with db.connect(warehouse_url) as own:
                pipeline.run_load(own, run_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run_load, args=(r,)) for r in ("run_a", "run_b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    amounts = conn.execute("SELECT count(*), count(DISTINCT document_no), sum(mt_ht) FROM etl.ventes_lignes").fetchone()
    assert amounts == (40, 40, 40 * 60)  # each document once, from the newest export

    # ...exactly what one run that got both files gives
    monkeypatch.setattr(load, "copy_frames", real_copy)
    monkeypatch.setenv("CRM_DATABASE_URL", second_warehouse)
    with psycopg.connect(second_warehouse) as ref:
        pipeline.run_all(ref, pipeline.week_window("single", MONDAY_RUN))
        reference = _sales(ref)
    assert _sales(conn) == reference


RUN_ALL = """
import datetime as dt, os, sys, time
from winecrm import pipeline
from winecrm.core import db
while time.time() < float(sys.argv[2]):  # start together
    time.sleep(0.005)
with db.connect(os.environ["CRM_DATABASE_URL"]) as conn:
    pipeline.run_all(conn, pipeline.week_window(sys.argv[1], dt.datetime(2026, 11, 16, 5, tzinfo=dt.timezone.utc)))
"""


@pytest.fixture
def one_run_reference(pg_admin_url, prepared):
    """The warehouse one whole run of the same sample exports gives (conftest.weekly_run_sample_estate:
    the same 300-customer sample, run once as run_1), a copy of its own."""
    with cloned_database(pg_admin_url, prepared(*WEEKLY_RUN_SAMPLE_ESTATE).database) as url:
        yield url


def test_two_whole_runs_started_together_give_the_warehouse_of_one_run(conn, crm_dirs, warehouse_url,
                                                                       one_run_reference):
    import time

    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=300, years=1.2)
    start_at = str(time.time() + 3)
    runs = [subprocess.Popen([sys.executable, "-c", RUN_ALL, run_id, start_at], env=dict(os.environ),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for run_id in ("scheduled__2026-11-16", "backfill__2026-11-16")]
    outputs = [r.communicate(timeout=300)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    together = _state(conn)
    statuses = conn.execute("SELECT run_id, status FROM etl.runs ORDER BY run_id").fetchall()
    assert [s for _, s in statuses] == ["success", "success"]

    with psycopg.connect(one_run_reference) as ref:  # one run of the same exports, done once per session
        assert together == _state(ref)


def test_a_second_writer_waits_then_names_the_holder(warehouse_url, conn):
    with db.connect(warehouse_url) as holder, db.warehouse_writer(holder, "scheduled__x:load"):
        with pytest.raises(db.WarehouseBusy) as info, db.warehouse_writer(conn, "cli:ingest", wait_seconds=0.5,
                                                                          poll_seconds=0.1):
            pass
    assert "winecrm:scheduled__x:load" in str(info.value) and "writer_wait_minutes" in str(info.value)
    with db.warehouse_writer(conn, "cli:ingest", wait_seconds=0.5):  # released with the block
        pass
