"""A week's campaign from the warehouse to the customers: rendered once into the ledger, then
written to the outbox (dry-run) or sent through a local fake Brevo over real HTTP (live) —
every e-mail exactly once, never to a suppressed, opted-out or invalid address, whatever the
retries, lost answers and reruns."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
from winecrm import pipeline
from winecrm.campaigns import brevo, render, send
from winecrm.core import settings

from tests.conftest import MONDAY_RUN, SCORED_SAMPLE_ESTATE, template_for
from tests.fakes.brevo import Fault, FakeBrevoServer

AS_OF = dt.date(2026, 11, 15)
CAMPAIGN = "hebdo-2026-11-15"
DRY = "hebdo-2026-11-15-dry-run"  # rehearsals apart: they never stand in the way of the live send


warehouse_template = template_for(estate=SCORED_SAMPLE_ESTATE)


@pytest.fixture
def estate(conn, crm_dirs, prepared, monkeypatch):
    """A 300-customer sample estate scored and recommended for the week (the test's own clone)."""
    prepared(*SCORED_SAMPLE_ESTATE).restore(crm_dirs, monkeypatch)
    return conn


def _cfg(batch_size: int = 40) -> settings.CampaignsConfig:
    cfg = settings.campaigns_config()
    return cfg.model_copy(update={"sending": cfg.sending.model_copy(update={"batch_size": batch_size})})


def _statuses(conn, campaign: str = CAMPAIGN) -> dict:
    return dict(conn.execute("SELECT status, count(*) FROM crm.email_sends WHERE campaign_id = %s GROUP BY 1",
                             (campaign,)))


def test_dry_run_writes_each_rendered_email_once_and_skips_who_must_not_get_one(estate, tmp_path):
    summary = render.render_campaign(estate, "run_1", AS_OF, mode="dry_run", cfg=_cfg())
    recommended, control = estate.execute(
        "SELECT count(DISTINCT client_code), count(DISTINCT client_code) FILTER (WHERE is_control) "
        "FROM crm.recommendations WHERE as_of_date = %s", (AS_OF,)).fetchone()
    assert sum(summary["by_status"].values()) == recommended  # one ledger row per recommended customer
    assert summary["skipped"].get("control_group") == control and control > 0
    rendered = summary["by_status"]["rendered"]
    # the ledger (and so the send) takes each scenario's likeliest buyers first
    places: dict[str, list[int]] = {}
    for scenario, place in estate.execute(
            """SELECT e.scenario, r.scenario_rank FROM crm.email_sends e
               JOIN crm.recommendations r ON r.client_code = e.client_code AND r.as_of_date = %s AND r.rank = 1
               WHERE e.campaign_id = %s ORDER BY e.send_id""", (AS_OF, DRY)):
        places.setdefault(scenario, []).append(place)
    assert places and all(p == sorted(p) for p in places.values()), places
    result = send.send_campaign(estate, DRY, outbox=tmp_path, cfg=_cfg())
    assert result["by_status"]["simulated"] == rendered and not result["live"]
    files = sorted((tmp_path / DRY).glob("*.eml"))
    assert len(files) == rendered
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    token = message["List-Unsubscribe"].split("/desinscription/")[1].split(">")[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert token in message.get_body(("html",)).get_content() and token in message.get_body(("plain",)).get_content()
    # never a control-group customer, never an address that may not be written to
    emailed = {r for (r,) in estate.execute("SELECT client_code FROM crm.email_sends WHERE campaign_id = %s "
                                            "AND status = 'simulated'", (DRY,))}
    blocked = {r for (r,) in estate.execute(
        """SELECT r.client_code FROM crm.recommendations r JOIN etl.clients c USING (client_code)
           WHERE r.as_of_date = %s AND (r.is_control OR c.opt_out IS TRUE OR c.email_valid IS NOT TRUE)""",
        (AS_OF,))}
    assert emailed and not emailed & blocked
    # rerun of the week: nothing rendered again, nothing written again
    again = render.render_campaign(estate, "run_1", AS_OF, mode="dry_run", cfg=_cfg())
    assert again["rendered_now"] == 0
    assert send.send_campaign(estate, DRY, outbox=tmp_path, cfg=_cfg())["batches"] == 0
    assert _statuses(estate, DRY)["simulated"] == rendered


def test_an_unsubscribe_between_render_and_send_is_honoured(estate, tmp_path):
    render.render_campaign(estate, "run_1", AS_OF, mode="dry_run", cfg=_cfg())
    client_code, address = estate.execute("SELECT client_code, email FROM crm.email_sends WHERE campaign_id = %s "
                                          "AND status = 'rendered' ORDER BY send_id LIMIT 1", (DRY,)).fetchone()
    estate.execute("INSERT INTO crm.suppressions (email, reason, source) VALUES (%s, 'unsubscribed', 'test')",
                   (address.upper(),))  # as a webhook might write it (stored lower-cased by the receiver)
    estate.execute("UPDATE crm.suppressions SET email = lower(email)")
    estate.commit()
    send.send_campaign(estate, DRY, outbox=tmp_path, cfg=_cfg())
    status, reason, html = estate.execute("SELECT status, skip_reason, html FROM crm.email_sends "
                                          "WHERE campaign_id = %s AND client_code = %s", (DRY, client_code)).fetchone()
    assert (status, reason, html) == ("skipped", "suppressed", None)
    assert not list((tmp_path / DRY).glob(f"*-{client_code}.eml"))


def _live(estate, server, batch_size=40):
    render.render_campaign(estate, "run_1", AS_OF, mode="live", cfg=_cfg(batch_size))
    estate.execute("UPDATE crm.campaigns SET status = 'approved', decided_by = 'test' WHERE campaign_id = %s",
                   (CAMPAIGN,))
    estate.commit()
    return brevo.BrevoClient(brevo.BrevoCredentials(server.fake.api_key, server.url), timeout=2, sleep=lambda s: None)


def test_live_sends_every_email_once_in_batches_and_a_rerun_sends_nothing(estate):
    with FakeBrevoServer() as server:
        client = _live(estate, server)
        rendered = _statuses(estate)["rendered"]
        result = send.send_campaign(estate, CAMPAIGN, client=client, cfg=_cfg())
        assert result["by_status"]["sent"] == rendered
        assert result["batches"] == -(-rendered // 40) == len(server.fake.requests)
        accepted = server.fake.accepted_addresses()
        assert len(accepted) == len(set(accepted)) == rendered
        ids = {r for (r,) in estate.execute("SELECT brevo_message_id FROM crm.email_sends WHERE campaign_id = %s "
                                            "AND status = 'sent'", (CAMPAIGN,))}
        assert ids == {s["messageId"] for s in server.fake.sent}  # every webhook event maps back to its row
        assert {tuple(s["tags"][:1]) for s in server.fake.sent} and all(CAMPAIGN in s["tags"] for s in server.fake.sent)
        render.render_campaign(estate, "run_1", AS_OF, mode="live", cfg=_cfg())
        send.send_campaign(estate, CAMPAIGN, client=client, cfg=_cfg())
        assert len(server.fake.sent) == rendered and len(server.fake.requests) == result["batches"]


def test_a_live_campaign_waits_for_a_person(estate):
    with FakeBrevoServer() as server:
        render.render_campaign(estate, "run_1", AS_OF, mode="live", cfg=_cfg())
        client = brevo.BrevoClient(brevo.BrevoCredentials(server.fake.api_key, server.url), sleep=lambda s: None)
        with pytest.raises(send.CampaignNotApproved, match="must approve"):
            send.send_campaign(estate, CAMPAIGN, client=client, cfg=_cfg())
        assert server.fake.requests == []


def test_lost_answers_are_resolved_never_resent(estate):
    """An answer lost after Brevo accepted (the client repeats the call under its key: refused as
    already used), and a task killed with a batch in flight, resolved inside the window (same
    key) and after it (looked up in Brevo's log)."""
    with FakeBrevoServer() as server:
        client = _live(estate, server)
        rendered = _statuses(estate)["rendered"]
        server.fake.inject(Fault("drop_after_accept"))
        send.send_campaign(estate, CAMPAIGN, client=client, cfg=_cfg())
        accepted = server.fake.accepted_addresses()
        assert len(accepted) == len(set(accepted)) == rendered
        notes = estate.execute("SELECT count(*) FROM crm.email_sends WHERE campaign_id = %s AND error LIKE "
                               "'accepted by an earlier try%%'", (CAMPAIGN,)).fetchone()[0]
        assert notes == 40  # the first batch

        # a task killed after two batches left: one accepted by Brevo, one that never arrived
        estate.execute("UPDATE crm.email_sends SET status = 'rendered', sent_at = NULL, brevo_message_id = NULL "
                       "WHERE campaign_id = %s AND status = 'sent'", (CAMPAIGN,))
        estate.execute("UPDATE crm.campaigns SET status = 'approved' WHERE campaign_id = %s", (CAMPAIGN,))
        estate.commit()
        server.fake.sent.clear()
        server.fake.keys.clear()
        first = send._claim(estate, CAMPAIGN, 40, 135, live=True)
        second = send._claim(estate, CAMPAIGN, 40, 135, live=True)
        client.send_transactional(send.build_message(first, CAMPAIGN, first[0]["batch_key"], _cfg()))
        # ... and the answer was lost: rows stay 'sending'. Inside the window: same key again.
        send.send_campaign(estate, CAMPAIGN, client=client, cfg=_cfg())
        accepted = server.fake.accepted_addresses()
        assert len(accepted) == len(set(accepted)) == rendered
        assert {r["email"] for r in second} <= set(accepted)

        # after the window: looked up; found ones are marked sent, the others sent once
        estate.execute("UPDATE crm.email_sends SET status = 'rendered' WHERE campaign_id = %s AND status = 'sent'",
                       (CAMPAIGN,))
        estate.execute("UPDATE crm.campaigns SET status = 'approved' WHERE campaign_id = %s", (CAMPAIGN,))
        estate.commit()
        server.fake.sent.clear()
        server.fake.keys.clear()
        first = send._claim(estate, CAMPAIGN, 40, 135, live=True)
        send._claim(estate, CAMPAIGN, 40, 135, live=True)
        client.send_transactional(send.build_message(first, CAMPAIGN, first[0]["batch_key"], _cfg()))
        estate.execute("UPDATE crm.email_sends SET sending_at = now() - interval '2 hours' "
                       "WHERE campaign_id = %s AND status = 'sending'", (CAMPAIGN,))
        estate.commit()
        result = send.send_campaign(estate, CAMPAIGN, client=client, cfg=_cfg())
        assert result["resolved"] == {"repeated_under_key": 0, "found_sent": 40, "not_found_resent_later": 40}
        accepted = server.fake.accepted_addresses()
        assert len(accepted) == len(set(accepted)) == rendered


def test_a_refused_key_puts_the_batch_back_and_says_what_to_fix(estate):
    with FakeBrevoServer() as server:
        _live(estate, server)
        wrong = brevo.BrevoClient(brevo.BrevoCredentials("xkeysib-NOPE", server.url), sleep=lambda s: None)
        with pytest.raises(brevo.BrevoAuthError, match="brevo_default"):
            send.send_campaign(estate, CAMPAIGN, client=wrong, cfg=_cfg())
        statuses = _statuses(estate)
        assert "sending" not in statuses and "sent" not in statuses and server.fake.sent == []
        assert estate.execute("SELECT count(*) FROM crm.email_sends WHERE campaign_id = %s AND error LIKE "
                              "'%%401%%'", (CAMPAIGN,)).fetchone()[0] == 40


def test_the_campaign_is_live_only_when_asked_configured_and_for_the_latest_week(conn, crm_dirs):
    from winecrm.core.run_params import RunParams

    window = pipeline.week_window("run_live", MONDAY_RUN, RunParams(dry_run=False), today=dt.date(2026, 11, 17))
    pipeline.prepare(conn, window)
    dry = pipeline.week_window("run_dry", MONDAY_RUN, RunParams(), today=dt.date(2026, 11, 17))
    pipeline.prepare(conn, dry)
    monday_after = dt.date(2026, 11, 17)
    assert pipeline.campaign_mode(conn, "run_dry", brevo_configured=True, today=monday_after)[0] == "dry_run"
    with pytest.raises(pipeline.LiveWithoutBrevo, match="brevo_default"):  # asked to send: refused, not a dry run
        pipeline.campaign_mode(conn, "run_live", brevo_configured=False, today=monday_after)
    mode, why = pipeline.campaign_mode(conn, "run_live", brevo_configured=True, today=dt.date(2026, 11, 30))
    assert mode == "dry_run" and "past week" in why  # a backfill never sends
    assert pipeline.campaign_mode(conn, "run_live", brevo_configured=True, today=monday_after)[0] == "live"


def test_send_test_and_contact_sync_commands(estate, tmp_path, monkeypatch):
    """The data engineer's commands, through the same code: one e-mail of each scenario to an
    internal address, and the customers who may be written to imported as Brevo contacts."""
    from winecrm.campaigns import __main__ as cli

    render.render_campaign(estate, "run_1", AS_OF, mode="dry_run", cfg=_cfg())
    monkeypatch.setenv("CRM_OUTBOX_DIR", str(tmp_path / "outbox"))
    report = cli.send_test(estate, "equipe@domaine-exemple.fr", every_email=False, client=None)
    assert report["by_status"] == {"simulated": 3} and not report["live"]  # no key: the outbox
    with FakeBrevoServer() as server:
        monkeypatch.setenv("BREVO_API_KEY", server.fake.api_key)
        monkeypatch.setenv("BREVO_API_URL", server.url)
        report = cli.send_test(estate, "equipe@domaine-exemple.fr", every_email=False, client=cli._client())
        assert report["by_status"] == {"sent": 3} and len(server.fake.requests) == 1
        assert server.fake.accepted_addresses() == ["equipe@domaine-exemple.fr"] * 3
        assert all(s["subject"].startswith("[TEST] ") for s in server.fake.sent)
        # a test send never counts as having written to the customers (silence window)
        assert estate.execute("SELECT count(*) FROM crm.recommendations r WHERE as_of_date = %s "
                              "AND crm.email_blocked_reason(r.client_code, 'x@example.fr', 135, NULL) = "
                              "'silence_window'", (AS_OF,)).fetchone()[0] == 0

        synced = cli.sync_contacts(estate, cli._client())
        imported = [c for body in server.fake.imports for c in body["jsonBody"]]
        assert synced["contacts"] == len(imported) > 100
        blocked = {e for (e,) in estate.execute("SELECT lower(email) FROM etl.clients WHERE opt_out IS TRUE "
                                                 "OR email_valid IS NOT TRUE")}
        assert blocked and not blocked & {c["email"] for c in imported}
        assert {"PRENOM", "SEGMENT", "LEAD_SCORE", "LAST_ORDER_DATE"} <= set(imported[0]["attributes"])


def test_the_api_key_never_appears_in_logs_outbox_ledger_or_errors(estate, tmp_path, caplog):
    import logging

    secret = "xkeysib-0123456789abcdef-SECRET"
    caplog.set_level(logging.DEBUG)
    with FakeBrevoServer() as server:
        server.fake.api_key = secret
        client = _live(estate, server)
        client = brevo.BrevoClient(brevo.BrevoCredentials(secret, server.url), timeout=2, sleep=lambda s: None)
        server.fake.inject(Fault("429", reset=0.01), Fault("500"), Fault("drop_after_accept"))
        send.send_campaign(estate, CAMPAIGN, client=client, cfg=_cfg())
        wrong = brevo.BrevoClient(brevo.BrevoCredentials(secret + "-revoked", server.url), sleep=lambda s: None)
        with pytest.raises(brevo.BrevoAuthError) as refused:
            wrong.send_transactional(send.build_message(
                [{"email": "a@example.fr", "scenario": "rebuy", "subject": "S", "html": "<p>x</p>", "text_body": "x"}],
                CAMPAIGN, "k", _cfg()))
    render.render_campaign(estate, "run_1", AS_OF, mode="dry_run", cfg=_cfg())
    send.send_campaign(estate, DRY, outbox=tmp_path, cfg=_cfg())
    places = [caplog.text, str(refused.value), repr(refused.value), repr(client), repr(client.session.headers)]
    places += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    places += [str(row) for row in estate.execute("SELECT * FROM crm.email_sends")]
    places += [str(row) for row in estate.execute("SELECT * FROM crm.campaigns")]
    assert not [p for p in places if "SECRET" in p]


def test_test_emails_carry_only_the_test_token_and_the_commands_take_the_writer_lock(estate, warehouse_url, tmp_path,
                                                                                     monkeypatch):
    """A test e-mail is a copy of a customer's: its unsubscribe link must be the test row's own
    token (clicking it in a test must never unsubscribe the customer). And the commands write
    the warehouse like the DAG's stages: one writer at a time."""
    import psycopg
    from winecrm.campaigns import __main__ as cli
    from winecrm.core import db

    from tests.conftest import use_config

    render.render_campaign(estate, "run_1", AS_OF, mode="dry_run", cfg=_cfg())
    monkeypatch.setenv("CRM_OUTBOX_DIR", str(tmp_path / "outbox"))
    report = cli.send_test(estate, "equipe@domaine-exemple.fr", every_email=True, client=None, source=DRY)
    test_campaign = report["campaign_id"]
    rows = estate.execute("SELECT unsubscribe_token, html, text_body FROM crm.email_sends WHERE campaign_id = %s",
                          (test_campaign,)).fetchall()
    assert len(rows) == _statuses(estate, DRY)["rendered"] > 100
    for token, html, text in rows:
        customer_token = token.rsplit("-test-", 1)[0]
        assert token != customer_token and token in html and token in text
        assert customer_token not in html.replace(token, "") and customer_token not in text.replace(token, "")
    for eml in (tmp_path / "outbox" / test_campaign).glob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        token = message["List-Unsubscribe"].split("/desinscription/")[1].split(">")[0]
        assert "-test-" in token
        assert token.rsplit("-test-", 1)[0] not in message.get_body(("html",)).get_content().replace(token, "")

    use_config(tmp_path, monkeypatch, warehouse={"writer_wait_minutes": 0.01})
    campaigns_before = estate.execute("SELECT count(*) FROM crm.campaigns").fetchone()[0]
    estate.commit()
    with psycopg.connect(warehouse_url) as other, \
            db.warehouse_writer(other, "scheduled__x:load"):
        assert cli.main(["send-test", "--to", "equipe@domaine-exemple.fr"]) == 1
        assert cli.main(["send", "--campaign", DRY]) == 1
    assert estate.execute("SELECT count(*) FROM crm.campaigns").fetchone()[0] == campaigns_before
    estate.commit()
    assert cli.main(["send-test", "--to", "equipe@domaine-exemple.fr"]) == 0  # the lock is free again


def test_sync_contacts_creates_the_attributes_and_imports_into_a_list(estate, monkeypatch):
    """Brevo ignores attributes the account does not have, and an import needs a list: the sync
    creates what is missing (a handful of calls, none per contact) and imports into its list."""
    from winecrm.campaigns import __main__ as cli

    with FakeBrevoServer() as server:
        fake = server.fake
        fake.folders = {1: "Your first folder"}
        fake.lists = {i: {"name": f"Salon {i}", "folderId": 1} for i in range(2, 62)}  # two pages of 50
        client = brevo.BrevoClient(brevo.BrevoCredentials(fake.api_key, server.url), sleep=lambda s: None)
        first = cli.sync_contacts(estate, client)
        assert {k: fake.attributes.get(k) for k in cli.CONTACT_ATTRIBUTES} == {
            "PRENOM": "text", "NOM": "text", "SEGMENT": "text", "RFM_SCORE": "float", "LEAD_SCORE": "float",
            "LAST_ORDER_DATE": "date"}
        ours = [i for i, v in fake.lists.items() if v["name"] == settings.campaigns_config().contacts.list_name]
        assert len(ours) == 1 and first["list_id"] == ours[0]
        assert all(body["listIds"] == ours for body in fake.imports)
        kept = fake.contact_attributes[fake.imports[0]["jsonBody"][0]["email"]]
        assert {"SEGMENT", "LEAD_SCORE", "LAST_ORDER_DATE"} <= set(kept)  # Brevo kept them: they exist now
        calls_before = len(fake.requests)
        again = cli.sync_contacts(estate, client)
        calls = fake.requests[calls_before:]
        assert again["list_id"] == ours[0] and len(fake.lists) == 61  # found by name, not created twice
        # newest lists first: ours on the first page
        assert [c[:2] for c in calls if c[1] != "/contacts/import"] == [("GET", "/contacts/attributes"),
                                                                       ("GET", "/contacts/lists")]
        # a list named in campaigns.yaml: used as it is
        cfg = settings.campaigns_config()
        cfg = cfg.model_copy(update={"contacts": cfg.contacts.model_copy(update={"list_id": 7})})
        calls_before = len(fake.requests)
        cli.sync_contacts(estate, client, cfg=cfg)
        assert fake.imports[-1]["listIds"] == [7]
        assert not [c for c in fake.requests[calls_before:] if c[1] == "/contacts/lists"]
        assert fake.contract_mismatches == []
