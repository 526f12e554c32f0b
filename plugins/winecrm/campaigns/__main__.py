"""The data engineer's campaign commands (the same code as the weekly DAG's tasks).

    python -m winecrm.campaigns send-test --to me@domaine.fr          # one e-mail of each scenario
    python -m winecrm.campaigns send-test --to me@domaine.fr --all    # the whole campaign
    python -m winecrm.campaigns sync-contacts                         # customers -> Brevo contacts
    python -m winecrm.campaigns send --campaign hebdo-2026-11-15      # resume an approved campaign

Brevo is reached with ``BREVO_API_KEY`` (and ``BREVO_API_URL`` for a sandbox or a mock); without
it nothing leaves: test e-mails go to the outbox folder and sync-contacts writes the contacts it
would import to a JSON file. The warehouse is ``CRM_DATABASE_URL``; ``send`` and ``send-test``
write it under the warehouse writer lock, as the DAG's stages do (one writer at a time).

A test e-mail is a copy of a customer's, with the test row's own unsubscribe token (the
customer's ``-test-<stamp>``) everywhere the customer's token was: clicking it in a test never
unsubscribes the customer.

sync-contacts imports into a Brevo list (``contacts`` in campaigns.yaml: a list id, or the list
found or created by name) after creating the attributes the account lacks (Brevo silently drops
the others): a handful of calls, never one per contact (most of these endpoints allow about 100
requests an hour).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

log = logging.getLogger("winecrm.campaigns")

CONTACT_BATCH = 5000
# the contact attributes the e-mails and Brevo's own segments can use, with their Brevo type
CONTACT_ATTRIBUTES = {"PRENOM": "text", "NOM": "text", "SEGMENT": "text", "RFM_SCORE": "float",
                      "LEAD_SCORE": "float", "LAST_ORDER_DATE": "date"}


def _client():
    from winecrm.campaigns import brevo

    return brevo.configured_client(brevo.credentials_from_env())


def send_test(conn, to: str, *, every_email: bool, client, source: str | None = None) -> dict:
    """Copy the latest rendered campaign's e-mails (one per scenario, or all) into a new test
    campaign addressed to ``to`` (subject prefixed « [TEST] »), then send it like any campaign."""
    import uuid

    from winecrm.campaigns import render, send

    if not to or "@" not in to:
        raise SystemExit(f"--to {to!r}: an e-mail address is needed")
    source = source or (conn.execute(
        """SELECT campaign_id FROM crm.campaigns c WHERE kind = 'weekly'
             AND EXISTS (SELECT 1 FROM crm.email_sends e WHERE e.campaign_id = c.campaign_id AND e.html IS NOT NULL)
           ORDER BY as_of_date DESC, created_at DESC LIMIT 1""").fetchone() or [None])[0]
    if source is None:
        raise SystemExit("no rendered campaign in the warehouse: run the weekly DAG (or make demo) first")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    campaign_id = f"test-{source}-{stamp}"
    render.ensure_campaign(conn, campaign_id, kind="test", as_of=None, mode="test", run_id=None, test_address=to)
    distinct = "" if every_email else "DISTINCT ON (scenario)"
    rows = conn.execute(
        f"""SELECT {distinct} client_code, scenario, subject, html, text_body, products, unsubscribe_token
            FROM crm.email_sends WHERE campaign_id = %s AND html IS NOT NULL
            ORDER BY {'scenario, ' if not every_email else ''}send_id""", (source,)).fetchall()
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO crm.email_sends (campaign_id, client_code, email, scenario, status, idempotency_key, template,
                                            subject, html, text_body, products, unsubscribe_token, rendered_at)
               VALUES (%s, %s, %s, %s, 'rendered', %s, %s, %s, %s, %s, %s, %s, now())""",
            [(campaign_id, code, to, scenario, str(uuid.uuid5(render.KEY_NAMESPACE, f"{campaign_id}|{code}")),
              scenario, f"[TEST] {subject}", _with_token(html, token, f"{token}-test-{stamp}"),
              _with_token(text, token, f"{token}-test-{stamp}"), json.dumps(products), f"{token}-test-{stamp}")
             for code, scenario, subject, html, text, products, token in rows])
    conn.commit()
    # test e-mails go to an internal address: no silence window, no suppression of the customer applies
    return send.send_campaign(conn, campaign_id, client=client)


def _with_token(body: str | None, customer_token: str | None, test_token: str) -> str | None:
    """The body with the test row's token wherever the customer's was (links, text, mailto)."""
    if not body or not customer_token:
        return body
    return body.replace(customer_token, test_token)


def contacts(conn) -> list[dict]:
    """Every customer who may be written to, with the attributes the e-mails and Brevo's own
    segments can use (names in capitals, as Brevo expects)."""
    rows = conn.execute(
        """SELECT lower(btrim(c.email)), c.prenom, c.nom, r.segment, r.rfm_score, l.score, x.last_purchase
           FROM etl.clients c
           JOIN crm.customer_360 x ON x.client_code = c.client_code
                AND x.as_of_date = (SELECT max(as_of_date) FROM crm.customer_360)
           LEFT JOIN crm.rfm_scores r ON r.as_of_date = x.as_of_date AND r.client_code = x.client_code
           LEFT JOIN crm.lead_scores l ON l.as_of_date = x.as_of_date AND l.client_code = x.client_code
           WHERE crm.email_blocked_reason(c.client_code, c.email, 0, NULL) IS NULL
             AND NOT EXISTS (SELECT 1 FROM crm.erased_clients e WHERE e.client_code = c.client_code)
           ORDER BY c.client_code""").fetchall()
    out = []
    for email, prenom, nom, segment, rfm, lead, last in rows:
        attributes = {"PRENOM": prenom, "NOM": nom, "SEGMENT": segment,
                      "RFM_SCORE": float(rfm) if rfm is not None else None,
                      "LEAD_SCORE": int(lead) if lead is not None else None,
                      "LAST_ORDER_DATE": last.isoformat() if last else None}
        out.append({"email": email, "attributes": {k: v for k, v in attributes.items() if v not in (None, "")}})
    return out


def ensure_attributes(client) -> list[str]:
    """Create the contact attributes the account lacks (Brevo ignores the others at import)."""
    present = client.attributes()
    missing = [name for name in CONTACT_ATTRIBUTES if name not in present]
    for name in missing:
        client.create_attribute(name, CONTACT_ATTRIBUTES[name])
    if missing:
        log.info("Brevo contact attributes created: %s", ", ".join(missing))
    return missing


def ensure_list(client, cfg) -> tuple[int, bool]:
    """The list to import into: campaigns.yaml's ``contacts.list_id``, else the list named
    ``contacts.list_name``, else that list created (in the account's first folder, or a new
    folder ``contacts.folder_name``). Returns (id, created)."""
    if cfg.contacts.list_id:
        return cfg.contacts.list_id, False
    found = client.find_list(cfg.contacts.list_name)
    if found is not None:
        return found, False
    folders = client.folders()
    folder_id = folders[0]["id"] if folders else client.create_folder(cfg.contacts.folder_name)
    list_id = client.create_list(cfg.contacts.list_name, folder_id)
    log.info("Brevo contact list %r created (id %s)", cfg.contacts.list_name, list_id)
    return list_id, True


def sync_contacts(conn, client, out_path=None, cfg=None) -> dict:
    from winecrm.core import settings

    found = contacts(conn)
    if client is None:
        path = out_path or settings.paths().outbox_dir / "brevo-contacts.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found, ensure_ascii=False, indent=1), encoding="utf-8")
        return {"contacts": len(found), "sent_to_brevo": False, "written_to": str(path)}
    cfg = cfg or settings.campaigns_config()
    created = ensure_attributes(client)
    list_id, list_created = ensure_list(client, cfg)
    processes = [client.import_contacts(found[i:i + CONTACT_BATCH], [list_id])
                 for i in range(0, len(found), CONTACT_BATCH)]
    return {"contacts": len(found), "sent_to_brevo": True, "list_id": list_id, "list_created": list_created,
            "attributes_created": created, "import_processes": processes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m winecrm.campaigns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("send-test", help="send the latest campaign's e-mails to one internal address")
    test.add_argument("--to", required=True)
    test.add_argument("--all", action="store_true", help="every e-mail of the campaign, not one per scenario")
    test.add_argument("--campaign", help="campaign id (default: the latest weekly campaign rendered)")
    sub.add_parser("sync-contacts", help="import the customers who may be written to as Brevo contacts")
    resume = sub.add_parser("send", help="send (or resume) a rendered campaign, as the DAG's send task does")
    resume.add_argument("--campaign", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from winecrm.campaigns import brevo
    from winecrm.core import db

    client = _client()
    with db.connect() as conn:
        try:
            if args.command == "send-test":
                with db.warehouse_writer(conn, "cli:campaigns:send-test"):
                    report = send_test(conn, args.to, every_email=args.all, client=client, source=args.campaign)
            elif args.command == "send":
                from winecrm.campaigns import send

                with db.warehouse_writer(conn, "cli:campaigns:send"):
                    report = send.send_campaign(conn, args.campaign, client=client)
            else:
                report = sync_contacts(conn, client)  # reads the warehouse only: no writer lock
        except brevo.BrevoError as exc:
            print(f"Brevo: {exc}", file=sys.stderr)
            return 1
        except db.WarehouseBusy as exc:
            print(f"Nothing done: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(report, indent=1, default=str, ensure_ascii=False))
    if client is None:
        print("(BREVO_API_KEY is not set: nothing left for Brevo)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
