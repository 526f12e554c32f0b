"""Proof of consent: crm.consent_log keeps, per customer, when and from where each opt-in and
opt-out came — the ERP's weekly export (file and run), an unsubscribe link, a Brevo webhook, an
erasure — as an append-only history, shown in the run's note and summary page."""

from __future__ import annotations

import datetime as dt
import logging

import psycopg
import pytest
from winecrm import pipeline
from winecrm.core.migrations import apply_migrations
from winecrm.privacy import consent

from tests.conftest import MONDAY_RUN, write_export

HEADER = "client_code;nom;prenom;email;opt_out"
FIRST = "isavigne/clients/clients_2026-11-09.csv"
SECOND = "isavigne/clients/clients_2026-11-16.csv"


def _run(conn, run_id):
    return pipeline.run_all(conn, pipeline.week_window(run_id, MONDAY_RUN), require_week=False)


def _now(conn):
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def _two_exports(conn, raw):
    write_export(raw, "clients", "clients_2026-11-09.csv", [
        "C1;Dupont;Jean;jean@example.fr;non", "C2;Martin;Marie;marie@example.fr;oui",
        "C4;Klein;Anne;anne@example.fr;"], header=HEADER)  # C4: the export says nothing of her consent
    before_first = _now(conn)
    first = _run(conn, "run_1")
    write_export(raw, "clients", "clients_2026-11-16.csv", [
        "C1;Dupont;Jean;jean@example.fr;oui",       # Jean opts out in the ERP
        "C2;Martin;Marie;marie@example.fr;oui",     # unchanged: no new row
        "C3;Weber;Luc;luc@example.fr;non",          # a new customer who accepts
        "C4;Klein;Anne;anne@example.fr;"], header=HEADER)
    before_second = _now(conn)
    second = _run(conn, "run_2")
    return first, second, before_first, before_second


def test_two_weekly_client_exports_give_the_consent_history_with_file_run_and_time(conn, crm_dirs, caplog):
    caplog.set_level(logging.INFO)
    first, second, before_first, before_second = _two_exports(conn, crm_dirs["raw"])
    rows = conn.execute("""SELECT client_code, change, source, channel, source_file, run_id, changed_at, email
                           FROM crm.consent_log ORDER BY consent_id""").fetchall()
    assert [r[:6] for r in rows] == [
        ("C1", "opt_in", "erp_export", "all", FIRST, "run_1"),
        ("C2", "opt_out", "erp_export", "all", FIRST, "run_1"),
        ("C1", "opt_out", "erp_export", "all", SECOND, "run_2"),
        ("C3", "opt_in", "erp_export", "all", SECOND, "run_2"),
    ]
    assert all(before_first <= r[6] < before_second for r in rows[:2])
    assert all(before_second <= r[6] <= _now(conn) for r in rows[2:])
    assert all(r[7] is None for r in rows)  # the customer's history, no copy of the address
    # the run's note and its load details say it in French, only for the run that changed some
    assert "Consentements\u00a0: 1 retrait, 1 accord (export ERP)" in second["note"]
    assert "Consentements\u00a0: 1 retrait, 1 accord (export ERP)" in first["note"]
    assert "\u202f; Consentements" in second["note"]
    assert second["details"]["load"]["clients"]["consent"]["files"] == {SECOND: {"opt_out": 1, "opt_in": 1}}
    assert f"{SECOND}: consent changed for 2 customer(s)" in caplog.text
    # a third run that changes nothing says nothing about consent
    write_export(crm_dirs["raw"], "clients", "clients_2026-11-17.csv", ["C1;Dupont;Jean;jean@example.fr;oui"],
                 header=HEADER)
    third = _run(conn, "run_3")
    assert "Consentements" not in third["note"]
    assert conn.execute("SELECT count(*) FROM crm.consent_log").fetchone()[0] == 4


def test_an_older_export_loaded_late_or_a_file_without_the_consent_column_states_nothing(conn, crm_dirs):
    raw = crm_dirs["raw"]
    write_export(raw, "clients", "clients_2026-11-16.csv", ["C1;Dupont;Jean;jean@example.fr;oui"], header=HEADER)
    _run(conn, "run_1")
    write_export(raw, "clients", "clients_2026-11-02.csv", ["C1;Dupont;Jean;jean@example.fr;non"], header=HEADER)
    write_export(raw, "clients", "clients_2026-11-17.csv", ["C1;Dupont;Jean;jean@example.fr"],
                 header="client_code;nom;prenom;email")
    summary = _run(conn, "run_2")
    assert conn.execute("SELECT client_code, change, source_file FROM crm.consent_log").fetchall() == [
        ("C1", "opt_out", SECOND)]
    assert "Consentements" not in summary["note"]


def test_every_source_in_one_history_for_the_access_export(conn, crm_dirs):
    _two_exports(conn, crm_dirs["raw"])
    # the receiver's unsubscribe page and the events DAG keep writing their rows as before
    conn.execute("""INSERT INTO crm.consent_log (email, client_code, change, source)
                    VALUES ('jean@example.fr', 'C1', 'suppressed:unsubscribed', 'unsubscribe_link')""")
    event_id = conn.execute("""INSERT INTO crm.webhook_events (source, event, email, occurred_at, payload, dedupe_key)
                               VALUES ('brevo', 'spam', 'marie@example.fr', '2026-11-17 09:30+01', '{}', 'k-spam')
                               RETURNING event_id""").fetchone()[0]
    conn.execute("""INSERT INTO crm.consent_log (email, client_code, change, source, event_id, changed_at)
                    VALUES ('marie@example.fr', 'C2', 'suppressed:spam', 'brevo_webhook:spam', %s, now())""",
                 (event_id,))
    erased_id = consent.record_consent_change(conn, client_code="C3", email=None, change="opt_out",
                                              source="privacy_erase", channel="all", detail="erasure request")
    conn.commit()
    history = consent.consent_history(conn, ["C1"], ["  MARIE@example.fr "])
    assert [(h["client_code"], h["change"], h["source"], h["channel"]) for h in history] == [
        ("C1", "opt_in", "erp_export", "all"), ("C2", "opt_out", "erp_export", "all"),
        ("C1", "opt_out", "erp_export", "all"), ("C1", "suppressed:unsubscribed", "unsubscribe_link", "email"),
        ("C2", "suppressed:spam", "brevo_webhook:spam", "email")]
    assert [h for h in history if h["client_code"] == "C2"][0]["source_file"] == FIRST
    assert history[0]["changed_at"].tzinfo is not None and history[0]["event_at"] is None
    assert history[-1]["event_at"] == dt.datetime(2026, 11, 17, 8, 30, tzinfo=dt.timezone.utc)  # Marie's complaint
    assert set(history[0]) == set(consent.HISTORY_COLUMNS)
    (erased,) = consent.consent_history(conn, ["C3"], [])[1:]
    assert (erased["consent_id"], erased["change"], erased["source"]) == (erased_id, "opt_out", "privacy_erase")
    assert consent.consent_history(conn, [], []) == []
    with pytest.raises(ValueError):
        consent.record_consent_change(conn, client_code="C1", change="maybe", source="x")
    with pytest.raises(ValueError):
        consent.record_consent_change(conn, change="opt_in", source="x")


def test_the_history_is_append_only(conn, crm_dirs):
    consent.record_consent_change(conn, client_code="C1", email="jean@example.fr", change="opt_in",
                                  source="erp_export", channel="all")
    conn.commit()
    for statement in ("UPDATE crm.consent_log SET change = 'opt_out'",
                      "UPDATE crm.consent_log SET changed_at = now() - interval '1 year'",
                      "UPDATE crm.consent_log SET source = 'manual'"):
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute(statement)
        conn.rollback()
    # an erasure may still pseudonymise the person's identifiers in a row it keeps
    conn.execute("UPDATE crm.consent_log SET email = NULL, client_code = NULL")
    conn.commit()
    assert conn.execute("SELECT change, source FROM crm.consent_log").fetchall() == [("opt_in", "erp_export")]


def test_the_run_summary_page_shows_the_consent_changes(conn, crm_dirs):
    pytest.importorskip("airflow")
    import winecrm_plugin

    _two_exports(conn, crm_dirs["raw"])
    page = winecrm_plugin.run_summary("run_2").body.decode("utf-8")
    assert "Consent changes" in page and "Consentements\u00a0: 1 retrait, 1 accord (export ERP)" in page
    assert f"<td>{SECOND}</td><td>1</td><td>1</td>" in page


def test_a_warehouse_upgraded_to_migration_015_starts_its_history_from_the_consent_it_holds(
        pg_admin_url, crm_dirs, tmp_path, monkeypatch):
    """An estate already running: migration 015 records each customer's consent as the export that
    set it stated it, so the next export records only what flips (not everyone as new)."""
    import uuid

    from psycopg import sql
    from psycopg.conninfo import make_conninfo
    from winecrm.core.migrations import migration_files

    import shutil

    from winecrm.core import settings

    older = tmp_path / "sql"
    older.mkdir()
    for version, path in migration_files():
        if version < 15:
            (older / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copytree(settings.SQL_DIR / "queries", older / "queries")
    shutil.copy(settings.SQL_DIR / "grants.sql", older / "grants.sql")
    from winecrm.etl import load

    today = (settings.SQL_DIR, load._record_consent_changes)
    monkeypatch.setattr(settings, "SQL_DIR", older)  # the schema and code of the week before the upgrade
    monkeypatch.setattr(load, "_record_consent_changes", lambda *args: {})
    name = f"winecrm_up_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(pg_admin_url, dbname=name)
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    try:
        with psycopg.connect(url) as conn:
            apply_migrations(conn, older)
            write_export(crm_dirs["raw"], "clients", "clients_2026-11-09.csv", [
                "C1;Dupont;Jean;jean@example.fr;non", "C2;Martin;Marie;marie@example.fr;oui",
                "C5;Erased;Person;gone@example.fr;non"], header=HEADER)
            for stage in pipeline.stages_until(pipeline.run_load):
                if stage is pipeline.run_ingest:
                    pipeline.prepare(conn, pipeline.week_window("run_1", MONDAY_RUN))
                stage(conn, "run_1")
            # an erasure anonymised C5 (as privacy/erase.py does): not a consent the ERP stated
            conn.execute("UPDATE etl.clients SET nom = NULL, prenom = NULL, email = NULL, opt_out = true, "
                         "email_valid = false WHERE client_code = 'C5'")
            conn.commit()
            assert conn.execute("SELECT to_regclass('crm.consent_log') IS NOT NULL").fetchone()[0]
            assert conn.execute("SELECT count(*) FROM crm.consent_log").fetchone()[0] == 0
            monkeypatch.setattr(settings, "SQL_DIR", today[0])
            monkeypatch.setattr(load, "_record_consent_changes", today[1])
            assert apply_migrations(conn)[0] == "015_consent_history.sql"  # and any migration after it
            assert conn.execute("SELECT client_code, change, source, source_file, run_id FROM crm.consent_log "
                                "ORDER BY client_code").fetchall() == [
                ("C1", "opt_in", "erp_export", FIRST, "run_1"), ("C2", "opt_out", "erp_export", FIRST, "run_1")]
            write_export(crm_dirs["raw"], "clients", "clients_2026-11-16.csv", [
                "C1;Dupont;Jean;jean@example.fr;oui", "C2;Martin;Marie;marie@example.fr;oui"], header=HEADER)
            for stage in pipeline.stages_until(pipeline.run_load):
                if stage is pipeline.run_ingest:
                    pipeline.prepare(conn, pipeline.week_window("run_2", MONDAY_RUN))
                stage(conn, "run_2")
            assert conn.execute("SELECT client_code, change, source_file FROM crm.consent_log WHERE run_id = 'run_2'"
                                ).fetchall() == [("C1", "opt_out", SECOND)]
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
