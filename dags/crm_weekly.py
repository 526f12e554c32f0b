"""
### crm_weekly — iSaVigne exports to the CRM warehouse, every Monday 06:00 (Europe/Paris)

1. **prepare_run** — checks the settings files, applies pending SQL migrations, opens a new
   attempt of the run in `etl.runs` (a rerun keeps what earlier attempts did).
2. **wait_for_exports** — waits (reschedule mode: no worker slot held) until every required
   dataset has a complete export for the week; fails with the list of what is missing after
   `exports.max_wait_hours`.
3. **ingest** — registers each new file by SHA-256 in `etl.file_manifest` (never twice),
   detects encoding / delimiter / sheet, maps headers; RAW is never modified, links never followed.
4. **validate** — Great Expectations suite per dataset; bad rows go to `etl.quarantine`
   with file, line, column and failing expectations; a file with too many bad rows is rejected
   (quality gate, per file) and never taken again. Data Docs are rebuilt under `$CRM_DOCS_DIR`.
5. **load** — COPY into staging, then set-based SQL into `etl.ventes_lignes`, `etl.clients`,
   `etl.produits`, `etl.stock`; one transaction per dataset.
6. **score** — as of the week's Sunday: customer 360, RFM + segments, lead score, affinities.
7. **recommend** — a scenario per segment, up to 3 products with a French reason, guard-rails,
   a deterministic control group.
8. **purge** — RGPD retention: raw values of old rejected rows, old Data Docs pages, old work files.
9. **finish_run** — closes the run record; fails naming the files the quality gate rejected.

**One writer per warehouse.** ingest … purge run in the pool `crm_warehouse` (1 slot) and hold
a PostgreSQL advisory lock while they write: a backfill, a second run or a CLI command waits
its turn (`max_active_runs` does not cover backfills).

**What a backfill reproduces.** Sales are as of the run's week (`date_livraison <=` its Sunday).
Customers (e-mail, opt-out), products, stock and suppressions are the warehouse's current ones:
a backfill of an old week scores that week's purchases with today's customer file and catalogue.

Configuration: `include/config/pipeline.yaml`; connection `crm_warehouse` (else
`CRM_DATABASE_URL`; a missing one fails `prepare_run` with what to set).
"""

from __future__ import annotations

from airflow.sdk import dag, task
from winecrm.airflow import (
    START_DATE,
    TAG_CRM,
    TAG_ETL,
    TAG_WEEKLY,
    WAREHOUSE_POOL,
    default_args,
    run_timeout,
    sensor_poke_seconds,
    sensor_timeout,
)
from winecrm.airflow.callbacks import run_failure_callbacks


@dag(
    dag_id="crm_weekly",
    schedule="0 6 * * 1",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=run_timeout(),
    default_args=default_args(),
    on_failure_callback=run_failure_callbacks(),
    tags=[TAG_CRM, TAG_WEEKLY, TAG_ETL],
    doc_md=__doc__,
)
def crm_weekly():
    @task
    def prepare_run(**context) -> dict:
        from winecrm.airflow.tasks import prepare_run

        return prepare_run(context)

    @task.sensor(mode="reschedule", poke_interval=sensor_poke_seconds(), timeout=sensor_timeout().total_seconds(),
                 execution_timeout=None)
    def wait_for_exports(run: dict) -> bool:
        from winecrm.airflow.tasks import wait_for_exports

        return wait_for_exports(run)

    @task(pool=WAREHOUSE_POOL)
    def ingest(run: dict) -> dict:
        from winecrm.airflow.tasks import run_stage

        return run_stage("ingest", run)

    @task(pool=WAREHOUSE_POOL)
    def validate(run: dict) -> dict:
        from winecrm.airflow.tasks import run_stage

        return run_stage("validate", run)

    @task(pool=WAREHOUSE_POOL)
    def load(run: dict) -> dict:
        from winecrm.airflow.tasks import run_stage

        return run_stage("load", run)

    @task(pool=WAREHOUSE_POOL)
    def score(run: dict) -> dict:
        from winecrm.airflow.tasks import run_stage

        return run_stage("score", run)

    @task(pool=WAREHOUSE_POOL)
    def recommend(run: dict) -> dict:
        from winecrm.airflow.tasks import run_stage

        return run_stage("recommend", run)

    @task(pool=WAREHOUSE_POOL)
    def purge(run: dict) -> dict:
        from winecrm.airflow.tasks import run_stage

        return run_stage("purge", run)

    @task
    def finish_run(run: dict) -> dict:
        from winecrm.airflow.tasks import finish_run

        return finish_run(run)

    run = prepare_run()
    exports_ready = wait_for_exports(run)
    stages = [ingest(run), validate(run), load(run), score(run), recommend(run), purge(run), finish_run(run)]
    exports_ready >> stages[0]
    for upstream, downstream in zip(stages, stages[1:]):
        upstream >> downstream


crm_weekly()
