"""The whole weekly pipeline on the sample estate, reruns, the run record and the sensor logic."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from winecrm import pipeline
from winecrm_tools.samples import sampledata

from tests.conftest import MONDAY_RUN, template_for


@pytest.fixture
def sample(crm_dirs):
    return sampledata.write_sample_exports(crm_dirs["raw"], n_customers=400, years=1.5)


def _warehouse_state(conn):
    return {
        "sales": conn.execute("SELECT count(*), sum(qty_line), sum(mt_ht), md5(string_agg(md5(v::text), '' "
                              "ORDER BY document_type, document_no, source_row)) FROM (SELECT document_type, document_no, "
                              "client_code, date_livraison, article, qty_line, mt_ht, file_id, source_row "
                              "FROM etl.ventes_lignes) v").fetchone(),
        "clients": conn.execute("SELECT count(*) FROM etl.clients").fetchone()[0],
        "produits": conn.execute("SELECT count(*) FROM etl.produits").fetchone()[0],
        "stock": conn.execute("SELECT count(*) FROM etl.stock").fetchone()[0],
        "quarantine": conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0],
    }


def _first_run(conn, dirs):
    sample = sampledata.write_sample_exports(dirs["raw"], n_customers=400, years=1.5)
    return sample, pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))


FIRST_RUN = (("sample", 400, 1.5, "run_1 run_all"), _first_run)


warehouse_template = template_for(first_run=FIRST_RUN)


@pytest.fixture
def first_run(conn, crm_dirs, prepared, monkeypatch):
    """The sample estate (as ``sample``) and the summary of its first whole run, run_1 of
    MONDAY_RUN: the test's own warehouse (a clone) and folders."""
    state = prepared(*FIRST_RUN)
    state.restore(crm_dirs, monkeypatch)
    return state.value


def test_sample_estate_loads_and_quarantines_exactly_the_planted_bad_rows(conn, first_run):
    sample, summary = first_run
    assert summary["status"] == "success"
    found = {(d, p.split("/")[-1].replace(" (copie)", ""), r) for d, p, r in conn.execute(
        "SELECT dataset, file_path, row_no FROM etl.quarantine WHERE row_no IS NOT NULL")}
    assert found == {(b.dataset, b.file_name, b.row_no) for b in sample.bad_rows}
    # nothing lost: every row read was loaded or quarantined
    assert summary["rows_read"] == summary["rows_validated"] + summary["rows_quarantined"]
    # ...and every good row was written or skipped for a newer export of its document, counted apart
    assert summary["rows_validated"] == summary["rows_written"] + summary["rows_skipped"]
    assert summary["rows_skipped"] > 0 and summary["rows_written"] >= sample.sales_lines_total
    # no double counting: the overlapping re-export and the copy did not add lines
    assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == sample.sales_lines_total  # bad lines were fixed by the re-export
    assert summary["files_duplicate"] == 1 and summary["files_new"] == len(sample.files) - 1
    # credit notes are negative and reduce revenue
    negative = conn.execute("SELECT count(*), max(mt_ht) FROM etl.ventes_lignes WHERE document_type = 'AVOIR'").fetchone()
    assert negative[0] > 0 and negative[1] < 0
    assert conn.execute("SELECT count(*) FROM etl.produits").fetchone()[0] == sample.products
    # the run record holds what happened
    assert set(summary["stage_seconds"]) == {"ingest", "validate", "data_docs", "load", "score", "recommend", "render",
                                             "send", "purge", "report"}
    assert summary["details"]["validate"]["datasets"]["ventes_lignes"]["quarantined"] == 8
    # reasons in correct French: never « le Edelzwicker »
    import re

    reasons = [r for (r,) in conn.execute("SELECT reason_fr FROM crm.recommendations")]
    assert reasons and not [r for r in reasons if re.search(r"\ble [AEIOUYÉÈÊaeiouyéèê]", r)]
    assert any("l'Edelzwicker" in r for r in reasons) or not any("Edelzwicker" in r for r in reasons)


def test_rerunning_the_same_logical_date_changes_nothing_and_keeps_each_attempt(conn, first_run):
    window = pipeline.week_window("run_1", MONDAY_RUN)
    _, first = first_run  # pipeline.run_all(conn, window), done once for the module
    before = _warehouse_state(conn)
    again = pipeline.run_all(conn, window)
    assert _warehouse_state(conn) == before
    assert (again["files_new"], again["rows_read"], again["rows_written"]) == (0, 0, 0)
    # the rerun is a second attempt: the first one still says what it did
    attempts = conn.execute("SELECT attempt, status, files_new, rows_read, rows_written, details ? 'load' "
                            "FROM etl.runs WHERE run_id = 'run_1' ORDER BY attempt").fetchall()
    assert attempts == [(1, "success", first["files_new"], first["rows_read"], first["rows_written"], True),
                        (2, "success", 0, 0, 0, True)]
    assert again["note"].startswith("Semaine du 09/11 au 15/11/2026 : 0 nouveau fichier, 0 ligne lue, 0 écrite")
    assert first["rows_read"] > 0 and again["attempt"] == 2


def test_a_live_run_keeps_its_files_a_dead_one_hands_them_over(conn, sample):
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    pipeline.run_ingest(conn, "run_1")
    pipeline.run_validate(conn, "run_1")  # ...and run_1 is still at work (or its worker died)
    other = pipeline.week_window("run_2", MONDAY_RUN + dt.timedelta(days=7))
    pipeline.prepare(conn, other)
    report = pipeline.run_ingest(conn, "run_2")
    assert report["files_new"] == 0 and len(report["files_owned_elsewhere"]) == len(sample.files)
    assert all("being processed by run run_1" in line for line in report["files_owned_elsewhere"])
    assert {r for (r,) in conn.execute("SELECT DISTINCT run_id FROM etl.file_manifest")} == {"run_1"}
    # run_1 silent for longer than timeouts.run_hours: dead (Airflow has failed it by then)
    conn.execute("UPDATE etl.runs SET heartbeat_at = now() - interval '21 hours' WHERE run_id = 'run_1'")
    conn.commit()
    # (the same week: the next one has no sales export, and a run that loaded none of its week is never green)
    summary = pipeline.run_all(conn, pipeline.week_window("run_3", MONDAY_RUN))
    assert summary["rows_written"] > 0
    assert {s for (s,) in conn.execute("SELECT DISTINCT status FROM etl.file_manifest")} == {"loaded"}
    assert _warehouse_state(conn)["quarantine"] == len(sample.bad_rows)


def test_week_window_is_the_monday_to_sunday_before_the_logical_date():
    window = pipeline.week_window("r", dt.datetime(2026, 11, 16, 5, tzinfo=dt.timezone.utc))
    assert (window.week_start, window.week_end) == (dt.date(2026, 11, 9), dt.date(2026, 11, 15))
    # 23:30 UTC on Sunday is already Monday in Paris
    late = pipeline.week_window("r", dt.datetime(2026, 3, 29, 23, 30, tzinfo=dt.timezone.utc))
    assert late.week_start == dt.date(2026, 3, 23)


def test_the_week_chosen_in_the_trigger_form_wins_over_the_run_date():
    from winecrm.core.run_params import RunParams, RunParamsError

    now = dt.datetime(2026, 11, 30, 17, tzinfo=dt.timezone.utc)  # a manual trigger: logical date = now
    chosen = pipeline.week_window("r", now, RunParams.parse({"week": "2026-11-11"}), today=dt.date(2026, 11, 30))
    assert (chosen.week_start, chosen.week_end) == (dt.date(2026, 11, 9), dt.date(2026, 11, 15))
    assert chosen.params["week"] == "2026-11-11"
    with pytest.raises(RunParamsError, match="week: the week of 30/11/2026–06/12/2026 is not over yet"):
        pipeline.week_window("r", now, RunParams.parse({"week": "2026-12-01"}), today=dt.date(2026, 11, 30))
    with pytest.raises(RunParamsError, match="Trigger form: week"):
        RunParams.parse({"week": "11/11/2026"})
    with pytest.raises(RunParamsError, match="settle_seconds"):
        RunParams.parse({"settle_seconds": -5})
    with pytest.raises(RunParamsError, match="reingest_files.*not an absolute path"):
        RunParams.parse({"reingest_files": ["/etc/passwd"]})
    # the form's empty values are the defaults
    assert RunParams.parse({"week": None, "reingest_files": None, "accept_files": ""}) == RunParams()


def test_params_are_checked_against_raw_and_recorded(conn, crm_dirs):
    from winecrm.core.run_params import RunParams, RunParamsError

    from tests.conftest import sales_line, write_export

    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_2026-11-16.csv", [sales_line()])
    params = RunParams.parse({"reingest_files": ["ventes_2026-11-16.csv"], "settle_seconds": 0, "dry_run": True})
    pipeline.prepare(conn, pipeline.week_window("run_p", MONDAY_RUN, params))
    recorded = conn.execute("SELECT params FROM etl.runs WHERE run_id = 'run_p'").fetchone()[0]
    assert recorded["reingest_files"] == ["isavigne/ventes_lignes/ventes_2026-11-16.csv"]
    assert recorded["settle_seconds"] == 0 and recorded["dry_run"] is True
    with pytest.raises(RunParamsError, match="accept_files: 'nope.csv' matches no file"):
        pipeline.prepare(conn, pipeline.week_window("run_q", MONDAY_RUN, RunParams.parse({"accept_files": ["nope.csv"]})))


def test_sensor_waits_then_fails_naming_what_is_missing(crm_dirs, monkeypatch, tmp_path):
    from tests.conftest import sales_line, use_config, write_export

    use_config(tmp_path, monkeypatch)  # as shipped: every dataset required

    window = pipeline.week_window("r", MONDAY_RUN)
    write_export(crm_dirs["raw"], "ventes_lignes", "ventes_lignes_2026-11-16.csv", [sales_line()])
    ready, missing = pipeline.exports_status(window)
    assert not ready
    assert [m.split(" export")[0] for m in missing] == ["no customers", "no products", "no stock"]
    assert "dated on or before 17/11/2026" in missing[0] and "snapshot" in missing[0]
    assert pipeline.check_exports(window, now=MONDAY_RUN + dt.timedelta(hours=1)) is False
    with pytest.raises(pipeline.ExportsMissing) as info:
        pipeline.check_exports(window, now=MONDAY_RUN + dt.timedelta(hours=7))
    assert "Week 09/11/2026–15/11/2026: gave up waiting at 16/11/2026 12:00 (Paris" in str(info.value)
    assert "no customers export" in str(info.value)


def test_a_backfill_takes_the_latest_snapshot_at_or_before_its_week(sample, tmp_path, monkeypatch):
    """Customers, products and stock are snapshots: a past week only needs its own sales export."""
    from winecrm.core.run_params import RunParams

    from tests.conftest import use_config

    use_config(tmp_path, monkeypatch)  # as shipped: every dataset required

    today = dt.date(2026, 11, 30)
    for monday in ("2026-10-19", "2026-10-26", "2026-11-02", "2026-11-09"):
        window = pipeline.week_window("b", MONDAY_RUN, RunParams.parse({"week": monday}), today=today)
        assert pipeline.exports_status(window) == (True, []), monday
    # the week before the snapshots and the weekly files: no sales export dated in it
    old = pipeline.week_window("b", MONDAY_RUN, RunParams.parse({"week": "2026-10-05"}), today=today)
    ready, missing = pipeline.exports_status(old)
    assert not ready and missing[0].startswith("no sales export dated 06/10/2026–13/10/2026 for this week")
    assert "no customers export dated on or before 13/10/2026" in missing[1]


def test_a_backfill_started_today_waits_from_its_start_not_from_a_deadline_long_past():
    old_week = pipeline.week_window("b", dt.datetime(2026, 11, 9, 5, tzinfo=dt.timezone.utc))
    started = dt.datetime(2026, 11, 30, 16, tzinfo=dt.timezone.utc)
    late_run = pipeline.RunWindow(old_week.run_id, old_week.logical_date, old_week.week_start, old_week.week_end,
                                  started_at=started)
    assert pipeline.check_exports(late_run, now=started + dt.timedelta(hours=1)) is False
    with pytest.raises(pipeline.ExportsMissing, match=r"gave up waiting at 30/11/2026 23:00 \(Paris.*no sales export "
                                                      r"dated 03/11/2026–10/11/2026 for this week"):
        pipeline.check_exports(late_run, now=started + dt.timedelta(hours=6, minutes=1))


def test_sensor_names_a_file_still_being_written(crm_dirs, monkeypatch):
    from tests.conftest import write_export

    monkeypatch.setenv("CRM_FILE_SETTLE_SECONDS", "600")
    write_export(crm_dirs["raw"], "stock", "stock_2026-11-16.csv", ["A;2020;Cave;5;bt"],
                 header="article;millesime;entrepot;quantite;unite")
    _, missing = pipeline.exports_status(pipeline.week_window("r", MONDAY_RUN))
    assert any(m.startswith("stock: isavigne/stock/stock_2026-11-16.csv modified") for m in missing)


def test_sensor_accepts_a_backfill_whose_files_are_long_there(sample):
    old_week = pipeline.week_window("backfill", MONDAY_RUN)
    assert pipeline.exports_status(old_week)[0]
    assert pipeline.check_exports(old_week, now=MONDAY_RUN + dt.timedelta(days=400)) is True


def test_a_late_file_of_the_week_is_waited_for_never_left_out(conn, crm_dirs, monkeypatch):
    """A missed export dropped just before the run: older files satisfy every dataset, the new one
    is still settling. The sensor waits for it; if it lands after the sensor, ingest fails naming it."""
    import os
    import time

    from tests.conftest import sales_line, write_export

    raw = crm_dirs["raw"]
    window = pipeline.week_window("run_1", MONDAY_RUN)
    for dataset, name, header, line in (
            ("clients", "clients_2026-11-10.csv", "client_code;nom;prenom;email", "C1;Dupont;Jean;j@example.fr"),
            ("produits", "produits_2026-11-10.csv", "produit;article;millesime;famille_crm;prix_ttc",
             "Riesling 2022;RIES-22;2022;Riesling;11,50"),
            ("stock", "stock_2026-11-10.csv", "article;millesime;entrepot;quantite", "RIES-22;2022;Cave;12")):
        write_export(raw, dataset, name, [line], header=header)
    write_export(raw, "ventes_lignes", "ventes_2026-11-10.csv", [sales_line(doc_no="OLD")])
    old = time.time() - 3600
    for path in raw.rglob("*.csv"):
        os.utime(path, (old, old))
    monkeypatch.setenv("CRM_FILE_SETTLE_SECONDS", "600")
    late = write_export(raw, "ventes_lignes", "ventes_2026-11-16.csv", [sales_line(doc_no="LATE")])  # 0 s old
    future = write_export(raw, "ventes_lignes", "ventes_2026-12-07.csv", [sales_line(doc_no="NEXT")])  # next month's
    ready, waiting = pipeline.exports_status(window)
    assert not ready and len(waiting) == 1
    assert waiting[0].startswith("sales: isavigne/ventes_lignes/ventes_2026-11-16.csv modified")
    pipeline.prepare(conn, window)
    with pytest.raises(pipeline.FilesStillArriving) as info:
        pipeline.run_ingest(conn, "run_1")
    assert "ventes_2026-11-16.csv" in str(info.value) and "2026-12-07" not in str(info.value)
    # the task's retry, once the file is complete: nothing is left out
    late.with_name(late.name + ".done").write_text("")
    pipeline.run_ingest(conn, "run_1")
    pipeline.run_validate(conn, "run_1")
    pipeline.run_load(conn, "run_1")
    docs = {d for (d,) in conn.execute("SELECT document_no FROM etl.ventes_lignes")}
    assert docs == {"OLD", "LATE"} and future.exists()


def test_the_data_docs_process_forked_at_the_start_counts_its_early_import(first_run):
    """run_all forks the Data Docs' process when the run starts (GX imported while the ingest
    reads); the stage's recorded time includes that import: what a task of its own would spend."""
    _, summary = first_run
    details = summary["details"]["data_docs"]
    assert details["chunks"] > 0 and "index.html" in details["data_docs"]
    # (the part of the import done before the stage's turn: ~0 when the process had GX already)
    assert summary["stage_seconds"]["data_docs"] >= details["gx_imported_ahead_s"] >= 0


def test_a_run_that_stops_before_the_data_docs_ends_their_waiting_process(conn, sample, monkeypatch):
    import multiprocessing

    from winecrm.pipeline import stages

    def run_ingest(conn, run_id):
        raise RuntimeError("the ingest broke")

    monkeypatch.setattr(stages, "STAGES", (run_ingest, *stages.STAGES[1:]))
    with pytest.raises(RuntimeError, match="the ingest broke"):
        pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    assert not [p for p in multiprocessing.active_children() if p.name == "winecrm-run_data_docs"]
    status, error = conn.execute("SELECT status, error FROM etl.runs WHERE run_id = 'run_1'").fetchone()
    assert status == "failed" and "the ingest broke" in error


def printed_by_new_python(code: str, env: dict | None = None) -> str:
    """What ``code`` prints in a new Python process (the imports it checks are its own); it must
    end without an error."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_gx_imported_for_the_data_docs_loads_scipy_statistics_on_first_use():
    """The Data Docs' process imports GX without SciPy's statistics (none of our suites uses
    them); a page that needed them would load them on first use."""
    code = ("import sys; from winecrm.etl.gx_context import import_gx_for_data_docs; import_gx_for_data_docs(); "
            "assert 'great_expectations' in sys.modules; "
            "assert type(sys.modules['scipy.stats']).__name__ == '_LazyModule', type(sys.modules['scipy.stats']); "
            "from scipy import stats; print(round(stats.entropy([0.5, 0.5]), 6))")
    assert printed_by_new_python(code) == "0.693147"


def test_gx_imported_for_the_data_docs_runs_altair_on_first_use():
    """Altair too waits for its first use, and is then the whole module, for GX's charts and
    anyone else's (the references taken before see it)."""
    code = ("import sys; from winecrm.etl.gx_context import import_gx_for_data_docs; import_gx_for_data_docs(); "
            "waiting = sys.modules['altair']; assert type(waiting).__name__ == 'UntilUsed', type(waiting); "
            "assert 'altair.vegalite' not in sys.modules; "
            "from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl; "
            "import altair as alt; chart = alt.Chart({'values': [{'a': 1}]}).mark_bar().encode(x='a:Q'); "
            "assert kl.alt is alt is waiting and type(alt).__name__ == 'module'; "
            "print(chart.to_dict()['mark']['type'])")
    assert printed_by_new_python(code) == "bar"


def test_the_early_import_counts_only_for_the_part_done_before_the_stage_started():
    """A stage that starts while GX is still being imported waits for the rest of the import (its
    own time counts that): only the part done before it started is added, never twice."""
    code = ("import threading, time; from winecrm.etl import gx_context as g; "
            "t = threading.Thread(target=g.import_ahead); t0 = time.perf_counter(); t.start(); time.sleep(0.2); "
            "s = time.perf_counter(); still = not g._AHEAD.done.is_set(); "
            "part = g.imported_ahead_seconds(s); whole = g.imported_ahead_seconds(time.perf_counter()); "
            "assert still, 'GX imported in 0.2 s?'; assert 0 < part <= s - t0 < whole, (part, s - t0, whole); "
            "print('ok')")
    assert printed_by_new_python(code) == "ok"


def test_data_docs_templates_are_compiled_once_for_every_later_process(tmp_path):
    """The Data Docs' Jinja templates are compiled by the first process and read compiled by the
    next ones (a file on disk); a damaged file is ignored and the template compiled again."""
    code = ("import jinja2; from winecrm.etl import gx_context as g; import great_expectations; "
            "g._reuse_compiled_data_docs_templates(); from great_expectations.render.view import view; "
            "compiled = []; compile = jinja2.Environment.compile; "
            "jinja2.Environment.compile = lambda self, *a, **k: compiled.append(1) or compile(self, *a, **k); "
            "env = view.Environment(loader=jinja2.PackageLoader('great_expectations', 'render/view/templates')); "
            "template = env.get_template('page.j2'); print(len(compiled), template.name)")
    env = {**os.environ, "CRM_DATA_DIR": str(tmp_path)}

    def compiled_in_a_new_process() -> int:
        count, name = printed_by_new_python(code, env).split()
        assert name == "page.j2"
        return int(count)

    assert compiled_in_a_new_process() > 0
    kept = sorted((tmp_path / "cache" / "data-docs-templates").iterdir())
    assert kept
    assert compiled_in_a_new_process() == 0
    kept[0].write_bytes(b"not a template")
    assert compiled_in_a_new_process() == 1
