"""The Brevo client against a local fake Brevo over real HTTP: the documented contract, and
what happens on each error — retried only where a duplicate is impossible, never the key in a
message."""

from __future__ import annotations

import pytest
from winecrm.campaigns import brevo

from tests.fakes.brevo import Fault, FakeBrevoServer


@pytest.fixture
def server():
    with FakeBrevoServer() as running:
        yield running


def _client(server, key=None, **kw):
    waits: list[float] = []
    client = brevo.BrevoClient(brevo.BrevoCredentials(key or server.fake.api_key, server.url),
                               timeout=2, sleep=waits.append, **kw)
    return client, waits


def _batch(n: int = 3, key: str | None = "3f1c2b1e-0000-4000-8000-000000000001") -> dict:
    message = {"sender": {"name": "Domaine", "email": "cave@domaine-exemple.fr"}, "subject": "S",
               "htmlContent": "<p>x</p>", "textContent": "x", "tags": ["hebdo-2026-11-15", "rebuy"],
               "messageVersions": [{"to": [{"email": f"c{i}@example.fr"}], "subject": f"S{i}",
                                    "htmlContent": f"<p>{i}</p>", "textContent": str(i)} for i in range(n)]}
    if key:
        message["headers"] = {"idempotencyKey": key, "X-Mailin-custom": "hebdo-2026-11-15|k"}
    return message


def test_a_batch_is_one_call_and_answers_one_message_id_per_version(server):
    client, _ = _client(server)
    ids = client.send_transactional(_batch(3))
    assert len(ids) == 3 and len(set(ids)) == 3
    assert server.fake.accepted_addresses() == ["c0@example.fr", "c1@example.fr", "c2@example.fr"]
    assert [s["subject"] for s in server.fake.sent] == ["S0", "S1", "S2"]
    assert server.fake.requests == [("POST", "/smtp/email", 201)]


def test_the_contract_is_checked_before_anything_leaves(server):
    client, _ = _client(server)
    too_many = _batch(1)
    too_many["messageVersions"] = [{"to": [{"email": f"c{i}@example.fr"}]} for i in range(1001)]
    with pytest.raises(brevo.BrevoBadRequest, match="1001 versions"):
        client.send_transactional(too_many)
    crowded = _batch(1)
    crowded["messageVersions"][0]["to"] = [{"email": f"c{i}@example.fr"} for i in range(100)]
    with pytest.raises(brevo.BrevoBadRequest, match="100 recipients"):
        client.send_transactional(crowded)
    with pytest.raises(brevo.BrevoBadRequest, match="subject is missing"):
        client.send_transactional({**_batch(1), "subject": ""})
    assert server.fake.requests == []  # refused here: nothing reached Brevo


def test_the_fake_enforces_the_documented_fields(server):
    client, _ = _client(server)
    # a field Brevo does not know, slipped past our own check, is refused by the server with its message
    with pytest.raises(brevo.BrevoBadRequest, match="recipients: unknown field"):
        client.send_transactional({**_batch(1), "recipients": ["x"]})
    assert server.fake.sent == []


def test_a_wrong_key_fails_at_once_saying_what_to_fix_without_the_key(server):
    client, _ = _client(server, key="xkeysib-WRONG-SECRET-123")
    with pytest.raises(brevo.BrevoAuthError) as failure:
        client.send_transactional(_batch(1))
    message = str(failure.value)
    assert "brevo_default" in message and "401" in message and "WRONG-SECRET" not in message
    assert "WRONG-SECRET" not in repr(client) and "WRONG-SECRET" not in repr(brevo.BrevoCredentials("WRONG-SECRET"))
    assert len(server.fake.requests) == 1  # not retried


def test_no_credits_fails_at_once_with_what_to_do(server):
    server.fake.inject(Fault("402"))
    client, _ = _client(server)
    with pytest.raises(brevo.BrevoNoCredits, match="not enough credits"):
        client.send_transactional(_batch(1))
    assert server.fake.sent == []


def test_429_waits_for_the_reset_the_headers_give_then_sends_once(server):
    server.fake.inject(Fault("429", reset=2.5), Fault("429", reset=0.5))
    client, waits = _client(server)
    client.send_transactional(_batch(2))
    assert waits == [2.5, 0.5]
    assert len(server.fake.sent) == 2


def test_a_rate_limit_longer_than_we_wait_fails_the_try_for_a_later_one(server):
    server.fake.inject(Fault("429", reset=3600))
    client, waits = _client(server, max_rate_limit_wait=120)
    with pytest.raises(brevo.BrevoRateLimited, match="3600 s") as failure:
        client.send_transactional(_batch(1))
    assert failure.value.retryable and waits == []


def test_a_500_is_retried_under_the_idempotency_key_and_sends_once(server):
    server.fake.inject(Fault("500"), Fault("500"))
    client, _ = _client(server)
    client.send_transactional(_batch(2))
    assert len(server.fake.sent) == 2
    assert [s for _, _, s in server.fake.requests] == [500, 500, 201]


def test_without_an_idempotency_key_a_500_is_never_retried(server):
    server.fake.inject(Fault("500"))
    client, _ = _client(server)
    with pytest.raises(brevo.BrevoUnavailable):
        client.send_transactional(_batch(1, key=None))
    assert len(server.fake.requests) == 1


def test_an_answer_lost_after_brevo_accepted_is_recognised_never_sent_twice(server):
    server.fake.inject(Fault("drop_after_accept"))
    client, _ = _client(server)
    with pytest.raises(brevo.BrevoDuplicate):
        client.send_transactional(_batch(3))
    assert server.fake.accepted_addresses() == ["c0@example.fr", "c1@example.fr", "c2@example.fr"]


def test_a_slow_answer_past_the_timeout_is_an_unknown_outcome_resolved_by_the_key(server):
    server.fake.inject(Fault("slow", seconds=3))
    client, _ = _client(server)  # 2 s timeout: the first try times out after Brevo accepted
    with pytest.raises(brevo.BrevoDuplicate):
        client.send_transactional(_batch(1))
    assert len(server.fake.sent) == 1


def test_lookup_and_contact_import(server):
    import datetime as dt

    client, _ = _client(server)
    client.send_transactional(_batch(2))
    today = dt.date.today()
    start, end = (today - dt.timedelta(days=1)).isoformat(), (today + dt.timedelta(days=1)).isoformat()
    found = client.find_sent("c1@example.fr", start, end, tag="hebdo-2026-11-15")
    assert [f["email"] for f in found] == ["c1@example.fr"]
    assert client.find_sent("c1@example.fr", start, end, tag="other") == []
    list_id = client.create_list("Clients", client.create_folder("CRM"))
    with pytest.raises(ValueError, match="into a list"):
        client.import_contacts([{"email": "c1@example.fr"}], [])
    process = client.import_contacts([{"email": "c1@example.fr", "attributes": {"PRENOM": "Anne", "FIRSTNAME": "Anne"}}],
                                     [list_id])
    assert process == 1 and server.fake.imports[0]["updateExistingContacts"] is True
    # like Brevo, the fake keeps only the attributes the account has: PRENOM is not one yet
    assert server.fake.contact_attributes["c1@example.fr"] == {"FIRSTNAME": "Anne"}
    client.create_attribute("PRENOM", "text")
    client.import_contacts([{"email": "c1@example.fr", "attributes": {"PRENOM": "Anne"}}], [list_id])
    assert server.fake.contact_attributes["c1@example.fr"] == {"FIRSTNAME": "Anne", "PRENOM": "Anne"}
    assert client.attributes()["PRENOM"] == "text" and client.find_list("Clients") == list_id


def test_the_sms_sender_is_11_characters_or_15_digits(server):
    client, _ = _client(server)
    sms = {"recipient": "33612345678", "content": "Merci !", "type": "transactional"}
    with pytest.raises(brevo.BrevoBadRequest, match="11"):
        client.send_sms({**sms, "sender": "DomaineSaint"})  # 12 letters: Brevo refuses it
    assert server.fake.requests == []  # refused here: nothing reached Brevo
    client.send_sms({**sms, "sender": "DomExemple"})
    client.send_sms({**sms, "sender": "336123456789012"})  # a numeric sender may have 15 digits
    assert [s["sender"] for s in server.fake.sms] == ["DomExemple", "336123456789012"]
    # and the fake refuses it like Brevo, whoever sends it
    import requests

    answer = requests.post(f"{server.url}/transactionalSMS/sms", json={**sms, "sender": "DomaineSaint"},
                           headers={"api-key": server.fake.api_key}, timeout=5)
    assert answer.status_code == 400 and "11" in answer.json()["message"]


def test_a_contact_brevo_will_not_delete_says_what_a_person_must_do(server):
    server.fake.contacts.update({"owner@domaine-exemple.fr", "c1@example.fr"})
    server.fake.undeletable.add("owner@domaine-exemple.fr")
    client, _ = _client(server)
    with pytest.raises(brevo.BrevoNotAllowed, match="by hand in Brevo") as refused:
        client.delete_contact("owner@domaine-exemple.fr")
    assert refused.value.status == 405 and not isinstance(refused.value, brevo.BrevoBadRequest)
    assert client.delete_contact("c1@example.fr") is True


def test_the_log_of_sent_emails_is_read_page_by_page(server):
    """send-test --all writes hundreds of e-mails to one address under one tag: all are read."""
    client, _ = _client(server)
    for batch in range(3):
        message = _batch(1, key=f"3f1c2b1e-0000-4000-8000-00000000010{batch}")
        message["messageVersions"] = [{"to": [{"email": "equipe@domaine-exemple.fr"}], "subject": f"S{i}"}
                                      for i in range(500)]
        client.send_transactional(message)
    import datetime as dt

    today = dt.date.today()
    found = client.find_sent("equipe@domaine-exemple.fr", (today - dt.timedelta(days=1)).isoformat(),
                             (today + dt.timedelta(days=1)).isoformat(), tag="hebdo-2026-11-15")
    assert len(found) == 1500 and len({f["messageId"] for f in found}) == 1500
    pages = [r for r in server.fake.requests if r[1] == "/smtp/emails"]
    assert len(pages) == 2  # 1,000 then a short page
    with pytest.raises(ValueError, match="one month"):
        client.find_sent("equipe@domaine-exemple.fr", "2026-01-01", "2026-03-01")
