"""The weekly report as the marketing person reads it (FRENCH-COPY.md): no raw data printed, French
agreement, dates and spacing, the automation section about the report's own week, and a page
that reads on a phone (375 px: nothing wider than the screen, tables scrolling in their own box).

One estate, two weeks: the week of 2–8 Nov is run and its dry-run campaign « sent » on Monday
9 Nov; during the week of 9–15 Nov customers open, click, bounce, unsubscribe and one buys
(the demo's events, through the intake and the rules); then the week of 9–15 Nov is run, and its
report is what these tests read."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from winecrm import pipeline
from winecrm.campaigns import report
from winecrm_tools.demo import events as demo_events
from winecrm_tools.samples import sampledata
from winecrm.events import intake, processing
from winecrm.events.rules import load_rules

from tests.conftest import MONDAY_RUN, template_for
from tests.screenshots import chromium, layout, screenshot

PARIS = ZoneInfo("Europe/Paris")
DOCS = Path(__file__).resolve().parents[3] / "docs"


def _queue(conn, events: list[tuple]) -> None:
    conn.execute(intake.INSERT_SQL, intake.insert_params(events))
    conn.commit()


def _two_weeks_with_events(conn, crm_dirs) -> dict:
    exports = sampledata.write_sample_exports(crm_dirs["raw"], n_customers=300, years=2.0)
    # the exports of Monday 16 Nov arrive after the first week's run
    later = {f: crm_dirs["raw"].parent / "later" / f.name for f in exports.files if "2026-11-16" in f.name}
    for here, there in later.items():
        there.parent.mkdir(exist_ok=True)
        here.rename(there)
    pipeline.run_all(conn, pipeline.week_window("run_0", MONDAY_RUN - dt.timedelta(days=7)))
    for here, there in later.items():
        there.rename(here)
    campaign = "hebdo-2026-11-08-dry-run"
    sends = conn.execute("SELECT send_id, client_code, email, campaign_id FROM crm.email_sends "
                         "WHERE campaign_id = %s AND status = 'simulated' ORDER BY send_id", (campaign,)).fetchall()
    monday = dt.datetime(2026, 11, 9, 9, 0, tzinfo=PARIS)
    brevo, purchase, who = demo_events.build_events(sends, monday)
    newsletter, _ = demo_events.build_newsletter_events(sends, monday, exclude=(who["bounced"], who["unsubscribed"]))
    _queue(conn, intake.rows(intake.parse_brevo(brevo + [demo_events.shop_mail_opened(who["buyer"], monday)]
                                                + newsletter)))
    _queue(conn, intake.rows(intake.parse_behavior(purchase)))
    processing.process_events(conn, rules=load_rules())
    summary = pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    written = summary["details"]["report"]
    return {"html": written["html"], "json": written["json"], "who": who, "campaign": campaign}


TWO_WEEKS = (("sample", 300, 2.0, "two weeks with events"), _two_weeks_with_events)


warehouse_template = template_for(weekly_report=TWO_WEEKS)


@pytest.fixture
def weekly_report(conn, crm_dirs, prepared, monkeypatch):
    state = prepared(*TWO_WEEKS)
    state.restore(crm_dirs, monkeypatch)  # the test's own warehouse (a clone) and folders, reports included
    return state.value


def _text(html: str) -> str:
    """What the reader sees: tags, styles and charts out, entities as characters."""
    import html as html_lib

    body = re.sub(r"<style>.*?</style>|<svg.*?</svg>", " ", html, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", body))


def test_the_report_reads_as_french(weekly_report, conn):
    html = open(weekly_report["html"], encoding="utf-8").read()
    data = json.load(open(weekly_report["json"], encoding="utf-8"))
    text = _text(html)
    # numbers agree with their noun (0 and 1 singular), no « (s) »
    assert "(s)" not in text and "tâche(s)" not in html
    for n, noun in re.findall(r"\b([01]) (adresses|achats|désinscriptions|clics|ouvertures|tâches|e-mails)\b", text):
        raise AssertionError(f"« {n} {noun} »: singular expected")
    received = data["events"]["received"]
    assert received["purchase"] == 1 and received["email_bounce"] == 1 and received["unsubscribe"] >= 1
    assert "1 achat," in text or "1 achat." in text
    assert "1 adresse en échec" in text
    tasks = data["events"]["open_tasks_total"]
    assert tasks == 1 and "1 tâche ouverte" in text
    # dates in French in the sentences (ids such as hebdo-2026-11-08 are names, not dates)
    assert not re.search(r"(?<![\w-])\d{4}-\d{2}-\d{2}(?![\w-])", text), re.findall(r".{30}\d{4}-\d{2}-\d{2}.{10}", text)
    assert "Comparé au 8\u00a0novembre 2026." in text
    assert re.search(r"généré le \d{1,2}(er)?\u00a0\w+ 20\d\d à \d\d:\d\d", text)
    # decimals with a comma, and a no-break space before : ; ! ? % and inside « »
    assert not re.search(r"\d\.\d+\s*%", text)
    assert not re.search(r"\w [:;!?%»]", text), re.findall(r".{30}\w [:;!?%»].{10}", text)
    assert not re.search(r"« ", text)


def test_who_decided_is_a_name_also_for_rows_written_before(conn, weekly_report):
    """The approval used to store the Airflow user's dict as text: the report shows the name
    (what the approval writes now is tested with it, tests/winecrm/airflow/test_tasks.py)."""
    conn.execute("UPDATE crm.campaigns SET decided_by = %s WHERE campaign_id = 'hebdo-2026-11-15-dry-run'",
                 (str({"id": "admin", "name": "Marie Schmitt"}),))
    conn.commit()
    html = open(report.write_report(conn, pipeline.run_summary(conn, "run_1"))["html"], encoding="utf-8").read()
    assert "{" not in _text(html) and "décision de Marie Schmitt" in _text(html)
    assert json.load(open(Path(weekly_report["json"]), encoding="utf-8"))["campaigns"][0]["decided_by"] == \
        "Marie Schmitt"


def test_the_automation_section_covers_the_reports_week_not_the_last_seven_days(weekly_report, conn):
    """A backfilled week's report shows that week's events and rules, not today's."""
    data = json.load(open(weekly_report["json"], encoding="utf-8"))
    week = data["events"]
    assert week["period"] == {"start": "2026-11-09", "end": "2026-11-15", "label": "du 9 au 15\u00a0novembre 2026"}
    assert week["received"] and week["actions"]  # the events of 9–10 Nov, six weeks before today
    total = sum(week["received"].values())
    # today: a customer visits the shop — not an event of 9–15 Nov
    _queue(conn, intake.rows(intake.parse_behavior({"client_code": weekly_report["who"]["buyer"][1],
                                                    "action": "page_visit", "event_id": "visite-aujourd-hui"})))
    processing.process_events(conn, rules=load_rules())
    again = report.events(conn, dt.date(2026, 11, 15), week_start=dt.date(2026, 11, 9))
    assert sum(again["received"].values()) == total and "page_visit" not in again["received"]
    assert again["actions"] == week["actions"]
    # the week before: only the estate's newsletter of Saturday 7 Nov, none of the campaign's events
    before = report.events(conn, dt.date(2026, 11, 8))
    assert before["received"] and not {"request", "email_bounce", "purchase"} & set(before["received"])
    assert before["unknown_addresses"] == 0 and before["period"]["label"] == "du 2 au 8\u00a0novembre 2026"
    html = open(weekly_report["html"], encoding="utf-8").read()
    assert "Du 9 au 15\u00a0novembre 2026\u00a0:" in _text(html) and "7 jours" not in _text(html)


@pytest.mark.skipif(not chromium(), reason="needs Chromium (Debian package chromium) for the page's layout")
def test_the_report_fits_a_phone_and_its_charts_read(weekly_report, tmp_path):
    """At 375 px: the page never scrolls sideways, nothing sticks out of the screen but inside a
    box that scrolls on its own (a wide table), and the charts' words are at least 11 px on screen."""
    measured = layout(weekly_report["html"], 375)
    assert measured["page_width"] <= 375, measured
    assert measured["outside"] == [], measured["outside"]
    assert measured["charts"] and min(c["smallest_text_px"] for c in measured["charts"]) >= 11, measured["charts"]
    assert all(c["width"] <= 375 and not c["clipped"] for c in measured["charts"]), measured["charts"]
    wide = layout(weekly_report["html"], 1280)
    assert wide["page_width"] <= 1280 and wide["outside"] == [] and not any(c["clipped"] for c in wide["charts"])
    if os.environ.get("CRM_DOCS_SCREENSHOTS"):  # refresh the pictures in docs/ (docs/campaigns.md: The weekly report)
        for width, name in ((375, "weekly-report-mobile.png"), (1280, "weekly-report.png")):
            shutil.copy(screenshot(weekly_report["html"], tmp_path / name, width), DOCS / name)
