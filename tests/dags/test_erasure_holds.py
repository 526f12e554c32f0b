"""An erasure holds whatever runs afterwards, end to end and for real (`airflow dags test`):

a week is run (the pipeline's stages, setting the scene); a customer with sales, an address, a phone and recommendations is erased with
`python -m winecrm.privacy erase`; the next week is run with exports that bring them back (the
ERP still lists them, they bought again, one of their lines is bad); late Brevo and shop events
about them arrive and `crm_events` runs. Then every table, every file under the data folder
(RAW excepted: the ERP's own exports, immutable, see the erasure's RAW note), every task log
and every alert is scanned for their address, phone and name: nothing but the erasure's hash.
Their sales still count, anonymously; no score, recommendation, e-mail or SMS exists for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from winecrm_tools.samples import sampledata
from winecrm.events import intake

from tests.conftest import relaxed_gate_config, sales_line, write_export
from tests.dags.test_crm_weekly_run import alerts, module_warehouse  # noqa: F401 (fixtures)

pytestmark = pytest.mark.airflow
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FIRST_WEEK = "2026-11-09T05:00:00+00:00"     # week 02/11–08/11
NEXT_WEEK = "2026-11-16T05:00:00+00:00"      # week 09/11–15/11: exports dated 16/11 bring the person back
DERIVED = ("crm.customer_360", "crm.rfm_scores", "crm.lead_scores", "crm.buy_probabilities", "crm.recommendations",
           "crm.recommendation_exclusions", "crm.automation_actions", "crm.customer_tags",
           "crm.tasks", "crm.score_changes", "crm.campaign_pauses", "crm.lead_score_state")


def _phone_forms(national: str) -> list[str]:
    """0661225607 as it may be written: plain, spaced, dotted, +33, 0033, 33."""
    digits = re.sub(r"\D", "", national)
    pairs = " ".join(digits[i:i + 2] for i in range(0, len(digits), 2))
    return [digits, pairs, pairs.replace(" ", "."), pairs.replace(" ", "-"), "+33" + digits[1:],
            "0033" + digits[1:], "33" + digits[1:], "+33 " + pairs[1:]]


@pytest.fixture(scope="module")
def erased_and_back(tmp_path_factory, module_warehouse, airflow_db, alerts):  # noqa: F811
    base = tmp_path_factory.mktemp("erasure")
    data = base / "data"
    env = {**os.environ, "CRM_DATABASE_URL": module_warehouse, "CRM_DATA_DIR": str(data),
           "CRM_ALERT_WEBHOOK_URL": alerts[0], "GX_ANALYTICS_ENABLED": "False",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    for name in ("CRM_RAW_DIR", "CRM_WORK_URL", "CRM_DOCS_DIR", "CRM_OUTBOX_DIR", "CRM_REPORTS_DIR", "BREVO_API_KEY"):
        env.pop(name, None)
    sampledata.write_sample_exports(data / "raw", n_customers=200, years=1.0)
    env["CRM_PIPELINE_CONFIG"] = str(relaxed_gate_config(base))
    # the week before only sets the scene (scores, recommendations, a dry-run campaign): the
    # pipeline's own stages, without Airflow; what follows the erasure runs under Airflow
    first = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import datetime as dt
        from winecrm import pipeline
        from winecrm.core import db
        with db.connect() as conn:
            week = pipeline.week_window("before-erasure", dt.datetime.fromisoformat({FIRST_WEEK!r}))
            assert pipeline.run_all(conn, week)["status"] == "success"
        """)], env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]

    next_sales = (data / "raw" / "isavigne" / "ventes_lignes" / "ventes_lignes_2026-11-16.csv").read_bytes()
    with psycopg.connect(module_warehouse) as conn:
        # a customer the next week's export brings back, with everything a profile holds
        person = conn.execute("""
            SELECT c.client_code, lower(btrim(c.email)), c.telephone, c.prenom, c.nom, c.code_postal, c.ville
            FROM etl.clients c
            WHERE c.email LIKE '%@%' AND c.telephone IS NOT NULL AND c.prenom IS NOT NULL
              AND EXISTS (SELECT 1 FROM crm.recommendations r WHERE r.client_code = c.client_code)
              AND EXISTS (SELECT 1 FROM crm.email_sends s WHERE s.client_code = c.client_code)
              AND (SELECT count(*) FROM etl.clients o WHERE o.nom = c.nom AND o.prenom = c.prenom) = 1
            ORDER BY c.client_code""").fetchall()
        person = next(p for p in person if f";{p[0]};".encode() in b";" + next_sales.replace(b"\r\n", b";"))
        code, address, phone, first_name, last_name, postcode, town = person
        revenue_before = conn.execute("SELECT sum(mt_ht), count(*) FROM etl.ventes_lignes WHERE client_code = %s",
                                      (code,)).fetchone()
    erase = subprocess.run([sys.executable, "-m", "winecrm.privacy", "erase", "--email", address], env=env,
                           capture_output=True, text=True, timeout=600)
    assert erase.returncode == 0, erase.stdout[-3000:] + erase.stderr[-3000:]

    # the week after: the ERP still lists them (clients_2026-11-16), they bought again, one line is bad
    complement = write_export(data / "raw", "ventes_lignes", "ventes_lignes_2026-11-16_complement.csv", [
        sales_line(client=code, date="12/11/2026", doc_no="F-ERASED-1", email=address, cp=postcode, ville=town),
        sales_line(client=code, date="31/02/2026", doc_no="F-ERASED-2", email=address, cp=postcode, ville=town)])
    # delivered complete, as the ERP's other exports of the week are (else the sensor waits out its
    # poke interval, 5 min, for a file it takes for one still being copied)
    old = complement.stat().st_mtime - 3600
    os.utime(complement, (old, old))
    again = subprocess.run([AIRFLOW, "dags", "test", "crm_weekly", NEXT_WEEK], env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]

    # late events about them: Brevo (their address), the shop (their client code)
    rows = intake.rows(intake.parse_brevo([
        {"event": "opened", "email": address, "message-id": "<late-1@relay>", "ts_event": 1_763_370_000},
        {"event": "click", "email": address, "message-id": "<late-1@relay>", "ts_event": 1_763_370_100,
         "link": f"https://www.domaine-exemple.fr/?u={address}"}]))
    rows += intake.rows(intake.parse_behavior(
        {"client_code": code, "action": "purchase", "event_id": "late-order-1", "metadata": {"amount": 84.5},
         "email": address, "ts": "2026-11-17T10:00:00+01:00"}))
    with psycopg.connect(module_warehouse) as conn:
        conn.execute(intake.INSERT_SQL, intake.insert_params(rows))
    events = subprocess.run([AIRFLOW, "dags", "test", "crm_events", "2026-11-17T09:00:00+00:00"], env=env,
                            capture_output=True, text=True, timeout=900)
    assert events.returncode == 0, events.stdout[-4000:] + events.stderr[-4000:]
    return {"env": env, "data": data, "code": code, "address": address, "phone": phone, "first": first_name,
            "last": last_name, "revenue_before": revenue_before,
            "logs": [erase.stdout + erase.stderr, again.stdout + again.stderr, events.stdout + events.stderr],
            "erase_summary": erase.stdout,
            "alerts": alerts[1]}


def _needles(p: dict) -> list[str]:
    return [p["address"], f"{p['first']} {p['last']}".lower(), f"{p['last']} {p['first']}".lower(),
            *_phone_forms(p["phone"])]


def test_no_table_holds_their_address_phone_or_name(erased_and_back, module_warehouse):
    p = erased_and_back
    needles = _needles(p)
    found = []
    with psycopg.connect(module_warehouse) as conn:
        columns = conn.execute("""
            SELECT table_schema, table_name, column_name FROM information_schema.columns
            WHERE table_schema IN ('etl', 'crm', 'public')
              AND data_type NOT IN ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision',
                                    'boolean', 'date', 'timestamp with time zone', 'timestamp without time zone',
                                    'bytea', 'uuid', 'interval')""").fetchall()
        for schema, table, column in columns:
            text = sql.SQL("lower({}::text)").format(sql.Identifier(column))
            for needle in needles:
                n = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE strpos({}, %s) > 0").format(
                    sql.Identifier(schema, table), text), (needle.lower(),)).fetchone()[0]
                if n:
                    found.append(f"{schema}.{table}.{column} ({n}): {needle}")
        # their rows keyed by client code keep no name, address or town
        left = conn.execute("SELECT nom, prenom, email, telephone, adresse, code_postal, ville FROM etl.clients "
                            "WHERE client_code = %s", (p["code"],)).fetchall()
        marker = "erased:" + hashlib.sha256(p["address"].encode()).hexdigest()
        markers = conn.execute("SELECT reason FROM crm.suppressions WHERE email = %s", (marker,)).fetchall()
    assert found == []
    assert left == [(None,) * 7]
    assert markers == [("erased",)]


def test_no_file_under_the_data_folder_holds_them(erased_and_back):
    p = erased_and_back
    needles = [n.lower().encode() for n in _needles(p)]
    found = []
    for path in sorted(p["data"].rglob("*")):
        relative = path.relative_to(p["data"])
        if not path.is_file() or relative.parts[0] in ("raw", "pg"):
            continue
        data = path.read_bytes().lower()
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            data = json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False).lower().encode()
        found += [f"{relative}: {n.decode()}" for n in needles if n in data]
    assert found == []


def test_no_task_log_or_alert_holds_them(erased_and_back):
    p = erased_and_back
    # the runs after the erasure (the erasure's own output is the operator's terminal: it repeats
    # what they typed, nothing more)
    texts = p["logs"][1:] + [json.dumps(a, ensure_ascii=False) for a in p["alerts"]]
    logs_dir = Path(p["env"].get("AIRFLOW_HOME", "")) / "logs"
    if logs_dir.is_dir():
        texts += [f.read_text(errors="replace") for f in logs_dir.rglob("*.log")]
    for needle in _needles(p):
        assert not any(needle.lower() in t.lower() for t in texts), needle
    assert "F-ERASED-2" in p["logs"][1] or "31/02/2026" in p["logs"][1]  # their bad line: logged, values masked
    # the erasure's summary names the client code (the ERP needs it), never an address found from it
    assert p["code"] in p["erase_summary"] and p["phone"] not in p["erase_summary"]


def test_their_sales_still_count_anonymously_and_nothing_is_derived_from_them(erased_and_back, module_warehouse):
    p = erased_and_back
    with psycopg.connect(module_warehouse) as conn:
        total, lines = conn.execute("SELECT sum(mt_ht), count(*) FROM etl.ventes_lignes WHERE client_code = %s",
                                    (p["code"],)).fetchone()
        # the week's sample export and our complement bring new sales of theirs: they count
        assert lines > p["revenue_before"][1] + 1 and total > p["revenue_before"][0]
        assert conn.execute("SELECT count(*) FROM etl.ventes_lignes WHERE document_no = 'F-ERASED-1' "
                            "AND client_code = %s", (p["code"],)).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM etl.ventes_lignes WHERE client_code = %s AND "
                            "(email IS NOT NULL OR code_postal IS NOT NULL OR ville IS NOT NULL)",
                            (p["code"],)).fetchone()[0] == 0
        for table in DERIVED:
            n = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE client_code = %s").format(
                sql.Identifier(*table.split("."))), (p["code"],)).fetchone()[0]
            assert n == 0, table
        # the ledger keeps the proof of what was sent before, without content; nothing new for them
        sends = conn.execute("SELECT email, subject, status FROM crm.email_sends WHERE client_code = %s",
                             (p["code"],)).fetchall()
        assert sends and all(e is None and s is None for e, s, _ in sends)
        assert conn.execute("SELECT count(*) FROM crm.email_sends s JOIN crm.campaigns k USING (campaign_id) "
                            "WHERE s.client_code = %s AND k.as_of_date >= '2026-11-15'", (p["code"],)).fetchone()[0] == 0
        history = conn.execute("SELECT change, source, email FROM crm.consent_log WHERE client_code = %s "
                               "ORDER BY consent_id", (p["code"],)).fetchall()
    assert history[-1][:2] == ("opt_out", "privacy_erase") and all(e is None for *_, e in history)
    sms = p["data"] / "outbox" / "sms"
    assert not sms.is_dir() or not any(p["code"] in f.read_text() for f in sms.glob("*.jsonl"))
