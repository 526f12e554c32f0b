"""One source of truth for each dataset's columns: the contract. The warehouse DDL and every
column list (staging, sales-line COPY, sample data) follow it."""

from __future__ import annotations

from winecrm_tools.samples import sampledata
from winecrm.etl import contract, load

LOAD_COLUMNS = {"file_id", "source_row", "loaded_run", "loaded_at", "updated_at"}


def test_the_warehouse_tables_have_exactly_the_contracts_columns(conn):
    for name, dataset in contract.DATASETS.items():
        ddl = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = 'etl' AND table_name = %s", (name,)).fetchall())
        expected = dict(contract.warehouse_columns(dataset))
        business = {c: t for c, t in ddl.items() if c not in LOAD_COLUMNS and c != "snapshot_date"}
        assert set(business) == set(expected), name
        for column, kind in expected.items():
            assert business[column].startswith({"numeric": "numeric", "text": "text", "date": "date",
                                                "integer": "integer", "boolean": "boolean"}[kind]), (name, column)


def test_every_column_list_derives_from_the_contract():
    assert load.STAGING_COLUMNS["ventes_lignes"] == contract.warehouse_columns(contract.VENTES_LIGNES)
    assert load.SALES_LINE_COLUMNS[:-3] == [c for c, _ in contract.warehouse_columns(contract.VENTES_LIGNES)]
    assert sampledata.SALES_COLUMNS == contract.VENTES_LIGNES.column_names
