"""Task bodies: work files on an object store go through Airflow's ObjectStoragePath."""

from __future__ import annotations

import pytest
from airflow.sdk import ObjectStoragePath

from tests.conftest import MONDAY_RUN, sales_line, template_for, write_export
from winecrm import pipeline
from winecrm.airflow import tasks
from winecrm.core import storage


def test_a_whole_run_through_a_storage_url(conn, crm_dirs, monkeypatch, tmp_path):
    store = tmp_path / "store"
    monkeypatch.setenv("CRM_WORK_URL", store.as_uri())  # any URL with a scheme goes through ObjectStoragePath
    tasks.use_airflow_storage()
    try:
        assert isinstance(storage.run_work_dir("run_1"), ObjectStoragePath)
        write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                     [sales_line(doc_no=f"F{i}") for i in range(30)] + [sales_line(doc_no="X", qty="z")])
        summary = pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
        assert summary["rows_written"] == 30 and summary["rows_quarantined"] == 1
        parts = [p.name for p in storage.run_work_dir("run_1").rglob("*.parquet")]
        assert "part-00000.parquet" in parts and "good-00000.parquet" in parts
        assert list(store.rglob("good-00000.parquet"))
    finally:
        storage.use_root_factory(None)
    monkeypatch.setenv("CRM_WORK_URL", str(crm_dirs["work"]))
    tasks.use_airflow_storage()
    assert not isinstance(storage.run_work_dir("run_1"), ObjectStoragePath)


def _live_week(run_id: str, customers: int):
    """The build of a small estate up to its recommendations, for a live week (prepared once)."""
    def build(conn, dirs):
        import datetime as dt

        from winecrm.core.run_params import RunParams
        from winecrm_tools.samples import sampledata

        sampledata.write_sample_exports(dirs["raw"], n_customers=customers, years=1.0)
        window = pipeline.week_window(run_id, MONDAY_RUN, RunParams(dry_run=False), today=dt.date(2026, 11, 17))
        pipeline.prepare(conn, window)
        for stage in pipeline.stages_until(pipeline.run_recommend):
            stage(conn, window.run_id)
        return window
    return ("sample", customers, 1.0, f"{run_id} live, until recommend"), build


LIVE_150 = _live_week("run_live", 150)
LIVE_80 = _live_week("run_small", 80)


warehouse_template = template_for(live_150=LIVE_150, live_80=LIVE_80)


@pytest.fixture
def live_150(conn, crm_dirs, prepared, monkeypatch):
    """150 customers up to their recommendations, for a live week: the test's own warehouse and folders."""
    state = prepared(*LIVE_150)
    state.restore(crm_dirs, monkeypatch)
    return state.value


@pytest.fixture
def live_80(conn, crm_dirs, prepared, monkeypatch):
    """80 customers up to their recommendations, for a live week: the test's own warehouse and folders."""
    state = prepared(*LIVE_80)
    state.restore(crm_dirs, monkeypatch)
    return state.value


def _live_campaign_rendered(conn, monkeypatch, window):
    """The week's campaign of a small estate (up to its recommendations) rendered live."""
    monkeypatch.setattr(pipeline.stages, "campaign_mode", lambda *a, **k: ("live", "live (test)"))
    return window, pipeline.run_render(conn, window.run_id, brevo_configured=True)


def test_the_approval_request_says_what_would_leave_and_the_decision_is_recorded(conn, live_150, monkeypatch):
    """What the marketing person reads in the approval form, and the answer kept in crm.campaigns;
    the send task then sends the approved campaign through Brevo (here the fake one)."""
    from tests.fakes.brevo import FakeBrevoServer

    window, rendered = _live_campaign_rendered(conn, monkeypatch, live_150)
    assert rendered["mode"] == "live" and rendered["campaign_id"] == "hebdo-2026-11-15"
    subject, body = tasks.campaign_review(window.run_id)
    to_send = rendered["by_status"]["rendered"]
    assert subject == f"Envoyer {to_send} e-mails de la campagne hebdo-2026-11-15\u202f?".replace(
        str(to_send), f"{to_send:,}".replace(",", "\u202f"))
    assert "| Découverte (cross-sell) |" in body and "Groupe témoin" in body and "Reject" in body
    assert "(/winecrm/previews/hebdo-2026-11-15/cross_sell)" in body  # a rendered e-mail per scenario
    preview = open(rendered["previews"]["cross_sell"], encoding="utf-8").read()
    assert preview.startswith("<!DOCTYPE html>") and "Se désinscrire" in preview
    with FakeBrevoServer() as server:
        monkeypatch.setenv("BREVO_API_KEY", server.fake.api_key)
        monkeypatch.setenv("BREVO_API_URL", server.url)
        with pytest.raises(Exception, match="must approve"):  # not yet approved: nothing leaves
            tasks.send_emails(window.run_id)
        assert server.fake.sent == []
        tasks.record_decision(window.run_id, True, {"id": "marie", "name": "Marie (marketing)"})
        status, who = conn.execute("SELECT status, decided_by FROM crm.campaigns WHERE campaign_id = "
                                   "'hebdo-2026-11-15'").fetchone()
        assert status == "approved" and who == "Marie (marketing)"  # the name, not the user's dict as text
        tasks.send_emails(window.run_id)
        assert len(server.fake.sent) == to_send == len(set(server.fake.accepted_addresses()))
        # a decision once taken stands: a late « reject » of a campaign already sent changes nothing
        tasks.record_decision(window.run_id, False, "someone else")
        assert conn.execute("SELECT status FROM crm.campaigns WHERE campaign_id = 'hebdo-2026-11-15'"
                            ).fetchone()[0] == "done"


def test_the_approval_request_reads_as_french_for_the_marketing_person(conn, live_150, monkeypatch):
    """The scenarios by their French names (never their keys), the subject lines their e-mails
    carry, FRENCH-COPY.md spacing and agreement, and nothing to type: the marketing person is not
    the one who runs commands."""
    import re

    from winecrm.campaigns.report import SCENARIOS_FR

    window, rendered = _live_campaign_rendered(conn, monkeypatch, live_150)
    subject, body = tasks.campaign_review(window.run_id)
    scenarios = sorted(s for s, c in rendered["by_scenario"].items() if c.get("rendered"))
    assert len(scenarios) >= 2
    readable = re.sub(r"\]\([^)]*\)", "]", body)  # link targets aside (the preview URLs keep the keys)
    for scenario in scenarios:
        assert SCENARIOS_FR[scenario] in readable and scenario not in readable
        assert f"[{SCENARIOS_FR[scenario]}](/winecrm/previews/{rendered['campaign_id']}/{scenario})" in body
    # every subject line that leaves is shown, a customer's first name standing as [prénom]
    rows = conn.execute("""SELECT e.subject, nullif(btrim(c.prenom), '') FROM crm.email_sends e
                           JOIN etl.clients c USING (client_code) WHERE e.status = 'rendered'""").fetchall()
    forms = {s.replace(prenom, "[prénom]") if prenom else s for s, prenom in rows}
    assert 2 <= len(forms) <= 3 * len(scenarios)
    for form in forms:
        assert f"«\u00a0{form}\u00a0»" in body, form
    # nothing to type, no command line
    assert "python" not in body and "`" not in body and "--to" not in body
    assert "ingénieur des données" in body
    # French spacing outside the quoted subjects (the customers' e-mails are what they are)
    prose = re.sub(r"«\u00a0.*?\u00a0»", "«»", f"{subject}\n{body}")
    assert not re.search(r"\w [:;!?%]", prose), prose
    assert subject.endswith("\u202f?") and subject.startswith("Envoyer ")


def test_the_approval_request_counts_in_french():
    """Thousands grouped with a narrow no-break space; 0 and 1 singular, as the report does."""
    summary = {"campaign_id": "hebdo-2026-11-15",
               "by_scenario": {"winback": {"rendered": 1, "skipped": 0}, "cross_sell": {"rendered": 12345, "skipped": 2}},
               "skipped": {"control_group": 1, "silence_window": 1203}}
    subjects = {"winback": [{"subject": "[prénom], vous nous manquez", "emails": 1}],
                "cross_sell": [{"subject": "[prénom], une découverte choisie pour vous", "emails": 12000},
                               {"subject": "Une découverte choisie pour vous", "emails": 345}]}
    subject, body = tasks.review_text(summary, subjects, ["cross_sell", "winback"], "/winecrm")
    assert subject == "Envoyer 12\u202f346 e-mails de la campagne hebdo-2026-11-15\u202f?"
    assert "| Découverte (cross-sell) | 12\u202f345 | 2 |" in body and "| Reconquête | 1 | 0 |" in body
    assert "(1 e-mail)" in body and "(12\u202f000 e-mails)" in body and "(345 e-mails)" in body
    assert "Groupe témoin (jamais écrit)\u00a0: 1 client." in body
    assert "contacté récemment (1\u202f203)" in body
    one, _ = tasks.review_text({"campaign_id": "x", "by_scenario": {"rebuy": {"rendered": 1}}, "skipped": {}},
                               {}, [], "/winecrm")
    assert one == "Envoyer 1 e-mail de la campagne x\u202f?"


def test_a_rejected_campaign_sends_nothing_and_says_who_rejected_it(conn, live_80, monkeypatch):
    from tests.fakes.brevo import FakeBrevoServer

    window, _ = _live_campaign_rendered(conn, monkeypatch, live_80)
    tasks.record_decision(window.run_id, False, {"id": "marie"})
    status, who = conn.execute("SELECT status, decided_by FROM crm.campaigns").fetchone()
    assert status == "rejected" and who == "marie"  # no name given: the id
    with FakeBrevoServer() as server:
        monkeypatch.setenv("BREVO_API_KEY", server.fake.api_key)
        monkeypatch.setenv("BREVO_API_URL", server.url)
        with pytest.raises(Exception, match="rejected"):
            tasks.send_emails(window.run_id)  # even if it ran: a rejected campaign never leaves
        assert server.fake.requests == []


def test_a_live_week_with_nothing_to_send_goes_straight_to_send_and_ends_green(conn, live_80, monkeypatch):
    """Everyone left out (all unsubscribed before the render): render_emails says so, the branch
    skips the approval, and send_emails closes the campaign instead of paging on-call."""
    from tests.fakes.brevo import FakeBrevoServer

    window = live_80  # 80 customers up to their recommendations, for a live week
    conn.execute("INSERT INTO crm.suppressions (email, reason, source) SELECT DISTINCT lower(btrim(email)), "
                 "'unsubscribed', 'test' FROM etl.clients WHERE email IS NOT NULL ON CONFLICT DO NOTHING")
    conn.commit()
    monkeypatch.setattr(pipeline.stages, "campaign_mode", lambda *a, **k: ("live", "live (test)"))
    with FakeBrevoServer() as server:
        monkeypatch.setenv("BREVO_API_KEY", server.fake.api_key)
        monkeypatch.setenv("BREVO_API_URL", server.url)
        mode = tasks.render_emails(window.run_id, "manual")
        assert mode == "live_nothing_to_send"
        tasks.send_emails(window.run_id)  # where the branch sends it: no approval asked for nothing
        assert server.fake.requests == []
        assert tasks.campaign_path(mode) == "send_emails"
    status = conn.execute("SELECT status FROM crm.campaigns WHERE campaign_id = 'hebdo-2026-11-15'").fetchone()[0]
    assert status == "done"
    assert tasks.campaign_path("live") == "approve_campaign" and tasks.campaign_path("dry_run") == "send_emails"


def test_crm_events_fails_once_when_an_event_is_parked_and_is_green_again_after(conn, crm_dirs, monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from tests.fakes.estate import seed_warehouse
    from winecrm.events import intake

    seed_warehouse(conn, 2)
    good = intake.rows(intake.parse_behavior({"client_code": "C000001", "action": "page_visit", "event_id": "v1"}))
    bad = list(intake.rows(intake.parse_behavior(
        {"client_code": "C000000", "action": "purchase", "event_id": "o1", "metadata": {"amount": 1}}))[0])
    bad[8] = bad[8].replace('"amount":1', '"amount":1e30')  # overflows numeric(12, 2): an event that cannot go through
    conn.execute(intake.INSERT_SQL, intake.insert_params([*good, tuple(bad)]))
    conn.commit()
    rules = tmp_path / "rules.yaml"
    rules.write_text("settings: {max_attempts: 1}\nrules:\n  - {id: visit, trigger: page_visit, actions: "
                     "[{type: add_tag, tag: visitor}]}\n", encoding="utf-8")
    monkeypatch.setenv("CRM_AUTOMATION_RULES", str(rules))
    with pytest.raises(AirflowFailException, match=r"(?s)1 event\(s\) parked .* Everything else was processed"):
        tasks.process_events()
    assert conn.execute("SELECT status, count(*) FROM crm.webhook_events GROUP BY 1 ORDER BY 1").fetchall() == [
        ("done", 1), ("parked", 1)]
    assert tasks.process_events()["queue"] == {"done": 1, "parked": 1}  # the next run: green, nothing new
