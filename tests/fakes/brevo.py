"""A local fake Brevo API v3 over real HTTP, for tests and benchmarks.

It enforces the documented request contract of what the platform calls (header ``api-key``;
``POST /smtp/email`` fields, types and caps; ``idempotencyKey`` reuse refused with
``duplicate_parameter`` and nothing sent; ``GET /smtp/emails``; ``POST /contacts/import``;
``DELETE /contacts/{identifier}`` (204, 404 unknown); ``POST /transactionalSMS/sms``: sender at
most 15 characters, recipient digits with country code, content, type transactional|marketing),
keeps a log of every e-mail it accepted, and injects faults on demand: 429 with rate-limit
headers, 500, a slow answer, a connection dropped before or AFTER the e-mail was accepted, 402.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOP_LEVEL = {"sender", "to", "bcc", "cc", "htmlContent", "textContent", "subject", "replyTo", "attachment",
             "headers", "templateId", "params", "messageVersions", "tags", "scheduledAt", "batchId"}
VERSION_FIELDS = {"to", "params", "bcc", "cc", "replyTo", "subject", "htmlContent", "textContent"}
IDEMPOTENCY_SECONDS = 30 * 60


@dataclass
class Fault:
    kind: str               # '429', '500', '402', 'slow', 'drop_before', 'drop_after_accept'
    reset: float = 1.0      # 429: x-sib-ratelimit-reset
    seconds: float = 0.0    # slow: delay between accepting and answering
    path: str = "/smtp/email"


@dataclass
class FakeBrevo:
    api_key: str = "test-key-0123456789"
    clock: callable = time.time
    sent: list = field(default_factory=list)          # every accepted e-mail (one per recipient)
    requests: list = field(default_factory=list)      # (method, path, status)
    imports: list = field(default_factory=list)
    contacts: set = field(default_factory=set)        # addresses Brevo holds as contacts (imports add them)
    deleted_contacts: list = field(default_factory=list)
    sms: list = field(default_factory=list)           # every accepted SMS
    faults: list = field(default_factory=list)
    keys: dict = field(default_factory=dict)          # idempotencyKey -> accepted at (clock)
    credits: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def _next_fault(self, path: str) -> Fault | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault.path == path:
                    return self.faults.pop(i)
        return None

    def accepted_addresses(self) -> list[str]:
        with self.lock:
            return [e["to"] for e in self.sent]

    # -- contract -------------------------------------------------------------------------------

    def check_send(self, body) -> list[str]:
        problems = []
        if not isinstance(body, dict):
            return ["body must be a JSON object"]
        unknown = set(body) - TOP_LEVEL
        if unknown:
            problems.append(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        sender = body.get("sender")
        if not isinstance(sender, dict) or not (isinstance(sender.get("email"), str) or sender.get("id")):
            problems.append("sender.email is required")
        if "templateId" not in body:
            if not isinstance(body.get("subject"), str) or not body["subject"]:
                problems.append("subject is required")
            if not (isinstance(body.get("htmlContent"), str) or isinstance(body.get("textContent"), str)):
                problems.append("htmlContent or textContent is required")
        for key in ("tags",):
            if key in body and (not isinstance(body[key], list) or not all(isinstance(t, str) for t in body[key])):
                problems.append(f"{key} must be an array of strings")
        if "headers" in body and not isinstance(body["headers"], dict):
            problems.append("headers must be an object")
        versions = body.get("messageVersions")
        if versions is None:
            if not _recipients_ok(body.get("to")):
                problems.append("to is required: an array of {email, name?}")
        else:
            if not isinstance(versions, list) or not 1 <= len(versions) <= 1000:
                problems.append("messageVersions: 1 to 1000 versions")
            else:
                total = 0
                for i, v in enumerate(versions):
                    if not isinstance(v, dict):
                        problems.append(f"messageVersions[{i}] must be an object")
                        continue
                    for key in ("subject", "htmlContent", "textContent"):
                        if key in v and not isinstance(v[key], str):
                            problems.append(f"messageVersions[{i}].{key} must be a string")
                    if set(v) - VERSION_FIELDS:
                        problems.append(f"messageVersions[{i}]: unknown parameter(s) {sorted(set(v) - VERSION_FIELDS)}")
                    if not _recipients_ok(v.get("to")) or len(v["to"]) > 99:
                        problems.append(f"messageVersions[{i}].to: 1 to 99 recipients with an email")
                    else:
                        total += len(v["to"])
                if total > 2000:
                    problems.append(f"{total} recipients in one request (at most 2000)")
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
                                      "html": v.get("htmlContent", body.get("htmlContent"))})
        return {"messageIds": ids} if body.get("messageVersions") else {"messageId": ids[0]}


def _recipients_ok(to) -> bool:
    return isinstance(to, list) and len(to) >= 1 and all(isinstance(r, dict) and isinstance(r.get("email"), str)
                                                         and "@" in r["email"] for r in to)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeBrevo

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, payload: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(payload or {}).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with self.fake.lock:
            self.fake.requests.append((self.command, self._path(), status))

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

    def _authorised(self) -> bool:
        if self.headers.get("api-key") != self.fake.api_key:
            self._answer(401, {"code": "unauthorized", "message": "Key not found"})
            return False
        return True

    def _path(self) -> str:
        path = urlsplit(self.path).path
        return path[3:] if path.startswith("/v3/") else path

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        path = self._path()
        body = self._body()
        fault = self.fake._next_fault(path)
        if fault and fault.kind == "drop_before":
            return self._drop()
        if fault and fault.kind == "429":
            return self._answer(429, {"code": "too_many_requests", "message": "rate limited"},
                                {"x-sib-ratelimit-limit": "1000", "x-sib-ratelimit-remaining": "0",
                                 "x-sib-ratelimit-reset": str(fault.reset)})
        if fault and fault.kind == "500":
            return self._answer(500, {"code": "internal_error", "message": "boom"})
        if not self._authorised():
            return
        if fault and fault.kind == "402":
            return self._answer(402, {"code": "not_enough_credits", "message": "not enough credits"})
        if path == "/smtp/email":
            problems = self.fake.check_send(body)
            if problems:
                return self._answer(400, {"code": "invalid_parameter", "message": "; ".join(problems)})
            key = (body.get("headers") or {}).get("idempotencyKey")
            with self.fake.lock:
                seen = self.fake.keys.get(key) if key else None
                if seen is not None and self.fake.clock() - seen < IDEMPOTENCY_SECONDS:
                    duplicate = True
                else:
                    duplicate = False
                    if key:
                        self.fake.keys[key] = self.fake.clock()
            if duplicate:
                return self._answer(400, {"code": "duplicate_parameter",
                                          "message": "idempotencyKey already used"})
            answer = self.fake.accept(body)
            if fault and fault.kind == "drop_after_accept":
                return self._drop()  # accepted, but the answer never arrives
            if fault and fault.kind == "slow":
                time.sleep(fault.seconds)  # accepted, answered late (past the caller's timeout)
            return self._answer(201, answer)
        if path == "/contacts/import":
            if not isinstance(body, dict) or not isinstance(body.get("jsonBody"), list):
                return self._answer(400, {"code": "missing_parameter", "message": "jsonBody is required"})
            with self.fake.lock:
                self.fake.imports.append(body)
                self.fake.contacts.update(str(c.get("email", "")).lower() for c in body["jsonBody"] if c.get("email"))
            return self._answer(202, {"processId": len(self.fake.imports)})
        if path == "/transactionalSMS/sms":
            problems = []
            if not isinstance(body, dict):
                return self._answer(400, {"code": "bad_request", "message": "JSON object expected"})
            unknown = set(body) - {"sender", "recipient", "content", "type", "tag", "webUrl", "unicodeEnabled",
                                   "organisationPrefix"}
            if unknown:
                problems.append(f"unknown fields {sorted(unknown)}")
            if not isinstance(body.get("sender"), str) or not 0 < len(body["sender"]) <= 15:
                problems.append("sender: required, at most 15 characters")
            if not isinstance(body.get("recipient"), str) or not body["recipient"].isdigit():
                problems.append("recipient: mobile number with the country code, digits only")
            if not isinstance(body.get("content"), str) or not body["content"]:
                problems.append("content is required")
            if body.get("type", "transactional") not in ("transactional", "marketing"):
                problems.append("type: transactional or marketing")
            if problems:
                return self._answer(400, {"code": "invalid_parameter", "message": "; ".join(problems)})
            with self.fake.lock:
                self.fake.sms.append({**body, "at": self.fake.clock()})
                answer = {"reference": uuid.uuid4().hex[:19], "messageId": 1_500_000_000_000_000 + len(self.fake.sms),
                          "smsCount": 1 + len(body["content"]) // 160, "usedCredits": 1.0}
            if fault and fault.kind == "drop_after_accept":
                return self._drop()
            return self._answer(201, answer)
        return self._answer(404, {"code": "document_not_found", "message": f"no route {path}"})

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if not self._authorised():
            return
        if self._path() == "/smtp/emails":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if not query.get("email"):
                return self._answer(400, {"code": "missing_parameter", "message": "email, templateId or messageId"})
            with self.fake.lock:
                found = [{"email": e["to"], "subject": e["subject"], "messageId": e["messageId"], "uuid": e["messageId"],
                          "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["at"])), "tags": e["tags"]}
                         for e in reversed(self.fake.sent) if e["to"] == query["email"]]
            return self._answer(200, {"count": len(found), "transactionalEmails": found})
        return self._answer(404, {"code": "document_not_found", "message": f"no route {self._path()}"})


def _do_delete(self) -> None:
    path = self._path()
    if not self._authorised():
        return
    if path.startswith("/contacts/"):
        from urllib.parse import unquote

        email = unquote(path[len("/contacts/"):]).lower()
        with self.fake.lock:
            held = email in self.fake.contacts
            self.fake.contacts.discard(email)
            self.fake.deleted_contacts.append(email)
        if not held:
            return self._answer(404, {"code": "document_not_found", "message": "Contact does not exist"})
        self.send_response(204)
        self.end_headers()
        return None
    return self._answer(404, {"code": "document_not_found", "message": f"no route {path}"})


_Handler.do_DELETE = _do_delete  # noqa: N815 (http.server's naming)


class FakeBrevoServer:
    """``with FakeBrevoServer() as server: server.url, server.fake``"""

    def __init__(self, fake: FakeBrevo | None = None):
        self.fake = fake or FakeBrevo()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v3"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeBrevoServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
