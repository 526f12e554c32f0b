"""Delivered personal values (names, e-mail addresses, phone numbers, addresses) never reach task
logs, rejection reasons or failure alerts: they name the file, line and column, and the value
stays in etl.quarantine.raw_values only."""

from __future__ import annotations

import logging

import pytest
from winecrm import pipeline
from winecrm.airflow import callbacks
from winecrm.core import personal
from winecrm.etl import validate
from winecrm.etl.rules import Rule

from tests.conftest import MONDAY_RUN, write_export

CLIENTS_HEADER = "client_code;nom;prenom;email;telephone;adresse;code_postal;ville"
KUNTZ = "C7;Kuntz;Marie;marie.kuntz@example.fr;06 12 34 56 78;3 rue des Vignes;67210;Obernai"
PERSONAL = ("Kuntz", "Marie", "marie.kuntz", "06 12 34 56 78", "rue des Vignes", "Obernai",
            "paul.roth@@example", "07 11 22 33 44", "Roth")


def _leaks(text: str) -> list[str]:
    return [value for value in PERSONAL if value in text]


class TI:
    dag_id, task_id, run_id, try_number, log_url = "crm_weekly", "wait_for_exports", "scheduled__x", 1, ""


def test_a_client_export_without_its_header_line_is_rejected_without_quoting_the_customer(conn, crm_dirs, caplog):
    caplog.set_level(logging.INFO)
    raw = crm_dirs["raw"]
    # the ERP forgot the header line: the first customer is read as the header
    write_export(raw, "clients", "clients_2026-11-16.csv", [
        "C8;Roth;Paul;paul.roth@@example;07 11 22 33 44;1 place du Marché;67210;Obernai"], header=KUNTZ)
    # and a good file with a malformed address, a duplicate and a customer without a code
    write_export(raw, "clients", "clients_2026-11-15.csv", [
        "C1;Dupont;Jean;jean@example.fr;0601020304;1 rue X;67000;Obernai",
        ";Roth;Paul;paul.roth@@example;07 11 22 33 44;2 rue Y;67210;Obernai",
        "C1;Dupont;Jean;jean@example.fr;0601020304;1 rue X;67000;Obernai"], header=CLIENTS_HEADER)
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    for stage in pipeline.stages_until(pipeline.run_load):
        stage(conn, "run_1")
    status, reason = conn.execute(
        "SELECT status, status_reason FROM etl.file_manifest WHERE file_path LIKE '%%clients_2026-11-16.csv'").fetchone()
    assert status == "quarantined"
    assert "clients_2026-11-16.csv" in reason and "client_code" in reason and _leaks(reason) == []
    reasons = [r for (r,) in conn.execute("SELECT reason FROM etl.quarantine ORDER BY quarantine_id")]
    assert any("clients_2026-11-15.csv line 3: client_code" in r for r in reasons)
    assert all(_leaks(r) == [] for r in reasons)
    # the values stay in the warehouse, where the engineer may look (and the erasure finds them)
    assert conn.execute("SELECT count(*) FROM etl.quarantine WHERE raw_values ->> 'nom' = 'Roth'").fetchone()[0] == 1
    assert "clients_2026-11-16.csv" in caplog.text and _leaks(caplog.text) == []

    # the sensor's failure, as the task fails with it and the alerts send it
    exc = pipeline.ExportsRejected(reason)
    from winecrm.airflow.tasks import _fail_fast

    assert _leaks(str(_fail_fast(exc))) == [] and "clients_2026-11-16.csv" in str(_fail_fast(exc))
    payload = callbacks.failure_payload({"ti": TI(), "exception": exc})
    assert "clients_2026-11-16.csv" in payload["error"] and _leaks(payload["error"]) == []


def test_failure_alerts_mask_addresses_and_phone_numbers_but_keep_file_line_and_column():
    error = RuntimeError("isavigne/clients/clients_2026-11-16.csv line 3: email: 'paul.roth@@example' rejected; "
                         "telephone: '07 11 22 33 44'; run scheduled__2026-11-16T05:00:00+00:00")
    payload = callbacks.failure_payload({"ti": TI(), "exception": error})
    assert _leaks(payload["error"]) == []
    assert "clients_2026-11-16.csv line 3: email: " in payload["error"] and "telephone: " in payload["error"]
    assert "scheduled__2026-11-16T05:00:00+00:00" in payload["error"]
    from winecrm.airflow.tasks import _fail_fast

    folded = str(_fail_fast(error))
    assert _leaks(folded) == [] and "line 3: email" in folded
    notifier = callbacks.EmailAlert()
    notifier.render_template_fields({"ti": TI(), "exception": error})
    assert _leaks(notifier.html_content) == [] and "line 3: email" in notifier.html_content


@pytest.mark.parametrize("column,value", [("email", "paul.roth@@example"), ("telephone", "07 11 22 33 44"),
                                          ("nom", "Roth"), ("date_naissance", "31/02/1970")])
def test_a_rule_on_a_personal_column_explains_without_the_value(column, value):
    rule = Rule(check=None, column=column, explain="{value!r} is not valid")
    assert validate._explain(rule, value, None) == f"{personal.MASK!r} is not valid"
    assert validate._explain(Rule(None, "qty_line", explain="{value!r} is not a number"), "deux", None) \
        == "'deux' is not a number"  # not personal: the value helps and stays


def test_the_personal_columns_cover_the_contract_columns_that_hold_personal_data():
    from winecrm.etl.contract import DATASETS

    contract = {c.name for d in DATASETS.values() for c in d.columns}
    assert {"nom", "prenom", "email", "telephone", "adresse", "code_postal", "ville"} <= personal.PERSONAL_COLUMNS
    assert not personal.PERSONAL_COLUMNS & {"client_code", "article", "qty_line", "document_no"}
    assert {"nom", "prenom", "email", "telephone", "adresse"} <= contract
