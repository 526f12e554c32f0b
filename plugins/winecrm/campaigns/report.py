"""The weekly report, in French: one self-contained HTML file and a JSON summary per run.

What the marketing person reads on Monday: the week's data health (files, rows loaded and
quarantined, the main reasons, the Data Docs), the segments and how customers moved since the
previous week, the recommendations by scenario and who was left out, and the campaign (sent,
simulated, skipped, failed). Charts are Altair specifications rendered to SVG offline by
vl-convert and embedded in the file: no script, no external asset, it opens anywhere.
Files: ``$CRM_REPORTS_DIR/<Sunday>/<run>/rapport-hebdo.html`` and ``resume.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from decimal import Decimal
from pathlib import Path

import psycopg

from winecrm.campaigns.labels import CAMPAIGN_STATUS_FR, REASONS_FR, SCENARIOS_FR, STATUS_FR, person_name
from winecrm.core import french, settings
from winecrm.core.weeks import estate_zone, Week

log = logging.getLogger(__name__)

SEGMENTS = ["VIP", "Standard", "At Risk", "Churn"]
SEGMENTS_FR = {"VIP": "VIP", "Standard": "Standard", "At Risk": "À risque", "Churn": "Perdus (churn)"}
WINE = "#7b1e2b"


def reports_dir() -> Path:
    return settings.paths().reports_dir


def summary(conn: psycopg.Connection, run: dict) -> dict:
    """Everything the report shows, as plain data (also written as the JSON summary). ``run``: the
    run's record as ``winecrm.pipeline.run_summary`` gives it."""
    run_id = run["run_id"]
    week = Week(run["week_start"], run["week_end"])
    as_of = week.end
    previous = conn.execute("SELECT max(as_of_date) FROM crm.rfm_scores WHERE as_of_date < %s", (as_of,)).fetchone()[0]
    segments = {s: {"this_week": 0, "previous": 0} for s in SEGMENTS}
    for date, segment, n in conn.execute(
            "SELECT as_of_date, segment, count(*) FROM crm.rfm_scores WHERE as_of_date IN (%s, %s) GROUP BY 1, 2",
            (as_of, previous)):
        segments.setdefault(segment, {"this_week": 0, "previous": 0})["this_week" if date == as_of else "previous"] = n
    moves = [{"from": a, "to": b, "customers": n} for a, b, n in conn.execute(
        """SELECT p.segment, c.segment, count(*) FROM crm.rfm_scores c
           JOIN crm.rfm_scores p ON p.client_code = c.client_code AND p.as_of_date = %s
           WHERE c.as_of_date = %s AND p.segment <> c.segment GROUP BY 1, 2 ORDER BY 3 DESC""", (previous, as_of))]
    scenarios = {}
    for scenario, customers, control, expected in conn.execute(
            """SELECT scenario, count(*) FILTER (WHERE NOT is_control), count(*) FILTER (WHERE is_control),
                      sum(buy_probability) FILTER (WHERE NOT is_control)
               FROM crm.recommendations WHERE as_of_date = %s AND rank = 1 GROUP BY 1 ORDER BY 1""", (as_of,)):
        scenarios[scenario] = {"customers": customers, "control": control,
                               "expected_buyers": round(float(expected or 0), 1)}
    excluded = dict(conn.execute("SELECT reason, count(*) FROM crm.recommendation_exclusions WHERE as_of_date = %s "
                                 "GROUP BY 1 ORDER BY 2 DESC", (as_of,)).fetchall())
    campaigns = []
    for campaign_id, mode, status, decided_by in conn.execute(
            "SELECT campaign_id, mode, status, decided_by FROM crm.campaigns WHERE as_of_date = %s AND kind = 'weekly' "
            "ORDER BY mode = 'live' DESC, campaign_id", (as_of,)):
        counts = {s: {} for s in ("cross_sell", "rebuy", "winback")}
        skipped: dict[str, int] = {}
        for scenario, st, reason, n in conn.execute(
                "SELECT scenario, status, skip_reason, count(*) FROM crm.email_sends WHERE campaign_id = %s "
                "GROUP BY 1, 2, 3", (campaign_id,)):
            counts.setdefault(scenario, {})[st] = counts.get(scenario, {}).get(st, 0) + n
            if reason:
                skipped[reason] = skipped.get(reason, 0) + n
        # the person's name (rows written before it was kept hold the Airflow user's dict as text)
        campaigns.append({"campaign_id": campaign_id, "mode": mode, "status": status,
                          "decided_by": person_name(decided_by),
                          "by_scenario": {k: v for k, v in counts.items() if v}, "skipped": skipped})
    generated = dt.datetime.now(dt.timezone.utc)
    return {
        "forecast": forecast(conn, as_of),
        "uplift": uplift(conn, as_of),
        "run_id": run_id, "week": {"start": week.start.isoformat(), "end": week.end.isoformat(),
                                   "label": week.label_fr()},
        "generated_at": generated.isoformat(timespec="seconds"), "generated_fr": french.datetime(generated),
        "data": {k: run.get(k) for k in ("files_seen", "files_new", "files_duplicate", "files_quarantined",
                                         "rows_read", "rows_written", "rows_superseded", "rows_skipped",
                                         "rows_quarantined")},
        "quarantine_reasons": run["quarantine_reasons"][:5], "data_docs": run["data_docs"],
        "segments": segments, "previous_as_of": previous.isoformat() if previous else None, "segment_moves": moves[:8],
        "recommendations": scenarios, "excluded": excluded, "campaigns": campaigns,
        "events": events(conn, as_of, week_start=week.start),
    }


def forecast(conn: psycopg.Connection, as_of: dt.date) -> dict | None:
    """What the customers are likely to do next, with its uncertainty (crm.buy_probability_models
    and crm.buy_probabilities): buyers in the horizon and net spend over 12 months, each with its
    80 % interval, per segment too."""
    row = conn.execute(
        """SELECT method, horizon_days, customers, expected_buyers, expected_buyers_low, expected_buyers_high,
                  spend_12m_ht, spend_12m_low_ht, spend_12m_high_ht, cardinality(training_cutoffs)
           FROM crm.buy_probability_models WHERE as_of_date = %s""", (as_of,)).fetchone()
    if row is None:
        return None
    keys = ("method", "horizon_days", "customers", "buyers", "buyers_low", "buyers_high", "spend", "spend_low",
            "spend_high", "training_cutoffs")
    out = {k: (float(v) if isinstance(v, Decimal) else v) for k, v in zip(keys, row)}
    out["segments"] = [
        {"segment": segment, "customers": n, "buyers": float(buyers or 0), "spend": float(spend or 0)}
        for segment, n, buyers, spend in conn.execute(
            """SELECT r.segment, count(*), sum(b.probability), sum(b.spend_12m_ht)
               FROM crm.buy_probabilities b
               JOIN crm.rfm_scores r ON r.as_of_date = b.as_of_date AND r.client_code = b.client_code
               WHERE b.as_of_date = %s GROUP BY 1""", (as_of,))]
    order = {s: i for i, s in enumerate(SEGMENTS)}
    out["segments"].sort(key=lambda s: order.get(s["segment"], len(order)))
    # each customer's own range, for the customers who matter most next year
    out["top"] = [{"name": " ".join(p for p in (first, last) if p) or code, "spend": float(spend), "low": float(low),
                   "high": float(high)} for code, first, last, spend, low, high in conn.execute(
        """SELECT b.client_code, c.prenom, c.nom, b.spend_12m_ht, b.spend_12m_low_ht, b.spend_12m_high_ht
           FROM crm.buy_probabilities b LEFT JOIN etl.clients c ON c.client_code = b.client_code
           WHERE b.as_of_date = %s AND b.spend_12m_ht IS NOT NULL
           ORDER BY b.spend_12m_ht DESC, b.client_code LIMIT 10""", (as_of,))]
    return out


FUNNEL = ("sent", "delivered", "opened", "clicked", "bounced", "unsubscribed", "bought")
# what came in, as counted in the report: (one, several) — French agreement, 0 and 1 singular
TRIGGERS_FR = {"email_opened": ("ouverture", "ouvertures"), "email_clicked": ("clic", "clics"),
               "email_bounce": ("adresse en échec", "adresses en échec"),
               "email_soft_bounce": ("échec temporaire", "échecs temporaires"),
               "unsubscribe": ("désinscription", "désinscriptions"), "purchase": ("achat", "achats"),
               "form_submit": ("formulaire", "formulaires"), "page_visit": ("visite", "visites"),
               "lead_score_high": ("score élevé", "scores élevés"),
               "request": ("envoi demandé", "envois demandés"), "delivered": ("e-mail délivré", "e-mails délivrés"),
               "deferred": ("e-mail différé", "e-mails différés"), "error": ("erreur", "erreurs"),
               # events with no trigger: Apple's automatic opens, mails that are not ours, Brevo contacts
               "proxy_open": ("ouverture automatique (Apple, sans lecteur)",
                              "ouvertures automatiques (Apple, sans lecteur)"),
               "unique_proxy_open": ("ouverture automatique (Apple, sans lecteur)",
                                     "ouvertures automatiques (Apple, sans lecteur)"),
               "opened": ("ouverture d'autres e-mails (boutique…)", "ouvertures d'autres e-mails (boutique…)"),
               "unique_opened": ("ouverture d'autres e-mails", "ouvertures d'autres e-mails"),
               "click": ("clic dans d'autres e-mails", "clics dans d'autres e-mails"),
               "soft_bounce": ("échec temporaire d'autres e-mails", "échecs temporaires d'autres e-mails"),
               "list_addition": ("ajout à une liste Brevo", "ajouts à une liste Brevo"),
               "contact_updated": ("contact modifié dans Brevo", "contacts modifiés dans Brevo"),
               "contact_deleted": ("contact supprimé dans Brevo", "contacts supprimés dans Brevo")}


def trigger_count_fr(trigger: str, count: int) -> str:
    """« 1 achat », « 3 adresses en échec »; an event without a French name keeps its own."""
    one, several = TRIGGERS_FR.get(trigger, (trigger, trigger))
    return french.plural(count, one, several)


ACTIONS_FR = {"update_score": "score", "add_tag": "étiquette", "create_task": "tâche", "schedule_call": "appel",
              "pause_campaign": "pause des campagnes", "suppress": "plus d'e-mails", "send_email": "e-mail",
              "send_sms": "SMS", "trigger_webhook": "appel sortant"}
ACTION_STATUS_FR = {"done": "fait", "pending": "prévu", "running": "en cours", "skipped": "écarté", "failed": "à réessayer",
                    "parked": "à voir par une personne", "unknown": "issue inconnue (non renvoyé)"}


def events(conn: psycopg.Connection, as_of: dt.date, days: int | None = None, open_tasks: int = 25,
           week_start: dt.date | None = None) -> dict:
    """What customers did with the e-mails (Brevo webhooks and behaviour events, crm_events):
    the funnel of the recent weekly campaigns (distinct e-mails delivered, opened, clicked...,
    and customers who bought within ``days`` after the campaign's week, as the uplift counts);
    the events of the report's week (``week_start`` to ``as_of``, Paris days; by when they
    happened, else when they arrived) and what the automation rules did on them, those from
    unknown addresses — so a backfilled week shows its own week, not the last 7 days; parked
    events and the sales team's open tasks, as they stand now."""
    days = days or settings.campaigns_config().report.uplift_days
    week_start = week_start or as_of - dt.timedelta(days=6)
    period = {"start": dt.datetime.combine(week_start, dt.time(), estate_zone()),
              "end": dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), estate_zone())}
    in_week = "coalesce(w.occurred_at, w.received_at) >= %(start)s AND coalesce(w.occurred_at, w.received_at) < %(end)s"
    funnel = []
    for row in conn.execute(
            """SELECT k.campaign_id, k.mode, k.as_of_date,
                      count(*) FILTER (WHERE e.status IN ('sent', 'simulated')) AS sent,
                      count(*) FILTER (WHERE EXISTS (SELECT 1 FROM crm.webhook_events w WHERE w.send_id = e.send_id
                                                     AND w.event = 'delivered')) AS delivered,
                      count(*) FILTER (WHERE EXISTS (SELECT 1 FROM crm.webhook_events w WHERE w.send_id = e.send_id
                                                     AND w.trig IN ('email_opened', 'email_clicked'))) AS opened,
                      count(*) FILTER (WHERE EXISTS (SELECT 1 FROM crm.webhook_events w WHERE w.send_id = e.send_id
                                                     AND w.trig = 'email_clicked')) AS clicked,
                      count(*) FILTER (WHERE EXISTS (SELECT 1 FROM crm.webhook_events w WHERE w.send_id = e.send_id
                                                     AND w.trig IN ('email_bounce', 'email_soft_bounce'))) AS bounced,
                      count(*) FILTER (WHERE EXISTS (SELECT 1 FROM crm.webhook_events w WHERE w.send_id = e.send_id
                                                     AND w.trig = 'unsubscribe')) AS unsubscribed,
                      count(*) FILTER (WHERE e.status IN ('sent', 'simulated') AND EXISTS (
                          SELECT 1 FROM crm.webhook_events w WHERE w.client_code = e.client_code AND w.trig = 'purchase'
                            AND coalesce(w.occurred_at, w.received_at) >= (k.as_of_date + 1)::timestamp AT TIME ZONE %(tz)s
                            AND coalesce(w.occurred_at, w.received_at)
                                < (k.as_of_date + 1 + %(days)s)::timestamp AT TIME ZONE %(tz)s)) AS bought
               FROM crm.campaigns k JOIN crm.email_sends e USING (campaign_id)
               WHERE k.kind = 'weekly' AND k.as_of_date BETWEEN %(as_of)s - 35 AND %(as_of)s
                 AND EXISTS (SELECT 1 FROM crm.webhook_events w WHERE w.campaign_id = k.campaign_id)
               GROUP BY 1, 2, 3 HAVING count(*) FILTER (WHERE e.status IN ('sent', 'simulated')) > 0
               ORDER BY k.as_of_date DESC, k.mode = 'live' DESC LIMIT 4""",
            {"as_of": as_of, "days": days, "tz": estate_zone().key}):
        item = dict(zip(("campaign_id", "mode", "as_of_date", *FUNNEL), row))
        item["as_of_date"] = item["as_of_date"].isoformat()
        item["rates"] = {k: round(100 * item[k] / item["sent"], 1) for k in FUNNEL[1:]}
        funnel.append(item)
    received = dict(conn.execute(
        f"""SELECT coalesce(w.trig, w.event), count(*) FROM crm.webhook_events w
            WHERE {in_week} AND w.repeat_of IS NULL AND w.status <> 'parked'
            GROUP BY 1 ORDER BY 2 DESC, 1""", period).fetchall())
    # what waits for a person: events the receiver could not read, or that failed again and again
    parked_reasons = [{"reason": reason, "count": n} for reason, n in conn.execute(
        """SELECT left(coalesce(error, '?'), 160), count(*) FROM crm.webhook_events WHERE status = 'parked'
           GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""")]
    names = rule_names()
    actions = [{"rule": r, "rule_name": names.get(r) or r, "action": a, "status": st, "count": n}
               for r, a, st, n in conn.execute(
        f"""SELECT a.rule_id, a.action_type, a.status, count(*) FROM crm.automation_actions a
            JOIN crm.webhook_events w USING (event_id)
            WHERE {in_week} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", period)]
    queue = dict(conn.execute("SELECT status, count(*) FROM crm.webhook_events GROUP BY 1").fetchall())
    unknown = conn.execute(f"SELECT count(*) FROM crm.webhook_events w WHERE w.unknown_customer AND {in_week} "
                           "AND w.repeat_of IS NULL AND w.status <> 'parked'", period).fetchone()[0]
    tasks = [{"kind": k, "due_at": due.astimezone(dt.timezone(dt.timedelta(0))).isoformat(), "due_fr": due_fr,
              "title": title, "client_code": code, "name": " ".join(p for p in (prenom, nom) if p) or None,
              "phone": phone}
             for k, due, due_fr, title, code, prenom, nom, phone in conn.execute(
                 """SELECT kind, due_at, to_char(due_at AT TIME ZONE %s, 'DD/MM/YYYY HH24:MI'), title,
                           client_code, prenom, nom, telephone
                    FROM crm.open_tasks LIMIT %s""", (estate_zone().key, open_tasks))]
    open_count = conn.execute("SELECT count(*) FROM crm.tasks WHERE status = 'open'").fetchone()[0]
    return {"funnel": funnel, "period": {"start": week_start.isoformat(), "end": as_of.isoformat(),
                                         "label": french.period(week_start, as_of)},
            "received": received, "actions": actions, "queue": queue, "parked_reasons": parked_reasons,
            "unknown_addresses": unknown, "open_tasks": tasks, "open_tasks_total": open_count, "days": days}


def rule_names() -> dict[str, str]:
    """The automation rules' French names (``name`` in the rules file) by id; {} when the file
    cannot be read (the report then shows the ids: crm_events says what is wrong with it)."""
    try:
        from winecrm.events.rules import load_rules

        return {rule.id: rule.name for rule in load_rules().rules if rule.name}
    except Exception as exc:  # the report never fails on the rules file
        log.warning("Automation rules not readable for their names (%s): the report shows their ids", exc)
        return {}


def phone_fr(phone: str | None) -> str:
    """« 06 74 79 47 36 » for a French number of ten digits (kept on one line); others as stored."""
    digits = re.sub(r"[\s.\-]", "", phone or "")
    if re.fullmatch(r"0\d{9}", digits):
        return "\u00a0".join(digits[i:i + 2] for i in range(0, 10, 2))
    return phone or ""


def uplift(conn: psycopg.Connection, as_of: dt.date, days: int | None = None) -> dict | None:
    """Did the latest live campaign whose window has passed make people buy? Customers it was
    meant for (recommended, not in the control group: intention to treat, so the comparison keeps
    the random draw's balance) against the control group: the share who bought within ``days``
    after the campaign's week, the difference in points and its 95 % interval (normal
    approximation). None when no live campaign is old enough yet."""
    days = days or settings.campaigns_config().report.uplift_days
    row = conn.execute(
        """SELECT campaign_id, as_of_date FROM crm.campaigns
           WHERE kind = 'weekly' AND mode = 'live' AND status = 'done' AND as_of_date + %s <= %s
           ORDER BY as_of_date DESC LIMIT 1""", (days, as_of)).fetchone()
    if row is None:
        return None
    campaign_id, sent_week = row
    groups = {is_control: (n, buyers) for is_control, n, buyers in conn.execute(
        """SELECT r.is_control, count(*),
                  count(*) FILTER (WHERE EXISTS (
                      SELECT 1 FROM etl.ventes_lignes v
                      WHERE v.client_code = r.client_code AND v.document_type = ANY(%(sale_types)s)
                        AND v.date_livraison > %(start)s AND v.date_livraison <= %(start)s::date + %(days)s))
           FROM crm.recommendations r WHERE r.as_of_date = %(start)s AND r.rank = 1 GROUP BY 1""",
        {"start": sent_week, "days": days, **settings.pipeline_config().revenue.query_parameters()})}
    (n1, b1), (n0, b0) = groups.get(False, (0, 0)), groups.get(True, (0, 0))
    sent = conn.execute("SELECT count(*) FROM crm.email_sends WHERE campaign_id = %s AND status = 'sent'",
                        (campaign_id,)).fetchone()[0]
    result = {"campaign_id": campaign_id, "days": days, "sent": sent,
              "targeted": {"customers": n1, "buyers": b1}, "control": {"customers": n0, "buyers": b0}}
    if n1 and n0:
        p1, p0 = b1 / n1, b0 / n0
        half = 1.96 * ((p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0) ** 0.5)
        result.update(targeted_rate=round(100 * p1, 1), control_rate=round(100 * p0, 1),
                      uplift_points=round(100 * (p1 - p0), 1),
                      ci95_points=[round(100 * (p1 - p0 - half), 1), round(100 * (p1 - p0 + half), 1)])
    return result


def _svg(chart) -> str:
    import vl_convert

    svg = vl_convert.vegalite_to_svg(chart.to_json(), format_locale="fr-FR")
    return svg[svg.index("<svg"):]


# Every chart is drawn CHART_WIDTH px wide, labels and legend included (Vega-Lite's « fit »): on a
# phone (375 px, 331 px of text width) it is shown at its own size, its words at 12-13 px; on a
# wide screen it is never enlarged (max-width only).
CHART_WIDTH = 320
FIT = {"type": "fit-x", "contains": "padding"}  # the width, labels included; heights are the bars' own


def charts(data: dict) -> dict[str, str]:
    """The report's charts as inline SVG."""
    import altair as alt
    import pandas as pd

    theme = {"config": {"font": "Helvetica, Arial, sans-serif", "view": {"stroke": None},
                        "axis": {"labelFontSize": 13, "titleFontSize": 12, "titleFontWeight": "normal",
                                 "grid": False, "labelLimit": 150, "tickCount": 5},
                        # one column: a legend is not shrunk by « fit », and starts where the bars start
                        "legend": {"labelFontSize": 13, "titleFontSize": 12, "orient": "top", "symbolSize": 120,
                                   "labelLimit": 150, "columns": 1}}}
    size = {"width": CHART_WIDTH, "autosize": FIT, **theme}
    out = {}
    rows = [{"segment": SEGMENTS_FR.get(s, s), "semaine": label, "clients": v[key]}
            for s, v in data["segments"].items() for key, label in (("previous", "semaine précédente"),
                                                                     ("this_week", "cette semaine"))]
    order = [SEGMENTS_FR[s] for s in SEGMENTS]
    out["segments"] = _svg(alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        y=alt.Y("segment:N", sort=order, title=None), x=alt.X("clients:Q", title="clients"),
        yOffset=alt.YOffset("semaine:N", sort=["semaine précédente", "cette semaine"]),
        color=alt.Color("semaine:N", sort=["semaine précédente", "cette semaine"],
                        scale=alt.Scale(range=["#d9c5b2", WINE]), title=None),
        tooltip=["segment", "semaine", "clients"],
    ).properties(height=180, **size))
    campaign = next(iter(data["campaigns"]), None)
    if campaign:
        rows = [{"scénario": SCENARIOS_FR.get(sc, sc), "statut": STATUS_FR.get(st, st), "e-mails": n}
                for sc, counts in campaign["by_scenario"].items() for st, n in counts.items()]
        palette = {"sent": WINE, "simulated": "#b0475a", "rendered": "#e6b8a2", "sending": "#f0d9c4",
                   "skipped": "#c9c1b8", "failed": "#e03c31"}
        present = {st for counts in campaign["by_scenario"].values() for st in counts}
        shown = [s for s in palette if s in present]
        out["campaign"] = _svg(alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
            y=alt.Y("scénario:N", title=None), x=alt.X("sum(e-mails):Q", title="e-mails"),
            color=alt.Color("statut:N", title=None, scale=alt.Scale(
                domain=[STATUS_FR[s] for s in shown], range=[palette[s] for s in shown])),
            order=alt.Order("statut:N"),
        ).properties(height=30 * len(campaign["by_scenario"]), **size))
    funnel = (data.get("events") or {}).get("funnel")
    if funnel:
        steps = {"sent": "envoyés", "delivered": "délivrés", "opened": "ouverts", "clicked": "cliqués",
                 "bought": "acheteurs"}
        rows = [{"étape": label, "e-mails": funnel[0][key]} for key, label in steps.items()]
        out["funnel"] = _svg(alt.Chart(pd.DataFrame(rows)).mark_bar(color=WINE).encode(
            y=alt.Y("étape:N", sort=list(steps.values()), title=None), x=alt.X("e-mails:Q", title="e-mails"),
            tooltip=["étape", "e-mails"],
        ).properties(height=130, **size))
    if data["excluded"]:
        rows = [{"raison": REASONS_FR.get(r, r), "clients": n} for r, n in data["excluded"].items()]
        out["excluded"] = _svg(alt.Chart(pd.DataFrame(rows)).mark_bar(color="#a89a8e").encode(
            y=alt.Y("raison:N", sort="-x", title=None), x=alt.X("clients:Q", title="clients"),
        ).properties(height=24 * len(rows), **size))
    return out


def render_html(data: dict, svgs: dict[str, str]) -> str:
    import jinja2
    import markupsafe

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(settings.TEMPLATES_DIR / "report")),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["n"] = lambda v: french.number(int(v or 0))
    env.filters["plural"] = lambda v, one, several=None: french.plural(int(v or 0), one, several)
    env.filters["pct"] = lambda v: f"{french.decimal(float(v or 0))}\u00a0%"  # « 12,5 % »
    env.filters["points"] = lambda v: french.decimal(float(v or 0), sign=True)  # « +1,5 », « −0,8 »
    env.filters["date_fr"] = french.date
    env.filters["euros"] = lambda v: french.euros(round(float(v or 0)), cents=False)  # « 12 345 € »
    env.filters["phone_fr"] = phone_fr
    # a check's name (expect_column_values_to_be_between) may break after its underscores on a phone
    env.filters["breakable"] = lambda v: markupsafe.Markup("_<wbr>").join(markupsafe.escape(v).split("_"))
    # « 50 € », « 15 % » in names people wrote (rules): the sign kept with its number
    env.filters["nbsp"] = lambda v: re.sub(r"(\d) ([€%])", "\\1\u00a0\\2", str(v))
    return env.get_template("weekly.html.j2").render(
        d=data, charts={k: markupsafe.Markup(v) for k, v in svgs.items()}, segments_fr=SEGMENTS_FR,
        scenarios_fr=SCENARIOS_FR, status_fr=STATUS_FR, reasons_fr=REASONS_FR, trigger_count_fr=trigger_count_fr,
        actions_fr=ACTIONS_FR, action_status_fr=ACTION_STATUS_FR, campaign_status_fr=CAMPAIGN_STATUS_FR)


def write_report(conn: psycopg.Connection, run: dict) -> dict:
    """Write the week's report and JSON summary (``run``: ``pipeline.run_summary``); returns where."""
    data = summary(conn, run)
    run_id = run["run_id"]
    # one folder per run of the week: a rerun that found nothing new does not hide the first one
    folder = reports_dir() / data["week"]["end"] / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    folder.mkdir(parents=True, exist_ok=True)
    html_path, json_path = folder / "rapport-hebdo.html", folder / "resume.json"
    for path, text in ((json_path, json.dumps(data, indent=1, ensure_ascii=False, default=str)),
                       (html_path, render_html(data, charts(data)))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    log.info("Weekly report: %s (summary %s)", html_path, json_path)
    return {"html": str(html_path), "json": str(json_path), "week_end": data["week"]["end"]}
