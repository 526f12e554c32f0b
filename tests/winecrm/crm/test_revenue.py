"""Which document types are revenue: a delivery note and its invoice are one sale, not two."""

from __future__ import annotations

import datetime as dt

from winecrm import pipeline

from tests.conftest import MONDAY_RUN, sales_line, use_config, write_export

AS_OF = dt.date(2026, 11, 15)


def _customer(conn, code):
    orders, revenue = conn.execute("SELECT orders, revenue_ht FROM crm.customer_360 WHERE as_of_date = %s "
                                   "AND client_code = %s", (AS_OF, code)).fetchone()
    return orders, float(revenue)


def test_a_delivery_note_and_its_invoice_count_once(conn, crm_dirs, tmp_path, monkeypatch):
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_2026-11-16.csv", [
        sales_line(client="C1", doc_type="BL", doc_no="BL-1", mt="57,50"),
        sales_line(client="C1", doc_type="FACTURE", doc_no="FA-1", mt="57,50"),  # the same sale, invoiced
        sales_line(client="C1", doc_type="AVOIR", doc_no="AV-1", mt="10,00", qty="1"),
        sales_line(client="C2", doc_type="VENTE", doc_no="V-1", mt="20,00"),
    ])
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN), require_week=False)
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes WHERE document_type = 'BL'").fetchone()[0] == 1  # kept
    assert _customer(conn, "C1") == (1, 47.5)  # one order, 57.50 - 10.00
    assert _customer(conn, "C2") == (1, 20.0)
    # an estate that never invoices its delivery notes counts them
    use_config(tmp_path, monkeypatch, revenue={"sale_document_types": ["VENTE", "BL"]})
    pipeline.run_all(conn, pipeline.week_window("run_2", MONDAY_RUN), require_week=False)
    assert _customer(conn, "C1") == (1, 47.5)  # now the BL, not the invoice
