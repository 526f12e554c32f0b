"""
### crm_events — what customers do after an e-mail, through the automation rules (every 5 minutes)

The webhook receiver (`make webhooks`, or its own service in docker compose) stores every Brevo
event (opened, click, bounce, unsubscribed...) and behaviour event (purchase, form, page visit)
in the queue `crm.webhook_events` before answering the sender. This DAG processes the queue:

1. **process_events** — claims queued events (`FOR UPDATE SKIP LOCKED`, 5,000 per
   transaction), links each to our e-mail (`X-Mailin-custom`, else Brevo's message-id, else the
   address) and to the customer, maps it to a trigger, and evaluates the rules of
   `include/config/automation_rules.yaml`, highest priority first. Each action of a matching
   rule is recorded once per (event, rule, action) in `crm.automation_actions` with its due
   time, then applied when due: score changes (`crm.score_changes`, the lead score's engagement
   points), tags, follow-up tasks and calls for the sales team (`crm.open_tasks`), campaign
   pauses, suppressions, thank-you / VIP e-mails through the campaigns' ledger (never twice),
   SMS (never at night, on Sundays or public holidays), outbound webhooks. Unsubscribes, spam
   complaints and hard bounces always suppress the address, whatever the rules say.
   A customer whose lead score crosses the threshold gets a `lead_score_high` event.

A bad event is marked failed with its error and retried with back-off, then parked
(`status = 'parked'`) for a person — it never blocks the queue. The run that parks it fails once
(no retry), naming it, so on-call is alerted; the next run is green again. A killed or
retried task applies nothing twice: each batch is one transaction.

Try a rule without applying it: `python -m winecrm.events explain event.json`.
Configuration: `automation_rules.yaml` (`CRM_AUTOMATION_RULES`); connections `crm_warehouse`,
`brevo_default` (automation e-mails and SMS go live only when the rules file says so).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task
from winecrm.airflow import START_DATE, TAG_CRM, TAG_EVENTS, events_default_args
from winecrm.airflow.callbacks import run_failure_callbacks


@dag(
    dag_id="crm_events",
    description="Brevo webhooks and behaviour events → automation rules → actions (every 5 minutes)",
    schedule="*/5 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=30),
    default_args=events_default_args(),
    on_failure_callback=run_failure_callbacks(),
    tags=[TAG_CRM, TAG_EVENTS],
    doc_md=__doc__,
)
def crm_events():
    @task(show_return_value_in_logs=False,
          doc_md="The queue through the rules; due actions applied, each exactly once. The log says what "
                 "fired, what was applied, and what is parked.")
    def process_events(ti=None) -> dict:
        from winecrm.airflow.tasks import process_events

        return process_events(ti)

    process_events()


crm_events()
