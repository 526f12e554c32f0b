"""crm_weekly run for real with `airflow dags test`, as the data engineer and on-call use it:
a Monday run, the same date again, a backfill of a past week chosen in the trigger form, a week
whose exports never came, a quality-gate failure and its way out. Each run's note (the run list)
and logs are checked. Airflow start-up is slow: each scenario is one run, shared by assertions."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from winecrm_tools.samples import sampledata

from tests.conftest import alert_receiver, relaxed_gate_config, sales_line, write_export

pytestmark = pytest.mark.airflow
LOGICAL_DATE = "2026-11-16T05:00:00+00:00"  # Monday 06:00 Paris: covers 09/11–15/11
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
# a dry run: the approval of a live campaign is skipped, every other task succeeds
ALL_TASKS = {**{t: "success" for t in ("prepare_run", "wait_for_exports", "ingest", "validate", "data_docs", "load", "score",
                                        "recommend", "render_emails", "campaign_path", "send_emails", "purge",
                                        "report", "finish_run")}, "approve_campaign": "skipped"}


@pytest.fixture(scope="module")
def module_warehouse(pg_admin_url, template_db):
    name = f"winecrm_dag_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))  # empty: the DAG migrates it
    yield make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def alerts():
    with alert_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def dag_env(tmp_path_factory, module_warehouse, airflow_db, alerts):
    base = tmp_path_factory.mktemp("dagrun")
    env = dict(os.environ)
    env.update({
        "CRM_DATABASE_URL": module_warehouse,
        "CRM_RAW_DIR": str(base / "raw"),
        "CRM_WORK_URL": str(base / "work"),
        "CRM_DOCS_DIR": str(base / "quality"),
        "CRM_ALERT_WEBHOOK_URL": alerts[0],
        "GX_ANALYTICS_ENABLED": "False",
    })
    planted = sampledata.write_sample_exports(base / "raw", n_customers=300, years=1.2)
    env["CRM_PIPELINE_CONFIG"] = str(relaxed_gate_config(base))  # the gate is judged per file
    return env, planted, base


def dags_test(env, *args):
    return subprocess.run([AIRFLOW, "dags", "test", "crm_weekly", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def latest_run(airflow_db: Path) -> dict:
    """The newest crm_weekly run in Airflow's metadata: its task states and its note."""
    with sqlite3.connect(airflow_db) as db:
        dag_run_id, run_id = db.execute("SELECT id, run_id FROM dag_run WHERE dag_id = 'crm_weekly' "
                                        "ORDER BY id DESC LIMIT 1").fetchone()
        states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'crm_weekly' AND run_id = ?",
                                 (run_id,)).fetchall())
        note = db.execute("SELECT content FROM dag_run_note WHERE dag_run_id = ?", (dag_run_id,)).fetchone()
    return {"run_id": run_id, "states": states, "note": note[0] if note else None}


def run_record(warehouse: str, run_id: str) -> dict:
    with psycopg.connect(warehouse) as conn:
        cursor = conn.execute("SELECT * FROM etl.runs WHERE run_id = %s ORDER BY attempt DESC LIMIT 1", (run_id,))
        return dict(zip([c.name for c in cursor.description], cursor.fetchone()))


@pytest.fixture(scope="module")
def monday_run(dag_env, airflow_db):
    env, planted, _ = dag_env
    result = dags_test(env, LOGICAL_DATE)
    return result, latest_run(airflow_db), planted


def test_monday_run_loads_the_sample_and_says_which_week_in_its_note(monday_run, module_warehouse):
    result, run, planted = monday_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert run["states"] == ALL_TASKS
    record = run_record(module_warehouse, run["run_id"])
    assert (record["status"], str(record["week_start"])) == ("success", "2026-11-09")
    assert record["rows_quarantined"] == len(planted.bad_rows)
    # written / superseded / skipped counted apart: the overlapping re-export is read, not written twice
    assert record["rows_validated"] == record["rows_written"] + record["rows_skipped"] and record["rows_skipped"] > 0
    assert record["params"] == {"week": None, "dry_run": True, "reingest_files": [], "accept_files": [],
                                "settle_seconds": None}
    # the run list shows the week and the outcome (the run's note, set by the plugin's listener)
    assert run["note"] == record["note"]
    assert re.fullmatch(r"Semaine du 09/11 au 15/11/2026 : \d+ nouveaux fichiers, [\d\u202f]+ lignes lues, "
                        r"[\d\u202f]+ écrites, [\d\u202f]+ ignorées \(déjà à jour\), 9 en quarantaine"
                        # the sample's first customer export starts the consent history (crm.consent_log)
                        r"\u202f; Consentements\u00a0: (?:[\d\u202f]+ retraits?, )?[\d\u202f]+ accords? \(export ERP\) ; "
                        r"campagne à blanc : [\d\u202f]+ e-mails dans la boîte d'envoi, rien n'est parti", run["note"]), run["note"]
    with psycopg.connect(module_warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM etl.ventes_lignes").fetchone()[0] == planted.sales_lines_total
        segments = dict(conn.execute("SELECT segment, count(*) FROM crm.rfm_scores WHERE as_of_date = '2026-11-15' "
                                     "GROUP BY 1"))
        assert sum(segments.values()) == conn.execute(
            "SELECT count(DISTINCT client_code) FROM etl.ventes_lignes WHERE document_type <> 'AVOIR'").fetchone()[0]
        assert set(segments) <= {"VIP", "Standard", "At Risk", "Churn"} and segments.get("Churn", 0) > 0
        recommended, excluded = conn.execute(
            "SELECT (SELECT count(DISTINCT client_code) FROM crm.recommendations WHERE as_of_date = '2026-11-15'), "
            "(SELECT count(*) FROM crm.recommendation_exclusions WHERE as_of_date = '2026-11-15')").fetchone()
        assert recommended > 0 and recommended + excluded == sum(segments.values())


def test_task_logs_are_for_people(monday_run):
    """Per file: rows read / good / quarantined with examples and the Data Docs page; no GX noise,
    no Python dicts of return values; times in Paris."""
    out = monday_run[0].stdout
    assert "Skipping registering function" not in out
    assert "Returned value was" not in out
    assert re.search(r"isavigne/ventes_lignes/ventes_lignes_2026-11-16\.csv: \d+ rows read \(CSV, ", out)
    assert re.search(r"isavigne/ventes_lignes/ventes_lignes_2026-11-16\.csv: \d+ rows → \d+ good, 8 quarantined", out)
    assert re.search(r"line \d+: date_livraison: '31/02/2026' is not a valid date", out)
    assert "Data Docs: " in out and "/validations/isavigne_ventes_lignes/" in out
    assert re.search(r"ventes_lignes: \d+ good rows → \d+ written, \d+ skipped \(a newer export of the same "
                     r"document is already there\); \d+ warehouse rows of an older export replaced", out)
    assert "Semaine du 09/11 au 15/11/2026 (sales delivered 09/11/2026–15/11/2026); run date 16/11/2026 06:00" in out



def test_the_demo_writes_each_tasks_log_where_the_log_view_reads_it(monday_run, dag_env, tmp_path):
    """`dags test` writes no task log file ("Log file not found on worker" in the UI): the demo
    writes each task's part of the console output, and Airflow's own log reader (what the log
    view calls) returns it, levels and loggers kept, without the execution API's lines."""
    env, _, _ = dag_env
    result, run, _ = monday_run
    output = tmp_path / "dags-test.out"
    output.write_text(result.stdout, encoding="utf-8")
    written = subprocess.run([sys.executable, "-m", "winecrm_tools.demo.task_logs", str(output)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stdout[-3000:] + written.stderr[-3000:]
    assert f"{len(ALL_TASKS) - 1} task log(s) written" in written.stdout  # approve_campaign skipped: never ran
    read = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json, sys
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.log.log_reader import TaskLogReader
        from airflow.utils.session import create_session
        from sqlalchemy import select
        with create_session() as session:
            ti = session.scalar(select(TaskInstance).where(TaskInstance.run_id == sys.argv[1],
                                                           TaskInstance.task_id == 'validate'))
            lines, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {})
            for line in lines:
                print(json.dumps({"event": line.event, "level": getattr(line, "level", None),
                                  "logger": getattr(line, "logger", None)}))
        """), run["run_id"]], env=env, capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    lines = [json.loads(line) for line in read.stdout.splitlines()]
    events = "\n".join(line["event"] for line in lines)
    assert "Log file not found" not in events and "Could not read served logs" not in events
    assert any(line["logger"] == "winecrm.etl.validate" and line["level"] == "info"
               and re.search(r"ventes_lignes_2026-11-16\.csv: \d+ rows → \d+ good, 8 quarantined", line["event"])
               for line in lines)
    assert "Task instance state updated" not in events  # the in-process execution API, not the task
    assert "rows read (CSV" not in events  # the ingest task's lines stay in the ingest task's log

def test_rerunning_the_same_date_through_airflow_changes_nothing(monday_run, dag_env, module_warehouse, airflow_db):
    env, planted, _ = dag_env
    with psycopg.connect(module_warehouse) as conn:
        before = conn.execute("SELECT count(*), sum(mt_ht), max(loaded_at) FROM etl.ventes_lignes").fetchone()
    result = dags_test(env, LOGICAL_DATE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    with psycopg.connect(module_warehouse) as conn:
        assert conn.execute("SELECT count(*), sum(mt_ht), max(loaded_at) FROM etl.ventes_lignes").fetchone() == before
        assert conn.execute("SELECT count(*) FROM etl.quarantine").fetchone()[0] == len(planted.bad_rows)
    assert latest_run(airflow_db)["note"].startswith("Semaine du 09/11 au 15/11/2026 : 0 nouveau fichier (exports de la "
                                                     "semaine déjà lus par un autre run), 0 ligne lue")


def test_a_past_week_chosen_in_the_trigger_form_runs_on_the_snapshots_before_it(monday_run, dag_env, airflow_db,
                                                                                module_warehouse):
    """A backfill of an older week: triggered now (no 7-day run, no logical date taken), the week
    in the form; customers / products / stock come from the latest snapshot at or before it."""
    env, _, _ = dag_env
    result = dags_test(env, "-c", json.dumps({"week": "2026-11-04"}))
    run = latest_run(airflow_db)
    assert result.returncode == 0 and run["states"] == ALL_TASKS, result.stdout[-4000:]
    record = run_record(module_warehouse, run["run_id"])
    assert (str(record["week_start"]), str(record["week_end"])) == ("2026-11-02", "2026-11-08")
    assert record["params"]["week"] == "2026-11-04"
    assert run["note"].startswith("Semaine du 02/11 au 08/11/2026 : 0 nouveau fichier")
    with psycopg.connect(module_warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM crm.rfm_scores WHERE as_of_date = '2026-11-08'").fetchone()[0] > 0


def test_a_week_whose_exports_never_came_fails_at_its_deadline_naming_them(monday_run, dag_env, airflow_db, alerts,
                                                                          module_warehouse):
    env, _, base = dag_env
    url, received = alerts
    # 7 s of waiting instead of 6 h: the sensor looks, waits, looks again and gives up.
    quick = relaxed_gate_config(base, "quick_deadline.yaml", exports={"max_wait_hours": 0.002,
                                                                     "poke_interval_seconds": 10})
    result = dags_test({**env, "CRM_PIPELINE_CONFIG": str(quick)}, "-c", json.dumps({"week": "2026-01-28"}))
    run = latest_run(airflow_db)
    assert run["states"]["prepare_run"] == "success", result.stdout[-3000:] + result.stderr[-3000:]
    assert run["states"]["wait_for_exports"] == "failed"
    assert run["states"].get("ingest") in (None, "upstream_failed")
    alert = next(a["json"] for a in received if a["json"]["task_id"] == "wait_for_exports")
    assert "Week 26/01/2026–01/02/2026: gave up waiting at " in alert["error"]
    assert "no sales export dated 27/01/2026–03/02/2026 for this week" in alert["error"]
    assert "no customers export dated on or before 03/02/2026" in alert["error"]  # the first snapshot is of October
    record = run_record(module_warehouse, run["run_id"])
    assert record["status"] == "failed" and record["error"].startswith("wait_for_exports: AirflowFailException")
    assert run["note"].startswith("Semaine du 26/01 au 01/02/2026 : ÉCHEC — wait_for_exports: ")


def test_a_quality_gate_failure_names_the_file_and_the_way_out_works(monday_run, dag_env, airflow_db, alerts,
                                                                     module_warehouse):
    env, _, base = dag_env
    url, received = alerts
    raw = Path(env["CRM_RAW_DIR"])
    bad = write_export(raw, "ventes_lignes", "ventes_lignes_2026-11-17_corrections.csv",
                       [sales_line(doc_no=f"K{i}") for i in range(4)]
                       + [sales_line(doc_no=f"Z{i}", date="32/11/2026") for i in range(6)])
    old = bad.stat().st_mtime - 3600
    os.utime(bad, (old, old))
    result = dags_test(env, "-c", json.dumps({"week": "2026-11-09"}))  # the week again, its new file in RAW
    run = latest_run(airflow_db)
    assert run["states"]["finish_run"] == "failed", result.stdout[-3000:]
    assert run["states"]["load"] == "success"  # the other files went on
    alert = next(a["json"] for a in received
                 if a["json"]["task_id"] == "finish_run" and "quality gate" in (a["json"]["error"] or ""))
    message = alert["error"].replace("\n    ", " ")  # folded for the log view: read as one text
    assert "isavigne/ventes_lignes/ventes_lignes_2026-11-17_corrections.csv rejected by the quality gate: 6 of 10" in message
    assert "line 6: date_livraison: '32/11/2026' is not a valid date" in message
    assert "Data Docs of this file: " in message and "'accept_files' = isavigne/ventes_lignes/" in message
    assert run["note"].startswith("Semaine du 09/11 au 15/11/2026 : ÉCHEC — Quality gate rejected "
                                  "isavigne/ventes_lignes/ventes_lignes_2026-11-17_corrections.csv")
    assert run["note"].endswith("(1 nouveau fichier, 10 lignes lues, 0 écrite, 0 ignorée (déjà à jour), 6 en quarantaine"
                                " ; campagne à blanc : 192 e-mails dans la boîte d'envoi, rien n'est parti)"), run["note"]
    # The way out: the same week, with the file accepted in the trigger form.
    result = dags_test(env, "-c", json.dumps({"week": "2026-11-09",
                                              "accept_files": ["ventes_lignes_2026-11-17_corrections.csv"]}))
    run = latest_run(airflow_db)
    assert result.returncode == 0 and run["states"] == ALL_TASKS, result.stdout[-4000:]
    assert run["note"].startswith("Semaine du 09/11 au 15/11/2026 : 0 nouveau fichier, 10 lignes lues, 4 écrites")
    with psycopg.connect(module_warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM etl.ventes_lignes WHERE document_no LIKE 'K%'").fetchone()[0] == 4
        assert conn.execute("SELECT accepted_by FROM etl.file_manifest WHERE file_path LIKE '%corrections.csv'"
                            ).fetchone()[0].startswith("param accept_files of run manual__")
