"""Every request our Brevo client builds, checked against Brevo's own request models (the
official SDK, tests/contract/brevo_sdk.py) — not against our fake, which was written from our
own reading of the API. No network: the client's session hands each prepared request to the
check and answers as Brevo would."""

from __future__ import annotations

import datetime as dt

import pytest
from winecrm.campaigns import brevo, send
from winecrm.campaigns.__main__ import CONTACT_ATTRIBUTES
from winecrm.core import settings

from tests.contract.brevo_sdk import ContractMismatch, ContractSession, check_request

ANSWERS = {
    ("POST", "/smtp/email"): (201, {"messageIds": ["<1@relay>", "<2@relay>"]}),
    ("GET", "/smtp/emails"): (200, {"count": 0, "transactionalEmails": []}),
    ("POST", "/contacts/import"): (202, {"processId": 78}),
    ("GET", "/contacts/attributes"): (200, {"attributes": [{"name": "FIRSTNAME", "category": "normal",
                                                            "type": "text"}]}),
    ("GET", "/contacts/lists"): (200, {"lists": [{"id": 4, "name": "Clients du domaine (CRM)"}], "count": 1}),
    ("POST", "/contacts/lists"): (201, {"id": 5}),
    ("GET", "/contacts/folders"): (200, {"folders": [{"id": 1, "name": "Your first folder"}], "count": 1}),
    ("POST", "/contacts/folders"): (201, {"id": 2}),
    ("POST", "/transactionalSMS/sms"): (201, {"reference": "ab12", "messageId": 1511882900176220}),
}


def _respond(method, path, query, body):
    if method == "DELETE":
        return 204, None
    if path.startswith("/contacts/attributes/"):
        return 201, None
    return ANSWERS[(method, path)]


@pytest.fixture
def checked():
    session = ContractSession(_respond)
    client = brevo.BrevoClient(brevo.BrevoCredentials("xkeysib-contract", "https://api.brevo.com/v3"),
                               session=session, sleep=lambda s: None)
    return client, session


def _rows(n: int) -> list[dict]:
    return [{"send_id": i, "client_code": f"C{i}", "email": f"client{i}@example.fr", "scenario": "rebuy",
             "subject": f"Votre Riesling, {i}", "html": f"<p>Bonjour {i}</p>", "text_body": f"Bonjour {i}",
             "unsubscribe_token": f"tok{i}", "idempotency_key": f"k{i}", "batch_key": "b", "sending_at": None}
            for i in range(n)]


def test_the_email_batch_is_what_the_sdk_would_send(checked):
    client, session = checked
    message = send.build_message(_rows(2), "hebdo-2026-11-15", "3f1c2b1e-0000-4000-8000-000000000001",
                                 settings.campaigns_config())
    assert client.send_transactional(message) == ["<1@relay>", "<2@relay>"]
    (sent,) = session.checked
    assert sent["path"] == "/smtp/email" and sent["body"] == message  # replyTo, headers, tags, versions


def test_the_lookup_query_is_what_the_sdk_would_send(checked):
    client, session = checked
    start, end = send.lookup_window(dt.datetime(2026, 11, 16, 6, 30, tzinfo=dt.timezone.utc))
    client.find_sent("client1@example.fr", start, end, tag="hebdo-2026-11-15")
    (lookup,) = session.checked
    assert lookup["query"] == {"email": "client1@example.fr", "startDate": "2026-11-15", "endDate": "2026-11-18",
                               "sort": "desc", "limit": "1000", "offset": "0"}


def test_contacts_attributes_lists_and_folders_are_what_the_sdk_would_send(checked):
    client, session = checked
    assert client.attributes() == {"FIRSTNAME": "text"}
    for name, kind in CONTACT_ATTRIBUTES.items():  # text, float, date: all types Brevo knows
        client.create_attribute(name, kind)
    assert client.find_list("Clients du domaine (CRM)") == 4
    assert client.folders()[0]["id"] == 1
    assert client.create_folder("CRM") == 2
    assert client.create_list("Clients du domaine (CRM)", 1) == 5
    assert client.import_contacts([{"email": "client1@example.fr", "attributes": {
        "PRENOM": "Anne", "SEGMENT": "VIP", "RFM_SCORE": 3.67, "LEAD_SCORE": 82.0, "LAST_ORDER_DATE": "2026-10-02"}}],
        [4]) == 78
    assert [(c["method"], c["path"]) for c in session.checked] == [
        ("GET", "/contacts/attributes")] + [("POST", f"/contacts/attributes/normal/{n}") for n in CONTACT_ATTRIBUTES] + [
        ("GET", "/contacts/lists"), ("GET", "/contacts/folders"), ("POST", "/contacts/folders"),
        ("POST", "/contacts/lists"), ("POST", "/contacts/import")]
    assert session.checked[-1]["body"]["listIds"] == [4]


def test_contact_deletion_and_sms_are_what_the_sdk_would_send(checked):
    client, session = checked
    assert client.delete_contact("jean+vin@example.fr") is True
    client.send_sms({"sender": "DomExemple", "recipient": "33612345678", "content": "Merci !", "type": "marketing",
                     "tag": "rule-sms_form"})
    assert [c["path"] for c in session.checked] == ["/contacts/jean+vin@example.fr", "/transactionalSMS/sms"]


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.update(recipients=["x"]), "recipients: unknown field"),
    (lambda m: m["messageVersions"][0].update(headers={"X": "1"}), r"messageVersions\[0\]\.headers: unknown field"),
    (lambda m: m["messageVersions"][0]["to"][0].update(nom="Anne"), r"messageVersions\[0\]\.to\[0\]\.nom"),
    (lambda m: m.update(tags="rebuy"), "tags"),
    (lambda m: m["sender"].update(email=42), "sender.email"),
])
def test_the_contract_fails_on_what_brevo_does_not_know(change, problem):
    message = send.build_message(_rows(1), "hebdo-2026-11-15", "k", settings.campaigns_config())
    check_request("POST", "/v3/smtp/email", body=message)
    change(message)
    with pytest.raises(ContractMismatch, match=problem):
        check_request("POST", "/v3/smtp/email", body=message)


def test_the_contract_fails_on_values_outside_brevo_enums_and_missing_fields():
    with pytest.raises(ContractMismatch, match="type: 'number' is not one of|Input should be 'text'"):
        check_request("POST", "/contacts/attributes/normal/LEAD_SCORE", body={"type": "number"})
    with pytest.raises(ContractMismatch, match="attribute_category"):
        check_request("POST", "/contacts/attributes/normale/LEAD_SCORE", body={"type": "float"})
    with pytest.raises(ContractMismatch, match="folderId: required"):
        check_request("POST", "/contacts/lists", body={"name": "Clients"})
    with pytest.raises(ContractMismatch, match="sort"):
        check_request("GET", "/smtp/emails", query={"email": "a@example.fr", "sort": "newest"})
    with pytest.raises(ContractMismatch, match="listIds"):
        check_request("POST", "/contacts/import", body={"jsonBody": [], "listIds": ["4"]})
    with pytest.raises(ContractMismatch, match="no such operation"):
        check_request("POST", "/smtp/emails", body={})


# Brevo's own example answer to GET /contacts/{identifier} (api/swagger.yaml, getContactInfo)
CONTACT_EXAMPLE = {"email": "peggy.rain@example.com", "id": 42, "emailBlacklisted": False, "smsBlacklisted": False,
                   "createdAt": "2017-05-02T16:40:31Z", "modifiedAt": "2017-05-02T16:40:31Z",
                   "attributes": {"FIRST_NAME": "Peggy", "LAST_NAME": "Rain", "SMS": "3087433387669"},
                   "listIds": [40], "statistics": {"messagesSent": [{"campaignId": 21,
                                                                     "eventTime": "2016-05-03T20:15:13Z"}]}}


def test_a_contacts_details_are_asked_as_the_sdk_would(checked):
    """What a person's access request reads of Brevo: one GET, the address in the path."""
    client, session = checked
    session.respond = lambda method, path, query, body: (
        (200, CONTACT_EXAMPLE) if "peggy" in path.lower() else (404, {"code": "document_not_found", "message": "x"}))
    assert client.get_contact("Peggy.Rain@example.com")["listIds"] == [40]
    assert client.get_contact("nobody@example.com") is None
    assert [(c["method"], c["path"]) for c in session.checked] == [
        ("GET", "/contacts/Peggy.Rain@example.com"), ("GET", "/contacts/nobody@example.com")]


def test_the_fakes_contact_details_are_what_the_sdk_reads():
    """The fake answers GET /contacts/{identifier} with what Brevo's SDK model requires."""
    from brevo.contacts.types.get_contact_info_response import GetContactInfoResponse

    from tests.fakes.brevo import FakeBrevoServer

    with FakeBrevoServer() as server:
        client = brevo.BrevoClient(brevo.BrevoCredentials(server.fake.api_key, server.url), sleep=lambda s: None)
        lists = server.fake.lists
        lists[4] = {"name": "Clients du domaine (CRM)", "folderId": 1}
        server.fake.import_contacts({"listIds": [4], "jsonBody": [{"email": "anne@example.fr",
                                                                   "attributes": {"FIRSTNAME": "Anne"}}]})
        details = client.get_contact("anne@example.fr")
        assert client.get_contact("nobody@example.fr") is None
    GetContactInfoResponse.model_validate(details)
    assert (details["email"], details["attributes"], details["listIds"]) == ("anne@example.fr",
                                                                             {"FIRSTNAME": "Anne"}, [4])
