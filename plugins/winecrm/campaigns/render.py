"""Render a week's campaign into the send ledger ``crm.email_sends``.

One row per (campaign, recommended customer): the subject, HTML, text and products of their
e-mail with its idempotency key, or the reason they get none (control group, invalid or
suppressed address, opted out, silence window). Rendering is repeatable: a row already on its
way (sending) or done (sent, simulated, failed) is never touched again; a row still only
rendered is rendered anew from the current recommendations.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
import uuid

import psycopg

from winecrm.campaigns import copy_fr, templates
from winecrm.core import french, settings
from winecrm.core.queries import named_steps

log = logging.getLogger(__name__)

# Idempotency keys are UUIDv5 of the campaign and the customer in this namespace: the same e-mail
# gets the same key on every rerun, and Brevo refuses a second call carrying it.
KEY_NAMESPACE = uuid.UUID("5b0c3a7e-4d1f-5d6e-9a1c-2f8e6b7d9c10")

MODES = ("dry_run", "live", "test")


def campaign_id_for(as_of: dt.date, mode: str = "live") -> str:
    """The week's campaign: one live campaign per week (a customer gets its e-mail once), and
    dry-runs apart, so a rehearsal never stands in the way of the real send."""
    return f"hebdo-{as_of.isoformat()}" + ("" if mode == "live" else f"-{mode.replace('_', '-')}")


def idempotency_key(campaign_id: str, client_code: str) -> uuid.UUID:
    return uuid.uuid5(KEY_NAMESPACE, f"{campaign_id}|{client_code}")


def greeting(prenom: str | None, nom: str | None) -> str:
    return f"Bonjour {prenom}," if prenom else "Bonjour,"


PREVIEWS = {  # the line a mail client shows after the subject: no wine named (the cards do)
    "cross_sell": "Une sélection faite d'après vos achats au domaine.",
    "rebuy": "De quoi regarnir votre cave.",
    "winback": "Cela fait un moment que nous ne nous sommes pas vus.",
}


def copy_facts(conn: psycopg.Connection, as_of: dt.date) -> tuple[dict, dict]:
    """What the copy is written from (include/sql/queries/email_copy.sql): each recommended wine's
    structured fields by (customer, rank), and each recipient's purchases by cuvée."""
    steps = dict(named_steps("email_copy"))
    params = {"as_of": as_of, **settings.pipeline_config().revenue.query_parameters()}
    cursor = conn.execute(steps["wines"], params)
    columns = [c.name for c in cursor.description]
    wines = {}
    for values in cursor.fetchall():
        wine = dict(zip(columns, values))
        wines[(wine["client_code"], wine["rank"])] = wine
    purchases: dict[str, dict] = {}
    cursor = conn.execute(steps["purchases"], params)
    columns = [c.name for c in cursor.description]
    for values in cursor.fetchall():
        bought = dict(zip(columns, values))
        purchases.setdefault(bought["client_code"], {})[bought["cuvee"]] = bought
    return wines, purchases


def with_facts(row: dict, wines: dict, purchases: dict, markers: tuple[str, ...] = copy_fr.PREMIUM_WORDS) -> list[dict]:
    """The recipient's wines with their structured fields, without the entry-level wine of a
    grape whose premium wines they buy (FRENCH-COPY.md: not a « next step » for them)."""
    bought = purchases.get(row["client_code"], {})
    products = []
    for p in row["products"]:
        facts = wines.get((row["client_code"], p["rank"]), {})
        wine = {**p, **{k: v for k, v in facts.items() if k not in ("client_code", "rank") and v is not None}}
        wine["cuvee"] = wine.get("cuvee") or p.get("produit") or p["article"]
        if row["scenario"] == "cross_sell" and copy_fr.step_down(wine, bought, markers):
            continue
        products.append(wine)
    return products


def context_for(row: dict, campaign_id: str, token: str, cfg: settings.CampaignsConfig,
                scoring: settings.ScoringConfig, purchases: dict | None = None) -> dict:
    """What the templates of one customer's e-mail read. ``row["products"]``: the wines with their
    structured fields (:func:`with_facts`); ``purchases``: the customer's, by cuvée."""
    links = cfg.links
    utm = {"campaign": campaign_id, "content": row["scenario"], "source": links.utm_source, "medium": links.utm_medium}
    wines = row["products"]
    why = copy_fr.reasons(row["scenario"], wines, purchases or {})
    products = []
    for p, reason in zip(wines, why):
        price = french.euros(p.get("prix_ttc"))
        products.append({
            "name": copy_fr.wine_name(p.get("cuvee") or p.get("produit") or p["article"], p.get("millesime")),
            "article": p["article"],
            "format": copy_fr.format_words(p.get("pack"), p.get("unit_cl")) if p.get("unit_cl") is not None else None,
            "price": f"{price} TTC" if price else None, "reason": reason,
            "url": templates.with_utm(links.product_url.format(article=p["article"]), **utm)})
    # the offer's terms as the recommendation states them (its scope, end date and exclusions when
    # crm.recommendations carries them), said once in the e-mail
    offer = next((p for p in wines if p.get("offer_code")), None)
    terms = {**(offer or {}), **((offer or {}).get("recommendation") or {})}
    discount = terms.get("offer_discount_pct") if terms.get("offer_discount_pct") is not None else \
        scoring.recommendations.winback_discount_pct
    return {
        "estate": cfg.estate, "prenom": row.get("prenom") or "", "greeting": greeting(row.get("prenom"), row.get("nom")),
        "preview": PREVIEWS.get(row["scenario"], cfg.estate.name),
        "products": products, "wines": len(products),
        "offer_code": offer["offer_code"] if offer else "",
        "discount_pct": french.number(discount) if offer else "",
        "offer_scope": (terms.get("offer_scope") or "order") if offer else "",
        "offer_ends_on": french.date(terms.get("offer_ends_on"), missing="") if offer else "",
        "offer_excludes": (terms.get("offer_excludes") or "") if offer else "",
        "links": {"home": templates.with_utm(cfg.estate.website_url, **utm),
                  "shop": templates.with_utm(links.shop_url, **utm),
                  "unsubscribe": links.unsubscribe_url.format(token=token)},
    }


def ensure_campaign(conn: psycopg.Connection, campaign_id: str, *, kind: str, as_of: dt.date | None, mode: str,
                    run_id: str | None, test_address: str | None = None) -> dict:
    if mode not in MODES:
        raise ValueError(f"campaign mode {mode!r}: expected one of {', '.join(MODES)}")
    conn.execute(
        """INSERT INTO crm.campaigns (campaign_id, kind, as_of_date, mode, test_address, created_run)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (campaign_id) DO NOTHING""",
        (campaign_id, kind, as_of, mode, test_address, run_id))
    row = conn.execute("SELECT campaign_id, kind, as_of_date, mode, status, test_address FROM crm.campaigns "
                       "WHERE campaign_id = %s", (campaign_id,)).fetchone()
    return dict(zip(("campaign_id", "kind", "as_of_date", "mode", "status", "test_address"), row))


def render_campaign(conn: psycopg.Connection, run_id: str, as_of: dt.date, *, mode: str = "dry_run",
                    cfg: settings.CampaignsConfig | None = None,
                    scoring: settings.ScoringConfig | None = None) -> dict:
    """Render the week's e-mails into the ledger; returns counts per status and skip reason."""
    cfg = cfg or settings.campaigns_config()
    scoring = settings.scoring_from(scoring)
    started = time.perf_counter()
    campaign_id = campaign_id_for(as_of, mode)
    with conn.transaction():
        campaign = ensure_campaign(conn, campaign_id, kind="weekly", as_of=as_of, mode=mode, run_id=run_id)
        (sql,) = [s for label, s in named_steps("campaign") if label == "recipients"]
        cursor = conn.execute(sql, {"as_of": as_of, "campaign_id": campaign_id,
                                    "silence_days": scoring.recommendations.silence_days})
        columns = [c.name for c in cursor.description]
        recipients = [dict(zip(columns, values)) for values in cursor.fetchall()]
        earlier = conn.execute("SELECT client_code, status, unsubscribe_token FROM crm.email_sends "
                               "WHERE campaign_id = %s", (campaign_id,)).fetchall()
        done = {code for code, status, _ in earlier if status not in ("rendered", "skipped")}
        tokens = {code: token for code, _, token in earlier}
        wines, purchases = copy_facts(conn, as_of)
        # what makes a wine premium: the scoring configuration's words when it has them
        markers = tuple(getattr(scoring.recommendations, "premium_markers", None) or copy_fr.PREMIUM_WORDS)
        rows, rendered_seconds = [], 0.0
        for r in recipients:
            if r["client_code"] in done:
                continue  # on its way or finished: never rendered again
            token = tokens.get(r["client_code"]) or secrets.token_urlsafe(24)
            subject = html = text = None
            if r["skip_reason"] is None:
                r["products"] = with_facts(r, wines, purchases, markers)
                if not r["products"]:
                    r["skip_reason"] = "no_candidate"
            if r["skip_reason"] is None:
                t0 = time.perf_counter()
                context = context_for(r, campaign_id, token, cfg, scoring, purchases.get(r["client_code"], {}))
                email = templates.render(r["scenario"], context)
                rendered_seconds += time.perf_counter() - t0
                subject, html, text = email.subject, email.html, email.text
                # the ledger keeps what the e-mail says of each wine
                r["products"] = [{k: v for k, v in {**p, "reason": shown["reason"]}.items() if k != "recommendation"}
                                 for p, shown in zip(r["products"], context["products"])]
            rows.append((campaign_id, r["client_code"], r["email"], r["scenario"], as_of,
                         "skipped" if r["skip_reason"] else "rendered", str(idempotency_key(campaign_id, r["client_code"])),
                         r["scenario"], subject, html, text, json.dumps(r["products"], default=str), r["skip_reason"],
                         token))
        conn.execute("""CREATE TEMP TABLE campaign_render (LIKE crm.email_sends INCLUDING DEFAULTS) ON COMMIT DROP""")
        with conn.cursor().copy(
                "COPY campaign_render (campaign_id, client_code, email, scenario, as_of_date, status, idempotency_key, "
                "template, subject, html, text_body, products, skip_reason, unsubscribe_token) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # new rows in; rows still only rendered (or skipped) replaced; anything further along kept
        conn.execute(
            """INSERT INTO crm.email_sends (campaign_id, client_code, email, scenario, as_of_date, status, idempotency_key,
                                            template, subject, html, text_body, products, skip_reason, unsubscribe_token,
                                            rendered_at, updated_at)
               SELECT campaign_id, client_code, email, scenario, as_of_date, status, idempotency_key, template, subject,
                      html, text_body, products, skip_reason, unsubscribe_token, now(), now()
               FROM campaign_render
               ORDER BY send_id  -- the recipients' order (scenario, likeliest buyers first): the send's order
               ON CONFLICT (campaign_id, client_code) WHERE campaign_id IS NOT NULL DO UPDATE
               SET email = EXCLUDED.email, scenario = EXCLUDED.scenario, status = EXCLUDED.status,
                   template = EXCLUDED.template, subject = EXCLUDED.subject, html = EXCLUDED.html,
                   text_body = EXCLUDED.text_body, products = EXCLUDED.products, skip_reason = EXCLUDED.skip_reason,
                   rendered_at = now(), updated_at = now()
               WHERE crm.email_sends.status IN ('rendered', 'skipped')""")
        # a customer rendered by an earlier run of the week but no longer recommended
        conn.execute(
            """UPDATE crm.email_sends e SET status = 'skipped', skip_reason = 'no_longer_recommended',
                      html = NULL, text_body = NULL, updated_at = now()
               WHERE e.campaign_id = %s AND e.status = 'rendered'
                 AND NOT EXISTS (SELECT 1 FROM campaign_render r WHERE r.client_code = e.client_code)""",
            (campaign_id,))
    conn.commit()
    summary = campaign_summary(conn, campaign_id)
    summary["previews"] = write_previews(campaign_id, rows)
    summary.update(mode=campaign["mode"], rendered_now=sum(1 for r in rows if r[5] == "rendered"),
                   seconds=round(time.perf_counter() - started, 3), template_seconds=round(rendered_seconds, 3))
    log.info("campaign %s (%s): %s", campaign_id, campaign["mode"], summary)
    return summary


def campaign_summary(conn: psycopg.Connection, campaign_id: str) -> dict:
    by_status: dict[str, int] = {}
    by_scenario: dict[str, dict[str, int]] = {}
    skipped: dict[str, int] = {}
    for status, scenario, reason, n in conn.execute(
            """SELECT status, scenario, skip_reason, count(*) FROM crm.email_sends WHERE campaign_id = %s
               GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", (campaign_id,)):
        by_status[status] = by_status.get(status, 0) + n
        by_scenario.setdefault(scenario, {})
        by_scenario[scenario][status] = by_scenario[scenario].get(status, 0) + n
        if reason:
            skipped[reason] = skipped.get(reason, 0) + n
    return {"campaign_id": campaign_id, "by_status": by_status, "by_scenario": by_scenario, "skipped": skipped}


FIRST_NAME = "[prénom]"  # stands for each customer's first name in a subject line shown to people


def subject_lines(conn: psycopg.Connection, campaign_id: str, limit: int = 3) -> dict[str, list[dict]]:
    """The subject lines a campaign's e-mails carry, per scenario, as a person checks them before
    approving: each customer's first name replaced by ``[prénom]``, so the few forms show
    (« [prénom], une découverte choisie pour vous » and, for customers without a known first name,
    « Une découverte choisie pour vous »), most frequent first, with how many e-mails carry each."""
    import re

    forms: dict[str, dict[str, int]] = {}
    for scenario, subject, prenom, n in conn.execute(
            """SELECT e.scenario, e.subject, nullif(btrim(c.prenom), ''), count(*)
               FROM crm.email_sends e LEFT JOIN etl.clients c ON c.client_code = e.client_code
               WHERE e.campaign_id = %s AND e.subject IS NOT NULL AND e.status <> 'skipped'
               GROUP BY 1, 2, 3""", (campaign_id,)):
        if prenom:
            subject = re.sub(rf"(?<!\w){re.escape(templates.one_line(prenom))}(?!\w)", FIRST_NAME, subject)
        by_form = forms.setdefault(scenario, {})
        by_form[subject] = by_form.get(subject, 0) + n
    return {scenario: [{"subject": s, "emails": n}
                       for s, n in sorted(by_form.items(), key=lambda item: (-item[1], item[0]))[:limit]]
            for scenario, by_form in sorted(forms.items())}


def previews_dir(campaign_id: str):
    return settings.paths().reports_dir / "apercu" / campaign_id


def write_previews(campaign_id: str, rows: list[tuple]) -> dict[str, str]:
    """One rendered e-mail per scenario (its likeliest buyer's: rows come in scenario_rank
    order), as the approval request's preview: what would leave, as the customer would see it."""
    folder = previews_dir(campaign_id)
    written: dict[str, str] = {}
    for row in rows:
        scenario, status, html = row[3], row[5], row[9]
        if status == "rendered" and html and scenario not in written:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{scenario}.html"
            path.write_text(html, encoding="utf-8")
            written[scenario] = str(path)
    return written
