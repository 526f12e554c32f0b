"""The crm_events work on a real warehouse: Brevo and behaviour events, linked to our sends and
customers, through the default rules into score changes, tags, tasks, suppressions and e-mails —
each action once, however often the queue is processed."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.server
import threading

import pytest
from winecrm import pipeline
from winecrm.campaigns import render, send
from winecrm.core import settings
from winecrm.events import actions, intake, processing
from winecrm.events.rules import load_rules, parse_rules

from tests.conftest import MONDAY_RUN, SCORED_SAMPLE_ESTATE, template_for
from tests.fakes.brevo import FakeBrevoServer
from tests.fakes.estate import seed_warehouse
from winecrm.core.weeks import estate_zone

AS_OF = dt.date(2026, 11, 15)
DRY = "hebdo-2026-11-15-dry-run"
TS = 1_763_370_000  # 17/11/2025 10:00 Paris


warehouse_template = template_for(sent=SCORED_SAMPLE_ESTATE)


@pytest.fixture
def sent(conn, crm_dirs, prepared, monkeypatch):
    """A 300-customer sample estate scored, recommended, and its week's e-mails in the outbox."""
    prepared(*SCORED_SAMPLE_ESTATE).restore(crm_dirs, monkeypatch)  # the test's own clone
    render.render_campaign(conn, "run_1", AS_OF, mode="dry_run")
    send.send_campaign(conn, DRY)
    return conn


def queue(conn, rows: list[tuple]) -> None:
    conn.execute(intake.INSERT_SQL, intake.insert_params(rows))
    conn.commit()


def brevo_event(event: str, email_: str, message_id: str, ts: int, **extra) -> tuple:
    body = {"event": event, "email": email_, "message-id": message_id, "ts_epoch": ts * 1000, **extra}
    return intake.rows(intake.parse_brevo(body))[0]


def newsletter_click(email_: str, ts: int, url: str, camp_id: int = 12) -> tuple:
    """A click in a campaign the estate sent from Brevo itself (marketing webhook)."""
    body = {"event": "click", "email": email_, "camp_id": camp_id, "campaign name": "Lettre de novembre",
            "date_sent": "2026-11-16 09:00:00", "ts_sent": ts - 3600, "ts_event": ts, "ts": ts + 3600, "URL": url,
            "tag": "", "id": 4242}
    return intake.rows(intake.parse_brevo(body))[0]


def behavior(action: str, client_code: str, event_id: str, ts: str = "2026-11-17T10:00:00+01:00", **metadata) -> tuple:
    return intake.rows(intake.parse_behavior(
        {"action": action, "client_code": client_code, "event_id": event_id, "metadata": metadata, "ts": ts}))[0]


def recipients(conn, n: int, segments: tuple[str, ...]) -> list[tuple]:
    """(client, address, send id) of simulated e-mails of the week to customers of these segments."""
    return conn.execute(
        """SELECT e.client_code, e.email, e.send_id FROM crm.email_sends e
           JOIN crm.rfm_scores r ON r.client_code = e.client_code AND r.as_of_date = %s
           WHERE e.campaign_id = %s AND e.status = 'simulated' AND r.segment = ANY(%s)
           ORDER BY e.send_id LIMIT %s""", (AS_OF, DRY, list(segments), n)).fetchall()


def table(conn, sql: str, *params) -> list[tuple]:
    rows = conn.execute(sql, params or None).fetchall()
    conn.commit()
    return rows


def test_the_default_rules_from_brevo_events_and_a_purchase(sent, crm_dirs):
    conn = sent
    (c1, e1, s1), (c2, e2, s2) = recipients(conn, 2, ("VIP", "Standard"))
    custom = {"X-Mailin-custom": f"{DRY}|{s1}"}   # Brevo echoes it on every event of our e-mail
    queue(conn, [brevo_event("delivered", e1, "<m1@relay>", TS - 60, **custom),
                 brevo_event("opened", e1, "<m1@relay>", TS, **custom),
                 brevo_event("unique_opened", e1, "<m1@relay>", TS + 1, **custom),   # the same open: no second +5
                 brevo_event("click", e1, "<m1@relay>", TS + 5, link="https://x.fr/a", **custom),
                 brevo_event("click", e1, "<m1@relay>", TS + 6, link="https://x.fr/a", **custom),  # same link again
                 brevo_event("unsubscribed", e2.upper(), "<m2@relay>", TS + 9, **{"X-Mailin-custom": f"{DRY}|{s2}"}),
                 brevo_event("opened", "stranger@nowhere.fr", "<m9@relay>", TS),     # kept, reported
                 behavior("purchase", c1, "order-1", amount=120.0),
                 behavior("purchase", c1, "order-2", amount=30.0),                  # under 50 €: no rule
                 # the shop's order confirmation, sent by the same Brevo account: not one of ours
                 brevo_event("opened", e1, "<shop-order-77@relay>", TS + 20),
                 brevo_event("click", e1, "<shop-order-77@relay>", TS + 21, link="https://shop.fr/suivi"),
                 # Apple Mail opening our e-mail on its own: not a person reading
                 brevo_event("proxy_open", e1, "<m1@relay>", TS + 30, **custom)])
    first = processing.process_events(conn, rules=load_rules())
    assert first["events"] == 12 and first["queue"] == {"done": 12}
    events = table(conn, "SELECT event, trig, client_code, send_id, campaign_id, repeat_of IS NOT NULL, "
                         "unknown_customer FROM crm.webhook_events ORDER BY event_id")
    assert events[0][2:5] == (c1, s1, DRY)                                 # linked by X-Mailin-custom
    assert events[3][2:5] == (c1, s1, DRY)
    assert [e[5] for e in events] == [False, False, True, False, True, False, False, False, False, False, False,
                                      False]
    assert events[6][2] is None and events[6][6] is True                   # unknown address: kept
    # the shop's mail and Apple's automatic open: the customer is known, nothing is ours, no rule fires
    assert [e[1:5] for e in events[9:]] == [(None, c1, None, None), (None, c1, None, None), (None, c1, s1, DRY)]
    changes = table(conn, "SELECT client_code, delta, rule_id FROM crm.score_changes ORDER BY change_id")
    assert sorted(changes) == sorted([(c1, 5, "email_opened"), (c1, 15, "email_clicked"), (c2, -100, "unsubscribe"),
                                      (c1, 50, "purchase")])
    assert set(table(conn, "SELECT client_code, tag FROM crm.customer_tags")) == {(c1, "engaged"), (c2, "unsubscribed")}
    # consent: suppressed at once, with its source, whatever the rules say
    assert table(conn, "SELECT email, reason, source FROM crm.suppressions") == [(e2.lower(), "unsubscribed",
                                                                                   "brevo_webhook:unsubscribed")]
    # (the weekly load recorded the sample export's consent column too: source erp_export)
    assert table(conn, "SELECT email, change, source, channel FROM crm.consent_log WHERE source <> 'erp_export'") == [
        (e2.lower(), "suppressed:unsubscribed", "brevo_webhook:unsubscribed", "email")]
    assert table(conn, "SELECT crm.email_blocked_reason(%s, %s, 0, NULL)", c2, e2) == [("suppressed",)]
    # the buyer: one thank-you e-mail (dry run: in the outbox) and a follow-up task due a day later
    thanks = table(conn, "SELECT campaign_id, client_code, status, outbox_path FROM crm.email_sends "
                         "WHERE campaign_id LIKE 'auto-%'")
    assert [(t[0], t[1], t[2]) for t in thanks] == [("auto-purchase-2026-11-17", c1, "simulated")]
    message = email.message_from_bytes(open(thanks[0][3], "rb").read(), policy=email.policy.default)
    assert message["Subject"].startswith("Merci pour votre commande")
    tasks = table(conn, "SELECT kind, client_code, title, due_at FROM crm.tasks")
    assert tasks == [("task", c1, "Relancer le client après son achat",
                      dt.datetime(2026, 11, 18, 9, 0, tzinfo=dt.timezone.utc))]
    assert table(conn, "SELECT client_code, title FROM crm.open_tasks") == [(c1, "Relancer le client après son achat")]
    # the weekly report's funnel: distinct e-mails of the campaign per step
    from winecrm.campaigns import report

    funnel = report.events(conn, AS_OF)["funnel"]
    assert [(f["campaign_id"], f["delivered"], f["opened"], f["clicked"], f["unsubscribed"]) for f in funnel] == [
        (DRY, 1, 1, 1, 1)]
    assert report.events(conn, AS_OF)["open_tasks_total"] == 1
    # processing again (a retried or second run) changes nothing
    again = processing.process_events(conn, rules=load_rules())
    assert again["events"] == 0
    assert len(table(conn, "SELECT 1 FROM crm.score_changes")) == 4
    assert len(table(conn, "SELECT 1 FROM crm.email_sends WHERE campaign_id LIKE 'auto-%'")) == 1
    assert len(table(conn, "SELECT 1 FROM crm.tasks")) == 1
    # the same events delivered again by Brevo's retry: stored once, nothing fires twice
    queue(conn, [brevo_event("click", e1, "<m1@relay>", TS + 5, link="https://x.fr/a", **custom)])
    assert table(conn, "SELECT count(*) FROM crm.webhook_events") == [(12,)]


def test_engagement_points_reach_the_weekly_lead_score(sent):
    conn = sent
    (c1, e1, s1), = recipients(conn, 1, ("VIP", "Standard"))
    before = table(conn, "SELECT engagement_points, score FROM crm.lead_scores WHERE as_of_date = %s "
                         "AND client_code = %s", AS_OF, c1)[0]
    assert before[0] == 0
    queue(conn, [brevo_event("click", e1, "<m1@relay>", TS, link="https://x.fr/a",  # 17/11/2025: before AS_OF
                             **{"X-Mailin-custom": f"{DRY}|{s1}"})])
    processing.process_events(conn, rules=load_rules())
    window = pipeline.week_window("run_1b", MONDAY_RUN)
    pipeline.prepare(conn, window)
    pipeline.run_score(conn, window.run_id)
    after = table(conn, "SELECT engagement_points, engagement_events, score FROM crm.lead_scores "
                        "WHERE as_of_date = %s AND client_code = %s", AS_OF, c1)[0]
    assert after[:2] == (15, 1) and after[2] == min(100, before[1] + 15)


def lead_score(conn, client: str, score: int, as_of: dt.date = AS_OF) -> None:
    conn.execute("""INSERT INTO crm.lead_scores (as_of_date, client_code, base_points, rfm_points, engagement_points,
                        engagement_events, purchase_points, recency_penalty, raw_score, score, computed_run)
                    VALUES (%s, %s, 50, %s, 0, 0, 0, 0, %s, %s, 't')""", (as_of, client, score - 50, score, score))
    conn.commit()


def test_lead_score_high_fires_once_on_an_upward_crossing(conn, crm_dirs):
    seed_warehouse(conn, 3)
    lead_score(conn, "C000000", 70)
    lead_score(conn, "C000001", 90)          # already above when first seen: a baseline, no event
    rules = load_rules()
    processing.process_events(conn, rules=rules)
    assert table(conn, "SELECT count(*) FROM crm.webhook_events") == [(0,)]
    # a click (+15, no segment condition in this rule set) lifts C000000 from 70 to 85
    click_rules = parse_rules({"settings": {"lead_score_high": 80}, "rules": [
        {"id": "click_any", "trigger": "email_clicked", "actions": [{"type": "update_score", "points": 15}]},
        *[r.model_dump(exclude_none=True) for r in rules.rules if r.id == "lead_score_high"]]})
    queue(conn, [newsletter_click("client0@example.fr", TS, "https://x.fr/a")])
    summary = processing.process_events(conn, rules=click_rules)
    assert summary["lead_score_high"] == 1
    internal = table(conn, "SELECT client_code, payload ->> 'score' FROM crm.webhook_events WHERE source = 'internal'")
    assert internal == [("C000000", "85")]
    acts = table(conn, "SELECT action_type, status, due_at - now() > interval '1 hour' FROM crm.automation_actions "
                       "WHERE rule_id = 'lead_score_high' ORDER BY action_index")
    assert acts == [("send_email", "done", False), ("schedule_call", "pending", True)]  # the call: in 2 h
    assert table(conn, "SELECT template, status FROM crm.email_sends WHERE campaign_id LIKE 'auto-%'") == [
        ("vip_offer", "simulated")]
    # still above: no second event; below, then above again: a new one
    queue(conn, [newsletter_click("client0@example.fr", TS + 9, "https://x.fr/b")])
    assert processing.process_events(conn, rules=click_rules)["lead_score_high"] == 0


def test_a_bad_event_is_retried_then_parked_and_never_blocks_the_queue(conn, crm_dirs):
    seed_warehouse(conn, 3)
    good = [behavior("page_visit", "C000001", f"visit-{i}") for i in range(3)]
    bad = list(behavior("purchase", "C000000", "order-bad", amount=1))
    bad[8] = bad[8].replace('"amount":1', '"amount":1e30')  # numeric overflow: as if stored by an older receiver
    queue(conn, [good[0], tuple(bad), *good[1:]])
    rules = parse_rules({"settings": {"max_attempts": 3}, "rules": [
        {"id": "visits", "trigger": "page_visit", "actions": [{"type": "add_tag", "tag": "visitor"}]}]})
    summary = processing.process_events(conn, rules=rules)
    assert summary["events"] == 3 and summary["failed"] == 1
    assert table(conn, "SELECT status, count(*) FROM crm.webhook_events GROUP BY 1 ORDER BY 1") == [
        ("done", 3), ("failed", 1)]
    assert table(conn, "SELECT client_code, tag FROM crm.customer_tags") == [("C000001", "visitor")]
    for _ in range(2):  # its back-off over: retried, failing again, then parked for a person
        conn.execute("UPDATE crm.webhook_events SET next_attempt_at = now() WHERE status = 'failed'")
        conn.commit()
        processing.process_events(conn, rules=rules)
    parked = table(conn, "SELECT status, attempts, error FROM crm.webhook_events WHERE status <> 'done'")
    assert parked[0][:2] == ("parked", 3) and "overflow" in parked[0][2]


def test_pause_and_suppress_actions_block_later_campaign_sends(conn, crm_dirs):
    seed_warehouse(conn, 3)
    rules = parse_rules({"rules": [
        {"id": "quiet", "trigger": "form_submit", "actions": [{"type": "pause_campaign", "days": 60}]},
        {"id": "stop", "trigger": "page_visit", "actions": [{"type": "suppress", "reason": "manual"}]}]})
    queue(conn, [behavior("form_submit", "C000000", "f1"), behavior("page_visit", "C000001", "v1")])
    processing.process_events(conn, rules=rules)
    blocked = table(conn, "SELECT client_code, crm.email_blocked_reason(client_code, email, 0, NULL) FROM etl.clients "
                          "ORDER BY 1")
    assert blocked == [("C000000", "paused"), ("C000001", "suppressed"), ("C000002", None)]
    assert {r[0] for r in table(conn, "SELECT change FROM crm.consent_log")} == {"paused", "suppressed:manual"}


def test_sms_waits_for_the_allowed_hours_and_is_never_sent_twice(conn, crm_dirs, monkeypatch):
    seed_warehouse(conn, 2)
    conn.execute("UPDATE etl.clients SET telephone = '06 12 34 56 78' WHERE client_code = 'C000000'")
    conn.execute("UPDATE etl.clients SET telephone = '03 89 00 00 00' WHERE client_code = 'C000001'")  # a landline
    conn.commit()
    rules = parse_rules({"settings": {"sms": {"mode": "live", "sender": "DomExemple"}}, "rules": [
        {"id": "sms_form", "trigger": "form_submit",
         "actions": [{"type": "send_sms", "text": "Merci ! Le domaine vous rappelle vite."}]}]})
    queue(conn, [behavior("form_submit", "C000000", "f1"), behavior("form_submit", "C000001", "f2")])
    saturday_night = dt.datetime(2026, 11, 21, 22, 30, tzinfo=estate_zone())
    monday_morning = dt.datetime(2026, 11, 23, 8, 0, tzinfo=estate_zone())
    with FakeBrevoServer() as server:
        from winecrm.campaigns import brevo

        client = brevo.BrevoClient(brevo.BrevoCredentials(server.fake.api_key, server.url))
        processing.process_events(conn, rules=rules, brevo=client, now=saturday_night)
        assert server.fake.sms == []
        due = table(conn, "SELECT client_code, status, due_at FROM crm.automation_actions ORDER BY client_code")
        assert due[0][1:] == ("pending", monday_morning)                    # not on Sunday, not at night
        assert due[1][1] == "skipped"                                        # no mobile number
        conn.execute("UPDATE crm.automation_actions SET due_at = now() WHERE status = 'pending'")
        conn.commit()
        processing.process_events(conn, rules=rules, brevo=client, now=monday_morning)
        assert [(s["recipient"], s["sender"], s["type"]) for s in server.fake.sms] == [
            ("33612345678", "DomExemple", "marketing")]
        # the rule's words with French typography: no ordinary space before « ! » that can wrap
        assert server.fake.sms[0]["content"] == "Merci\u202f! Le domaine vous rappelle vite."
        # a task killed during a call leaves the action 'running': it is never sent again
        conn.execute("UPDATE crm.automation_actions SET status = 'running' WHERE client_code = 'C000000'")
        conn.commit()
        processing.process_events(conn, rules=rules, brevo=client, now=monday_morning)
        assert len(server.fake.sms) == 1
        assert table(conn, "SELECT status FROM crm.automation_actions WHERE client_code = 'C000000'") == [("unknown",)]


def test_an_sms_sender_brevo_would_refuse_is_a_rules_file_mistake():
    """Brevo takes at most 11 characters for a sender with letters (15 for digits only): a
    12-letter sender is a settings mistake, said with the key to fix when the rules load — not an
    SMS per customer written to the outbox (dry run) or parked one by one (live)."""
    rule = {"id": "sms_form", "trigger": "form_submit",
            "actions": [{"type": "send_sms", "text": "Merci !", "sms_type": "transactional"}]}
    with pytest.raises(settings.ConfigError, match=r"settings\.sms\.sender.*11 characters"):
        parse_rules({"settings": {"sms": {"sender": "DomaineSaint"}}, "rules": [rule]}, "automation_rules.yaml")
    assert parse_rules({"settings": {"sms": {"sender": "336123456789012"}}, "rules": [rule]})  # 15 digits: fine
    assert parse_rules({"settings": {"sms": {"sender": "DomaineSain"}}, "rules": [rule]})      # 11 letters: fine


@pytest.mark.parametrize("at, allowed", [
    ((2026, 11, 24, 12, 0), (2026, 11, 24, 12, 0)),     # a Tuesday noon: at once
    ((2026, 11, 24, 7, 10), (2026, 11, 24, 8, 0)),      # too early
    ((2026, 11, 24, 22, 0), (2026, 11, 25, 8, 0)),      # too late
    ((2026, 11, 22, 10, 0), (2026, 11, 23, 8, 0)),      # Sunday
    ((2026, 12, 24, 23, 0), (2026, 12, 28, 8, 0)),      # Christmas, 26 December (Alsace), Sunday 27
    ((2026, 4, 3, 9, 0), (2026, 4, 4, 8, 0)),           # Good Friday (Alsace-Moselle)
    ((2026, 7, 14, 9, 0), (2026, 7, 15, 8, 0)),         # 14 July
])
def test_french_rules_for_marketing_sms(at, allowed):
    cfg = load_rules().settings.sms
    assert actions.sms_allowed_from(dt.datetime(*at, tzinfo=estate_zone()), cfg) == dt.datetime(*allowed,
                                                                                                  tzinfo=estate_zone())


@pytest.mark.parametrize("raw, expected", [("06 12 34 56 78", "+33612345678"), ("+33 6 12 34 56 78", "+33612345678"),
                                           ("0033612345678", "+33612345678"), ("07.58.12.34.56", "+33758123456"),
                                           ("03 89 00 00 00", None), ("12", None), ("", None), (None, None),
                                           ("+49 151 23456789", "+4915123456789")])
def test_phone_numbers_to_e164(raw, expected):
    assert actions.e164(raw) == expected


def _posts_to_a_hook(conn, answer, runs: int = 1) -> list[tuple[str, bytes]]:
    """A purchase whose rule posts to a local hook answering ``answer(posts so far)``, through
    ``runs`` crm_events runs: the (Idempotency-Key, body) of every post the hook received."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["Idempotency-Key"], body))
            self.send_response(answer(len(seen)))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seed_warehouse(conn, 1)
        rules = parse_rules({"rules": [{"id": "crm_hook", "trigger": "purchase", "actions": [
            {"type": "trigger_webhook", "url": f"http://127.0.0.1:{server.server_port}/hook"}]}]})
        queue(conn, [behavior("purchase", "C000000", "o1", amount=80)])
        for _ in range(runs):
            processing.process_events(conn, rules=rules)
    finally:
        server.shutdown()
    return seen


def test_outbound_webhook_is_retried_with_its_idempotency_key(conn, crm_dirs):
    seen = _posts_to_a_hook(conn, lambda n: 503 if n == 1 else 204, runs=2)
    assert len(seen) == 2 and seen[0][0] == seen[1][0] and seen[0][0].startswith("winecrm-action-")
    assert b'"client_code": "C000000"' in seen[1][1] and b"@" not in seen[1][1]  # no address leaves
    assert table(conn, "SELECT status FROM crm.automation_actions") == [("done",)]


def test_rules_file_mistakes_name_the_rule_and_the_field():
    good = {"rules": [{"id": "r1", "trigger": "purchase", "actions": [{"type": "add_tag", "tag": "buyer"}]}]}
    parse_rules(good)
    cases = [
        ({"rules": [{"id": "r1", "trigger": "bought", "actions": [{"type": "add_tag", "tag": "x"}]}]},
         "rule r1: trigger"),
        ({"rules": [{"id": "r2", "trigger": "purchase", "actions": [{"type": "send_email", "template": "promo"}]}]},
         "rule r2: actions.0.template"),
        ({"rules": [{"id": "r3", "trigger": "purchase", "actions": [{"type": "add_tag", "tag": "x", "delay": "soon"}]}]},
         "rule r3: actions.0.delay"),
        ({"rules": [{"id": "r4", "trigger": "purchase", "conditions": {"segment": ["VIP"]},
                     "actions": [{"type": "add_tag", "tag": "x"}]}]}, "rule r4: conditions.segment"),
        ({"rules": [{"id": "r5", "trigger": "purchase", "actions": []}]}, "rule r5: actions"),
        ({"rules": [good["rules"][0], good["rules"][0]]}, "r1 used twice"),
        ({"rules": [{"id": "r6", "trigger": "purchase", "actions": [{"type": "teleport"}]}]}, "rule r6: actions.0"),
        ({"rules": [{"id": "r7", "trigger": "email_bounce", "conditions": {"events": ["hardbouncing"]},
                     "actions": [{"type": "add_tag", "tag": "x"}]}]}, "rule r7: conditions.events"),
    ]
    for raw, expected in cases:
        with pytest.raises(settings.ConfigError, match=expected.replace(".", r"\.")):
            parse_rules(raw, "automation_rules.yaml")
    assert len(load_rules().active()) == 7
    # event names in any of Brevo's spellings: kept under the name the queue stores
    spelled = parse_rules({"rules": [{"id": "r8", "trigger": "email_bounce", "conditions": {
        "events": ["hardBounce", "invalid", "blocked"]}, "actions": [{"type": "add_tag", "tag": "x"}]}]})
    assert spelled.rules[0].conditions.events == ["hard_bounce", "invalid_email", "blocked"]


def test_explain_shows_what_would_fire_and_applies_nothing(tmp_path, capsys, conn):
    from winecrm.events.__main__ import main

    event = tmp_path / "purchase.json"
    event.write_text('{"client_code": "C1", "action": "purchase", "metadata": {"amount": 80}}', encoding="utf-8")
    assert main(["explain", str(event), "--no-db"]) == 0
    out = capsys.readouterr().out
    assert "FIRES  purchase" in out and "send_email(template=thank_you) after 5m" in out
    assert "create_task(title=Relancer le client après son achat) after 24h" in out
    click = tmp_path / "click.json"
    click.write_text('{"event": "click", "email": "a@b.fr", "message-id": "<m>", "link": "https://x"}', encoding="utf-8")
    assert main(["explain", str(click), "--no-db", "--segment", "At Risk"]) == 0
    assert "no     email_clicked (priority 60): segment At Risk not in ['VIP', 'Standard']" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"event": "looked", "email": "a@b.fr"}', encoding="utf-8")
    assert main(["explain", str(bad), "--no-db"]) == 2
    assert "event" in capsys.readouterr().err
    assert conn.execute("SELECT count(*) FROM crm.webhook_events").fetchone()[0] == 0


def test_a_late_event_about_an_erased_person_keeps_nothing_of_them(conn, crm_dirs):
    from winecrm.privacy.erase import erased_marker

    seed_warehouse(conn, 1)
    conn.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES (%s, 'erased', 'privacy_erase')",
                 (erased_marker("gone@example.fr"),))
    conn.commit()
    queue(conn, [brevo_event("unsubscribed", "Gone@Example.fr", "<m@relay>", TS, subject="Pour Gone")])
    processing.process_events(conn, rules=load_rules())
    assert table(conn, "SELECT email, client_code, payload FROM crm.webhook_events") == [
        (erased_marker("gone@example.fr"), None, {"erased": True, "event": "unsubscribed"})]
    assert table(conn, "SELECT count(*) FROM crm.suppressions WHERE email LIKE '%%gone%%'") == [(0,)]


def test_explain_reads_the_customer_from_the_warehouse(conn, capsys):

    seed_warehouse(conn, 1)
    lead_score(conn, "C000000", 72)
    conn.execute("INSERT INTO crm.customer_tags (client_code, tag) VALUES ('C000000', 'engaged')")
    conn.commit()
    event = {"client_code": "C000000", "action": "purchase", "metadata": {"amount": 40}}
    result = __import__("winecrm.events.explain", fromlist=["explain"]).explain(event, load_rules(), conn=conn)
    assert result[0]["context"] == {"client_code": "C000000", "segment": None, "score": 72.0, "tags": ["engaged"],
                                     "known": True, "event": "purchase", "amount": 40}
    assert result[0]["rules"][0]["because_not"] == ["amount 40 not above 50.0"]


def test_an_email_that_cannot_be_rendered_is_parked_and_the_others_leave(conn, crm_dirs, monkeypatch):
    from winecrm.campaigns import templates

    seed_warehouse(conn, 3)
    real = templates.render

    def render_or_break(template, context, directory=None):  # a template error for one customer only
        if context["prenom"] == "broken":
            raise templates.TemplateError("e-mail template thank_you: UndefinedError: 'offer' is undefined")
        return real(template, context, directory)

    conn.execute("UPDATE etl.clients SET prenom = 'broken' WHERE client_code = 'C000000'")
    conn.commit()
    monkeypatch.setattr(templates, "render", render_or_break)
    rules = parse_rules({"rules": [{"id": "thanks", "trigger": "purchase",
                                    "actions": [{"type": "send_email", "template": "thank_you"}]}]})
    queue(conn, [behavior("purchase", f"C00000{i}", f"o{i}", amount=80) for i in range(3)])
    summary = processing.process_events(conn, rules=rules)
    assert summary["actions"]["send_email:parked"] == 1 and summary["actions"]["send_email:rendered"] == 2
    assert table(conn, "SELECT client_code, status FROM crm.email_sends ORDER BY 1") == [
        ("C000001", "simulated"), ("C000002", "simulated")]
    assert "UndefinedError" in table(conn, "SELECT error FROM crm.automation_actions WHERE status = 'parked'")[0][0]


def test_a_thank_you_is_not_held_back_by_the_weekly_silence_window(conn, crm_dirs):
    seed_warehouse(conn, 2)
    render.render_campaign(conn, "run_1", AS_OF, mode="live")
    conn.execute("UPDATE crm.email_sends SET status = 'sent', sent_at = now() - interval '4 days' "
                 "WHERE status = 'rendered'")  # the weekly campaign really sent four days ago
    conn.commit()
    rules = parse_rules({"rules": [{"id": "thanks", "trigger": "purchase",
                                    "actions": [{"type": "send_email", "template": "thank_you"}]}]})
    queue(conn, [behavior("purchase", "C000000", "o1", amount=80)])
    processing.process_events(conn, rules=rules)
    assert table(conn, "SELECT status, skip_reason FROM crm.email_sends WHERE campaign_id LIKE 'auto-%'") == [
        ("simulated", None)]
    # the weekly campaigns still respect it, and do not count the thank-you
    assert table(conn, "SELECT crm.email_blocked_reason('C000000', 'client0@example.fr', 135, 'hebdo-next')") == [
        ("silence_window",)]


@pytest.mark.parametrize("code,posts_expected", [(503, 3), (400, 1)])
def test_outbound_webhook_tries_three_times_unless_refused_for_good(conn, crm_dirs, code, posts_expected):
    """A hook that keeps failing is tried three times in the run, then the action backs off to a
    later run; one that refuses for good (400) is tried once. Same Idempotency-Key each time."""
    seen = [key for key, _ in _posts_to_a_hook(conn, lambda n: code)]
    assert len(seen) == posts_expected and len(set(seen)) == 1
    assert table(conn, "SELECT status FROM crm.automation_actions") != [("done",)]
