"""The demo's events: what Brevo would post for a campaign, valid for the receiver, with the
cases the demo checks (a bounce, an unsubscribe, a clicker who buys)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from winecrm_tools.demo.events import build_events, build_newsletter_events, shop_mail_opened
from winecrm.events import intake


def test_the_demo_events_are_what_brevo_posts_and_cover_the_demo_checks():
    sends = [(i, f"C{i:04d}", f"client{i}@example.fr", "hebdo-2026-11-15-dry-run") for i in range(1, 201)]
    monday = dt.datetime(2026, 11, 16, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    events, purchase, who = build_events(sends, monday)
    parsed = intake.parse_brevo(events[:500])  # read as the receiver reads them: nothing parked
    assert len(parsed) == min(500, len(events)) and not [e.problem for e in parsed if e.problem]
    names = [e["event"] for e in events]
    assert names.count("hard_bounce") == 1 and names.count("unsubscribed") == 1
    assert names.count("unique_opened") == names.count("opened") - 1  # and one unknown address's open
    assert {"delivered", "click", "request"} <= set(names)
    assert who["buyer"] in who["clicked"] and purchase["client_code"] == who["buyer"][1]
    assert intake.parse_behavior(purchase)[0].amount > 50
    times = [e["ts_epoch"] for e in events]
    assert times == sorted(times) and min(times) >= monday.timestamp() * 1000
    assert build_events(sends, monday)[0] == events  # the same every run


def test_the_newsletter_and_the_shop_mail_are_brevo_events_of_both_families():
    sends = [(i, f"C{i:04d}", f"client{i}@example.fr", "hebdo-2026-11-15-dry-run") for i in range(1, 201)]
    monday = dt.datetime(2026, 11, 16, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
    events, purchase, who = build_events(sends, monday)
    newsletter, newsletter_who = build_newsletter_events(sends, monday, exclude=(who["bounced"], who["unsubscribed"]))
    parsed = intake.parse_brevo(newsletter + [shop_mail_opened(who["buyer"], monday)])
    assert not [e.problem for e in parsed if e.problem]
    assert {e.family for e in parsed[:-1]} == {"marketing"} and parsed[-1].family == "transactional"
    assert [e.event for e in parsed].count("unsubscribed") == 1 and "click" in [e.event for e in parsed]
    assert newsletter_who["newsletter_unsubscribed"] not in (who["bounced"], who["unsubscribed"])
    assert parsed[-1].custom is None  # the shop's mail carries none of our headers
