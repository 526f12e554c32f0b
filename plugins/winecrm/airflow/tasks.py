"""The bodies of crm_weekly's tasks: thin wrappers that open the warehouse connection and call
``winecrm.pipeline``, turning errors a retry cannot fix into failures without retry.

Every task finds its run in ``etl.runs`` by the Airflow run id. Two small values travel by XCom:
the run note (see the plugin's listener) and the campaign's mode, which ``render_emails`` returns
for the branch to the approval or straight to sending."""

from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger(__name__)

NOTE_KEY = "run_note"  # XCom key of the one-line French summary the plugin sets as the run's note


def use_airflow_storage() -> None:
    """Work files on an object store go through Airflow's ObjectStoragePath, so the credentials
    can come from an Airflow connection named in the URL (``s3://aws_default@bucket/winecrm/work``).
    A plain local path keeps the plain path."""
    from urllib.parse import urlsplit

    from winecrm.core import settings, storage

    if urlsplit(settings.paths().work_url).scheme == "":
        storage.use_root_factory(None)
        return
    from airflow.sdk import ObjectStoragePath

    storage.use_root_factory(ObjectStoragePath)


def _fail_fast(exc: Exception):
    """A failure no retry can fix. Raised ``from None``: the log shows the message once (not again
    as the cause), its long lines folded so the log view shows them whole. Anything in it that
    looks like an e-mail address or a phone number is masked: the text goes to the task log and
    to the failure alerts."""
    import textwrap

    from airflow.sdk.exceptions import AirflowFailException

    from winecrm.core.personal import scrub

    lines = scrub(str(exc)).splitlines() or [""]
    folded = "\n".join(textwrap.fill(line, width=110, subsequent_indent="    ", break_long_words=False,
                                      break_on_hyphens=False) for line in lines)
    return AirflowFailException(folded)


def prepare_run(context) -> dict:
    from winecrm import pipeline
    from winecrm.airflow.connections import WarehouseConnectionError, brevo_credentials, warehouse_connection
    from winecrm.core.db import WarehouseNotConfigured
    from winecrm.core.run_params import RunParams, RunParamsError
    from winecrm.core.settings import ConfigError
    from winecrm.core.weeks import paris

    # A manual run triggered without a logical date (allowed in Airflow 3) covers the week
    # before the moment it was asked to run.
    logical_date = context.get("logical_date") or context["dag_run"].run_after
    window = None
    try:
        params = RunParams.parse(dict(context.get("params") or {}))
        window = pipeline.week_window(context["run_id"], logical_date, params)
        # sending asked without Brevo: refused now, before the week's work, not by a silent dry run
        if (not params.dry_run or scheduled_live(str(getattr(context["dag_run"], "run_type", "") or ""))) \
                and brevo_credentials() is None:
            raise pipeline.LiveWithoutBrevo(pipeline.live_refusal(params.dry_run))
        with warehouse_connection("prepare") as conn:
            applied = pipeline.prepare(conn, window)
            window = pipeline.current_window(conn, window.run_id)
    except (WarehouseConnectionError, WarehouseNotConfigured, ConfigError, RunParamsError,
            pipeline.LiveWithoutBrevo) as exc:
        if window is not None:  # the run list says which week failed and why
            context["ti"].xcom_push(NOTE_KEY, f"{window.week.label_fr()} : ÉCHEC — {str(exc).splitlines()[0]}")
        raise _fail_fast(exc) from None
    log.info("%s (sales delivered %s–%s); run date %s (Paris); migrations applied now: %s",
             window.week.label_fr(), window.week_start.strftime("%d/%m/%Y"), window.week_end.strftime("%d/%m/%Y"),
             paris(logical_date), ", ".join(applied) or "none")
    log.info("Params: %s", window.params)
    context["ti"].xcom_push(NOTE_KEY, f"{window.week.label_fr()} : en cours")
    return window.as_dict()


def wait_for_exports(run_id: str) -> bool:
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("sensor") as conn:
        pipeline.heartbeat(conn, run_id)
        window = pipeline.current_window(conn, run_id)
        # Counted from this try's first look too: clearing the task after dropping the missing
        # file gives it a new wait, not the deadline the previous try already reached.
        window = dataclasses.replace(window, started_at=max(filter(None, (window.started_at, _first_look()))))
        try:
            return pipeline.check_exports(window, conn=conn)
        except (pipeline.ExportsMissing, pipeline.ExportsRejected) as exc:
            raise _fail_fast(exc) from None


def _first_look():
    """When the sensor's current try first looked (reschedule mode keeps it across looks)."""
    import datetime as dt

    from airflow.sdk import get_current_context

    context = get_current_context()
    try:
        first = context["ti"].get_first_reschedule_date(context)
    except Exception:  # outside a reschedule-mode sensor: this look is the first
        first = None
    return first or dt.datetime.now(dt.timezone.utc)


def run_stage(stage: str, run_id: str) -> None:
    """``winecrm.pipeline.run_<stage>`` for the DAG run, on the warehouse (its report goes to
    ``etl.runs.details`` and the Run summary page, not to XCom)."""
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection
    from winecrm.core.db import WarehouseBusy

    use_airflow_storage()
    with warehouse_connection(stage) as conn:
        try:
            getattr(pipeline, f"run_{stage}")(conn, run_id)
        except WarehouseBusy as exc:
            raise _fail_fast(exc) from None


def finish_run(run_id: str, ti) -> dict:
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("finish") as conn:
        try:
            summary = pipeline.finish_checked(conn, run_id)
        except (pipeline.FilesRejected, pipeline.WeekNotLoaded) as exc:
            raise _fail_fast(exc) from None
    log.info("%s", summary["note"])
    ti.xcom_push(NOTE_KEY, summary["note"])
    return {k: summary[k] for k in ("status", "note", "files_new", "rows_read", "rows_written", "rows_superseded",
                                    "rows_skipped", "rows_quarantined")}


def plugin_url(path: str) -> str:
    """A page of the plugin as people open it, when CRM_DATA_DOCS_URL says where the plugin is
    served (…/winecrm/data-docs); else ''."""
    import os

    base = os.environ.get("CRM_DATA_DOCS_URL", "").rstrip("/").rsplit("/data-docs", 1)[0]
    return f"{base}{path}" if base else ""


LIVE_VARIABLE = "crm_weekly_live"  # "true": the Monday scheduled runs send (after approval)


def scheduled_live(run_type: str | None) -> bool:
    """A Monday run that sends: the Variable crm_weekly_live is true."""
    if run_type != "scheduled":
        return False
    from airflow.sdk import Variable

    return str(Variable.get(LIVE_VARIABLE, default="false")).strip().lower() in ("true", "1", "yes")


def render_emails(run_id: str, run_type: str | None = None) -> str:
    """The week's campaign rendered into the ledger; returns its mode ('live' or 'dry_run')."""
    from winecrm import pipeline
    from winecrm.airflow.connections import brevo_credentials, warehouse_connection
    from winecrm.core.db import WarehouseBusy

    with warehouse_connection("render") as conn:
        try:
            report = pipeline.run_render(conn, run_id, brevo_configured=brevo_credentials() is not None,
                                         scheduled_live=scheduled_live(run_type))
        except (WarehouseBusy, pipeline.LiveWithoutBrevo) as exc:
            raise _fail_fast(exc) from None
    log.info("%s: %s; %s", report["campaign_id"], report["why"],
             ", ".join(f"{k} {v}" for k, v in report["by_status"].items()))
    if report["mode"] == "live" and not report["by_status"].get("rendered"):
        log.info("Nothing left to send in %s (already sent, or everyone left out): no approval needed",
                 report["campaign_id"])
        return "live_nothing_to_send"
    return report["mode"]


def campaign_path(mode: str) -> str:
    """crm_weekly's branch after render_emails: a live campaign with e-mails to send waits for a
    person's approval; a dry run, or a live week with nothing left to send, goes straight to
    send_emails (which writes the outbox, or closes the campaign)."""
    return "approve_campaign" if mode == "live" else "send_emails"


def send_emails(run_id: str) -> None:
    """Send (live, approved) or write to the outbox (dry run) the campaign of the run."""
    from winecrm import pipeline
    from winecrm.airflow.connections import brevo_credentials, warehouse_connection
    from winecrm.campaigns import brevo, send
    from winecrm.core.db import WarehouseBusy

    client = brevo.configured_client(brevo_credentials())
    with warehouse_connection("send") as conn:
        try:
            report = pipeline.run_send(conn, run_id, client=client)
        except (WarehouseBusy, send.CampaignNotApproved, brevo.BrevoAuthError, brevo.BrevoNoCredits,
                brevo.BrevoForbidden, brevo.BrevoBadRequest) as exc:
            raise _fail_fast(exc) from None  # a retry cannot fix these: a person must
    log.info("%s: %s", report["campaign_id"], ", ".join(f"{k} {v}" for k, v in report["by_status"].items()))
    if report.get("outbox"):
        log.info("Outbox (dry run, nothing sent): %s", report["outbox"])


def campaign_review(run_id: str) -> tuple[str, str]:
    """Subject and body (Markdown) of the approval request: what would leave, per scenario, with
    the subject lines its e-mails carry and a link to a rendered e-mail of each (served by the
    plugin to signed-in users)."""
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection
    from winecrm.campaigns.render import campaign_summary, subject_lines

    with warehouse_connection("review") as conn:
        details = pipeline.rendered_campaign(conn, run_id)
        summary = campaign_summary(conn, details["campaign_id"])
        subjects = subject_lines(conn, details["campaign_id"])
    return review_text(summary, subjects, sorted(details.get("previews") or {}), plugin_url("") or "/winecrm")


def review_text(summary: dict, subjects: dict[str, list[dict]], previews: list[str], base: str) -> tuple[str, str]:
    """The approval request in French, as the marketing person reads it (FRENCH-COPY.md: a
    no-break space before « : » and « ? », thousands grouped, singular for 0 and 1), from
    ``render.campaign_summary`` and ``render.subject_lines``. Nothing in it is to be typed: a test
    e-mail is asked of the data engineer."""
    from winecrm.campaigns.labels import reason_fr, scenario_fr
    from winecrm.campaigns.render import FIRST_NAME
    from winecrm.core import french

    nbsp, narrow = french.NBSP, french.NNBSP
    campaign_id = summary["campaign_id"]
    lines = [f"**Campagne {campaign_id}** — e-mails prêts à partir par Brevo{nbsp}:", "",
             "| Scénario | À envoyer | Écartés |", "|---|--:|--:|"]
    for scenario, counts in sorted(summary["by_scenario"].items(), key=lambda item: scenario_fr(item[0])):
        lines.append(f"| {scenario_fr(scenario)} | {french.number(counts.get('rendered', 0))} "
                     f"| {french.number(counts.get('skipped', 0))} |")
    if subjects:
        named = any(FIRST_NAME in form["subject"] for forms in subjects.values() for form in forms)
        lines += ["", "Objet des e-mails" + (f" ({FIRST_NAME} y devient le prénom de chaque client)" if named else "")
                  + f"{nbsp}:"]
        for scenario, forms in sorted(subjects.items(), key=lambda item: scenario_fr(item[0])):
            lines.append(f"- {scenario_fr(scenario)}{nbsp}: " + f"{nbsp}; ".join(
                f"«{nbsp}{form['subject']}{nbsp}» ({french.plural(form['emails'], 'e-mail')})" for form in forms))
    skipped = summary["skipped"]
    others = sorted(((reason_fr(k), n) for k, n in skipped.items() if k != "control_group"), key=lambda r: -r[1])
    lines += ["", f"Groupe témoin (jamais écrit){nbsp}: {french.plural(skipped.get('control_group', 0), 'client')}.",
              f"Autres clients écartés{nbsp}: "
              + (", ".join(f"{label} ({french.number(n)})" for label, n in others) or "aucun") + "."]
    if previews:
        lines += ["", f"Aperçu (l'e-mail du client le plus susceptible d'acheter, par scénario){nbsp}: "
                  + ", ".join(f"[{scenario_fr(scenario)}]({base}/previews/{campaign_id}/{scenario})"
                              for scenario in sorted(previews, key=scenario_fr)) + ".",
                  "Pour recevoir ces e-mails dans votre boîte avant de décider, demandez un envoi de test "
                  "à l'ingénieur des données."]
    lines += ["", f"**Approve**{nbsp}: les e-mails partent. **Reject**{nbsp}: rien n'est envoyé (décision enregistrée)."]
    total = sum(c.get("rendered", 0) for c in summary["by_scenario"].values())
    return f"Envoyer {french.plural(total, 'e-mail')} de la campagne {campaign_id}{narrow}?", "\n".join(lines)


def record_decision(run_id: str, approved: bool, who: object) -> None:
    """The marketing person's answer in crm.campaigns, with their name (``who``: the Airflow
    user as the approval form gives it, ``{"id": …, "name": …}``)."""
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection
    from winecrm.campaigns.labels import person_name

    who = person_name(who) or "unknown"
    with warehouse_connection("decision") as conn:
        details = pipeline.rendered_campaign(conn, run_id)
        conn.execute("""UPDATE crm.campaigns SET status = %s, decided_by = %s, decided_at = now(), updated_at = now()
                        WHERE campaign_id = %s AND status = 'rendered'""",
                     ("approved" if approved else "rejected", who, details["campaign_id"]))
        conn.commit()
    log.info("Campaign %s by %s", "approved" if approved else "rejected (nothing will be sent)", who)


def weekly_report(run_id: str) -> None:
    from winecrm import pipeline
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("report") as conn:
        written = pipeline.run_report(conn, run_id)
    link = plugin_url(f"/reports/{run_id}") or written["html"]
    log.info("Rapport hebdomadaire : %s (résumé JSON : %s)", link, written["json"])


def process_events(ti=None) -> dict:
    """crm_events: the queued webhook and behaviour events through the automation rules; due
    actions run. A bad rules file fails at once (a retry cannot fix it); a bad event is marked
    failed in the queue and never fails the task."""
    from winecrm.airflow.connections import brevo_credentials, warehouse_connection
    from winecrm.campaigns import brevo
    from winecrm.core import settings
    from winecrm.core.migrations import apply_migrations
    from winecrm.events import processing
    from winecrm.events.rules import load_rules

    try:
        rules = load_rules()
    except (settings.ConfigError, OSError) as exc:
        raise _fail_fast(exc) from None
    client = brevo.configured_client(brevo_credentials())
    with warehouse_connection("events") as conn:
        apply_migrations(conn)
        summary = processing.process_events(conn, rules=rules, brevo=client)
    queue = summary["queue"]
    log.info("%d events processed; actions decided per rule: %s; applied: %s; lead_score_high: %d; queue now: %s; "
             "%.1f s", summary["events"], ", ".join(f"{k} {v}" for k, v in summary["fired"].items()) or "none",
             ", ".join(f"{k} {v}" for k, v in sorted(summary["actions"].items())) or "none",
             summary["lead_score_high"], queue, summary["seconds"])
    if queue.get("parked"):
        log.warning("%d events are parked after repeated failures: see crm.webhook_events WHERE status = 'parked' "
                    "(the error column says why)", queue["parked"])
    if ti is not None:  # the run list says what the run did (the plugin's listener sets the note)
        ti.xcom_push(NOTE_KEY, events_note(summary))
    # newly parked events or actions need a person: this run fails once (no retry), so on-call hears of it;
    # the queue itself went on, and the next run is green again
    stuck = {k: v for k, v in summary["actions"].items() if k.endswith((":parked", ":unknown")) and v}
    if summary["parked"] or stuck:
        raise _fail_fast(RuntimeError(
            f"{summary['parked']} event(s) parked after repeated failures "
            f"(crm.webhook_events WHERE status = 'parked': the error column says why); actions needing a person: "
            f"{', '.join(f'{k} {v}' for k, v in stuck.items()) or 'none'} (crm.automation_actions WHERE status IN "
            "('parked', 'unknown')). Everything else was processed."))
    return {"events": summary["events"], "queue": queue}


def events_note(summary: dict) -> str:
    """« Événements : 12 traités, 3 actions appliquées, 1 en attente d'une personne ; file : 0 en attente »."""
    from winecrm.core import french

    not_applied = (":skipped", ":already", ":postponed", ":failed", ":parked", ":unknown")
    applied = sum(v for k, v in summary["actions"].items() if not k.endswith(not_applied))
    stuck = sum(v for k, v in summary["actions"].items() if k.endswith((":parked", ":unknown")))
    parts = [french.plural(summary["events"], "traité"), french.plural(applied, "action appliquée", "actions appliquées")]
    if summary["parked"] or stuck:
        parts.append(f"{french.number(summary['parked'] + stuck)} à voir par une personne (événements ou actions "
                     "mis de côté)")
    waiting = summary["queue"].get("pending", 0) + summary["queue"].get("retry", 0)
    return f"Événements : {', '.join(parts)} ; file : {french.number(waiting)} en attente"
