"""The actions that leave the warehouse: e-mails, SMS and outbound webhooks — never twice.

* ``send_email``: the e-mail is rendered into the campaigns' ledger ``crm.email_sends`` (campaign
  ``auto-<rule>-<day>``, kind 'automation': at most one e-mail per rule, customer and day) in
  the same transaction that marks the action done, then sent by the campaigns' own sender
  (Brevo with an idempotency key, or the outbox in dry-run): the same exactly-once path as the
  weekly campaign. The rules are the approval: automation e-mails need no person per e-mail,
  but go live only with ``settings.automation_emails: live`` and a Brevo connection.
* ``send_sms``: Brevo transactional SMS to the customer's mobile in E.164 (``phonenumbers``).
  Marketing SMS follow the French rules: none between 22:00 and 08:00, on Sundays or on public
  holidays (``holidays``, Alsace-Moselle included); the SMS waits for the next allowed time.
  Brevo takes no idempotency key for SMS, so the action is recorded 'running' before the call
  and a call whose answer was lost (or a task killed during it) ends 'unknown' for a person to
  check — it is never sent again blindly.
* ``trigger_webhook``: an outbound POST with a timeout and retries, carrying
  ``Idempotency-Key: winecrm-action-<id>`` so the receiver can drop a repeat.

Failures are retried with back-off (1, 2, 4, 8 min...) and parked after ``max_attempts``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
from collections import Counter
from pathlib import Path

import requests
from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_attempt, wait_exponential

from winecrm.core import settings
from winecrm.core import french
from winecrm.core.weeks import estate_zone
from winecrm.events.rules import RuleSet, SmsSettings

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------------------------
# when a marketing SMS may leave


def _hhmm(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def sms_allowed_from(at: dt.datetime, cfg: SmsSettings) -> dt.datetime:
    """The first moment at or after ``at`` when a marketing SMS may be sent (the estate's time zone)."""
    import holidays

    start, end = _hhmm(cfg.quiet_before), _hhmm(cfg.quiet_after)
    local = at.astimezone(estate_zone())
    years = {local.year, local.year + 1}
    closed = holidays.country_holidays("FR", subdiv=cfg.holidays_subdivision, years=years)
    for _ in range(30):
        day = local.date()
        if day.weekday() == 6 or day in closed or local.time() >= end:
            local = dt.datetime.combine(day + dt.timedelta(days=1), start, estate_zone())
            continue
        if local.time() < start:
            local = dt.datetime.combine(day, start, estate_zone())
            continue
        return local.astimezone(dt.timezone.utc)
    raise RuntimeError("no allowed SMS time in the next 30 days: check settings.sms")  # pragma: no cover


def e164(number: str | None, region: str = "FR") -> str | None:
    """The number as E.164 (+33612345678) when it is a valid mobile (or could be), else None."""
    import phonenumbers

    if not number or not str(number).strip():
        return None
    try:
        parsed = phonenumbers.parse(str(number), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    if phonenumbers.number_type(parsed) not in (phonenumbers.PhoneNumberType.MOBILE,
                                                phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# --------------------------------------------------------------------------------------------
# common


def _backoff_or_park(conn, action_id: int, error: str, max_attempts: int, *, status_if_retry: str = "failed") -> str:
    row = conn.execute("""
        UPDATE crm.automation_actions
        SET attempts = attempts + 1, error = %s,
            status = CASE WHEN attempts + 1 >= %s THEN 'parked' ELSE %s END,
            due_at = now() + make_interval(mins => power(2, least(attempts, 10))::int)
        WHERE action_id = %s RETURNING status""", (error[:2000], max_attempts, status_if_retry, action_id)).fetchone()
    conn.commit()
    return row[0]


def _due(conn, action_type: str, limit: int = 1000, statuses=("pending", "failed")) -> list[dict]:
    cols = ("action_id", "event_id", "rule_id", "params", "client_code", "email", "due_at", "attempts")
    rows = conn.execute(f"""
        SELECT {', '.join(cols)} FROM crm.automation_actions
        WHERE action_type = %s AND status = ANY(%s) AND due_at <= now()
        ORDER BY due_at, priority DESC, action_id LIMIT %s""", (action_type, list(statuses), limit)).fetchall()
    conn.commit()
    return [dict(zip(cols, r)) for r in rows]


def _finish(conn, action_id: int, status: str, result: dict | None = None, error: str | None = None) -> None:
    _finish_many(conn, [(action_id, status, result, error)])


def _finish_many(conn, done: list[tuple[int, str, dict | None, str | None]]) -> None:
    """``_finish`` for many actions in one statement: (action id, status, result, error)."""
    if not done:
        return
    conn.execute("""
        UPDATE crm.automation_actions a SET status = d.status, result = d.result::jsonb, error = d.error,
                                            done_at = now(), attempts = a.attempts + 1
        FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS d(action_id, status, result, error)
        WHERE a.action_id = d.action_id""",
                 ([d[0] for d in done], [d[1] for d in done],
                  [json.dumps(d[2], default=str) if d[2] is not None else None for d in done], [d[3] for d in done]))


# --------------------------------------------------------------------------------------------
# e-mails


def automation_campaign_id(rule_id: str, day: dt.date) -> str:
    return f"auto-{rule_id.replace('_', '-')}-{day.isoformat()}"


def _render_email_actions(conn, rules: RuleSet) -> tuple[Counter, set[str]]:
    """Due send_email actions into the automation campaigns' ledger, 200 per transaction: who is
    blocked and who was already e-mailed that day worked out for the whole chunk in one query,
    the rows written in one statement (a few round trips per chunk, not per e-mail)."""
    from winecrm.campaigns import render, templates

    cfg, scoring = settings.campaigns_config(), settings.scoring_config()
    mode = rules.settings.automation_emails
    counts, campaigns = Counter(), set()
    while True:
        with conn.transaction():
            claimed = conn.execute("""
                SELECT a.action_id, a.rule_id, a.params ->> 'template', a.client_code, a.due_at,
                       c.email, c.prenom, c.nom
                FROM crm.automation_actions a LEFT JOIN etl.clients c USING (client_code)
                WHERE a.action_type = 'send_email' AND a.status IN ('pending', 'failed') AND a.due_at <= now()
                ORDER BY a.due_at, a.priority DESC, a.action_id LIMIT 200
                FOR UPDATE OF a SKIP LOCKED""").fetchall()
            if not claimed:
                return counts, campaigns
            finished: list[tuple] = []
            known = []
            for action_id, rule_id, template, client, due_at, email, prenom, nom in claimed:
                if client is None or email is None:
                    finished.append((action_id, "skipped", None, "unknown customer or no address"))
                    counts["send_email:skipped"] += 1
                    continue
                known.append((action_id, rule_id, template, client, email, prenom, nom,
                              automation_campaign_id(rule_id, due_at.astimezone(estate_zone()).date())))
            for campaign_id in dict.fromkeys(k[7] for k in known):
                campaign = render.ensure_campaign(conn, campaign_id, kind="automation", as_of=None, mode=mode,
                                                  run_id=None)
                if mode == "live" and campaign["status"] == "rendered":
                    conn.execute("""UPDATE crm.campaigns SET status = 'approved', decided_by = 'automation rules',
                                           decided_at = now(), updated_at = now() WHERE campaign_id = %s""",
                                 (campaign_id,))
            # per action: already e-mailed by its rule that day? blocked (suppressed, invalid...)?
            checks = dict(((i, (already, blocked)) for i, already, blocked in conn.execute("""
                SELECT x.i, EXISTS (SELECT 1 FROM crm.email_sends e
                                    WHERE e.campaign_id = x.campaign AND e.client_code = x.client),
                       crm.email_blocked_reason(x.client, x.email, 0, x.campaign)
                FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[]) AS x(i, client, email, campaign)""",
                ([i for i in range(len(known))], [k[3] for k in known], [k[4] for k in known],
                 [k[7] for k in known])))) if known else {}
            to_write, seen = [], set()
            for i, (action_id, rule_id, template, client, email, prenom, nom, campaign_id) in enumerate(known):
                already, blocked = checks[i]
                if already or (campaign_id, client) in seen:   # not rendered for nothing
                    finished.append((action_id, "skipped", {"campaign_id": campaign_id},
                                     f"already e-mailed by rule {rule_id} that day"))
                    counts["send_email:already"] += 1
                    continue
                seen.add((campaign_id, client))
                token = secrets.token_urlsafe(24)
                subject = html = text = None
                if not blocked:
                    row = {"scenario": template, "products": [], "prenom": prenom, "nom": nom}
                    try:
                        rendered = templates.render(template, render.context_for(row, campaign_id, token, cfg, scoring))
                    except templates.TemplateError as exc:  # a template a person must fix: the others go on
                        finished.append((action_id, "parked", None, str(exc)))
                        counts["send_email:parked"] += 1
                        seen.discard((campaign_id, client))
                        continue
                    subject, html, text = rendered.subject, rendered.html, rendered.text
                to_write.append((action_id, rule_id, campaign_id, client, email, template, subject, html, text,
                                 blocked, token, str(render.idempotency_key(campaign_id, client))))
            written = {}
            if to_write:
                columns = list(zip(*to_write))
                written = {(c, k): send_id for send_id, c, k in conn.execute("""
                    INSERT INTO crm.email_sends (campaign_id, client_code, email, scenario, status, idempotency_key,
                                                 template, subject, html, text_body, products, skip_reason,
                                                 unsubscribe_token, rendered_at, updated_at)
                    SELECT w.campaign, w.client, w.email, w.template,
                           CASE WHEN w.blocked IS NULL THEN 'rendered' ELSE 'skipped' END, w.key::uuid, w.template,
                           w.subject, w.html, w.text_body, '[]', w.blocked, w.token, now(), now()
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                                %s::text[], %s::text[], %s::text[])
                         AS w(campaign, client, email, template, subject, html, text_body, blocked, token, key)
                    ON CONFLICT (campaign_id, client_code) WHERE campaign_id IS NOT NULL DO NOTHING
                    RETURNING send_id, campaign_id, client_code""",
                    (list(columns[2]), list(columns[3]), list(columns[4]), list(columns[5]), list(columns[6]),
                     list(columns[7]), list(columns[8]), list(columns[9]), list(columns[10]), list(columns[11])))}
            for action_id, rule_id, campaign_id, client, *_, blocked, _token, _key in to_write:
                send_id = written.get((campaign_id, client))
                if send_id is None:   # written meanwhile by another run
                    finished.append((action_id, "skipped", {"campaign_id": campaign_id},
                                     f"already e-mailed by rule {rule_id} that day"))
                    counts["send_email:already"] += 1
                elif blocked:
                    finished.append((action_id, "skipped", {"campaign_id": campaign_id, "send_id": send_id}, blocked))
                    counts["send_email:skipped"] += 1
                else:
                    finished.append((action_id, "done", {"campaign_id": campaign_id, "send_id": send_id}, None))
                    counts["send_email:rendered"] += 1
                    campaigns.add(campaign_id)
            _finish_many(conn, finished)


def run_email_actions(conn, rules: RuleSet, *, brevo=None, outbox: Path | None = None) -> Counter:
    """Render due e-mail actions into the ledger, then send every automation campaign holding
    rendered (or interrupted) e-mails."""
    from winecrm.campaigns import send

    counts, _ = _render_email_actions(conn, rules)
    pending = [r[0] for r in conn.execute("""
        SELECT DISTINCT e.campaign_id FROM crm.email_sends e JOIN crm.campaigns k USING (campaign_id)
        WHERE k.kind = 'automation' AND e.status IN ('rendered', 'sending') ORDER BY 1""")]
    conn.commit()
    for campaign_id in pending:
        mode = conn.execute("SELECT mode FROM crm.campaigns WHERE campaign_id = %s", (campaign_id,)).fetchone()[0]
        conn.commit()
        result = send.send_campaign(conn, campaign_id, client=brevo if mode == "live" else None, outbox=outbox)
        counts["send_email:campaigns_sent"] += 1
        log.info("automation e-mails %s: %s", campaign_id, result["by_status"])
    return counts


# --------------------------------------------------------------------------------------------
# SMS


def _sms_outbox(outbox: Path | None) -> Path:
    folder = (outbox or settings.paths().outbox_dir) / "sms"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_sms_actions(conn, rules: RuleSet, *, brevo=None, outbox: Path | None = None,
                    now: dt.datetime | None = None) -> Counter:
    from winecrm.campaigns import brevo as brevo_mod

    cfg = rules.settings.sms
    counts = Counter()
    # a task stopped during a call: the SMS may have left — recorded, never repeated
    lost = conn.execute("""
        UPDATE crm.automation_actions SET status = 'unknown',
               error = 'the task stopped during the call: the SMS may have left; not sent again (check Brevo''s SMS log)'
        WHERE action_type = 'send_sms' AND status = 'running' RETURNING action_id""").rowcount
    conn.commit()
    if lost:
        counts["send_sms:unknown"] += lost
    live = cfg.mode == "live"
    if live and brevo is None:
        raise RuntimeError("settings.sms.mode is live but no Brevo connection is configured (brevo_default): "
                           "no SMS sent")
    for action in _due(conn, "send_sms"):
        client = conn.execute("""SELECT telephone, coalesce(opt_out, false),
                                        crm.email_blocked_reason(client_code, email, 0, NULL) = 'suppressed'
                                 FROM etl.clients WHERE client_code = %s""", (action["client_code"],)).fetchone()
        number = e164(client[0], cfg.region) if client else None
        if client is None or client[1] or client[2] or number is None:
            why = ("unknown customer" if client is None else "the customer opted out" if client[1] or client[2]
                   else "no valid mobile number")
            _finish(conn, action["action_id"], "skipped", error=why)
            conn.commit()
            counts["send_sms:skipped"] += 1
            continue
        moment = now or dt.datetime.now(dt.timezone.utc)
        sms_type = action["params"].get("sms_type", "marketing")
        if sms_type == "marketing":
            allowed = sms_allowed_from(moment, cfg)
            if allowed > moment:
                conn.execute("UPDATE crm.automation_actions SET due_at = %s, error = %s WHERE action_id = %s",
                             (allowed, "waiting for the next allowed time (French rules for marketing SMS)",
                              action["action_id"]))
                conn.commit()
                counts["send_sms:postponed"] += 1
                continue
        # the rule's words, with the no-break spaces French typography wants (« Merci ! », « 15 % »)
        sms = {"sender": cfg.sender, "recipient": number.lstrip("+"), "content": french.spacing(action["params"]["text"]),
               "type": sms_type, "tag": f"rule-{action['rule_id']}"}
        conn.execute("UPDATE crm.automation_actions SET status = 'running' WHERE action_id = %s", (action["action_id"],))
        conn.commit()  # recorded before the call: a lost answer is never followed by a second SMS
        if not live:
            with open(_sms_outbox(outbox) / f"{moment.astimezone(estate_zone()):%Y-%m-%d}.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"action_id": action["action_id"], **sms}, ensure_ascii=False) + "\n")
            _finish(conn, action["action_id"], "done", {"dry_run": True, "recipient": sms["recipient"]})
            conn.commit()
            counts["send_sms:simulated"] += 1
            continue
        try:
            answer = brevo.send_sms(sms)
        except brevo_mod.BrevoUnavailable as exc:
            _finish(conn, action["action_id"], "unknown", error=f"no answer from Brevo ({exc}): not sent again")
            conn.commit()
            counts["send_sms:unknown"] += 1
            continue
        except (brevo_mod.BrevoAuthError, brevo_mod.BrevoNoCredits, brevo_mod.BrevoForbidden,
                brevo_mod.BrevoRateLimited) as exc:  # refused before sending: try later
            conn.execute("UPDATE crm.automation_actions SET status = 'pending' WHERE action_id = %s",
                         (action["action_id"],))
            counts[f"send_sms:{_backoff_or_park(conn, action['action_id'], str(exc), rules.settings.max_attempts)}"] += 1
            continue
        except brevo_mod.BrevoBadRequest as exc:
            _finish(conn, action["action_id"], "parked", error=str(exc))
            conn.commit()
            counts["send_sms:parked"] += 1
            continue
        _finish(conn, action["action_id"], "done", {"reference": answer.get("reference"),
                                                     "messageId": answer.get("messageId")})
        conn.commit()
        counts["send_sms:sent"] += 1
    return counts


# --------------------------------------------------------------------------------------------
# outbound webhooks


def _worth_repeating(response: requests.Response) -> bool:
    """Not accepted, and not refused for good (a 4xx other than 408 and 429 changes nothing when repeated)."""
    code = response.status_code
    return code >= 300 and not (400 <= code < 500 and code not in (408, 429))


def run_webhook_actions(conn, rules: RuleSet, *, session: requests.Session | None = None,
                        sleep=time.sleep) -> Counter:
    counts = Counter()
    session = session or requests.Session()
    for action in _due(conn, "trigger_webhook", statuses=("pending", "failed", "running")):
        params = action["params"]
        event = conn.execute("""SELECT event, trig, campaign_id, occurred_at, amount FROM crm.webhook_events
                                WHERE event_id = %s""", (action["event_id"],)).fetchone()
        conn.execute("UPDATE crm.automation_actions SET status = 'running' WHERE action_id = %s", (action["action_id"],))
        conn.commit()
        body = {"action_id": action["action_id"], "rule": action["rule_id"], "client_code": action["client_code"],
                "event": event[0] if event else None, "trigger": event[1] if event else None,
                "campaign_id": event[2] if event else None,
                "occurred_at": event[3].isoformat() if event and event[3] else None,
                "amount": float(event[4]) if event and event[4] is not None else None}
        timeout = params.get("timeout_s") or rules.settings.webhooks.timeout_s
        # three tries, 0.5 s then 1 s apart, on a network error or an answer worth repeating;
        # the same Idempotency-Key each time (and at the next run's retry of the action)
        attempts = Retrying(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.5, min=0.5), sleep=sleep,
                            retry=retry_if_exception_type(requests.RequestException) | retry_if_result(_worth_repeating),
                            retry_error_callback=lambda state: state.outcome.result())
        try:
            response = attempts(session.post, params["url"], json=body, timeout=timeout,
                                headers={"Idempotency-Key": f"winecrm-action-{action['action_id']}"})
            error = None if response.status_code < 300 else f"{params['url']} answered {response.status_code}"
        except requests.RequestException as exc:
            error = f"{params['url']}: {exc.__class__.__name__}"
        if error is None:
            _finish(conn, action["action_id"], "done", {"status": response.status_code})
            conn.commit()
            counts["trigger_webhook:done"] += 1
        else:
            counts[f"trigger_webhook:{_backoff_or_park(conn, action['action_id'], error, rules.settings.max_attempts)}"] += 1
    return counts


def run_external_actions(conn, rules: RuleSet, *, brevo=None, outbox: Path | None = None,
                         now: dt.datetime | None = None) -> Counter:
    counts = Counter()
    counts.update(run_email_actions(conn, rules, brevo=brevo, outbox=outbox))
    counts.update(run_sms_actions(conn, rules, brevo=brevo, outbox=outbox, now=now))
    counts.update(run_webhook_actions(conn, rules))
    return counts

