"""RGPD retention: personal data of rejected rows and the pages showing them do not stay forever."""

from __future__ import annotations

import os
import time

from winecrm import pipeline
from winecrm.core import settings, storage
from winecrm.etl import retention

from tests.conftest import MONDAY_RUN, sales_line, write_export
from winecrm.core.weeks import estate_zone


def test_old_quarantine_raw_values_and_data_docs_pages_are_purged(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv",
                 [sales_line(doc_no=f"F{i}") for i in range(20)]
                 + [sales_line(doc_no="BAD", qty="deux", email="marie.kuntz@example", client="KUNTZ")])
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    raw_values, reason = conn.execute("SELECT raw_values::text, reason FROM etl.quarantine").fetchone()
    assert "marie.kuntz@example" in raw_values and "'deux'" in reason
    # a fresh row is kept as it is
    assert retention.purge_quarantine(conn, 90) == 0
    conn.execute("UPDATE etl.quarantine SET quarantined_at = now() - interval '91 days'")
    conn.commit()
    assert retention.purge_quarantine(conn, 90) == 1
    raw_values, reason = conn.execute("SELECT raw_values, reason FROM etl.quarantine").fetchone()
    assert raw_values is None and "deux" not in reason and "marie" not in reason
    assert reason.startswith("isavigne/ventes_lignes/v_2026-11-16.csv line 22: qty_line: ")
    assert reason.endswith("(details purged after 90 days)")

    site = settings.paths().data_docs_site
    pages = [p for p in (site / "validations").rglob("*.html")]
    assert pages and any("marie.kuntz" in p.read_text(encoding="utf-8") for p in pages)
    assert retention.purge_data_docs(90) == 0
    old = time.time() - 91 * 86400
    for folder in (settings.paths().docs_dir / "gx" / "uncommitted" / "validations", site / "validations"):
        for path in folder.rglob("*"):
            if path.is_file():
                os.utime(path, (old, old))
    assert retention.purge_data_docs(90) > 0
    leftovers = [p for p in site.rglob("*.html") if "marie.kuntz" in p.read_text(encoding="utf-8")]
    assert leftovers == [] and settings.paths().data_docs_index.exists()


def test_old_work_folders_are_deleted(conn, crm_dirs):
    write_export(crm_dirs["raw"], "ventes_lignes", "v_2026-11-16.csv", [sales_line()])
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    folder = storage.run_work_dir("run_1")
    assert list(folder.rglob("*.parquet"))
    assert retention.purge_work_files(14) == 0
    assert retention.purge_work_files(14, now=time.time() + 15 * 86400) == 1
    assert not list(storage.work_root().rglob("*.parquet"))


def test_old_email_bodies_and_outbox_folders_are_purged(conn, crm_dirs):
    from winecrm_tools.samples import sampledata

    sampledata.write_sample_exports(crm_dirs["raw"], n_customers=120, years=1.0)
    pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))  # renders and simulates the dry run
    simulated = conn.execute("SELECT count(*) FROM crm.email_sends WHERE status = 'simulated' "
                             "AND html IS NOT NULL").fetchone()[0]
    outbox = settings.paths().outbox_dir
    assert simulated > 0 and len(list(outbox.rglob("*.eml"))) == simulated
    assert retention.purge_email_bodies(conn, 30) == {"email_bodies_purged": 0, "outbox_folders_deleted": 0}
    conn.execute("UPDATE crm.email_sends SET updated_at = now() - interval '31 days'")
    conn.commit()
    old = time.time() - 31 * 86400
    for path in outbox.rglob("*"):
        os.utime(path, (old, old))
    assert retention.purge_email_bodies(conn, 30) == {"email_bodies_purged": simulated, "outbox_folders_deleted": 1}
    assert conn.execute("SELECT count(*) FROM crm.email_sends WHERE html IS NOT NULL OR text_body IS NOT NULL"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM crm.email_sends WHERE subject IS NOT NULL").fetchone()[0] == simulated
    assert not list(outbox.rglob("*.eml"))


def test_old_event_payloads_are_purged_and_the_event_kept(conn, crm_dirs):
    from winecrm.events import intake

    rows = intake.rows(intake.parse_brevo([
        {"event": "click", "email": f"c{i}@example.fr", "message-id": f"<m{i}>", "ts_event": 1_763_370_000 + i,
         "link": "https://x.fr/a", "subject": "Pour Anne"} for i in range(3)]))
    conn.execute(intake.INSERT_SQL, intake.insert_params(rows))
    conn.execute("UPDATE crm.webhook_events SET status = 'done', processed_at = now() - interval '100 days' "
                 "WHERE email <> 'c2@example.fr'")
    conn.commit()
    assert retention.purge_event_payloads(conn, 90) == 2
    kept = conn.execute("SELECT email, event, link, payload FROM crm.webhook_events ORDER BY event_id").fetchall()
    assert kept[0][:3] == ("c0@example.fr", "click", "https://x.fr/a")
    assert kept[0][3] == {"purged": True, "event": "click"} and kept[2][3]["subject"] == "Pour Anne"
    assert retention.purge_event_payloads(conn, 90) == 0


def test_the_sms_outbox_loses_its_old_days_while_sms_keep_flowing(conn, crm_dirs):
    """Dry-run SMS are appended to outbox/sms/<day>.jsonl: the folder is written to every day SMS
    flow, so judging it as a whole (as the e-mail outbox folders are) would keep every number forever."""
    import datetime as dt
    import json

    from tests.fakes.estate import seed_warehouse
    from winecrm.events import intake, processing
    from winecrm.events.rules import parse_rules

    seed_warehouse(conn, 1)
    conn.execute("UPDATE etl.clients SET telephone = '06 12 34 56 78' WHERE client_code = 'C000000'")
    conn.commit()
    rules = parse_rules({"settings": {"sms": {"mode": "dry_run", "sender": "DomExemple"}}, "rules": [
        {"id": "sms_form", "trigger": "form_submit",
         "actions": [{"type": "send_sms", "text": "Merci, le domaine vous rappelle.", "sms_type": "transactional"}]}]})
    today = dt.datetime.now(estate_zone()).replace(hour=11, minute=0, second=0, microsecond=0)
    old_day = today - dt.timedelta(days=40)
    for moment, event_id in ((old_day, "f-old"), (today, "f-new")):
        body = {"action": "form_submit", "client_code": "C000000", "event_id": event_id, "metadata": {},
                "ts": moment.isoformat()}
        conn.execute(intake.INSERT_SQL, intake.insert_params(intake.rows(intake.parse_behavior(body))))
        conn.commit()
        processing.process_events(conn, rules=rules, now=moment)
    folder = settings.paths().outbox_dir / "sms"
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"{old_day:%Y-%m-%d}.jsonl", f"{today:%Y-%m-%d}.jsonl"]
    assert json.loads((folder / files[0]).read_text(encoding="utf-8"))["recipient"] == "33612345678"
    old = time.time() - 40 * 86400
    os.utime(folder / files[0], (old, old))

    report = retention.purge(conn)  # the weekly run's retention, settings from pipeline.yaml (30 days)
    assert settings.pipeline_config().retention.sms_outbox_days == 30
    assert report["sms_outbox_files_deleted"] == 1
    assert sorted(p.name for p in folder.iterdir()) == [f"{today:%Y-%m-%d}.jsonl"]  # today's SMS stay
    assert retention.purge_sms_outbox(30) == 0
    # once SMS stop, the last day goes too when it is old enough
    assert retention.purge_sms_outbox(30, now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=31)) == 1
    assert list(folder.iterdir()) == []
