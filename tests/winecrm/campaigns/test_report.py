"""The weekly report: one self-contained French HTML file (charts as inline SVG, no script, no
external asset) and its JSON summary, from what the run did."""

from __future__ import annotations

import json
import re

from winecrm import pipeline
from winecrm_tools.samples import sampledata

from tests.conftest import MONDAY_RUN


def test_the_weekly_report_is_self_contained_french_and_agrees_with_the_warehouse(conn, crm_dirs, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("CRM_REPORTS_DIR", str(tmp_path / "reports"))
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=200, years=1.5)
    summary = pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    written = summary["details"]["report"]
    html = open(written["html"], encoding="utf-8").read()
    data = json.load(open(written["json"], encoding="utf-8"))
    assert written["html"].endswith("2026-11-15/run_1/rapport-hebdo.html")
    # self-contained: charts inline, nothing fetched, nothing executed
    assert html.count("<svg") >= 3 and "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']https?://""", html) and "@import" not in html
    # French, and the same numbers as the warehouse
    assert 'lang="fr"' in html and "Semaine du 09/11 au 15/11/2026" in html and "Santé des données" in html
    vip = conn.execute("SELECT count(*) FROM crm.rfm_scores WHERE as_of_date = '2026-11-15' AND segment = 'VIP'"
                       ).fetchone()[0]
    assert data["segments"]["VIP"]["this_week"] == vip
    simulated = conn.execute("SELECT count(*) FROM crm.email_sends WHERE status = 'simulated'").fetchone()[0]
    campaign = data["campaigns"][0]
    assert campaign["mode"] == "dry_run" and sum(c.get("simulated", 0) for c in campaign["by_scenario"].values()) \
        == simulated > 0
    assert f"{simulated:,}".replace(",", "\u202f") in html
    assert data["data"]["rows_quarantined"] == summary["rows_quarantined"] > 0
    assert data["quarantine_reasons"] and data["quarantine_reasons"][0]["dataset"] in html
    assert data["events"]["funnel"] == [] and "événement Brevo" in html  # said, not invented, until they exist
    assert data["uplift"] is None and "Aucune campagne réellement envoyée" in html  # a dry run proves nothing


def test_the_uplift_compares_the_customers_a_live_campaign_meant_with_the_control_group(conn, crm_dirs, tmp_path,
                                                                                     monkeypatch):
    import datetime as dt

    from winecrm.campaigns import report
    from winecrm.crm import recommend, scoring

    monkeypatch.setenv("CRM_REPORTS_DIR", str(tmp_path / "reports"))
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=600, years=2.0)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    sent_week = dt.date(2026, 10, 11)
    scoring.score(conn, "past", sent_week)
    recommend.recommend(conn, "past", sent_week)
    # a live campaign of that week, sent to the customers it meant (the control group never written)
    conn.execute("INSERT INTO crm.campaigns (campaign_id, kind, as_of_date, mode, status) "
                 "VALUES ('hebdo-2026-10-11', 'weekly', %s, 'live', 'done')", (sent_week,))
    conn.execute("""INSERT INTO crm.email_sends (campaign_id, client_code, email, scenario, status, sent_at)
                    SELECT 'hebdo-2026-10-11', client_code, client_code || '@example.fr', scenario, 'sent', '2026-10-12'
                    FROM crm.recommendations WHERE as_of_date = %s AND rank = 1 AND NOT is_control""", (sent_week,))
    conn.commit()
    assert report.uplift(conn, dt.date(2026, 11, 1), days=30) is None  # its 30 days are not over on 01/11
    got = report.uplift(conn, dt.date(2026, 11, 15), days=30)
    # the same numbers, counted here in Python
    buyers = {c for (c,) in conn.execute(
        "SELECT DISTINCT client_code FROM etl.ventes_lignes WHERE document_type IN ('VENTE', 'FACTURE') "
        "AND date_livraison > '2026-10-11' AND date_livraison <= '2026-11-10'")}
    groups = {True: [0, 0], False: [0, 0]}
    for code, control in conn.execute("SELECT client_code, is_control FROM crm.recommendations "
                                      "WHERE as_of_date = %s AND rank = 1", (sent_week,)):
        groups[control][0] += 1
        groups[control][1] += code in buyers
    assert got["targeted"] == {"customers": groups[False][0], "buyers": groups[False][1]}
    assert got["control"] == {"customers": groups[True][0], "buyers": groups[True][1]} and groups[True][0] > 20
    p1, p0 = groups[False][1] / groups[False][0], groups[True][1] / groups[True][0]
    assert got["uplift_points"] == round(100 * (p1 - p0), 1)
    assert got["ci95_points"][0] < got["uplift_points"] < got["ci95_points"][1]
    html = open(report.write_report(conn, pipeline.run_summary(conn, "run_1"))["html"], encoding="utf-8").read()
    assert "Effet\u00a0: " in html and "hebdo-2026-10-11" in html
