"""The dry-run SMS outbox (``outbox/sms/<day>.jsonl``, one JSON line per SMS, many customers per
file) after an erasure: the person's lines are gone, everyone else's stay, a file that held only
them is removed — written by the real events processing, searched by phone number."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from winecrm.core import settings
from winecrm.events import intake, processing
from winecrm.events.rules import parse_rules
from winecrm.privacy import erase, files, identity
from winecrm.privacy import report as erasure_report

from tests.fakes.estate import seed_warehouse
from winecrm.core.weeks import estate_zone

PERSON, OTHER = "C000000", "C000001"
RULES = {"settings": {"sms": {"mode": "dry_run", "sender": "DomExemple"}}, "rules": [
    {"id": "sms_form", "trigger": "form_submit",
     "actions": [{"type": "send_sms", "text": "Merci ! Le domaine vous rappelle vite.", "sms_type": "transactional"}]}]}


def _form(client_code: str, event_id: str, ts: str) -> tuple:
    return intake.rows(intake.parse_behavior({"action": "form_submit", "client_code": client_code,
                                              "event_id": event_id, "metadata": {}, "ts": ts}))[0]


def _sms_lines(folder) -> dict[str, list[dict]]:
    return {p.name: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
            for p in sorted(folder.glob("*.jsonl"))}


@pytest.fixture
def outbox(conn, crm_dirs, monkeypatch):
    monkeypatch.setattr(erase, "_rebuild_data_docs", lambda: True)
    seed_warehouse(conn, 3)
    conn.execute("UPDATE etl.clients SET telephone = '06 12 34 56 78' WHERE client_code = %s", (PERSON,))
    conn.execute("UPDATE etl.clients SET telephone = '+33 6 98 76 54 32' WHERE client_code = %s", (OTHER,))
    conn.commit()
    rules = parse_rules(RULES)
    days = [dt.datetime(2026, 11, 23, 10, 0, tzinfo=estate_zone()), dt.datetime(2026, 11, 24, 10, 0, tzinfo=estate_zone())]
    for day, who in zip(days, ([PERSON, OTHER], [PERSON])):
        conn.execute(intake.INSERT_SQL, intake.insert_params(
            [_form(code, f"{code}-{day:%d}", day.isoformat()) for code in who]))
        conn.commit()
        processing.process_events(conn, rules=rules, now=day)
    folder = settings.paths().outbox_dir / "sms"
    lines = _sms_lines(folder)
    assert {n: sorted(x["recipient"] for x in v) for n, v in lines.items()} == {
        "2026-11-23.jsonl": ["33612345678", "33698765432"], "2026-11-24.jsonl": ["33612345678"]}
    return folder


def test_the_person_s_sms_lines_go_and_everyone_else_s_stay(conn, outbox, capsys):
    other_line = next(line for line in (outbox / "2026-11-23.jsonl").read_text(encoding="utf-8").splitlines()
                      if "33698765432" in line)
    report = erase.erase(conn, client_codes=[PERSON])
    assert (outbox / "2026-11-23.jsonl").read_text(encoding="utf-8") == other_line + "\n"
    assert not (outbox / "2026-11-24.jsonl").exists()      # it held only the person
    assert [p.name for p in outbox.iterdir()] == ["2026-11-23.jsonl"]  # no temporary file left behind
    assert report.person.phones  # read before the customer row was anonymised
    summary = erasure_report.format_summary(report)
    assert "sms/2026-11-23.jsonl: 1 line(s) about the person removed" in summary
    assert "sms/2026-11-24.jsonl: 1 line(s) about the person removed (the file removed: it held only them)" in summary
    assert "3361234" not in summary


def test_a_dry_run_says_which_sms_lines_would_go_and_leaves_the_files(conn, outbox):
    before = {p.name: p.read_bytes() for p in outbox.iterdir()}
    report = erase.erase(conn, client_codes=[PERSON], dry_run=True)
    assert sorted(p.name for p in report.sms_lines) == ["2026-11-23.jsonl", "2026-11-24.jsonl"]
    assert "would be removed" in erasure_report.format_summary(report)
    assert {p.name: p.read_bytes() for p in outbox.iterdir()} == before


def test_a_number_written_differently_still_finds_the_line(tmp_path):
    """The outbox writes E.164 without the plus; the warehouse keeps what the ERP typed."""
    folder = tmp_path / "sms"
    folder.mkdir()
    (folder / "d.jsonl").write_text(
        json.dumps({"action_id": 7, "recipient": "33612345678", "content": "x"}) + "\n"
        + json.dumps({"action_id": 8, "recipient": "33698765432", "content": "y"}) + "\n", encoding="utf-8")
    person = identity.Person([], [], client_codes=["C1"], phones=identity.phone_forms("06.12.34.56.78"))
    assert {p.name: n for p, (n, _) in files.sms_outbox_rewrites(person, set(), folder).items()} == {"d.jsonl": 1}
    by_action = identity.Person([], [], client_codes=["C1"])
    assert {p.name: n for p, (n, _) in files.sms_outbox_rewrites(by_action, {8}, folder).items()} == {"d.jsonl": 1}
