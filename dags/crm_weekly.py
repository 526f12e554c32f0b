"""
### crm_weekly — iSaVigne exports to the CRM warehouse, every Monday 06:00 (Europe/Paris)

**Which week.** A run covers the Monday–Sunday week before its date (the Monday 06:00 run of
16/11 covers 09/11–15/11), or the week chosen in the trigger form. The run's note in the run
list says which week and what happened: « Semaine du 09/11 au 15/11/2026 : 1 nouveau fichier,
507 lignes lues, 6 écrites, … ». Backfill dialog: one run per Monday, each its own week.

1. **prepare_run** — checks the settings files and the trigger form, applies pending SQL
   migrations, opens a new attempt of the run in `etl.runs` (a rerun keeps earlier attempts).
2. **wait_for_exports** — waits (reschedule mode: no worker slot held) for a sales export dated
   in the week, a customers / products / stock snapshot at or before it, and for every file of
   the week still being copied; fails naming what is missing `exports.max_wait_hours` after the
   run started, and at once when the week's only export was refused by an earlier run.
3. **ingest** — takes the new files dated up to the end of the run's week (never a later
   week's), registers each by SHA-256 in `etl.file_manifest` (never twice),
   detects encoding / delimiter / sheet, maps headers; RAW is never modified, links never followed.
4. **validate** — Great Expectations suite per dataset; bad rows go to `etl.quarantine`
   with file, line, column and failing expectations; a file with too many bad rows is rejected
   (quality gate, per file) and never taken again.
   **data_docs**, beside the load — GX stores the results and rebuilds the Data Docs under
   `$CRM_DOCS_DIR` (each file's page is named in validate's log and the gate's message).
5. **load** — COPY into staging, then set-based SQL into `etl.ventes_lignes`, `etl.clients`,
   `etl.produits`, `etl.stock`; one transaction per dataset.
6. **score** — as of the week's Sunday: customer 360, RFM + segments, lead score, affinities.
7. **recommend** — a scenario per segment, up to 3 products with a French reason, guard-rails,
   a deterministic control group.
8. **render_emails** — the week's French e-mails (MJML templates, `include/templates/email/`)
   rendered into the send ledger `crm.email_sends`: one per recommended customer, or the reason
   they get none (control group, suppressed / opted-out / invalid address, silence window).
9. **campaign_path** — a dry run (the default; live needs `dry_run` unticked in the form, or
   the Variable `crm_weekly_live` = true for the Monday runs — without a Brevo connection that
   fails the run at once, in prepare_run; a past week stays a dry run and its note says so) goes
   straight to sending into the outbox; a live run goes to **approve_campaign** first: a person
   approves or rejects in the Airflow UI (Browse › Required actions), seeing what would leave.
   A live week with nothing left to send (everyone left out, or all sent) asks no approval:
   send_emails closes the campaign.
10. **send_emails** — live: through Brevo, batch by batch, each e-mail exactly once (the ledger
   is written before and after every call; a retried or killed task resumes without resending);
   dry run: `.eml` files in the outbox folder.
11. **purge** — RGPD retention: raw values of old rejected rows, old Data Docs pages, old work
   files, bodies of e-mails settled more than 30 days ago.
12. **report** — the weekly report in French (one self-contained HTML file with its charts, and a
   JSON summary): data health, segments and their movement, recommendations, who was left out,
   the campaign. Linked from the run (« Rapport hebdo ») and written in the task log.
13. **finish_run** — closes the run record; fails naming the files the quality gate rejected, or
   the export the week needs that is not in the warehouse: a green run means the week was loaded.

**One writer per warehouse.** ingest … purge run in the pool `crm_warehouse` (1 slot) and hold
a PostgreSQL advisory lock while they write: a backfill, a second run or a CLI command waits
its turn (data_docs writes no table: it holds a lock of its own on the Data Docs folder). Up to 3 runs are active at once, so a scheduled run still waiting for its exports
never holds up a week triggered by hand; each run takes only the exports of its week (and
earlier ones), never a later week's.

**What a backfill reproduces.** Sales are as of the run's week (`date_livraison <=` its Sunday).
Customers (e-mail, opt-out), products, stock and suppressions are the warehouse's current ones:
a backfill of an old week scores that week's purchases with today's customer file and catalogue.

Configuration: `include/config/pipeline.yaml`, `scoring.yaml`, `campaigns.yaml`; connections
`crm_warehouse` (else `CRM_DATABASE_URL`; a missing one fails `prepare_run` with what to set) and
`brevo_default` (HTTP connection, API key in the password; asking to send without it fails).
"""

from __future__ import annotations

from airflow.sdk import dag, task
from winecrm.airflow import (
    START_DATE,
    TAG_CRM,
    TAG_ETL,
    TAG_WEEKLY,
    WAREHOUSE_POOL,
    WEEKLY_MAX_ACTIVE_RUNS,
    default_args,
    outlets,
    run_timeout,
    sensor_poke_seconds,
    sensor_timeout,
    trigger_params,
)
from winecrm.airflow.approval import CampaignApprovalOperator
from winecrm.airflow.callbacks import run_failure_callbacks


@dag(
    dag_id="crm_weekly",
    description="Weekly iSaVigne exports → CRM warehouse → scores and recommendations (Mondays 06:00 Paris)",
    schedule="0 6 * * 1",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=WEEKLY_MAX_ACTIVE_RUNS,
    dagrun_timeout=run_timeout(),
    default_args=default_args(),
    on_failure_callback=run_failure_callbacks(),
    params=trigger_params(),
    tags=[TAG_CRM, TAG_WEEKLY, TAG_ETL],
    doc_md=__doc__,
)
def crm_weekly():
    @task(show_return_value_in_logs=False,
          doc_md="Settings, trigger form and migrations checked; a new attempt of the run opened in `etl.runs`.")
    def prepare_run(**context) -> dict:
        from winecrm.airflow.tasks import prepare_run

        return prepare_run(context)

    @task.sensor(mode="reschedule", poke_interval=sensor_poke_seconds(), timeout=sensor_timeout().total_seconds(),
                 execution_timeout=None,
                 doc_md="Waits for the week's sales export, customer / product / stock snapshots and any file "
                        "of the week still being copied; fails naming what is missing at the deadline.")
    def wait_for_exports(run_id=None) -> bool:
        from winecrm.airflow.tasks import wait_for_exports

        return wait_for_exports(run_id)

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False,
          doc_md="New files of RAW registered by SHA-256 (never twice) and read; one log line per file.")
    def ingest(run_id=None) -> None:
        from winecrm.airflow.tasks import run_stage

        run_stage("ingest", run_id)

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False, outlets=outlets("validate"),
          doc_md="Great Expectations per file: bad rows quarantined with file, line and delivered value; a file "
                 "above the quality gate rejected (see `accept_files`). Links to each file's Data Docs page.")
    def validate(run_id=None) -> None:
        from winecrm.airflow.tasks import run_stage

        run_stage("validate", run_id)

    @task(show_return_value_in_logs=False,
          doc_md="Great Expectations stores what validate found and renders the Data Docs, beside the load "
                 "(no warehouse table written: outside the `crm_warehouse` pool, under the Data Docs lock).")
    def data_docs(run_id=None) -> None:
        from winecrm.airflow.tasks import run_stage

        run_stage("data_docs", run_id)

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False, outlets=outlets("load"),
          doc_md="Validated rows into the warehouse: rows written, skipped (older than what "
                 "the warehouse has) and replaced, counted apart.")
    def load(run_id=None) -> None:
        from winecrm.airflow.tasks import run_stage

        run_stage("load", run_id)

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False, outlets=outlets("score"),
          doc_md="As of the week's Sunday: customer 360, RFM segments, lead score, affinities.")
    def score(run_id=None) -> None:
        from winecrm.airflow.tasks import run_stage

        run_stage("score", run_id)

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False, outlets=outlets("recommend"),
          doc_md="Up to 3 products per customer with a French reason; guard-rails and a control group.")
    def recommend(run_id=None) -> None:
        from winecrm.airflow.tasks import run_stage

        run_stage("recommend", run_id)

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False, doc_md="The week's e-mails rendered into the send ledger, or the reason a "
                                      "customer gets none; returns the campaign's mode (live or dry_run).")
    def render_emails(run_id=None, dag_run=None) -> str:
        from winecrm.airflow.tasks import render_emails

        return render_emails(run_id, str(getattr(dag_run, "run_type", "") or ""))

    @task.branch(show_return_value_in_logs=False, doc_md="Live campaigns wait for a person's approval; dry runs go straight to the outbox.")
    def campaign_path(mode: str) -> str:
        from winecrm.airflow.tasks import campaign_path

        return campaign_path(mode)  # live_nothing_to_send: straight to send_emails, which closes the campaign

    approve_campaign = CampaignApprovalOperator(
        task_id="approve_campaign",
        doc_md="A person approves or rejects the live campaign (counts per scenario, control group, who is "
               "left out). Reject, or no answer within 2 days: nothing is sent, and the decision is recorded.")

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False, trigger_rule="none_failed_min_one_success",
          doc_md="Live and approved: sent through Brevo, each e-mail exactly once. Dry run: .eml files in the "
                 "outbox folder.")
    def send_emails(run_id=None) -> None:
        from winecrm.airflow.tasks import send_emails

        send_emails(run_id)

    @task(pool=WAREHOUSE_POOL, show_return_value_in_logs=False, trigger_rule="none_failed",
          doc_md="RGPD retention: old raw values of rejected rows, old Data Docs pages and work files.")
    def purge(run_id=None) -> None:
        from winecrm.airflow.tasks import run_stage

        run_stage("purge", run_id)

    @task(show_return_value_in_logs=False,
          doc_md="The weekly report (HTML with charts, JSON summary) in French, linked from the run.")
    def report(run_id=None) -> None:
        from winecrm.airflow.tasks import weekly_report

        weekly_report(run_id)

    @task(show_return_value_in_logs=False,
          doc_md="Closes the run record and writes its note; fails naming files the quality gate rejected.")
    def finish_run(run_id=None, ti=None) -> dict:
        from winecrm.airflow.tasks import finish_run

        return finish_run(run_id, ti)

    mode = render_emails()
    path = campaign_path(mode)
    sent = send_emails()
    checked, loaded, docs = validate(), load(), data_docs()
    prepare_run() >> wait_for_exports() >> ingest() >> checked >> [loaded, docs]
    loaded >> score() >> recommend() >> mode
    path >> [approve_campaign, sent]
    approve_campaign >> sent
    [sent, docs] >> purge() >> report() >> finish_run()


crm_weekly()
