"""``python -m winecrm.events explain EVENT.json``: which rules and actions an event would fire,
without applying anything (no row written, nothing sent).

The event is a Brevo webhook event (or an array of them) or a behaviour event, exactly as it
would be posted. The customer's context (segment, current lead score, tags) is read from the
warehouse when it answers; ``--segment``, ``--score``, ``--tags`` set or override it.
"""

from __future__ import annotations

import json

from winecrm.events import intake
from winecrm.events.rules import BEHAVIOR_TRIGGERS, BREVO_TRIGGERS, ENGAGEMENT_TRIGGERS, RuleSet, condition_holds


def parse_event(data) -> list[dict]:
    """The posted JSON as the receiver would read it: a list of {event, trigger, email,
    client_code, amount}; raises ValueError naming what the receiver could not read (it would
    store such an event as received and park it for a person)."""
    if isinstance(data, dict) and data.get("event") == "lead_score_high":
        return [{"event": "lead_score_high", "trigger": "lead_score_high", "email": data.get("email"),
                 "client_code": data.get("client_code"), "amount": None}]
    first = data[0] if isinstance(data, list) and data else data
    behaviour = isinstance(first, dict) and "action" in first
    try:
        events = intake.parse_behavior(data) if behaviour else intake.parse_brevo(data)
    except intake.TooLarge as exc:
        raise ValueError(f"the receiver would refuse this body (413): {exc}") from None
    problems = [e.problem for e in events if e.problem]
    if problems:
        raise ValueError("the receiver would store this event as received and park it for a person: "
                         + "; ".join(problems))
    out = []
    for e in events:
        if behaviour:
            trigger = BEHAVIOR_TRIGGERS[e.event]
        else:
            trigger = BREVO_TRIGGERS[e.event]
            # only our e-mails (and the estate's Brevo campaigns) count as engagement
            if trigger in ENGAGEMENT_TRIGGERS and e.family == "transactional" and not (e.custom or e.message_id):
                trigger = None
        out.append({"event": e.event, "trigger": trigger, "email": e.email, "client_code": e.client_code,
                    "amount": e.amount})
    return out


def customer_context(conn, event: dict, cap: float) -> dict:
    row = conn.execute("""
        SELECT c.client_code,
               (SELECT r.segment FROM crm.rfm_scores r WHERE r.client_code = c.client_code
                ORDER BY r.as_of_date DESC LIMIT 1),
               crm.current_lead_score(c.client_code, %s::numeric),
               coalesce((SELECT array_agg(tag ORDER BY tag) FROM crm.customer_tags t
                         WHERE t.client_code = c.client_code), '{}')
        FROM etl.clients c
        WHERE c.client_code = %s OR (%s::text IS NOT NULL AND lower(btrim(c.email)) = %s)
        ORDER BY (c.client_code = %s) DESC LIMIT 1""",
                       (cap, event["client_code"], event["email"], event["email"], event["client_code"])).fetchone()
    conn.rollback()
    if row is None:
        return {"client_code": event["client_code"], "known": False}
    return {"client_code": row[0], "segment": row[1], "score": float(row[2]) if row[2] is not None else None,
            "tags": list(row[3]), "known": True}


def explain(data, rules: RuleSet, context: dict | None = None, conn=None, cap: float = 20) -> list[dict]:
    """For each event of ``data``: its trigger, the customer's context, and per enabled rule of
    that trigger (highest priority first) whether it fires, why not, and its actions."""
    out = []
    for event in parse_event(data):
        ctx = {"known": None}
        if conn is not None:
            ctx = customer_context(conn, event, cap)
        ctx.update({k: v for k, v in (context or {}).items() if v is not None})
        ctx.update(event=event["event"], amount=event["amount"])
        verdicts = []
        stopped = False
        for rule in rules.active():
            if rule.trigger != event["trigger"]:
                continue
            holds, failed = condition_holds(rule.conditions, ctx)
            if stopped:
                holds, failed = False, ["a higher-priority rule stopped the others"]
            verdicts.append({"rule": rule.id, "priority": rule.priority, "fires": holds, "because_not": failed,
                             "actions": [{"type": a.type, **a.params, "delay": a.delay or "0"} for a in rule.actions]})
            stopped = stopped or (holds and rule.stop)
        out.append({"event": event["event"], "trigger": event["trigger"], "context": ctx, "rules": verdicts})
    return out


def format_explanation(result: list[dict]) -> str:
    lines = []
    for item in result:
        ctx = item["context"]
        who = ctx.get("client_code") or "unknown customer"
        lines.append(f"event {item['event']} -> trigger {item['trigger'] or '(none: stored for the report only)'}"
                     f"; customer {who}, segment {ctx.get('segment') or '?'}, score {ctx.get('score', '?')}, "
                     f"tags {ctx.get('tags') or []}, amount {ctx.get('amount')}")
        if not item["rules"]:
            lines.append("  no enabled rule listens to this trigger")
        for verdict in item["rules"]:
            if verdict["fires"]:
                lines.append(f"  FIRES  {verdict['rule']} (priority {verdict['priority']}):")
                for action in verdict["actions"]:
                    details = ", ".join(f"{k}={v}" for k, v in action.items() if k not in ("type", "delay"))
                    lines.append(f"         {action['type']}({details}) after {action['delay']}")
            else:
                lines.append(f"  no     {verdict['rule']} (priority {verdict['priority']}): "
                             + "; ".join(verdict["because_not"]))
    return "\n".join(lines)


def load_json(path: str):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
