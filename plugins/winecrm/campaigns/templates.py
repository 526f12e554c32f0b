"""French e-mails from the templates of ``include/templates/email/``.

Each template is MJML written through Jinja2 (every value escaped), compiled to responsive HTML
by MRML (the Rust port of MJML), then CSS-inlined (``css-inline``: class styles move into
``style`` attributes, media queries stay in the head for phones). The plain-text alternative
and the one-line subject come from the same context. Templates are compiled once per process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml

from winecrm.core import french
from winecrm.core import settings

TEMPLATES = ("cross_sell", "rebuy", "winback", "thank_you", "vip_offer")


class TemplateError(ValueError):
    """A template could not be rendered: the message names it and why."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def templates_dir() -> Path:
    return settings.TEMPLATES_DIR / "email"


@lru_cache(maxsize=4)
def _environments(directory: str):
    import jinja2

    loader = jinja2.FileSystemLoader(directory)
    html = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    text = jinja2.Environment(loader=loader, autoescape=False, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, auto_reload=False)
    with open(Path(directory) / "subjects.yaml", encoding="utf-8") as fh:
        subjects = {name: text.from_string(source) for name, source in (yaml.safe_load(fh) or {}).items()}
    missing = [t for t in TEMPLATES if t not in subjects]
    if missing:
        raise TemplateError(f"{directory}/subjects.yaml: no subject for {', '.join(missing)}")
    return html, text, subjects


@lru_cache(maxsize=1)
def _inliner():
    import css_inline

    # media queries stay in <style> (phones); nothing is fetched from the network
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def with_utm(url: str, campaign: str, content: str, source: str = "brevo", medium: str = "email") -> str:
    """The link with its UTM parameters (existing query parameters kept, ours replacing theirs)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += [("utm_source", source), ("utm_medium", medium), ("utm_campaign", campaign), ("utm_content", content)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def one_line(text: str) -> str:
    """A header-safe single line: no CR/LF (header injection), spaces collapsed."""
    return re.sub(r"\s+", " ", text).strip()


def render(template: str, context: dict, directory: Path | None = None) -> RenderedEmail:
    """Subject, HTML and text of one e-mail. ``context``: greeting, prenom, products (name,
    format, price, reason, url), wines (how many; default: the products), links (home, shop,
    unsubscribe), estate, offer_code, discount_pct, offer_ends_on (« 31 décembre 2026 », or
    empty), preview."""
    if template not in TEMPLATES:
        raise TemplateError(f"unknown e-mail template {template!r} (known: {', '.join(TEMPLATES)})")
    import jinja2
    import markupsafe
    import mrml

    html_env, text_env, subjects = _environments(str(directory or templates_dir()))
    products = [{"format": None, **p} for p in context.get("products") or []]
    context = {"wines": len(products), "offer_scope": "", "offer_ends_on": "", "offer_excludes": "", **context,
               "products": products}
    try:
        # French spacing over everything the customer reads (text only: never URLs, tags or styles)
        subject = french.spacing(one_line(subjects[template].render(**context)))
        mjml = french.spacing_markup(html_env.get_template(f"{template}.mjml.j2").render(subject=subject, **context))
        text = french.spacing(text_env.get_template(f"{template}.txt.j2").render(subject=subject, **context))
    except jinja2.TemplateError as exc:
        raise TemplateError(f"e-mail template {template}: {exc.__class__.__name__}: {exc}") from None
    compiled = mrml.to_html(mjml)
    # the title is set here, escaped: MRML copies mj-title into an attribute with its entities
    # decoded (a customer named « <script> » would come out as markup)
    html = compiled.content.replace("<title></title>", f"<title>{markupsafe.escape(subject)}</title>", 1)
    html = _inliner().inline(html)
    return RenderedEmail(subject=subject, html=html, text=re.sub(r"\n{3,}", "\n\n", text).strip() + "\n")
