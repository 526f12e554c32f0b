"""A small Brevo API v3 client over ``requests`` with explicit retry rules.

Every request body and query it builds is checked, in the tests, against Brevo's own request
models: the official SDK ``brevo-python`` 5.1.0 (``tests/contract/brevo_sdk.py``: each wire key
a parameter of the SDK method, each value valid for its type, no unknown nested field, and the
request the SDK would send equal to ours). The limits the SDK does not carry come from Brevo's
published API description (``api/swagger.yaml`` of getbrevo/brevo-go):

* ``POST /smtp/email`` (``sendSmtpEmail``): messageVersions 1 to 1000, 1 to 99 recipients each,
  at most 2000 per call; answers ``messageIds``, one per version (checked by the caller);
* ``GET /smtp/emails``: by address, startDate and endDate at most one month apart, ``limit``
  at most 1000 with ``offset`` paging;
* ``POST /contacts/import``: ``listIds`` mandatory unless ``newList`` is given; attributes the
  account does not have are silently ignored, hence ``GET /contacts/attributes`` and ``POST
  /contacts/attributes/normal/{name}`` (type text, float, date...); ``GET /contacts/lists`` and
  ``/contacts/folders`` (at most 50 a page), ``POST /contacts/lists`` (needs a folderId) and
  ``POST /contacts/folders``; most of these endpoints allow about 100 requests an hour;
* ``DELETE /contacts/{identifier}``: 204, 404 unknown, 405 for a contact Brevo does not let the
  API delete;
* ``POST /transactionalSMS/sms`` (``sendTransacSms``): sender at most 11 characters, or 15 when
  numeric; recipient with its country code; content; type transactional|marketing;
* errors are ``{code, message}``.

Why not the official SDK: it retries POSTs on 5xx and 429 by default, which can send an e-mail
twice. Here:

* 429 is always safe to retry (the call was refused): wait ``x-sib-ratelimit-reset`` seconds;
* 5xx, timeouts and dropped connections are retried only when the call carries an
  ``idempotencyKey`` (Brevo refuses a key it has already accepted with ``duplicate_parameter``
  and sends nothing), and never for calls without one;
* 400/401/402/403/405 fail at once with a message a person can act on;
* the API key is sent in the ``api-key`` header only, never logged, never in a message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.brevo.com/v3"
MAX_VERSIONS_PER_CALL = 1000       # messageVersions per call (Brevo's documented cap)
MAX_RECIPIENTS_PER_CALL = 2000     # recipients over all versions of a call
MAX_RECIPIENTS_PER_VERSION = 99
LOOKUP_PAGE = 1000                 # GET /smtp/emails: limit's maximum
LOOKUP_MAX_DAYS = 30               # GET /smtp/emails: « at most one month » between startDate and endDate
LISTS_PAGE = 50                    # GET /contacts/lists and /contacts/folders: limit's maximum
SMS_SENDER_LETTERS, SMS_SENDER_DIGITS = 11, 15
# what a person does with a contact Brevo does not let the API delete (405)
DELETE_BY_HAND = ("delete it by hand in Brevo (Contacts, open the contact, Delete), or ask Brevo's support if it "
                  "is the address the Brevo account itself is registered with")


class BrevoError(RuntimeError):
    """Brevo refused or could not answer a call. ``retryable``: a later task try may succeed."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class BrevoBadRequest(BrevoError):
    """400: a field is wrong; the message names it."""


class BrevoDuplicate(BrevoError):
    """The idempotencyKey was already accepted: the e-mails of that call have left (nothing was
    sent this time)."""


class BrevoAuthError(BrevoError):
    """401: the API key is wrong or revoked."""


class BrevoNoCredits(BrevoError):
    """402: the account has no e-mail credits left."""


class BrevoForbidden(BrevoError):
    """403: the key may not do this (IP not authorised, sender not validated, account suspended)."""


class BrevoNotAllowed(BrevoError):
    """405: Brevo does not let the API do this (e.g. delete a contact registered with Brevo): a
    person must do it in Brevo; repeating the call changes nothing."""


class BrevoRateLimited(BrevoError):
    """429 for longer than we wait: try the task again later."""

    retryable = True


class BrevoUnavailable(BrevoError):
    """5xx, timeout or dropped connection. For a call with an idempotencyKey the outcome is
    unknown: it may have been accepted."""

    retryable = True


@dataclass(frozen=True)
class BrevoCredentials:
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL

    def __repr__(self) -> str:  # never the key
        return f"BrevoCredentials(base_url={self.base_url!r}, api_key=***)"


def credentials_from_env() -> BrevoCredentials | None:
    """``BREVO_API_KEY`` (and ``BREVO_API_URL`` for a sandbox or a mock) outside Airflow; inside
    Airflow the connection ``brevo_default`` is used (winecrm.airflow.connections)."""
    key = os.environ.get("BREVO_API_KEY")
    if not key:
        return None
    return BrevoCredentials(key, (os.environ.get("BREVO_API_URL") or DEFAULT_BASE_URL).rstrip("/"))


def _explain(status: int, code: str | None, message: str, path: str) -> str:
    what = {
        400: f"Brevo refused the request to {path} as invalid",
        401: "Brevo refused the API key (401 unauthorized): check the password of the Airflow connection "
             "brevo_default (Brevo > SMTP & API > API keys)",
        402: "Brevo says the account has not enough credits to send (402): buy e-mail credits or wait for "
             "the monthly reset, then clear the task",
        403: "Brevo forbids this call (403): check that the sender address is validated and, if IP "
             "restriction is on, that this worker's IP is authorised in Brevo > Security",
        405: "Brevo does not allow this through the API (405): a person must do it in Brevo",
    }.get(status, f"Brevo answered {status} to {path}")
    return f"{what}: {code or 'no code'}: {message or 'no message'}"


class BrevoClient:
    def __init__(self, credentials: BrevoCredentials, *, timeout: float = 30, max_attempts: int = 5,
                 max_rate_limit_wait: float = 120, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = credentials.base_url.rstrip("/")
        self.timeout, self.max_attempts, self.max_rate_limit_wait = timeout, max_attempts, max_rate_limit_wait
        self.sleep = sleep
        self.session = session or requests.Session()
        self._headers = {"api-key": credentials.api_key, "accept": "application/json",
                         "content-type": "application/json"}
        self.requests_made = 0

    def __repr__(self) -> str:
        return f"BrevoClient({self.base_url!r})"

    # -- transport ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, body: dict | None = None, params: dict | None = None,
              idempotent: bool, not_found_ok: bool = False) -> tuple[int, dict]:
        """One API call with the retry rules of the module docstring. ``idempotent``: repeating
        the call cannot do anything twice (a GET, or a POST carrying an idempotencyKey)."""
        url = f"{self.base_url}{path}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        last: BrevoError | None = None
        for attempt in range(1, self.max_attempts + 1):
            self.requests_made += 1
            try:
                response = self.session.request(method, url, data=data, params=params, headers=self._headers,
                                                timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                # the request may have reached Brevo: only an idempotent call may go again
                last = BrevoUnavailable(f"no answer from Brevo for {method} {path}: {exc.__class__.__name__}")
                if not idempotent:
                    raise last from None
                self.sleep(min(2 ** attempt, 30))
                continue
            status = response.status_code
            if status == 429:
                reset = _float(response.headers.get("x-sib-ratelimit-reset"), default=1.0)
                if reset > self.max_rate_limit_wait:
                    raise BrevoRateLimited(f"Brevo rate limit on {path}: reset in {reset:.0f} s, longer than the "
                                           f"{self.max_rate_limit_wait:.0f} s we wait; the task will try again",
                                           status=429)
                log.info("Brevo rate limit on %s: waiting %.1f s (x-sib-ratelimit-reset)", path, reset)
                self.sleep(max(reset, 0.05))
                last = BrevoRateLimited(f"Brevo rate limit on {path} after {attempt} attempts", status=429)
                continue
            payload = _json(response)
            if status >= 500:
                last = BrevoUnavailable(f"Brevo answered {status} to {method} {path}", status=status)
                if not idempotent:
                    raise last
                self.sleep(min(2 ** attempt, 30))
                continue
            if status == 404 and not_found_ok:
                return status, payload
            if status >= 400:
                code, message = payload.get("code"), str(payload.get("message", ""))[:500]
                if status == 400 and code == "duplicate_parameter" and body and "idempotencyKey" in (
                        body.get("headers") or {}):
                    raise BrevoDuplicate(f"Brevo already accepted the call with this idempotencyKey ({message})",
                                         status=status, code=code)
                cls = {401: BrevoAuthError, 402: BrevoNoCredits, 403: BrevoForbidden,
                       405: BrevoNotAllowed}.get(status, BrevoBadRequest)
                raise cls(_explain(status, code, message, path), status=status, code=code)
            return status, payload
        assert last is not None
        raise last

    def _pages(self, path: str, key: str, page_size: int, params: dict | None = None):
        """Every item of a paged GET (``limit`` / ``offset``), page after page until a short one."""
        offset = 0
        while True:
            _, payload = self._call("GET", path, params={**(params or {}), "limit": page_size, "offset": offset},
                                    idempotent=True)
            page = payload.get(key) or []
            yield from page
            if len(page) < page_size:
                return
            offset += page_size

    # -- endpoints ------------------------------------------------------------------------------

    def send_transactional(self, message: dict) -> list[str]:
        """``POST /smtp/email``. Returns the message ids, one per messageVersion (or the one of a
        single e-mail). Raises BrevoDuplicate when its idempotencyKey was already accepted."""
        check_message(message)
        idempotent = bool((message.get("headers") or {}).get("idempotencyKey"))
        _, payload = self._call("POST", "/smtp/email", body=message, idempotent=idempotent)
        if "messageIds" in payload:
            return list(payload["messageIds"])
        return [payload["messageId"]] if payload.get("messageId") else []

    def find_sent(self, email: str, start_date: str, end_date: str, *, tag: str | None = None) -> list[dict]:
        """``GET /smtp/emails``: transactional e-mails sent to an address between two dates
        (YYYY-MM-DD, at most one month apart, as Brevo requires), newest first, every page
        read; only those carrying ``tag`` when given."""
        start, end = dt.date.fromisoformat(start_date), dt.date.fromisoformat(end_date)
        if not 0 <= (end - start).days <= LOOKUP_MAX_DAYS:
            raise ValueError(f"{start_date}..{end_date}: Brevo reads its log of sent e-mails at most one month "
                             f"({LOOKUP_MAX_DAYS} days) at a time")
        found = self._pages("/smtp/emails", "transactionalEmails", LOOKUP_PAGE,
                            {"email": email, "startDate": start_date, "endDate": end_date, "sort": "desc"})
        return [e for e in found if tag is None or tag in (e.get("tags") or [])]

    # -- contacts: attributes, lists, import ----------------------------------------------------

    def attributes(self) -> dict[str, str]:
        """``GET /contacts/attributes``: the account's contact attributes, name -> type."""
        _, payload = self._call("GET", "/contacts/attributes", idempotent=True)
        return {a["name"]: a.get("type", "") for a in payload.get("attributes") or [] if a.get("name")}

    def create_attribute(self, name: str, attribute_type: str) -> None:
        """``POST /contacts/attributes/normal/{name}`` (type text, float, date, boolean...)."""
        self._call("POST", f"/contacts/attributes/normal/{quote(name, safe='')}", body={"type": attribute_type},
                   idempotent=False)

    def find_list(self, name: str) -> int | None:
        """The id of the contact list called ``name`` (newest first, page by page, stopping
        when found), or None."""
        lists = self._pages("/contacts/lists", "lists", LISTS_PAGE)
        return next((item["id"] for item in lists if item.get("name") == name), None)

    def folders(self) -> list[dict]:
        """``GET /contacts/folders``: every folder ({id, name, ...})."""
        return list(self._pages("/contacts/folders", "folders", LISTS_PAGE))

    def create_folder(self, name: str) -> int:
        _, payload = self._call("POST", "/contacts/folders", body={"name": name}, idempotent=False)
        return int(payload["id"])

    def create_list(self, name: str, folder_id: int) -> int:
        _, payload = self._call("POST", "/contacts/lists", body={"name": name, "folderId": folder_id},
                                idempotent=False)
        return int(payload["id"])

    def import_contacts(self, contacts: list[dict], list_ids: list[int]) -> int | None:
        """``POST /contacts/import`` (asynchronous, 202): contacts as ``{"email": …, "attributes":
        {…}}`` into the lists ``list_ids`` (Brevo requires a list); existing ones updated. Returns
        Brevo's processId. Safe to repeat (an import of the same contacts leaves the same state).
        Attributes the account does not have are silently dropped by Brevo: create them first."""
        if not list_ids:
            raise ValueError("Brevo imports contacts only into a list: listIds is mandatory")
        body = {"jsonBody": contacts, "listIds": list(list_ids), "updateExistingContacts": True,
                "emptyContactsAttributes": False}
        _, payload = self._call("POST", "/contacts/import", body=body, idempotent=True)
        return payload.get("processId")

    def get_contact(self, email: str) -> dict | None:
        """``GET /contacts/{email}``: the contact Brevo holds — attributes, lists, blacklist flags,
        creation and change dates, the last 90 days' statistics — or None when it holds none.
        What a person's access request (GDPR art. 15) reports of Brevo."""
        status, payload = self._call("GET", f"/contacts/{quote(email, safe='')}", idempotent=True,
                                     not_found_ok=True)
        return None if status == 404 else payload

    def delete_contact(self, email: str) -> bool:
        """``DELETE /contacts/{email}``: True when Brevo deleted it, False when it held no such
        contact. Safe to repeat. Raises BrevoNotAllowed (405) for a contact Brevo does not let the
        API delete, with what a person must do."""
        try:
            status, _ = self._call("DELETE", f"/contacts/{quote(email, safe='')}", idempotent=True,
                                   not_found_ok=True)
        except BrevoNotAllowed as exc:
            raise BrevoNotAllowed(
                "Brevo does not let the API delete this contact (405: « You're not allowed to delete registered "
                f"email contact with Brevo »): {DELETE_BY_HAND}",
                status=405, code=exc.code) from None
        return status != 404

    def send_sms(self, sms: dict) -> dict:
        """``POST /transactionalSMS/sms``. Brevo takes no idempotency key for SMS, so the call is
        never repeated on a 5xx or a lost answer: the caller records the outcome as unknown
        instead of sending twice. Returns ``{"messageId", "reference", ...}``."""
        problems = []
        sender_problem = sms_sender_problem(sms.get("sender"))
        if sender_problem:
            problems.append(sender_problem)
        if not str(sms.get("recipient", "")).isdigit():
            problems.append("recipient must be digits with the country code (33612345678)")
        if not sms.get("content"):
            problems.append("content is missing")
        if sms.get("type", "transactional") not in ("transactional", "marketing"):
            problems.append("type must be transactional or marketing")
        if problems:
            raise BrevoBadRequest("SMS not sent, the request breaks Brevo's contract: " + "; ".join(problems))
        _, payload = self._call("POST", "/transactionalSMS/sms", body=sms, idempotent=False)
        return payload


def sms_sender_problem(sender) -> str | None:
    """What is wrong with an SMS sender for Brevo, or None: at most 11 characters when it has
    letters, 15 when it is only digits (a phone number)."""
    sender = str(sender or "")
    if not sender:
        return "the SMS sender is empty"
    limit = SMS_SENDER_DIGITS if sender.isdigit() else SMS_SENDER_LETTERS
    if len(sender) > limit:
        return (f"the SMS sender {sender!r} has {len(sender)} characters: Brevo takes at most "
                f"{SMS_SENDER_LETTERS} characters, or {SMS_SENDER_DIGITS} when it is only digits")
    return None


def configured_client(credentials: BrevoCredentials | None) -> BrevoClient | None:
    """A client with campaigns.yaml's sending limits (timeout, attempts, longest rate-limit wait),
    or None without credentials: what every caller (tasks, CLIs) wants."""
    if credentials is None:
        return None
    from winecrm.core import settings

    sending = settings.campaigns_config().sending
    return BrevoClient(credentials, timeout=sending.request_timeout_s, max_attempts=sending.max_attempts,
                       max_rate_limit_wait=sending.max_rate_limit_wait_s)


def check_message(message: dict) -> None:
    """The documented request contract, checked before anything leaves (a mistake here is ours,
    and Brevo would refuse the whole batch)."""
    problems = []
    sender = message.get("sender") or {}
    if not sender.get("email") and not sender.get("id"):
        problems.append("sender.email is missing")
    versions = message.get("messageVersions")
    if versions is not None:
        if not 1 <= len(versions) <= MAX_VERSIONS_PER_CALL:
            problems.append(f"messageVersions has {len(versions)} versions (1 to {MAX_VERSIONS_PER_CALL})")
        total = 0
        for i, version in enumerate(versions):
            to = version.get("to") or []
            total += len(to)
            if not 1 <= len(to) <= MAX_RECIPIENTS_PER_VERSION:
                problems.append(f"messageVersions[{i}].to has {len(to)} recipients (1 to {MAX_RECIPIENTS_PER_VERSION})")
            if any(not r.get("email") for r in to):
                problems.append(f"messageVersions[{i}].to: a recipient without email")
            for key in ("subject", "htmlContent", "textContent"):
                if key in version and not isinstance(version[key], str):
                    problems.append(f"messageVersions[{i}].{key} must be a string")
        if total > MAX_RECIPIENTS_PER_CALL:
            problems.append(f"{total} recipients in one call (at most {MAX_RECIPIENTS_PER_CALL})")
        if not (message.get("htmlContent") or message.get("textContent")):
            problems.append("htmlContent or textContent is required at the top level to vary them per version")
    else:
        if not message.get("to"):
            problems.append("to is missing")
    if not message.get("subject") and not message.get("templateId"):
        problems.append("subject is missing")
    if problems:
        raise BrevoBadRequest("e-mail not sent, the request breaks Brevo's contract: " + "; ".join(problems))


def _float(value, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _json(response: requests.Response) -> dict:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
