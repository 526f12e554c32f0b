"""The public HTTP receiver (FastAPI, ``make webhooks``): what customers and Brevo reach.

* ``POST /webhook/email`` — Brevo webhooks of both families (transactional and marketing): one
  event or a JSON array; ``POST /webhook/behavior`` — what a customer did (shop, forms). Each
  route accepts only its own source's credentials (bearer token and/or HTTP basic, see
  ``ReceiverAuth``). Refused only for credentials (401), size (413) or a body that is not JSON
  (400/415); otherwise every event is committed to the queue ``crm.webhook_events`` *before*
  the 200 — one the receiver cannot read stored as received and parked for a person
  (``winecrm.events.intake``). A repeat (Brevo retries; it has no event id) is acknowledged and
  stored once. Database unavailable: 503 (Brevo retries at +10 min, +1 h, +2 h, +8 h), never a
  2xx for a lost event. The ``crm_events`` DAG turns the queue into rule actions.
  The receiver writes as the database role ``crm_receiver`` (insert into the queue, record an
  unsubscribe; nothing else), taken with SET ROLE or as its own login.
* ``GET /desinscription/{token}`` shows a French page with one button: a GET never
  unsubscribes, since mail scanners and link previews open links on their own;
  ``POST /desinscription/{token}`` — the button, or a mail client's one-click
  (``List-Unsubscribe=One-Click``) — records a suppression for the e-mail's address at once:
  no later send of any campaign reaches it, even one already rendered (sending checks
  ``crm.suppressions`` just before each e-mail leaves). Repeating it changes nothing. The token
  is the e-mail's own random ``unsubscribe_token``: the only credential these routes need.
* ``GET /webhook/health`` answers 200 when the queue can be written, else 503.

The database work of the unsubscribe and health pages runs in worker threads with bounded
connect and statement times: a slow database delays them, never the event posts.
"""

import base64
import binascii
import hmac
import html
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
SOURCES = {"brevo": "/webhook/email", "shop": "/webhook/behavior"}


@dataclass(frozen=True)
class WebhookAuth:
    """Who may post to one route: a bearer token and/or HTTP basic credentials (Brevo supports
    both). Compared in constant time. With nothing configured every post is refused (401)."""

    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.token or (self.user and self.password))

    def secrets(self) -> set[str]:
        return {s for s in (self.token, self.password) if s}

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


@dataclass(frozen=True)
class ReceiverAuth:
    """One credential per source, each route accepting only its own: a leaked shop token cannot
    post Brevo events (unsubscribes, bounces), nor a leaked Brevo one purchases (which send
    e-mails and SMS)."""

    brevo: WebhookAuth = WebhookAuth()
    shop: WebhookAuth = WebhookAuth()

    def __post_init__(self) -> None:
        if self.brevo.secrets() & self.shop.secrets():
            raise ReceiverMisconfigured("Brevo and the shop share a secret: give each its own "
                                        "(CRM_WEBHOOK_BREVO_TOKEN and CRM_WEBHOOK_SHOP_TOKEN, e.g. openssl rand -hex 32)")


class ReceiverMisconfigured(RuntimeError):
    """The receiver's credentials are set up in a way that would defeat them: it does not start."""


def receiver_auth() -> ReceiverAuth:
    """Per source: ``CRM_WEBHOOK_<SOURCE>_TOKEN`` and/or ``CRM_WEBHOOK_<SOURCE>_USER`` +
    ``_PASSWORD`` (SOURCE = BREVO, SHOP), else the Airflow connection ``crm_webhook_<source>``
    (password = the token; login + password = basic). The single shared ``CRM_WEBHOOK_TOKEN`` of
    earlier versions is refused: it let either sender post as the other."""
    if os.environ.get("CRM_WEBHOOK_TOKEN") or os.environ.get("AIRFLOW_CONN_CRM_WEBHOOK"):
        raise ReceiverMisconfigured(
            "CRM_WEBHOOK_TOKEN (and the connection crm_webhook) are no longer read: one secret admitted both Brevo "
            "and the shop. Set CRM_WEBHOOK_BREVO_TOKEN (Brevo's webhooks) and CRM_WEBHOOK_SHOP_TOKEN (the shop), "
            "two different secrets, then update Brevo's webhook settings and the shop.")
    found = {}
    for source in SOURCES:
        prefix = f"CRM_WEBHOOK_{source.upper()}_"
        token = os.environ.get(prefix + "TOKEN") or None
        user, password = os.environ.get(prefix + "USER") or None, os.environ.get(prefix + "PASSWORD") or None
        if not (token or (user and password)) and os.environ.get(f"AIRFLOW_CONN_CRM_WEBHOOK_{source.upper()}"):
            try:
                login_password = connection_login(f"crm_webhook_{source}")
            except Exception as exc:  # a malformed connection: refuse that source, say why
                log.error("the Airflow connection crm_webhook_%s could not be read: %s", source,
                          exc.__class__.__name__)
                login_password = None
            if login_password:
                user, password = login_password
                token = password
        found[source] = WebhookAuth(token, user, password)
    return ReceiverAuth(**found)


def connection_login(conn_id: str) -> tuple[str | None, str | None] | None:
    """(login, password) of the Airflow connection ``conn_id`` given in the environment
    (``AIRFLOW_CONN_<ID>``), in either of Airflow's two forms: a URI
    (``http://login:password@host``, percent-encoded) or JSON (``{"login": …, "password": …}``).
    Read here, as Airflow reads them, without importing Airflow: the receiver runs next to it, not
    in it. None when the variable is not set."""
    import json
    from urllib.parse import unquote, urlsplit

    raw = (os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") or "").strip()
    if not raw:
        return None
    if raw.startswith("{"):
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"AIRFLOW_CONN_{conn_id.upper()} is JSON but not an object")
        return data.get("login") or None, data.get("password") or None
    parts = urlsplit(raw)
    if not parts.scheme:
        raise ValueError(f"AIRFLOW_CONN_{conn_id.upper()} is neither a URI nor JSON")
    login = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return login or None, password or None


def _connect(url: str | None, role: str | None):
    """A short-lived connection for the unsubscribe and health routes: bounded connect and
    statement times, the receiver's role when it can be taken."""
    import psycopg

    from winecrm.core import db
    from winecrm.events import intake

    conn = psycopg.connect(db.database_url(url), connect_timeout=CONNECT_TIMEOUT_S, application_name="winecrm-receiver")
    try:
        intake.restrict_session(conn, role)
    except BaseException:
        conn.close()
        raise
    return conn


CONNECT_TIMEOUT_S = 5


def _problem(status: int, detail, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _json_body(request: Request, limit: int):
    """The body as JSON, or the error response: 413 past ``limit`` bytes (counted as it arrives,
    whatever Content-Length says) or nested too deeply to read, 415 when not JSON, 400 when
    malformed.
    Returns (data, characters replaced?, error)."""
    from winecrm.events import intake

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None, False, _problem(413, f"body larger than {limit} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        return None, False, _problem(415, "send the events as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None, False, _problem(413, f"body larger than {limit} bytes")
    try:
        data = intake.loads(body)
    except intake.TooLarge as exc:
        return None, False, _problem(413, str(exc))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, False, _problem(400, f"body is not valid JSON: {exc.__class__.__name__}")
    # what PostgreSQL cannot store as text: a NUL character, half a surrogate pair. In JSON they
    # come only from a \u escape, or from bytes that are not strict UTF-8 (an encoded surrogate,
    # UTF-16...): a body with neither holds none, and skips the walk over every value below.
    if _plain_utf8(body):
        return data, False, None
    try:
        data, replaced = intake.storable(data)
    except RecursionError:
        return None, False, _problem(413, "JSON nested too deeply to store")
    return data, replaced, None


def _plain_utf8(body: bytes) -> bool:
    try:
        text = body.decode("utf-8")  # strict: refuses encoded surrogates
    except UnicodeDecodeError:
        return False
    return "\\u" not in text and "\x00" not in text


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
        operation = schema["paths"][path]["post"]
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        operation["security"] = [{"bearer": []}, {"basic": []}]
        operation["responses"] = {
            "200": {"description": "stored (or already stored: a repeat is acknowledged once more); an event the "
                                   "receiver cannot read is stored as received and parked for a person (counted "
                                   "in parked)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
            "400": {"description": "the body is not JSON"},
            "401": {"description": "no or wrong credentials (each source has its own): nothing stored"},
            "413": {"description": f"body larger than {MAX_BODY_BYTES} bytes, more than "
                                   f"{intake.MAX_EVENTS_PER_BODY} events, or JSON nested too deeply to read: "
                                   "nothing stored"},
            "415": {"description": "not application/json"},
            "503": {"description": "the queue is unavailable: nothing stored, send again later"},
        }
    definitions["Accepted"] = {"type": "object", "properties": {
        "received": {"type": "integer"}, "stored": {"type": "integer"}, "duplicates": {"type": "integer"},
        "parked": {"type": "integer", "description": "events of this body the receiver could not read: stored "
                                                     "as received, for a person to look at"}},
        "required": ["received", "stored", "duplicates", "parked"]}
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


def events_first(app, endpoints: dict):
    """The ASGI application the server runs: a POST to one of ``endpoints`` (path -> endpoint
    taking the request and returning its response) goes straight to it; everything else (the
    pages, health, the OpenAPI schema, the lifespan) to ``app``. The event posts are most of the
    traffic and need none of the framework's per-request machinery (middleware stack, route
    matching, dependency solving): under load the receiver's single core spends its time on them.
    Their routes stay registered in ``app`` too, for the OpenAPI schema."""
    from starlette.requests import Request as StarletteRequest

    async def asgi(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = endpoints.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(StarletteRequest(scope, receive))
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    asgi.fastapi = app
    return asgi


def create_app(auth: ReceiverAuth | None = None, database_url: str | None = None, *,
               max_body_bytes: int = MAX_BODY_BYTES, role: str | None = None):
    """The receiver. ``database_url``: the queue's database (default: ``CRM_RECEIVER_DATABASE_URL``,
    else the warehouse's); ``role``: the database role the receiver takes (``crm_receiver``)."""
    import asyncio
    import contextlib
    import gc

    import psycopg
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from winecrm.core import db
    from winecrm.events import intake

    _DirectRoute = _direct_route_class()
    auth = auth if auth is not None else receiver_auth()
    role = role if role is not None else os.environ.get("CRM_RECEIVER_ROLE", intake.RECEIVER_ROLE) or None
    database_url = database_url or os.environ.get("CRM_RECEIVER_DATABASE_URL") or None
    for source, path in SOURCES.items():
        if not getattr(auth, source).configured:
            log.warning("no credentials for %s (CRM_WEBHOOK_%s_TOKEN, or the connection crm_webhook_%s): every post "
                        "to %s is refused with 401", source, source.upper(), source, path)
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        url = database_url or await asyncio.to_thread(db.database_url)
        state["url"] = url
        writer = intake.QueueWriter(url, role=role)
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

    app = FastAPI(title="winecrm receiver", version="2",
                  description="Brevo webhooks (both families) and the shop's behaviour events into the CRM's queue; "
                              "one-click unsubscribe; health. Each source authenticates with its own bearer token or "
                              "basic credentials. An event the receiver cannot read is stored as received and parked "
                              "for a person, never refused.", lifespan=lifespan)
    app.openapi = lambda: _openapi(app)
    refused = {"WWW-Authenticate": 'Bearer realm="winecrm", Basic realm="winecrm"'}

    async def intake_events(request: Request, credentials: WebhookAuth, parse):
        if not credentials.allows(request.headers.get("authorization")):
            return _problem(401, "missing or wrong credentials", refused)
        data, replaced, error = await _json_body(request, max_body_bytes)
        if error is not None:
            return error
        try:
            events = parse(data)
        except intake.TooLarge as exc:
            return _problem(413, str(exc))
        except RecursionError:  # an element nested almost as deep as Python reads: too deep to store
            return _problem(413, "JSON nested too deeply to store")
        if replaced:
            events = intake.with_problem(events, "held characters PostgreSQL cannot store (NUL, half a surrogate "
                                                 "pair): stored with U+FFFD in their place")
        try:
            stored = await state["writer"].submit(intake.rows(events))
        except intake.QueueUnavailable:
            return _problem(503, "the event queue is unavailable: nothing was stored, send again later",
                            {"Retry-After": "60"})
        parked = sum(1 for e in events if e.problem)
        if parked:
            log.warning("%d event(s) of a %s body could not be read: stored and parked (%s)", parked,
                        request.url.path, "; ".join(sorted({e.problem for e in events if e.problem}))[:300])
        # the response itself, not a dict: FastAPI would walk it through jsonable_encoder first
        return JSONResponse({"received": len(events), "stored": stored, "duplicates": len(events) - stored,
                             "parked": parked})

    async def brevo_events(request: Request):
        return await intake_events(request, auth.brevo, intake.parse_brevo)

    async def behavior_event(request: Request):
        return await intake_events(request, auth.shop, intake.parse_behavior)

    # FastAPI routes (same OpenAPI entries) that call the endpoint directly: see _DirectRoute
    app.router.add_api_route("/webhook/email", brevo_events, methods=["POST"], route_class_override=_DirectRoute,
                             summary="Brevo webhook events, transactional and marketing (one, or an array)")
    app.router.add_api_route("/webhook/behavior", behavior_event, methods=["POST"], route_class_override=_DirectRoute,
                             summary="What a customer did: click, open, purchase, form_submit, page_visit")

    def unavailable():
        return _page("Service momentanément indisponible",
                     "<p>Votre demande n'a pas pu être enregistrée. Merci de réessayer dans quelques minutes.</p>",
                     503)

    def unknown_link():
        return _page("Lien inconnu", "<p>Ce lien de désinscription n'est pas (ou plus) valable.</p>", 404)

    def test_email():
        return _page("E-mail de test", "<p>Ce lien vient d'un e-mail de test : aucune désinscription n'est "
                     "enregistrée.</p>")

    def sent_to(conn, token: str):
        """(address, test e-mail?) of the e-mail carrying this token, or None."""
        return conn.execute("""SELECT e.email, coalesce(k.kind = 'test', false)
                               FROM crm.email_sends e LEFT JOIN crm.campaigns k USING (campaign_id)
                               WHERE e.unsubscribe_token = %s AND e.email IS NOT NULL""", (token,)).fetchone()

    def look_up(token: str):
        with _connect(state.get("url") or database_url, role) as conn:
            return sent_to(conn, token)

    def record_unsubscribe(token: str):
        """(address, test?) once recorded, or None for an unknown token."""
        with _connect(state.get("url") or database_url, role) as conn:
            found = sent_to(conn, token)
            if found is None or found[1]:
                return found
            new = conn.execute("""INSERT INTO crm.suppressions (email, reason, source)
                                  VALUES (lower(btrim(%s)), 'unsubscribed', 'unsubscribe_link')
                                  ON CONFLICT (email) DO NOTHING""", (found[0],)).rowcount
            if new:
                conn.execute("""INSERT INTO crm.consent_log (email, client_code, change, source)
                                SELECT lower(btrim(email)), client_code, 'suppressed:unsubscribed', 'unsubscribe_link'
                                FROM crm.email_sends WHERE unsubscribe_token = %s""", (token,))
            conn.commit()
            return found

    # The database work of these pages runs in worker threads: a slow or locked database delays
    # the person clicking, never the event posts served by the event loop.
    @app.get("/desinscription/{token}")
    async def unsubscribe_page(token: str):
        try:
            found = await asyncio.to_thread(look_up, token)
        except psycopg.Error:
            return unavailable()
        if found is None:
            return unknown_link()
        if found[1]:
            return test_email()
        return _page("Se désinscrire",
                     f"<p>Vous ne recevrez plus nos e-mails à l'adresse <strong>{html.escape(_masked(found[0]))}"
                     f"</strong>.</p><form method='post'><button type='submit'>Me désinscrire</button></form>"
                     "<p class='note'>Un seul clic suffit ; vous pourrez toujours nous écrire pour revenir.</p>")

    @app.post("/desinscription/{token}")
    async def unsubscribe(token: str, request: Request):
        await request.body()  # « List-Unsubscribe=One-Click » (RFC 8058) or the page's form: same effect
        try:
            found = await asyncio.to_thread(record_unsubscribe, token)
        except psycopg.Error:
            log.exception("unsubscribe not recorded (database unavailable)")
            return unavailable()
        if found is None:
            return unknown_link()
        if found[1]:
            return test_email()
        log.info("unsubscribed through the link: %s", _masked(found[0]))
        return _page("Vous êtes désinscrit", f"<p>L'adresse <strong>{html.escape(_masked(found[0]))}</strong> ne "
                     "recevra plus nos e-mails.</p>")

    def check_queue():
        with _connect(state.get("url") or database_url, role) as conn:
            return conn.execute("SELECT has_column_privilege('crm.webhook_events', 'payload', 'INSERT'), "
                                "current_user").fetchone()

    @app.get("/webhook/health")
    async def health():
        """200 when the queue can be written; ``role``: the database role the receiver works as
        (crm_receiver, unless it could not be taken)."""
        try:
            writable, current = await asyncio.to_thread(check_queue)
        except psycopg.Error as exc:
            return JSONResponse({"status": "unavailable", "database": exc.__class__.__name__}, status_code=503)
        if not writable:
            return JSONResponse({"status": "unavailable", "database": "the queue is not writable"}, status_code=503)
        return {"status": "ok", "database": "ok", "role": current}

    return events_first(app, {"/webhook/email": brevo_events, "/webhook/behavior": behavior_event})
