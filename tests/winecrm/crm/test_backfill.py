"""What a backfill of an old week reproduces (docs/weekly-run.md, "What a backfill reproduces"): that week's
sales, and today's customers, products, stock and suppressions."""

from __future__ import annotations

import datetime as dt

from winecrm import pipeline

from tests.conftest import MONDAY_RUN, sales_line, write_export

OLD_WEEK_RUN = MONDAY_RUN - dt.timedelta(days=7)  # covers Mon 2 – Sun 8 Nov 2026
OLD_SUNDAY = dt.date(2026, 11, 8)


def test_a_backfill_uses_that_weeks_sales_and_todays_customer_file(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", [
        sales_line(client="C1", date="03/11/2026", doc_no="F1", mt="50,00"),
        sales_line(client="C1", date="12/11/2026", doc_no="F2", mt="70,00"),  # after the old week
        sales_line(client="C2", date="04/11/2026", doc_no="F3", mt="30,00", email="paul@example.fr"),
    ])
    write_export(raw, "clients", "clients_2026-11-16.csv",
                 ["C1;Dupont;Jean;jean@example.fr;oui", "C2;Martin;Paul;paul@example.fr;non"],
                 header="client_code;nom;prenom;email;refus_email")
    pipeline.run_all(conn, pipeline.week_window("today", MONDAY_RUN))
    # The backfill of the week before, run after today's exports were loaded:
    # (no export is dated in that week, so the Airflow run would wait for one; the scores are what is checked)
    pipeline.run_all(conn, pipeline.week_window("backfill__2026-11-09", OLD_WEEK_RUN), require_week=False)

    c360 = {code: (orders, float(revenue), opted_out) for code, orders, revenue, opted_out in conn.execute(
        "SELECT client_code, orders, revenue_ht, opted_out FROM crm.customer_360 WHERE as_of_date = %s",
        (OLD_SUNDAY,))}
    # sales as of that week's Sunday: the 12 November order is not there
    assert c360["C1"][:2] == (1, 50.0) and c360["C2"][:2] == (1, 30.0)
    # consent as the customer file says today (C1 opted out since): never emailed by a backfill
    assert c360["C1"][2] is True and c360["C2"][2] is False
    excluded = dict(conn.execute("SELECT client_code, reason FROM crm.recommendation_exclusions "
                                 "WHERE as_of_date = %s", (OLD_SUNDAY,)))
    assert excluded.get("C1") == "opted_out"
