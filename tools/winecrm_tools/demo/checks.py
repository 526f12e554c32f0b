"""What ``make demo`` checks, apart from how it drives Airflow and what it prints
(``winecrm_tools.demo.run``): each check reads the warehouse and says whether what the demo did
happened as the platform promises."""

from __future__ import annotations

import shutil
from pathlib import Path


def quarantine_against_planted(conn, run_ids: list[str], planted) -> tuple[set, set]:
    """(found, expected): the quarantined rows of the backfill, and the rows the sample generator
    planted as bad (dataset, file, line); the demo holds when they are the same."""
    found = {(ds, Path(path).name.replace(" (copie)", ""), row) for ds, path, row in conn.execute(
        "SELECT dataset, file_path, row_no FROM etl.quarantine WHERE run_id = ANY(%s) AND row_no IS NOT NULL",
        (run_ids,))}
    return found, {(b.dataset, b.file_name, b.row_no) for b in planted}


def after_the_events(conn, run_id: str, as_of, campaign: str, who: dict, newsletter_who: dict, shop_mail: dict,
                     cap: float) -> dict:
    """After the week's Brevo events and crm_events: the next send skips the unsubscribed and the
    bounced, the newsletter unsubscribe is suppressed, the shop's own mail triggers nothing, the
    buyer gets one thank-you e-mail and one task, the clickers' engagement shows in their lead
    score, the funnel in the weekly report. Returns ``checks`` (name -> held) and what was seen."""
    from winecrm import pipeline
    from winecrm.campaigns import render, report
    from winecrm.core.weeks import estate_zone

    held = {}
    unsub, bounced, buyer = who["unsubscribed"], who["bounced"], who["buyer"]
    # the next send of the week: the live campaign rendered as for approval, looked at, then
    # removed (the demo never leaves a live campaign behind)
    live = render.campaign_id_for(as_of, "live")
    render.render_campaign(conn, run_id, as_of, mode="live")
    skipped = dict(conn.execute(
        "SELECT client_code, skip_reason FROM crm.email_sends WHERE campaign_id = %s AND client_code = ANY(%s)",
        (live, [unsub[1], bounced[1]])).fetchall())
    conn.execute("DELETE FROM crm.email_sends WHERE campaign_id = %s", (live,))
    conn.execute("DELETE FROM crm.campaigns WHERE campaign_id = %s", (live,))
    conn.commit()
    shutil.rmtree(render.previews_dir(live), ignore_errors=True)
    held["unsubscribed: suppressed, skipped by the next send"] = (
        skipped.get(unsub[1]) == "suppressed" and conn.execute(
            "SELECT reason FROM crm.suppressions WHERE email = lower(%s)", (unsub[2],)).fetchone() == ("unsubscribed",))
    held["hard bounce: suppressed, skipped by the next send"] = skipped.get(bounced[1]) == "suppressed"
    left = newsletter_who["newsletter_unsubscribed"]
    held["newsletter unsubscribe (Brevo marketing webhook): suppressed"] = conn.execute(
        "SELECT reason, source FROM crm.suppressions WHERE email = lower(%s)", (left[2],)).fetchone() == (
        "unsubscribed", "brevo_campaign_webhook:unsubscribed")
    held["the shop's order mail opened: stored, no rule, not in the funnel"] = conn.execute(
        """SELECT trig IS NULL AND send_id IS NULL AND NOT EXISTS (
               SELECT 1 FROM crm.automation_actions a WHERE a.event_id = w.event_id)
           FROM crm.webhook_events w WHERE message_id = %s""", (shop_mail["message-id"],)).fetchone() == (True,)
    thanks = conn.execute("""SELECT e.status, e.outbox_path FROM crm.email_sends e JOIN crm.campaigns k USING (campaign_id)
                             WHERE k.kind = 'automation' AND e.client_code = %s AND e.template = 'thank_you'""",
                          (buyer[1],)).fetchall()
    held["buyer: one thank-you e-mail (outbox)"] = len(thanks) == 1 and thanks[0][0] == "simulated"
    tasks = conn.execute("SELECT title, to_char(due_at AT TIME ZONE %s, 'DD/MM HH24:MI') FROM crm.tasks "
                         "WHERE client_code = %s", (estate_zone().key, buyer[1])).fetchall()
    held["buyer: one follow-up task"] = len(tasks) == 1
    # the clicker the rules scored with the lowest weekly score: the engagement points show best there
    clicker, weekly, now_score, points = conn.execute(
        """SELECT DISTINCT ON (ls.score, ls.client_code) ls.client_code, ls.score,
                  crm.current_lead_score(ls.client_code, %s::numeric),
                  (SELECT sum(delta) FROM crm.score_changes WHERE client_code = ls.client_code)
           FROM crm.lead_scores ls
           WHERE ls.client_code = ANY(%s) AND ls.as_of_date = (SELECT max(as_of_date) FROM crm.lead_scores)
             AND EXISTS (SELECT 1 FROM crm.score_changes s WHERE s.client_code = ls.client_code)
           ORDER BY ls.score, ls.client_code LIMIT 1""",
        (cap, [c[1] for c in who["clicked"] if c is not buyer])).fetchone()
    held["engagement points in the lead score"] = points is not None and now_score > weekly
    written = pipeline.run_report(conn, run_id)
    data = report.events(conn, as_of)
    funnel = next(f for f in data["funnel"] if f["campaign_id"] == campaign)
    held["funnel in the report"] = funnel["opened"] > 0 and funnel["clicked"] > 0 and funnel["bought"] == 1
    return {"checks": held, "skipped": skipped, "thanks": thanks, "tasks": tasks,
            "clicker": (clicker, weekly, now_score, points), "funnel": funnel, "report": written}
