"""Brevo as it really behaves, on the sending side: an idempotencyKey that may live only 15
minutes, a log of sent e-mails read one month at a time and page by page, about 100 look-ups an
hour, answers with the wrong number of message ids, and a live week with nothing to send."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from winecrm.campaigns import brevo, render, send
from winecrm.core import settings

from tests.fakes.brevo import Fault, FakeBrevo, FakeBrevoServer
from tests.fakes.estate import AS_OF, seed_warehouse

CAMPAIGN = render.campaign_id_for(AS_OF)


def _cfg(batch_size: int = 50) -> settings.CampaignsConfig:
    cfg = settings.campaigns_config()
    return cfg.model_copy(update={"sending": cfg.sending.model_copy(update={"batch_size": batch_size})})


def _approved_live_campaign(conn, customers: int) -> int:
    seed_warehouse(conn, customers)
    render.render_campaign(conn, "run_x", AS_OF, mode="live", cfg=_cfg())
    conn.execute("UPDATE crm.campaigns SET status = 'approved', decided_by = 'test' WHERE campaign_id = %s",
                 (CAMPAIGN,))
    conn.commit()
    return conn.execute("SELECT count(*) FROM crm.email_sends WHERE campaign_id = %s AND status = 'rendered'",
                        (CAMPAIGN,)).fetchone()[0]


def _client(server, **kw) -> brevo.BrevoClient:
    return brevo.BrevoClient(brevo.BrevoCredentials(server.fake.api_key, server.url), timeout=5,
                             sleep=lambda s: None, **kw)


def _db_now(conn) -> dt.datetime:
    now = conn.execute("SELECT now()").fetchone()[0]
    conn.commit()
    return now


def _statuses(conn) -> dict:
    return dict(conn.execute("SELECT status, count(*) FROM crm.email_sends WHERE campaign_id = %s GROUP BY 1",
                             (CAMPAIGN,)).fetchall())


def test_the_idempotency_window_is_never_trusted_past_10_minutes():
    assert settings.SendingConfig().idempotency_window_minutes == 10
    with pytest.raises(settings.ConfigError, match="never rely on more than 10 minutes"):
        settings.parse_config(settings.SendingConfig, {"idempotency_window_minutes": 25}, "campaigns.yaml")


def test_a_key_brevo_keeps_only_15_minutes_never_sends_twice(conn):
    """Brevo accepted a batch and the answer was lost; the task's retry 12 minutes later finds
    Brevo unavailable, the next one comes 20 minutes later. With a key that lives 15 minutes (an
    older changelog's figure), repeating the call under it after 20 minutes would send the batch
    again: past 10 minutes the send looks the batch up instead."""
    rendered = _approved_live_campaign(conn, 120)
    started = time.time()
    offset = {"s": 0.0}
    fake = FakeBrevo(clock=lambda: started + offset["s"], idempotency_lifetime_s=15 * 60)
    with FakeBrevoServer(fake) as server:
        once = _client(server, max_attempts=1)  # a lost answer is left unknown, as after a killed task
        server.fake.inject(Fault("drop_after_accept"))
        with pytest.raises(brevo.BrevoUnavailable):
            send.send_campaign(conn, CAMPAIGN, client=once, cfg=_cfg())
        assert len(server.fake.sent) == 50 and _statuses(conn)["sending"] == 50
        left_at = _db_now(conn)

        offset["s"] = 12 * 60
        server.fake.inject(Fault("500", path=None))  # Brevo down for the 12-minute retry
        with pytest.raises(brevo.BrevoUnavailable):
            send.send_campaign(conn, CAMPAIGN, client=once, cfg=_cfg(), now=left_at + dt.timedelta(minutes=12))
        assert len(server.fake.sent) == 50

        offset["s"] = 20 * 60
        result = send.send_campaign(conn, CAMPAIGN, client=once, cfg=_cfg(), now=left_at + dt.timedelta(minutes=20))
        accepted = server.fake.accepted_addresses()
        assert len(accepted) == len(set(accepted)) == rendered  # every e-mail accepted exactly once
        assert result["by_status"] == {"sent": rendered}
        assert result["resolved"]["found_sent"] == 50 and result["resolved"]["repeated_under_key"] == 0


def test_inside_the_window_the_same_key_is_repeated_and_refused_as_used(conn):
    rendered = _approved_live_campaign(conn, 60)
    with FakeBrevoServer(FakeBrevo(idempotency_lifetime_s=15 * 60)) as server:
        once = _client(server, max_attempts=1)
        server.fake.inject(Fault("drop_after_accept"))
        with pytest.raises(brevo.BrevoUnavailable):
            send.send_campaign(conn, CAMPAIGN, client=once, cfg=_cfg())
        result = send.send_campaign(conn, CAMPAIGN, client=once, cfg=_cfg(),
                                    now=_db_now(conn) + dt.timedelta(minutes=8))
        assert result["resolved"]["repeated_under_key"] == 50
        assert len(server.fake.sent) == len(set(server.fake.accepted_addresses())) == rendered
        assert not [r for r in server.fake.requests if r[1] == "/smtp/emails"]  # no look-up needed


def test_an_unknown_batch_of_1000_is_resolved_with_a_few_lookups_not_one_per_email(conn):
    """Brevo takes a messageVersions call whole or not at all: a few recipients tell the batch's
    fate. One look-up per e-mail would cost 1,000 requests on an endpoint limited to ~100 an hour."""
    rendered = _approved_live_campaign(conn, 1500)
    with FakeBrevoServer() as server:
        client = _client(server)
        accepted_batch = send._claim(conn, CAMPAIGN, 1000, 135, live=True)
        lost_batch = send._claim(conn, CAMPAIGN, 400, 135, live=True)
        client.send_transactional(send.build_message(accepted_batch, CAMPAIGN, accepted_batch[0]["batch_key"],
                                                     _cfg(1000)))
        # ... both answers lost (the second call never reached Brevo); found two hours later
        conn.execute("UPDATE crm.email_sends SET sending_at = now() - interval '2 hours' WHERE campaign_id = %s "
                     "AND status = 'sending'", (CAMPAIGN,))
        conn.commit()
        before = len(server.fake.requests)
        result = send.send_campaign(conn, CAMPAIGN, client=client, cfg=_cfg(1000))
        lookups = [r for r in server.fake.requests[before:] if r[1] == "/smtp/emails"]
        assert len(lookups) <= 6 and all(status == 200 for _, _, status in lookups)
        assert result["resolved"]["found_sent"] == 1000 and result["resolved"]["not_found_resent_later"] == 400
        accepted = server.fake.accepted_addresses()
        assert len(accepted) == len(set(accepted)) == rendered
        # no row holds an id that is not its own
        ids = {s["to"]: s["messageId"] for s in server.fake.sent}
        assert all(mid is None or ids[email] == mid for email, mid in conn.execute(
            "SELECT email, brevo_message_id FROM crm.email_sends WHERE campaign_id = %s", (CAMPAIGN,)))


def test_a_batch_left_sending_four_weeks_is_looked_up_within_one_month(conn):
    rendered = _approved_live_campaign(conn, 80)
    weeks_ago = 30 * 86400
    fake = FakeBrevo(clock=lambda: time.time() - weeks_ago)
    with FakeBrevoServer(fake) as server:
        client = _client(server)
        batch = send._claim(conn, CAMPAIGN, 50, 135, live=True)
        client.send_transactional(send.build_message(batch, CAMPAIGN, batch[0]["batch_key"], _cfg()))
        conn.execute("UPDATE crm.email_sends SET sending_at = now() - interval '30 days' WHERE campaign_id = %s "
                     "AND status = 'sending'", (CAMPAIGN,))
        conn.commit()
        server.fake.clock = time.time
        result = send.send_campaign(conn, CAMPAIGN, client=client, cfg=_cfg())
        assert result["resolved"]["found_sent"] == 50
        accepted = server.fake.accepted_addresses()
        assert len(accepted) == len(set(accepted)) == rendered


@pytest.mark.parametrize("fault", ["ids_short", "ids_empty"])
def test_message_ids_that_do_not_match_the_versions_are_recorded_never_attached(conn, fault, caplog):
    rendered = _approved_live_campaign(conn, 50)
    with FakeBrevoServer() as server:
        server.fake.inject(Fault(fault))
        result = send.send_campaign(conn, CAMPAIGN, client=_client(server), cfg=_cfg())
    assert result["by_status"] == {"sent": rendered}  # the call was accepted: the e-mails left
    rows = conn.execute("SELECT brevo_message_id, error FROM crm.email_sends WHERE campaign_id = %s",
                        (CAMPAIGN,)).fetchall()
    assert {mid for mid, _ in rows} == {None}  # never '' and never an id that may be another e-mail's
    assert all("message id" in error for _, error in rows)
    assert "message id" in caplog.text


def test_a_live_week_with_nothing_left_to_send_needs_no_approval(conn):
    """Everyone was left out (here: all unsubscribed since the scores): the campaign is rendered
    live with nothing to send. That is a normal week, not a failure: nothing to approve."""
    seed_warehouse(conn, 30)
    conn.execute("INSERT INTO crm.suppressions (email, reason, source) SELECT lower(email), 'unsubscribed', 'test' "
                 "FROM etl.clients")
    conn.commit()
    summary = render.render_campaign(conn, "run_x", AS_OF, mode="live", cfg=_cfg())
    assert "rendered" not in summary["by_status"]
    with FakeBrevoServer() as server:
        result = send.send_campaign(conn, CAMPAIGN, client=_client(server), cfg=_cfg())
        assert server.fake.requests == []
    assert result["batches"] == 0 and result["by_status"] == {"skipped": 30}
    assert conn.execute("SELECT status FROM crm.campaigns WHERE campaign_id = %s", (CAMPAIGN,)).fetchone()[0] == "done"
