"""The demo's week after the e-mails: realistic Brevo events for the demo campaign, posted to the
real receiver over HTTP, then the real ``crm_events`` DAG, then what changed.

What customers do, drawn with a fixed seed from the campaign's e-mails: most are delivered,
about a third opened (Brevo posts ``opened`` and ``unique_opened`` for a first open, and
``proxy_open`` for Apple Mail's privacy proxy), some clicked a wine; one address bounces, one
person unsubscribes, one clicker buys in the shop (a behaviour event, 84,50 €). Brevo posts in
batches (arrays) and retries: one batch is posted twice. One event is about an address we do not
know. Each e-mail carries ``X-Mailin-custom`` = campaign|send id, as set at send time.
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


def post_all(base_url: str, token: str, events: list[dict], purchase: dict) -> dict:
    """Post as Brevo does (arrays of up to 500; one batch posted twice, as a retry) and the shop's
    purchase; returns what the receiver answered, summed."""
    headers = {"Authorization": f"Bearer {token}"}
    totals = {"requests": 0, "received": 0, "stored": 0, "duplicates": 0}
    batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
    for batch in [*batches, batches[0]]:  # Brevo's retry of the first batch
        answer = requests.post(f"{base_url}/webhook/email", json=batch, headers=headers, timeout=30)
        answer.raise_for_status()
        for key, value in answer.json().items():
            totals[key] += value
        totals["requests"] += 1
    answer = requests.post(f"{base_url}/webhook/behavior", json=purchase, headers=headers, timeout=30)
    answer.raise_for_status()
    for key, value in answer.json().items():
        totals[key] += value
    totals["requests"] += 1
    return totals
