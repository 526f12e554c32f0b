"""A local fake Brevo API v3 over real HTTP, for tests and benchmarks.

Every request it receives is first checked against Brevo's own request models (the official
SDK, ``tests/contract/brevo_sdk.py``): an unknown field, a wrong type or a body the SDK would
not send the same way is answered 400 with the mismatch. On top of that it enforces what
Brevo's published API description says and the SDK does not check:

* ``POST /smtp/email``: sender, subject and a body without templateId; 1 to 1000
  messageVersions, 1 to 99 recipients each, at most 2000 in the call; an ``idempotencyKey``
  reused while its lifetime lasts is refused with ``duplicate_parameter`` and nothing is sent.
  The lifetime is a setting (``idempotency_lifetime_s``): Brevo documents 30 minutes today and
  15 in an older changelog, so tests run it at 15;
* ``GET /smtp/emails``: email, templateId or messageId; startDate and endDate together, at
  most one month apart (the last 30 days without them); ``limit`` 0 to 1000 (default 500),
  ``offset``, ``sort`` asc|desc by date (default desc);
* ``POST /contacts/import``: ``listIds`` (existing lists) unless ``newList`` is given;
  attributes the account does not have are ignored, as Brevo does; ``GET /contacts/attributes``,
  ``POST /contacts/attributes/normal/{name}`` (type text, float, date...), ``GET|POST
  /contacts/lists`` and ``/contacts/folders`` (limit at most 50; a list needs a folderId);
* ``DELETE /contacts/{identifier}``: 204, 404 unknown, 405 for a contact Brevo does not let
  the API delete (``undeletable``);
* ``POST /transactionalSMS/sms``: sender at most 11 characters, or 15 when numeric;
  recipient digits with country code; content; type transactional|marketing;
* most endpoints other than sending are limited to ``hourly_limit`` requests per hour (429 with
  ``x-sib-ratelimit-reset``), as Brevo limits them to about 100.

It keeps a log of every e-mail it accepted, and injects faults on demand: 429 with rate-limit
headers, 500, a slow answer, a connection dropped before or AFTER the e-mail was accepted,
402, an answer with fewer message ids than versions or an empty one.

Standalone, to rehearse live mode against it (docs/campaigns.md, « Rehearse live mode with the fake
Brevo »)::

    .venv/bin/python -m tests.fakes.brevo --port 8090 [--api-key KEY]

serves it on 127.0.0.1:8090 until Ctrl-C and prints each request it answers and each e-mail it
accepts (recipient and subject); nothing leaves the machine.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.contract.brevo_sdk import ContractMismatch, check_request

MAX_VERSIONS, MAX_RECIPIENTS_PER_VERSION, MAX_RECIPIENTS = 1000, 99, 2000
MAX_LOOKUP_DAYS = 30  # GET /smtp/emails: « Maximum time period that can be selected is one month »
# about 100 requests an hour each (sending, imports and single contacts have per-second limits)
HOURLY_LIMITED = ("/smtp/emails", "/contacts/attributes", "/contacts/lists", "/contacts/folders")


@dataclass
class Fault:
    kind: str               # '429', '500', '402', 'slow', 'drop_before', 'drop_after_accept', 'ids_short', 'ids_empty'
    reset: float = 1.0      # 429: x-sib-ratelimit-reset
    seconds: float = 0.0    # slow: delay between accepting and answering
    path: str | None = "/smtp/email"  # None: the next request, whatever its path


@dataclass
class FakeBrevo:
    api_key: str = "test-key-0123456789"
    clock: callable = time.time
    idempotency_lifetime_s: float = 30 * 60
    hourly_limit: int | None = 100
    sent: list = field(default_factory=list)          # every accepted e-mail (one per recipient)
    requests: list = field(default_factory=list)      # (method, path, status)
    imports: list = field(default_factory=list)
    contacts: set = field(default_factory=set)        # addresses Brevo holds as contacts (imports add them)
    contact_attributes: dict = field(default_factory=dict)  # address -> the attributes Brevo kept
    contact_lists: dict = field(default_factory=dict)  # address -> list ids
    undeletable: set = field(default_factory=set)     # contacts the API may not delete (405)
    deleted_contacts: list = field(default_factory=list)
    # a new English-language account's own attributes
    attributes: dict = field(default_factory=lambda: {"FIRSTNAME": "text", "LASTNAME": "text", "SMS": "text"})
    folders: dict = field(default_factory=dict)       # id -> name
    lists: dict = field(default_factory=dict)         # id -> {"name", "folderId"}
    sms: list = field(default_factory=list)           # every accepted SMS
    faults: list = field(default_factory=list)
    keys: dict = field(default_factory=dict)          # idempotencyKey -> accepted at (clock)
    contract_mismatches: list = field(default_factory=list)
    echo: callable = None  # called with (method, path, status, answer) after each answer (the standalone printer)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _hourly: dict = field(default_factory=dict)       # path -> [window start, count]

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def _next_fault(self, path: str) -> Fault | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault.path in (path, None):
                    return self.faults.pop(i)
        return None

    def accepted_addresses(self) -> list[str]:
        with self.lock:
            return [e["to"] for e in self.sent]

    def _over_hourly_limit(self, path: str) -> float | None:
        """Seconds until the hour's window resets when ``path`` is over its limit, else None."""
        bucket = "/contacts/attributes" if path.startswith("/contacts/attributes") else path
        if self.hourly_limit is None or bucket not in HOURLY_LIMITED:
            return None
        with self.lock:
            start, count = self._hourly.get(bucket, (self.clock(), 0))
            if self.clock() - start >= 3600:
                start, count = self.clock(), 0
            if count >= self.hourly_limit:
                return 3600 - (self.clock() - start)
            self._hourly[bucket] = (start, count + 1)
        return None

    # -- contract beyond the SDK's models -----------------------------------------------------

    def check_send(self, body: dict) -> list[str]:
        problems = []
        sender = body.get("sender") or {}
        if not (sender.get("email") or sender.get("id")):
            problems.append("sender.email is required")
        if "templateId" not in body:
            if not body.get("subject"):
                problems.append("subject is required")
            if not (body.get("htmlContent") or body.get("textContent")):
                problems.append("htmlContent or textContent is required")
        versions = body.get("messageVersions")
        if versions is None:
            if not body.get("to"):
                problems.append("to is required")
        elif not 1 <= len(versions) <= MAX_VERSIONS:
            problems.append(f"messageVersions: 1 to {MAX_VERSIONS} versions")
        else:
            for i, v in enumerate(versions):
                if not 1 <= len(v.get("to") or []) <= MAX_RECIPIENTS_PER_VERSION:
                    problems.append(f"messageVersions[{i}].to: 1 to {MAX_RECIPIENTS_PER_VERSION} recipients")
            total = sum(len(v.get("to") or []) for v in versions)
            if total > MAX_RECIPIENTS:
                problems.append(f"{total} recipients in one request (at most {MAX_RECIPIENTS})")
        return problems

    def accept(self, body: dict) -> dict:
        """Record the e-mails of a valid, non-duplicate request; the answer Brevo gives."""
        headers = body.get("headers") or {}
        versions = body.get("messageVersions") or [{"to": body["to"]}]
        ids = []
        with self.lock:
            for v in versions:
                message_id = f"<{uuid.uuid4().hex}@smtp-relay.fake-brevo>"
                ids.append(message_id)
                for r in v["to"]:
                    self.sent.append({"to": r["email"], "subject": v.get("subject", body.get("subject")),
                                      "idempotencyKey": headers.get("idempotencyKey"),
                                      "custom": headers.get("X-Mailin-custom"), "tags": body.get("tags") or [],
                                      "messageId": message_id, "at": self.clock(),
                                      "html": v.get("htmlContent", body.get("htmlContent")),
                                      "text": v.get("textContent", body.get("textContent"))})
        return {"messageIds": ids} if body.get("messageVersions") else {"messageId": ids[0]}

    def lookup(self, query: dict) -> tuple[int, dict]:
        """``GET /smtp/emails`` as Brevo reads its query."""
        if not (query.get("email") or query.get("messageId") or query.get("templateId")):
            return 400, {"code": "missing_parameter", "message": "email, templateId or messageId is mandatory"}
        if bool(query.get("startDate")) != bool(query.get("endDate")):
            return 400, {"code": "missing_parameter", "message": "startDate and endDate go together"}
        today = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).date()
        try:
            start = dt.date.fromisoformat(query["startDate"]) if query.get("startDate") else today - dt.timedelta(30)
            end = dt.date.fromisoformat(query["endDate"]) if query.get("endDate") else today
            limit, offset = int(query.get("limit", 500)), int(query.get("offset", 0))
        except ValueError as exc:
            return 400, {"code": "invalid_parameter", "message": str(exc)}
        if end < start or (end - start).days > MAX_LOOKUP_DAYS:
            return 400, {"code": "invalid_parameter",
                         "message": "Maximum time period that can be selected is one month"}
        if not 0 <= limit <= 1000 or offset < 0:
            return 400, {"code": "invalid_parameter", "message": "limit: 0 to 1000; offset: 0 or more"}
        with self.lock:
            found = [e for e in self.sent
                     if (not query.get("email") or e["to"] == query["email"])
                     and (not query.get("messageId") or e["messageId"] == query["messageId"])
                     and start <= dt.datetime.fromtimestamp(e["at"], dt.timezone.utc).date() <= end]
        found.sort(key=lambda e: e["at"], reverse=query.get("sort", "desc") == "desc")
        page = [{"email": e["to"], "subject": e["subject"], "messageId": e["messageId"], "uuid": e["messageId"],
                 "date": dt.datetime.fromtimestamp(e["at"], dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "tags": e["tags"]} for e in found[offset:offset + limit]]
        return 200, {"count": len(found), "transactionalEmails": page}

    def import_contacts(self, body: dict) -> tuple[int, dict]:
        list_ids, new_list = body.get("listIds"), body.get("newList")
        if not list_ids and not new_list:
            return 400, {"code": "missing_parameter", "message": "listIds is mandatory if newList is not defined"}
        with self.lock:
            unknown = [i for i in list_ids or [] if i not in self.lists]
            if unknown:
                return 400, {"code": "invalid_parameter", "message": f"list(s) {unknown} do not exist"}
            if new_list:
                if new_list.get("folderId") not in self.folders:
                    return 400, {"code": "invalid_parameter", "message": "newList.folderId: no such folder"}
                list_ids = [self._add_list(new_list.get("listName", ""), new_list["folderId"])]
            self.imports.append(body)
            for contact in body.get("jsonBody") or []:
                email = str(contact.get("email", "")).lower()
                if not email:
                    continue
                self.contacts.add(email)
                kept = {k: v for k, v in (contact.get("attributes") or {}).items() if k in self.attributes}
                self.contact_attributes.setdefault(email, {}).update(kept)  # the others: silently ignored
                self.contact_lists.setdefault(email, set()).update(list_ids)
            return 202, {"processId": len(self.imports)}

    def _add_list(self, name: str, folder_id: int) -> int:
        list_id = max(self.lists, default=1) + 1
        self.lists[list_id] = {"name": name, "folderId": folder_id}
        return list_id


def _page(items: list, query: dict, default_limit: int = 10, max_limit: int = 50) -> tuple[list, str | None]:
    try:
        limit, offset = int(query.get("limit", default_limit)), int(query.get("offset", 0))
    except ValueError:
        return [], "limit and offset are integers"
    if not 0 <= limit <= max_limit or offset < 0:
        return [], f"limit: 0 to {max_limit}; offset: 0 or more"
    items = sorted(items, key=lambda i: i["id"], reverse=query.get("sort", "desc") == "desc")
    return items[offset:offset + limit], None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeBrevo

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, payload: dict | None = None, headers: dict | None = None) -> None:
        data = b"" if status == 204 else json.dumps(payload or {}).encode()
        with self.fake.lock:  # logged before the answer leaves: the caller may look at once
            self.fake.requests.append((self.command, self._path(), status))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 204:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.fake.echo:
            self.fake.echo(self.command, self._path(), status, payload)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _body(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def _path(self) -> str:
        path = urlsplit(self.path).path
        return path[3:] if path.startswith("/v3/") else path

    def _query(self) -> dict:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def _handle(self) -> None:
        path, query = self._path(), self._query()
        body = self._body() if self.command in ("POST", "PUT") else None
        fault = self.fake._next_fault(path)
        if fault and fault.kind == "drop_before":
            return self._drop()
        if fault and fault.kind == "429":
            return self._answer(429, {"code": "too_many_requests", "message": "rate limited"},
                                {"x-sib-ratelimit-limit": "1000", "x-sib-ratelimit-remaining": "0",
                                 "x-sib-ratelimit-reset": str(fault.reset)})
        if fault and fault.kind == "500":
            return self._answer(500, {"code": "internal_error", "message": "boom"})
        if self.headers.get("api-key") != self.fake.api_key:
            return self._answer(401, {"code": "unauthorized", "message": "Key not found"})
        reset = self.fake._over_hourly_limit(path)
        if reset is not None:
            return self._answer(429, {"code": "too_many_requests", "message": "hourly limit reached"},
                                {"x-sib-ratelimit-limit": str(self.fake.hourly_limit),
                                 "x-sib-ratelimit-remaining": "0", "x-sib-ratelimit-reset": str(round(reset))})
        if fault and fault.kind == "402":
            return self._answer(402, {"code": "not_enough_credits", "message": "not enough credits"})
        try:
            check_request(self.command, path, query=query, body=body)
        except ContractMismatch as mismatch:
            with self.fake.lock:
                self.fake.contract_mismatches.append(str(mismatch))
            return self._answer(400, {"code": "invalid_parameter", "message": str(mismatch)})
        single_contact = self.command == "DELETE" or (
            self.command == "GET" and path.startswith("/contacts/") and path.count("/") == 2
            and path not in ("/contacts/attributes", "/contacts/lists", "/contacts/folders"))
        route = (self.command, "/contacts/{identifier}" if single_contact else path)
        handler = {("POST", "/smtp/email"): self._send_email, ("GET", "/smtp/emails"): self._lookup,
                   ("POST", "/contacts/import"): self._import, ("GET", "/contacts/attributes"): self._attributes,
                   ("GET", "/contacts/lists"): self._lists, ("POST", "/contacts/lists"): self._create_list,
                   ("GET", "/contacts/folders"): self._folders, ("POST", "/contacts/folders"): self._create_folder,
                   ("DELETE", "/contacts/{identifier}"): self._delete_contact,
                   ("GET", "/contacts/{identifier}"): self._get_contact,
                   ("POST", "/transactionalSMS/sms"): self._send_sms}.get(route)
        if handler is None and self.command == "POST" and path.startswith("/contacts/attributes/"):
            handler = self._create_attribute
        if handler is None:
            return self._answer(404, {"code": "document_not_found", "message": f"no route {path}"})
        return handler(path, query, body, fault)

    do_GET = do_POST = do_DELETE = _handle  # noqa: N815 (http.server's naming)

    # -- routes ---------------------------------------------------------------------------------

    def _send_email(self, path, query, body, fault) -> None:
        problems = self.fake.check_send(body)
        if problems:
            return self._answer(400, {"code": "invalid_parameter", "message": "; ".join(problems)})
        key = (body.get("headers") or {}).get("idempotencyKey")
        with self.fake.lock:
            seen = self.fake.keys.get(key) if key else None
            duplicate = seen is not None and self.fake.clock() - seen < self.fake.idempotency_lifetime_s
            if key and not duplicate:
                self.fake.keys[key] = self.fake.clock()
        if duplicate:
            return self._answer(400, {"code": "duplicate_parameter", "message": "idempotencyKey already used"})
        answer = self.fake.accept(body)
        if fault and fault.kind == "drop_after_accept":
            return self._drop()  # accepted, but the answer never arrives
        if fault and fault.kind == "slow":
            time.sleep(fault.seconds)  # accepted, answered late (past the caller's timeout)
        if fault and fault.kind == "ids_short" and "messageIds" in answer:
            answer["messageIds"] = answer["messageIds"][:-1]
        if fault and fault.kind == "ids_empty" and "messageIds" in answer:
            answer["messageIds"][0] = ""
        return self._answer(201, answer)

    def _lookup(self, path, query, body, fault) -> None:
        return self._answer(*self.fake.lookup(query))

    def _import(self, path, query, body, fault) -> None:
        return self._answer(*self.fake.import_contacts(body))

    def _attributes(self, path, query, body, fault) -> None:
        with self.fake.lock:
            listed = [{"name": n, "category": "normal", "type": t} for n, t in self.fake.attributes.items()]
        return self._answer(200, {"attributes": listed})

    def _create_attribute(self, path, query, body, fault) -> None:
        category, name = unquote(path[len("/contacts/attributes/"):]).split("/", 1)
        if category != "normal" or not body.get("type"):
            return self._answer(400, {"code": "invalid_parameter", "message": "a normal attribute needs a type"})
        with self.fake.lock:
            exists = name in self.fake.attributes
            self.fake.attributes.setdefault(name, body["type"])
        if exists:
            return self._answer(400, {"code": "duplicate_parameter", "message": "Attribute name already exists"})
        return self._answer(201, None)

    def _lists(self, path, query, body, fault) -> None:
        with self.fake.lock:
            items = [{"id": i, "name": v["name"], "folderId": v["folderId"], "totalSubscribers": 0,
                      "totalBlacklisted": 0, "uniqueSubscribers": 0} for i, v in self.fake.lists.items()]
        page, problem = _page(items, query)
        if problem:
            return self._answer(400, {"code": "invalid_parameter", "message": problem})
        return self._answer(200, {"lists": page, "count": len(items)})

    def _create_list(self, path, query, body, fault) -> None:
        with self.fake.lock:
            list_id = self.fake._add_list(body["name"], body["folderId"]) if body["folderId"] in self.fake.folders \
                else None
        if list_id is None:
            return self._answer(400, {"code": "invalid_parameter", "message": "folderId: no such folder"})
        return self._answer(201, {"id": list_id})

    def _folders(self, path, query, body, fault) -> None:
        with self.fake.lock:
            items = [{"id": i, "name": n, "totalSubscribers": 0, "totalBlacklisted": 0, "uniqueSubscribers": 0}
                     for i, n in self.fake.folders.items()]
        page, problem = _page(items, query)
        if problem:
            return self._answer(400, {"code": "invalid_parameter", "message": problem})
        return self._answer(200, {"folders": page, "count": len(items)})

    def _create_folder(self, path, query, body, fault) -> None:
        if not body.get("name"):
            return self._answer(400, {"code": "missing_parameter", "message": "name is required"})
        with self.fake.lock:
            folder_id = max(self.fake.folders, default=0) + 1
            self.fake.folders[folder_id] = body["name"]
        return self._answer(201, {"id": folder_id})

    def _get_contact(self, path, query, body, fault) -> None:
        """A contact's details as Brevo answers them (getExtendedContactDetails)."""
        email = unquote(path[len("/contacts/"):]).lower()
        with self.fake.lock:
            held = email in self.fake.contacts
            details = {
                "email": email, "id": sorted(self.fake.contacts).index(email) + 1 if held else 0,
                "emailBlacklisted": False, "smsBlacklisted": False, "whatsappBlacklisted": False,
                "createdAt": "2026-11-16T06:00:00.000+01:00", "modifiedAt": "2026-11-16T06:00:00.000+01:00",
                "attributes": dict(self.fake.contact_attributes.get(email, {})),
                "listIds": sorted(self.fake.contact_lists.get(email, set())),
                "statistics": {}}  # statistics are of marketing campaigns only; the platform sends transactional
        if not held:
            return self._answer(404, {"code": "document_not_found", "message": "Contact does not exist"})
        return self._answer(200, details)

    def _delete_contact(self, path, query, body, fault) -> None:
        email = unquote(path[len("/contacts/"):]).lower()
        with self.fake.lock:
            if email in self.fake.undeletable:
                forbidden = True
            else:
                forbidden = False
                held = email in self.fake.contacts
                self.fake.contacts.discard(email)
                self.fake.contact_attributes.pop(email, None)
                self.fake.deleted_contacts.append(email)
        if forbidden:
            return self._answer(405, {"code": "method_not_allowed",
                                      "message": "You're not allowed to delete registered email contact with Brevo"})
        if not held:
            return self._answer(404, {"code": "document_not_found", "message": "Contact does not exist"})
        return self._answer(204)

    def _send_sms(self, path, query, body, fault) -> None:
        problems = []
        sender = body["sender"]
        if not sender or len(sender) > (15 if sender.isdigit() else 11):
            problems.append("sender: at most 11 characters, or 15 digits for a numeric sender")
        if not body["recipient"].isdigit():
            problems.append("recipient: mobile number with the country code, digits only")
        if not body.get("content"):
            problems.append("content is required")
        if problems:
            return self._answer(400, {"code": "invalid_parameter", "message": "; ".join(problems)})
        with self.fake.lock:
            self.fake.sms.append({**body, "at": self.fake.clock()})
            answer = {"reference": uuid.uuid4().hex[:19], "messageId": 1_500_000_000_000_000 + len(self.fake.sms),
                      "smsCount": 1 + len(body["content"]) // 160, "usedCredits": 1.0}
        if fault and fault.kind == "drop_after_accept":
            return self._drop()
        return self._answer(201, answer)


class FakeBrevoServer:
    """``with FakeBrevoServer() as server: server.url, server.fake``"""

    def __init__(self, fake: FakeBrevo | None = None, port: int = 0):
        self.fake = fake or FakeBrevo()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v3"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeBrevoServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> None:
    """The fake Brevo on 127.0.0.1:PORT until Ctrl-C, printing what it receives."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.fakes.brevo", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-key", default=FakeBrevo.api_key,
                        help="the key it accepts (the password of brevo_default); default %(default)s")
    args = parser.parse_args(argv)
    fake = FakeBrevo(api_key=args.api_key)
    shown = [0]

    def echo(method: str, path: str, status: int, answer: dict | None) -> None:
        print(f"{time.strftime('%H:%M:%S')} {method} {path} -> {status}"
              + (f" {answer.get('code')}: {answer.get('message')}" if status >= 400 and answer else ""), flush=True)
        with fake.lock:
            new, shown[0] = fake.sent[shown[0]:], len(fake.sent)
        for email in new:
            print(f"    e-mail to {email['to']}: {email['subject']}", flush=True)

    fake.echo = echo
    server = FakeBrevoServer(fake, port=args.port)
    print(f"Fake Brevo on {server.url} (API key: {fake.api_key}); nothing leaves this machine. Ctrl-C to stop.",
          flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        print(f"{len(fake.sent)} e-mails accepted, {len(fake.sms)} SMS.")


if __name__ == "__main__":
    main()
