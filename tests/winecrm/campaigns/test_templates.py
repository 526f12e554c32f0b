"""The e-mail templates: French, escaped everywhere, responsive HTML and a text alternative, the
legal footer and the one-click unsubscribe link in every e-mail."""

from __future__ import annotations

import re

import pytest
from winecrm.campaigns import templates
from winecrm.core import settings

HOSTILE = "Kœnig O'Neil <script>alert(1)</script>"


def _context(prenom: str = HOSTILE, offer: str = "RETOUR15") -> dict:
    cfg = settings.campaigns_config()
    return {
        "estate": cfg.estate, "prenom": prenom, "greeting": f"Bonjour {prenom}," if prenom else "Bonjour,",
        "preview": "Nos vins pour vous", "offer_code": offer, "discount_pct": 15 if offer else "",
        "links": {"home": "https://www.domaine-exemple.fr/?utm_source=brevo",
                  "shop": "https://www.domaine-exemple.fr/boutique?utm_source=brevo&utm_campaign=hebdo",
                  "unsubscribe": "https://crm.domaine-exemple.fr/desinscription/TOKEN123"},
        "products": [{"name": "Riesling Grand Cru Schlossberg 2020", "format_fr": None, "price": "24,50\u00a0€",
                      "reason": "Parce que vous avez aimé notre Riesling, nous pensons que le Riesling Grand Cru "
                                "Schlossberg 2020 vous plaira.", "url": "https://www.domaine-exemple.fr/boutique/RGC-20"},
                     {"name": "Crémant d'Alsace Brut <b>", "format_fr": "magnum", "price": None,
                      "reason": "Vous aimez le Pinot Blanc & le Crémant.", "url": "https://www.domaine-exemple.fr/b/C?a=1&b=2"}],
    }


@pytest.mark.parametrize("template", templates.TEMPLATES)
def test_every_template_renders_escaped_french_with_its_footer(template):
    email = templates.render(template, _context())
    assert "\n" not in email.subject and "\r" not in email.subject and HOSTILE in email.subject
    # escaped in HTML, never markup
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "Crémant d&#39;Alsace Brut &lt;b&gt;" in email.html or "Crémant d'Alsace Brut &lt;b&gt;" in email.html
    assert "Pinot Blanc &amp; le Crémant" in email.html
    assert "href=\"https://www.domaine-exemple.fr/b/C?a=1&amp;b=2\"" in email.html
    # responsive (MJML's media queries kept for phones), styles inlined, no external assets but the logo
    assert "@media only screen and (min-width:480px)" in email.html
    assert '<span class="wine-name" style="font-weight: bold;color: #7b1e2b;">' in email.html
    assert not re.search(r"<link[^>]+stylesheet", email.html)
    # legal footer and one-click unsubscribe in both parts
    for part in (email.html, email.text):
        assert "https://crm.domaine-exemple.fr/desinscription/TOKEN123" in part
        assert "12 route des Vins, 68000 Colmar" in part
        assert "L'abus d'alcool est dangereux pour la santé" in part or "L&#39;abus d&#39;alcool" in part
    assert "Riesling Grand Cru Schlossberg 2020 — 24,50\u00a0€" in email.text
    assert "\n\n\n" not in email.text


def test_subjects_read_well_without_a_first_name_or_an_offer():
    subjects = {t: templates.render(t, _context(prenom="", offer="")).subject for t in templates.TEMPLATES}
    assert subjects == {  # two wines: the subjects agree (French spacing: U+202F before « ! »)
        "cross_sell": "Des découvertes choisies pour vous",
        "rebuy": "Vos vins préférés vous attendent",
        "winback": "Nous serions heureux de vous revoir",
        "thank_you": "Merci pour votre commande\u202f!",
        "vip_offer": "Une attention pour nos clients les plus fidèles",
    }
    one = {**_context(prenom="Anne", offer=""), "products": _context()["products"][:1]}
    assert templates.render("rebuy", one).subject == "Anne, votre vin préféré vous attend"
    assert templates.render("cross_sell", one).subject == "Anne, une découverte choisie pour vous"
    assert templates.render("winback", _context(prenom="Anne")).subject == (
        "Anne, un geste pour vous retrouver\u00a0: -15\u00a0%")
    html = templates.render("winback", _context(prenom="", offer="")).html
    assert "Bonjour," in html and "code" not in templates.render("winback", _context(offer="")).text.split("--")[0]


def test_links_carry_utm_parameters_and_keep_their_own():
    url = templates.with_utm("https://x.fr/p?ref=7&utm_source=old", campaign="hebdo-2026-11-15", content="rebuy")
    assert url == ("https://x.fr/p?ref=7&utm_source=brevo&utm_medium=email&utm_campaign=hebdo-2026-11-15"
                   "&utm_content=rebuy")


def test_an_unknown_template_or_a_missing_value_is_a_clear_error():
    with pytest.raises(templates.TemplateError, match="unknown e-mail template 'promo'"):
        templates.render("promo", _context())
    context = _context()
    del context["links"]
    with pytest.raises(templates.TemplateError, match="e-mail template rebuy: UndefinedError"):
        templates.render("rebuy", context)


def test_a_first_name_cannot_inject_a_header_line():
    subject = templates.render("rebuy", _context(prenom="Anne\r\nBcc: someone@example.com")).subject
    assert subject == "Anne Bcc: someone@example.com, vos vins préférés vous attendent"
