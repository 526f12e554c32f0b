"""The public HTTP receiver (FastAPI, ``make webhooks``): what customers and Brevo reach.

Today: the one-click unsubscribe link every e-mail carries (RFC 8058) and a health check.

* ``GET /desinscription/{token}`` shows a French page with one button: a GET never
  unsubscribes, since mail scanners and link previews open links on their own;
* ``POST /desinscription/{token}`` — the button, or a mail client's one-click
  (``List-Unsubscribe=One-Click``) — records a suppression for the e-mail's address at once:
  no later send of any campaign reaches it, even one already rendered (sending checks
  ``crm.suppressions`` just before each e-mail leaves). Repeating it changes nothing;
* ``GET /webhook/health`` answers 200 when the warehouse answers, else 503.

The token is the e-mail's own random ``unsubscribe_token`` (``crm.email_sends``): it is the only
credential these routes need. Database unavailable: 503, so the person (or the mail client)
can try again — never a page saying "done" for an unsubscribe that was not recorded.
"""

import html
import logging

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


def _connect():
    from winecrm.core import db

    return db.connect(application_name="winecrm-receiver")


def create_app():
    import psycopg
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="winecrm receiver", description="One-click unsubscribe and health (public).")

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
            with _connect() as conn:
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
            with _connect() as conn:
                address = address_of(conn, token)
                if address is None:
                    return _page("Lien inconnu", "<p>Ce lien de désinscription n'est pas (ou plus) valable.</p>", 404)
                conn.execute("""INSERT INTO crm.suppressions (email, reason, source)
                                VALUES (lower(btrim(%s)), 'unsubscribed', 'unsubscribe_link')
                                ON CONFLICT (email) DO NOTHING""", (address,))
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
            with _connect() as conn:
                conn.execute("SELECT 1 FROM crm.suppressions LIMIT 1")
        except psycopg.Error as exc:
            return JSONResponse({"status": "unavailable", "database": exc.__class__.__name__}, status_code=503)
        return {"status": "ok", "database": "ok"}

    return app
