"""What a green weekly run promises: its week's exports were loaded, it took no other week's
files, and a send that was asked was made or refused out loud (issue: the real scheduler)."""

from __future__ import annotations

import datetime as dt

import pytest
from winecrm import pipeline
from winecrm.core.run_params import RunParams
from winecrm_tools.samples import sampledata

from tests.conftest import MONDAY_RUN, sales_line, use_config, write_export

OCTOBER_26 = dt.datetime(2026, 10, 26, 5, 0, tzinfo=dt.timezone.utc)  # Monday 06:00 Paris: week 19/10–25/10
NOVEMBER_30 = dt.datetime(2026, 11, 30, 5, 0, tzinfo=dt.timezone.utc)  # week 23/11–29/11


def test_a_past_week_takes_its_own_and_earlier_exports_never_a_later_weeks(conn, crm_dirs):
    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=120, years=1.2)
    this_week = write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-30.csv",
                             [sales_line(client="C1", date="27/11/2026", doc_no="NOW")])
    window = pipeline.week_window("backfill__2026-10-26", OCTOBER_26)
    pipeline.prepare(conn, window)
    report = pipeline.run_ingest(conn, window.run_id)
    dates = [d for (d,) in conn.execute("SELECT export_date FROM etl.file_manifest")]
    assert dates and max(dates) <= window.week.last_export_day, dates
    assert any("ventes_lignes_2026-11-30.csv (dated 30/11/2026)" in f for f in report["files_later"])
    # the file waits for its own week's run, which takes it
    week = pipeline.week_window("scheduled__2026-11-30", NOVEMBER_30)
    pipeline.prepare(conn, week)
    pipeline.run_ingest(conn, week.run_id)
    owner = conn.execute("SELECT run_id FROM etl.file_manifest WHERE file_path = %s",
                         (str(this_week.relative_to(crm_dirs["raw"])),)).fetchone()
    assert owner == ("scheduled__2026-11-30",)


def test_a_file_named_in_the_trigger_form_is_taken_whatever_its_date(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-30.csv", [sales_line(doc_no="NOW")])
    params = RunParams.parse({"reingest_files": ["ventes_lignes_2026-11-30.csv"]})
    window = pipeline.week_window("r", OCTOBER_26, params)
    pipeline.prepare(conn, window)
    assert pipeline.run_ingest(conn, "r")["files_new"] == 1


def _only_sales_required(tmp_path, monkeypatch):
    use_config(tmp_path, monkeypatch, quality_gate={"max_bad_row_share": 0.5},
               exports={"required_datasets": ["ventes_lignes"], "weekly_datasets": ["ventes_lignes"]})


def _run_week(conn, run_id, params=None):
    window = pipeline.week_window(run_id, MONDAY_RUN, RunParams.parse(params or {}))
    pipeline.prepare(conn, window)
    for stage in pipeline.stages_until(pipeline.run_load):
        stage(conn, run_id)
    return window


def test_a_week_whose_only_sales_export_was_refused_is_never_ready_nor_green(conn, crm_dirs, tmp_path, monkeypatch):
    _only_sales_required(tmp_path, monkeypatch)
    bad = [sales_line(client=f"Z{i}", date="31/02/2026", doc_no=f"Z{i}") for i in range(3)]
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-16.csv", bad + [sales_line(doc_no="OK")])
    _run_week(conn, "first")
    with pytest.raises(pipeline.FilesRejected):
        pipeline.finish_checked(conn, "first")
    # the same week triggered again: the file is on disk, but refused — the sensor says so at once
    window = pipeline.week_window("again", MONDAY_RUN)
    pipeline.prepare(conn, window)
    with pytest.raises(pipeline.ExportsRejected) as refused:
        pipeline.check_exports(pipeline.current_window(conn, "again"), conn=conn)
    message = str(refused.value)
    assert "ventes_lignes_2026-11-16.csv was rejected by the quality gate in run first" in message
    assert "accept_files" in message and "drop a corrected export" in message
    # and had the run gone on without the sensor (a cleared task, the CLI): never green with nothing loaded
    for stage in pipeline.stages_until(pipeline.run_load):
        stage(conn, "again")
    with pytest.raises(pipeline.WeekNotLoaded, match=r"no sales export dated 10/11/2026–17/11/2026 was loaded"):
        pipeline.finish_checked(conn, "again")
    assert conn.execute("SELECT status FROM etl.runs WHERE run_id = 'again'").fetchone() == ("failed",)
    # accepted knowingly: ready, loaded, green
    accepted = pipeline.week_window("accepted", MONDAY_RUN,
                                    RunParams.parse({"accept_files": ["ventes_lignes_2026-11-16.csv"]}))
    pipeline.prepare(conn, accepted)
    assert pipeline.check_exports(pipeline.current_window(conn, "accepted"), conn=conn) is True
    for stage in pipeline.stages_until(pipeline.run_load):
        stage(conn, "accepted")
    assert pipeline.finish_checked(conn, "accepted")["status"] == "success"
    # the refused run's summary page still lists the file and its reasons, though the file is the accepting run's now
    page = _plugin().run_summary("first").body.decode()
    assert "ventes_lignes_2026-11-16.csv" in page and "(taken over by a later run since)" in page
    assert "date_livraison" in page.split("Quarantine reasons")[1]


def _plugin():
    """The Airflow plugin module (plugins/ is not a package: Airflow's plugin manager loads it by path)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "plugins" / "winecrm_plugin.py"
    spec = importlib.util.spec_from_file_location("winecrm_plugin_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_refused_snapshot_of_the_week_leaves_the_earlier_one_in_charge(conn, crm_dirs, tmp_path, monkeypatch):
    """Customers are a snapshot: the week's refused one does not stop the week when an earlier one
    is loaded (the sales export is what the week needs of its own)."""
    use_config(tmp_path, monkeypatch, quality_gate={"max_bad_row_share": 0.5, "min_bad_rows_to_reject": 1},
               exports={"required_datasets": ["ventes_lignes", "clients"], "weekly_datasets": ["ventes_lignes"]})
    header = "client_code;nom;prenom;email"
    write_export(crm_dirs["raw"], "clients", "clients_2026-11-02.csv", ["C1;Dupont;Jean;jean@example.fr"],
                 header=header)
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-09.csv", [sales_line(doc_no="OLD")])
    _run_week(conn, "earlier", {"week": "2026-11-02"})
    write_export(crm_dirs["raw"], "clients", "clients_2026-11-16.csv", [";Klein;Anne;a@example.fr", ";Roth;Luc;l@example.fr", "C2;Klein;Paul;p@example.fr"],
                 header=header)
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-16.csv", [sales_line(doc_no="NEW")])
    _run_week(conn, "first")
    assert conn.execute("SELECT status FROM etl.file_manifest WHERE file_path LIKE %s",
                        ("%clients_2026-11-16.csv",)).fetchone() == ("rejected",)
    window = pipeline.week_window("again", MONDAY_RUN)
    pipeline.prepare(conn, window)
    assert pipeline.check_exports(pipeline.current_window(conn, "again"), conn=conn) is True


def test_a_corrected_export_of_a_refused_week_is_waited_for_and_taken(conn, crm_dirs, tmp_path, monkeypatch):
    _only_sales_required(tmp_path, monkeypatch)
    bad = [sales_line(client=f"Z{i}", date="31/02/2026", doc_no=f"Z{i}") for i in range(3)]
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-16.csv", bad)
    _run_week(conn, "first")
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-16_corrige.csv", [sales_line(doc_no="OK")])
    window = pipeline.week_window("again", MONDAY_RUN)
    pipeline.prepare(conn, window)
    assert pipeline.check_exports(pipeline.current_window(conn, "again"), conn=conn) is True


def test_a_week_rerun_after_it_was_loaded_stays_green(conn, crm_dirs, tmp_path, monkeypatch):
    _only_sales_required(tmp_path, monkeypatch)
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-16.csv", [sales_line(doc_no="OK")])
    _run_week(conn, "first")
    assert pipeline.finish_checked(conn, "first")["status"] == "success"
    _run_week(conn, "rerun")  # nothing new to read: the week is in the warehouse already
    summary = pipeline.finish_checked(conn, "rerun")
    assert summary["status"] == "success"
    assert "0 nouveau fichier (exports de la semaine déjà lus par un autre run), 0 ligne lue" in summary["note"]


def test_sending_asked_without_brevo_is_refused_not_a_silent_dry_run(conn, crm_dirs):
    window = pipeline.week_window("live", MONDAY_RUN, RunParams.parse({"dry_run": False}))
    pipeline.prepare(conn, window)
    with pytest.raises(pipeline.LiveWithoutBrevo, match="dry_run is unticked.*create the connection brevo_default"):
        pipeline.campaign_mode(conn, "live", brevo_configured=False)
    window = pipeline.week_window("monday", MONDAY_RUN)
    pipeline.prepare(conn, window)
    with pytest.raises(pipeline.LiveWithoutBrevo, match="Variable crm_weekly_live is true"):
        pipeline.campaign_mode(conn, "monday", brevo_configured=False, scheduled_live=True)


def test_the_run_note_says_what_became_of_the_campaign():
    base = {"week_start": dt.date(2026, 11, 9), "week_end": dt.date(2026, 11, 15), "files_new": 1, "rows_read": 10,
            "rows_written": 10, "rows_skipped": 0, "rows_quarantined": 0, "status": "success"}
    dry = {**base, "details": {"render": {"mode": "dry_run"}, "send": {"by_status": {"simulated": 42}}}}
    assert pipeline.run_note(dry).endswith(" ; campagne à blanc : 42 e-mails dans la boîte d'envoi, rien n'est parti")
    past = {**base, "details": {"render": {"mode": "dry_run", "live_refused": True},
                                "send": {"by_status": {"simulated": 1}}}}
    assert "envoi refusé : semaine passée (un rattrapage n'envoie jamais), 1 e-mail dans la boîte" in pipeline.run_note(past)
    live = {**base, "details": {"render": {"mode": "live"}, "send": {"by_status": {"sent": 2}}}}
    assert pipeline.run_note(live).endswith(" ; campagne envoyée : 2 e-mails")
