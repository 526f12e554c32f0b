"""
### crm_weekly — iSaVigne exports to the CRM warehouse, every Monday 06:00 (Europe/Paris)

1. **prepare_run** — applies pending SQL migrations, opens the run record in `etl.runs`.
2. **wait_for_exports** — waits (reschedule mode: no worker slot held) until every required
   dataset has a complete export for the week; fails with the list of what is missing after
   `exports.max_wait_hours`.
3. **ingest** — registers each new file by SHA-256 in `etl.file_manifest` (never twice),
   detects encoding / delimiter / sheet, maps headers; RAW is never modified.
4. **validate** — Great Expectations suite per dataset; bad rows go to `etl.quarantine`
   with file, line, column and failing expectations; a quality gate stops the run when too
   many rows are bad. Data Docs are rebuilt under `$CRM_DATA_DIR/quality`.
5. **load** — COPY into staging, then set-based SQL into `etl.ventes_lignes`, `etl.clients`,
   `etl.produits`, `etl.stock`; one transaction per dataset.
6. **score** — as of the week's Sunday: `crm.customer_360`, `crm.rfm_scores` (R/F/M 1–4,
   segment VIP / Standard / At Risk / Churn), `crm.lead_scores` with every component and
   `crm.product_affinity` (co-purchase support / confidence / Jaccard) — rules in
   `include/config/scoring.yaml`.
7. **recommend** — a scenario per segment (cross-sell, rebuy, win-back), up to 3 products with
   a score and a French reason in `crm.recommendations`, guard-rails with the reason each
   customer was left out in `crm.recommendation_exclusions`, a deterministic control group.
8. **finish_run** — closes the run record and logs the summary.

Rerunning a logical date changes nothing: files already loaded are recognised by hash.
Configuration: `include/config/pipeline.yaml`; connections `crm_warehouse` (else
`CRM_DATABASE_URL`, else an embedded PostgreSQL).
"""

from __future__ import annotations

from airflow.sdk import dag, task

from winecrm.airflow.glue import (
    DEFAULT_ARGS,
    SENSOR_POKE_SECONDS,
    SENSOR_TIMEOUT,
    START_DATE,
    TAG_CRM,
    TAG_ETL,
    TAG_WEEKLY,
    run_stage,
)


@dag(
    dag_id="crm_weekly",
    schedule="0 6 * * 1",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[TAG_CRM, TAG_WEEKLY, TAG_ETL],
    doc_md=__doc__,
)
def crm_weekly():
    @task
    def prepare_run(**context) -> dict:
        from winecrm import pipeline
        from winecrm.airflow.glue import warehouse_connection

        # A manual run triggered without a logical date (allowed in Airflow 3) covers the week
        # before the moment it was asked to run.
        logical_date = context.get("logical_date") or context["dag_run"].run_after
        window = pipeline.week_window(context["run_id"], logical_date)
        with warehouse_connection() as conn:
            applied = pipeline.prepare(conn, window)
        print(f"Week {window.week_start} – {window.week_end}; migrations applied now: {applied or 'none'}")
        return window.as_dict()

    @task.sensor(mode="reschedule", poke_interval=SENSOR_POKE_SECONDS, timeout=SENSOR_TIMEOUT.total_seconds())
    def wait_for_exports(run: dict) -> bool:
        from airflow.sdk.exceptions import AirflowFailException

        from winecrm import pipeline

        try:
            return pipeline.check_exports(pipeline.RunWindow.from_dict(run))
        except pipeline.ExportsMissing as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def ingest(run: dict) -> dict:
        return run_stage("ingest", run)

    @task
    def validate(run: dict) -> dict:
        return run_stage("validate", run)

    @task
    def load(run: dict) -> dict:
        return run_stage("load", run)

    @task
    def score(run: dict) -> dict:
        return run_stage("score", run)

    @task
    def recommend(run: dict) -> dict:
        return run_stage("recommend", run)

    @task
    def finish_run(run: dict) -> dict:
        import json

        from winecrm import pipeline
        from winecrm.airflow.glue import warehouse_connection

        with warehouse_connection() as conn:
            summary = pipeline.finish(conn, run["run_id"])
        print(json.dumps(summary, indent=2, default=str, ensure_ascii=False))
        return {k: summary[k] for k in ("status", "files_new", "rows_read", "rows_loaded", "rows_quarantined")}

    run = prepare_run()
    exports_ready = wait_for_exports(run)
    ingested = ingest(run)
    validated = validate(run)
    loaded = load(run)
    scored = score(run)
    recommended = recommend(run)
    exports_ready >> ingested >> validated >> loaded >> scored >> recommended >> finish_run(run)


crm_weekly()
