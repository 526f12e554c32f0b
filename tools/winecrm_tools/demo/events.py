"""The demo's week after the e-mails: realistic Brevo events for the demo campaign, posted to the
real receiver over HTTP, then the real ``crm_events`` DAG, then what changed.

What customers do, drawn with a fixed seed from the campaign's e-mails: most are delivered,
about a third opened (Brevo posts ``opened`` and ``unique_opened`` for a first open, and
``proxy_open`` for Apple Mail's privacy proxy), some clicked a wine; one address bounces, one
person unsubscribes, one clicker buys in the shop (a behaviour event, 84,50 €). Brevo posts in
batches (arrays) and retries: one batch is posted twice. One event is about an address we do not
know. Each e-mail carries ``X-Mailin-custom`` = campaign|send id, as set at send time.

Brevo's other family, the marketing webhooks, tells about the estate's own newsletter sent from
Brevo (``camp_id``, ``URL``, one event per call): a few customers open and click it, one
unsubscribes from it (an obligation too: suppressed like the others). And the shop's order
confirmation, sent through the same Brevo account, is opened by the buyer: not one of our
e-mails, so no rule fires on it.
"""

from __future__ import annotations

import datetime as dt
import random
import time

import requests

BATCH = 100


def _message_id(send_id: int) -> str:
    return f"<{send_id}.demo@smtp-relay.mailin.fr>"


def build_events(sends: list[tuple], monday: dt.datetime, seed: int = 42) -> tuple[list[dict], dict, dict]:
    """``sends``: (send id, client code, address, campaign) of the campaign's e-mails, sent on
    ``monday`` (the day after the campaign's week) — the events fall on that Monday and Tuesday.
    Returns the Brevo events (in the order Brevo would post them), the behaviour purchase, and
    who did what (for the demo's checks)."""
    rng = random.Random(seed)
    events, who = [], {"opened": [], "clicked": [], "bounced": None, "unsubscribed": None, "buyer": None}
    start = int(monday.timestamp())

    def event(name: str, send: tuple, at: int, **extra) -> dict:
        send_id, _, address, campaign = send
        return {"event": name, "email": address, "id": 1, "date": dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S"),
                "ts": at, "ts_event": at, "ts_epoch": at * 1000 + rng.randrange(1000), "message-id": _message_id(send_id),
                "subject": "Une découverte choisie pour vous", "tags": ["crm-hebdo", campaign],
                "X-Mailin-custom": f"{campaign}|{send_id}", **extra}

    shuffled = sends[:]
    rng.shuffle(shuffled)
    bounced, unsubscribed = shuffled[0], shuffled[1]
    for i, send in enumerate(shuffled):
        at = start + rng.randrange(600)
        events.append(event("request", send, at))
        if send is bounced:
            events.append(event("hard_bounce", send, at + 20, reason="550 5.1.1 mailbox does not exist"))
            who["bounced"] = send
            continue
        events.append(event("delivered", send, at + rng.randrange(5, 60)))
        if send is unsubscribed or rng.random() < 0.35:
            opened_at = at + rng.randrange(300, 36 * 3600)
            events.append(event("opened", send, opened_at))
            events.append(event("unique_opened", send, opened_at))
            if rng.random() < 0.15:
                events.append(event("proxy_open", send, opened_at + 3))
            who["opened"].append(send)
            if send is unsubscribed:
                events.append(event("unsubscribed", send, opened_at + 40))
                who["unsubscribed"] = send
            elif rng.random() < 0.35:
                link = f"https://www.domaine-exemple.fr/boutique/?utm_campaign={send[3]}&utm_content=demo{i % 3}"
                events.append(event("click", send, opened_at + rng.randrange(5, 120), link=link))
                who["clicked"].append(send)
    events.append(event("opened", (0, "?", "ancien.client@exemple-inconnu.fr", sends[0][3]), start + 900))
    events.sort(key=lambda e: e["ts_epoch"])
    buyer = who["clicked"][0]
    who["buyer"] = buyer
    purchase = {"client_code": buyer[1], "action": "purchase", "event_id": f"boutique-commande-{buyer[0]}",
                "metadata": {"amount": 84.5, "order": f"W{buyer[0]:06d}", "url": "https://www.domaine-exemple.fr/boutique"},
                "ts": (monday + dt.timedelta(days=1, hours=9)).isoformat()}
    return events, purchase, who


NEWSLETTER = {"camp_id": 7, "campaign name": "Lettre d'automne", "tag": ""}


def build_newsletter_events(sends: list[tuple], monday: dt.datetime, exclude: tuple = (),
                            seed: int = 7) -> tuple[list[dict], dict]:
    """Marketing-family events of the estate's Brevo newsletter (sent the Saturday before) for a
    few of the campaign's recipients (not those in ``exclude``). Returns the events and who did
    what."""
    rng = random.Random(seed)
    sent_at = int((monday - dt.timedelta(days=2)).timestamp())
    candidates = [s for s in sends if s not in exclude]
    chosen = rng.sample(candidates, min(12, len(candidates)))
    events, who = [], {"newsletter_unsubscribed": chosen[0], "newsletter_clicked": []}

    def campaign_event(name: str, send: tuple, at: int, **extra) -> dict:
        local = dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
        return {"id": 2, **NEWSLETTER, "email": send[2], "event": name, "date_sent":
                dt.datetime.fromtimestamp(sent_at).strftime("%Y-%m-%d %H:%M:%S"), "date_event": local,
                "ts_sent": sent_at, "ts_event": at, "ts": at + 3600, **extra}

    for i, send in enumerate(chosen):
        at = sent_at + rng.randrange(3600, 40 * 3600)
        events.append(campaign_event("delivered", send, sent_at + 30))
        events.append(campaign_event("opened", send, at))
        if i == 0:
            events.append(campaign_event("unsubscribe", send, at + 30, list_id=[2]))
        elif i % 3 == 1:
            events.append(campaign_event("click", send, at + 20, URL="https://www.domaine-exemple.fr/vendanges-2026"))
            who["newsletter_clicked"].append(send)
    return events, who


def shop_mail_opened(buyer: tuple, monday: dt.datetime) -> dict:
    """The shop's order confirmation to the buyer, opened: Brevo posts it like any transactional
    event, without our X-Mailin-custom."""
    at = int((monday + dt.timedelta(days=1, hours=10)).timestamp())
    return {"event": "opened", "email": buyer[2], "id": 1, "ts": at, "ts_event": at, "ts_epoch": at * 1000 + 17,
            "message-id": f"<commande-{buyer[0]}.boutique@smtp-relay.mailin.fr>",
            "subject": "Confirmation de votre commande", "date": dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")}


def wait_until_up(base_url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(f"{base_url}/webhook/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the receiver at {base_url} did not answer within {seconds:.0f} s")
        time.sleep(0.2)


def post_all(base_url: str, brevo_token: str, shop_token: str, events: list[dict], purchase: dict,
             campaign_events: list[dict] = ()) -> dict:
    """Post as Brevo does — transactional events in arrays (one batch posted twice, as a retry),
    marketing events one per call — each with Brevo's credentials, and the shop's purchase with
    the shop's; returns what the receiver answered, summed."""
    totals = {"requests": 0, "received": 0, "stored": 0, "duplicates": 0, "parked": 0}

    def send(path: str, body, token: str) -> None:
        answer = requests.post(f"{base_url}{path}", json=body, headers={"Authorization": f"Bearer {token}"},
                               timeout=30)
        answer.raise_for_status()
        for key, value in answer.json().items():
            totals[key] += value
        totals["requests"] += 1

    batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
    for batch in [*batches, batches[0]]:  # Brevo's retry of the first batch
        send("/webhook/email", batch, brevo_token)
    for event in campaign_events:
        send("/webhook/email", event, brevo_token)
    send("/webhook/behavior", purchase, shop_token)
    return totals
