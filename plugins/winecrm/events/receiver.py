"""The public HTTP receiver (FastAPI, ``make webhooks``): what customers and Brevo reach.

* ``POST /webhook/email`` — Brevo transactional webhooks: one event or a JSON array of up to
  500; ``POST /webhook/behavior`` — what a customer did (shop, forms): both authenticated
  (bearer token and/or HTTP basic, see ``WebhookAuth``), size-limited (413), strictly validated
  (422 naming the field), and committed to the queue ``crm.webhook_events`` *before* the 200.
  A repeat (Brevo retries; it has no event id) is acknowledged and stored once. Database
  unavailable: 503 (Brevo retries at +10 min, +1 h, +2 h, +8 h), never a 2xx for a lost event.
  The ``crm_events`` DAG turns the queue into rule actions.
* ``GET /desinscription/{token}`` shows a French page with one button: a GET never
  unsubscribes, since mail scanners and link previews open links on their own;
  ``POST /desinscription/{token}`` — the button, or a mail client's one-click
  (``List-Unsubscribe=One-Click``) — records a suppression for the e-mail's address at once:
  no later send of any campaign reaches it, even one already rendered (sending checks
  ``crm.suppressions`` just before each e-mail leaves). Repeating it changes nothing. The token
  is the e-mail's own random ``unsubscribe_token``: the only credential these routes need.
* ``GET /webhook/health`` answers 200 when the warehouse answers, else 503.
"""

import base64
import binascii
import hmac
import html
import json
import logging
import os
from dataclasses import dataclass, field

from fastapi import Request  # evaluated by FastAPI at route definition (no postponed annotations here)

log = logging.getLogger(__name__)

PAGE = """<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{margin:0;background:#f6f1eb;color:#2b2320;font:16px/1.5 Georgia,serif}}
main{{max-width:520px;margin:48px auto;background:#fff;border-radius:6px;padding:28px 32px}}
h1{{color:#7b1e2b;font-size:24px;margin-top:0}}button{{background:#7b1e2b;color:#fff;border:0;
border-radius:4px;padding:12px 24px;font-size:16px;cursor:pointer}}.note{{color:#6b625c;font-size:14px}}</style>
</head><body><main><h1>{title}</h1>{body}</main></body></html>"""


def _page(title: str, body: str, status: int = 200):
    from fastapi.responses import HTMLResponse

    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status)


def _masked(address: str) -> str:
    """« ma***@example.fr »: enough for a person to recognise, not a list of addresses."""
    local, _, domain = address.partition("@")
    return f"{local[:2]}***@{domain}"


MAX_BODY_BYTES = int(os.environ.get("CRM_WEBHOOK_MAX_BYTES", 2 * 1024 * 1024))  # 500 Brevo events fit easily
WEBHOOK_CONN_ID = "crm_webhook"


@dataclass(frozen=True)
class WebhookAuth:
    """Who may post events: a bearer token and/or HTTP basic credentials (Brevo supports both).

    From ``CRM_WEBHOOK_TOKEN`` / ``CRM_WEBHOOK_USER`` + ``CRM_WEBHOOK_PASSWORD``, else the
    Airflow connection ``crm_webhook`` (password = the token; login + password = basic).
    Compared in constant time. With nothing configured every post is refused (401)."""

    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.token or (self.user and self.password))

    def allows(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.encode(), self.token.encode())
        if scheme.lower() == "basic" and self.user and self.password:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            # both compared, always: the time taken does not say which one was wrong
            ok_user = hmac.compare_digest(user.encode(), self.user.encode())
            ok_password = hmac.compare_digest(password.encode(), self.password.encode())
            return ok_user and ok_password
        return False


def webhook_auth() -> WebhookAuth:
    token = os.environ.get("CRM_WEBHOOK_TOKEN") or None
    user, password = os.environ.get("CRM_WEBHOOK_USER") or None, os.environ.get("CRM_WEBHOOK_PASSWORD") or None
    if token or (user and password):
        return WebhookAuth(token, user, password)
    if os.environ.get(f"AIRFLOW_CONN_{WEBHOOK_CONN_ID.upper()}"):
        try:
            from airflow.models.connection import Connection

            conn = Connection.get_connection_from_secrets(WEBHOOK_CONN_ID)
            return WebhookAuth(conn.password or None, conn.login or None, conn.password or None)
        except Exception as exc:  # a malformed connection: refuse everything, say why
            log.error("the Airflow connection %s could not be read: %s", WEBHOOK_CONN_ID, exc.__class__.__name__)
    return WebhookAuth()


def _connect(url: str | None = None):
    from winecrm.core import db

    return db.connect(url, application_name="winecrm-receiver")


def _problem(status: int, detail, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _errors(exc) -> list[dict]:
    """Validation errors a sender can act on: where and what, never the (maybe huge) value."""
    return [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors(include_input=False)][:20]


async def _json_body(request: Request, limit: int):
    """The body as JSON, or the error response: 413 past ``limit`` bytes (counted as it arrives,
    whatever Content-Length says), 415 when not JSON, 400 when malformed."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None, _problem(413, f"body larger than {limit} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        return None, _problem(415, "send the events as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None, _problem(413, f"body larger than {limit} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, _problem(400, f"body is not valid JSON: {exc.__class__.__name__}")
    # what PostgreSQL cannot store as text: a NUL character, half a surrogate pair. In JSON they
    # come only from a \u escape, or from bytes that are not strict UTF-8 (an encoded surrogate,
    # UTF-16...): a body with neither holds none, and skips the walk over every value below.
    if _plain_utf8(body):
        return data, None
    try:
        text = json.dumps(data, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, _problem(422, [{"loc": [], "msg": "a string holds an unpaired surrogate (invalid Unicode)"}])
    if _has_nul(data):
        return None, _problem(422, [{"loc": [], "msg": "a string holds a NUL character"}])
    return data, None


def _plain_utf8(body: bytes) -> bool:
    try:
        text = body.decode("utf-8")  # strict: refuses encoded surrogates
    except UnicodeDecodeError:
        return False
    return "\\u" not in text and "\x00" not in text


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _openapi(app):
    """The schema FastAPI generates, plus the two request bodies (from the payload models) and
    the two ways to authenticate: what Brevo's and the shop's developers read, and what the
    fuzz tests generate requests from."""
    from fastapi.openapi.utils import get_openapi

    from winecrm.events import intake

    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    definitions = components.setdefault("schemas", {})
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                     "basic": {"type": "http", "scheme": "basic"}}
    for path, adapter in (("/webhook/email", intake.BREVO_BODY), ("/webhook/behavior", intake.BEHAVIOR_BODY)):
        body = adapter.json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        definitions.update(body.pop("$defs", {}))
        if body.get("type") == "object" and body.get("title"):  # a model: named, like the others
            definitions[body["title"]] = body
            body = {"$ref": f"#/components/schemas/{body['title']}"}
        operation = schema["paths"][path]["post"]
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        operation["security"] = [{"bearer": []}, {"basic": []}]
        operation["responses"] = {
            "200": {"description": "stored (or already stored: a repeat is acknowledged once more)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
            "400": {"description": "the body is not JSON"},
            "401": {"description": "no or wrong credentials: nothing stored"},
            "413": {"description": f"body larger than {MAX_BODY_BYTES} bytes"},
            "415": {"description": "not application/json"},
            "422": {"description": "a field is missing or wrong: nothing of the request stored"},
            "503": {"description": "the queue is unavailable: nothing stored, send again later"},
        }
    definitions["Accepted"] = {"type": "object", "properties": {
        "received": {"type": "integer"}, "stored": {"type": "integer"}, "duplicates": {"type": "integer"}},
        "required": ["received", "stored", "duplicates"]}
    app.openapi_schema = schema
    return schema


def _direct_route_class():
    from fastapi.routing import APIRoute

    class _DirectRoute(APIRoute):
        """A route whose endpoint takes the raw request and returns the response itself (the
        event posts): no parameter to resolve, no return value to serialise, so FastAPI's
        per-request handler (dependency solving, response building) is skipped: +26 % events/s
        under load (bench/bench_events.py). Path, methods, name and OpenAPI entry are those of
        any FastAPI route; errors are handled by the same middleware."""

        def get_route_handler(self):
            return self.endpoint

    return _DirectRoute


def create_app(auth: WebhookAuth | None = None, database_url: str | None = None, *,
               max_body_bytes: int = MAX_BODY_BYTES):
    import asyncio
    import contextlib
    import gc

    import psycopg
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from pydantic import ValidationError

    from winecrm.core import db
    from winecrm.events import intake

    _DirectRoute = _direct_route_class()
    auth = auth if auth is not None else webhook_auth()
    if not auth.configured:
        log.warning("no webhook credentials (CRM_WEBHOOK_TOKEN, or the connection %s): every event post is "
                    "refused with 401", WEBHOOK_CONN_ID)
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        url = database_url or await asyncio.to_thread(db.database_url)
        writer = intake.QueueWriter(url)
        await writer.start()
        state["writer"] = writer
        # Everything the process holds by now (modules, the app, its models and schemas) is moved
        # out of the garbage collector's reach: under load, requests waiting on the writer survive
        # young collections, so full collections come several times a second; each walked the
        # whole heap (up to ~40 ms, every request in flight waiting) and now walks only what
        # requests left (~7 ms at most). Objects are still freed as usual when unreferenced.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await writer.stop()

    app = FastAPI(title="winecrm receiver", version="1",
                  description="Brevo webhooks and behaviour events into the CRM's queue; one-click unsubscribe; "
                              "health. Authenticate event posts with the bearer token or basic credentials "
                              "configured for the estate.", lifespan=lifespan)
    app.openapi = lambda: _openapi(app)
    refused = {"WWW-Authenticate": 'Bearer realm="winecrm", Basic realm="winecrm"'}

    async def intake_events(request: Request, parse, to_rows):
        if not auth.allows(request.headers.get("authorization")):
            return _problem(401, "missing or wrong credentials", refused)
        data, error = await _json_body(request, max_body_bytes)
        if error is not None:
            return error
        try:
            rows = to_rows(parse(data))
        except ValidationError as exc:
            return _problem(422, _errors(exc))
        except intake.BadShape as exc:
            return _problem(422, [{"loc": [], "msg": str(exc)}])
        try:
            stored = await state["writer"].submit(rows)
        except intake.QueueUnavailable:
            return _problem(503, "the event queue is unavailable: nothing was stored, send again later",
                            {"Retry-After": "60"})
        # the response itself, not a dict: FastAPI would walk it through jsonable_encoder first
        return JSONResponse({"received": len(rows), "stored": stored, "duplicates": len(rows) - stored})

    async def brevo_events(request: Request):
        return await intake_events(request, intake.parse_brevo, intake.brevo_rows)

    async def behavior_event(request: Request):
        return await intake_events(request, intake.parse_behavior, intake.behavior_rows)

    # FastAPI routes (same OpenAPI entries) that call the endpoint directly: see _DirectRoute
    app.router.add_api_route("/webhook/email", brevo_events, methods=["POST"], route_class_override=_DirectRoute,
                             summary="Brevo transactional webhook events (one, or an array of up to 500)")
    app.router.add_api_route("/webhook/behavior", behavior_event, methods=["POST"], route_class_override=_DirectRoute,
                             summary="What a customer did: click, open, purchase, form_submit, page_visit")

    def unavailable():
        return _page("Service momentanément indisponible",
                     "<p>Votre demande n'a pas pu être enregistrée. Merci de réessayer dans quelques minutes.</p>",
                     503)

    def address_of(conn, token: str):
        row = conn.execute("SELECT email FROM crm.email_sends WHERE unsubscribe_token = %s AND email IS NOT NULL",
                           (token,)).fetchone()
        return row[0] if row else None

    @app.get("/desinscription/{token}")
    def unsubscribe_page(token: str):
        try:
            with _connect(database_url) as conn:
                address = address_of(conn, token)
        except psycopg.Error:
            return unavailable()
        if address is None:
            return _page("Lien inconnu", "<p>Ce lien de désinscription n'est pas (ou plus) valable.</p>", 404)
        return _page("Se désinscrire",
                     f"<p>Vous ne recevrez plus nos e-mails à l'adresse <strong>{html.escape(_masked(address))}"
                     f"</strong>.</p><form method='post'><button type='submit'>Me désinscrire</button></form>"
                     "<p class='note'>Un seul clic suffit ; vous pourrez toujours nous écrire pour revenir.</p>")

    @app.post("/desinscription/{token}")
    async def unsubscribe(token: str, request: Request):
        await request.body()  # « List-Unsubscribe=One-Click » (RFC 8058) or the page's form: same effect
        try:
            with _connect(database_url) as conn:
                address = address_of(conn, token)
                if address is None:
                    return _page("Lien inconnu", "<p>Ce lien de désinscription n'est pas (ou plus) valable.</p>", 404)
                new = conn.execute("""INSERT INTO crm.suppressions (email, reason, source)
                                      VALUES (lower(btrim(%s)), 'unsubscribed', 'unsubscribe_link')
                                      ON CONFLICT (email) DO NOTHING""", (address,)).rowcount
                if new:
                    conn.execute("""INSERT INTO crm.consent_log (email, client_code, change, source)
                                    SELECT lower(btrim(email)), client_code, 'suppressed:unsubscribed',
                                           'unsubscribe_link'
                                    FROM crm.email_sends WHERE unsubscribe_token = %s""", (token,))
                conn.commit()
        except psycopg.Error:
            log.exception("unsubscribe not recorded (database unavailable)")
            return unavailable()
        log.info("unsubscribed through the link: %s", _masked(address))
        return _page("Vous êtes désinscrit", f"<p>L'adresse <strong>{html.escape(_masked(address))}</strong> ne "
                     "recevra plus nos e-mails.</p>")

    @app.get("/webhook/health")
    def health():
        try:
            with _connect(database_url) as conn:
                conn.execute("SELECT 1 FROM crm.suppressions LIMIT 1")
        except psycopg.Error as exc:
            return JSONResponse({"status": "unavailable", "database": exc.__class__.__name__}, status_code=503)
        return {"status": "ok", "database": "ok"}

    return app
