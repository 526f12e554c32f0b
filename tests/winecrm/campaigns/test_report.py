"""The weekly report: one self-contained French HTML file (charts as inline SVG, no script, no
external asset) and its JSON summary, from what the run did."""

from __future__ import annotations

import json
import re

from winecrm import pipeline
from winecrm.demo import sampledata

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
    assert data["events"] is None and "événements Brevo" in html  # said, not invented, until they exist
