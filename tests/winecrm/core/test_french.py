"""How the platform writes French for people (winecrm.core.french, FRENCH-COPY.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from winecrm.core import french
from winecrm.core.french import MINUS, NBSP, NNBSP


def test_spacing_puts_no_break_spaces_where_french_typography_wants_them():
    text = "Merci ! Votre code : RETOUR15 ; -15 % sur « votre commande » ? Dès 12 €, 10 000 bouteilles."
    assert french.spacing(text) == (
        f"Merci{NNBSP}! Votre code{NBSP}: RETOUR15{NNBSP}; -15{NBSP}% sur «{NBSP}votre commande{NBSP}»{NNBSP}? "
        f"Dès 12{NBSP}€, 10{NNBSP}000{NBSP}bouteilles.")
    # already right, or nothing to do: unchanged; a web address keeps its colon
    assert french.spacing(french.spacing(text)) == french.spacing(text)
    assert french.spacing("Bonne journée.") == "Bonne journée."
    assert french.spacing("https://domaine.example/vins") == "https://domaine.example/vins"


def test_spacing_of_markup_leaves_tags_and_styles_alone():
    markup = '<mj-style>a { color: red; }</mj-style><p style="margin: 0">Merci !</p>'
    assert french.spacing_markup(markup) == f'<mj-style>a {{ color: red; }}</mj-style><p style="margin: 0">Merci{NNBSP}!</p>'


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (7, "7"), (12345, f"12{NNBSP}345"), (1234567, f"1{NNBSP}234{NNBSP}567"),
    (Decimal("12.5"), "12,5"), (37.5, "37,5"), (15.0, "15"),
])
def test_numbers_have_a_decimal_comma_and_narrow_spaces_between_thousands(value, text):
    assert french.number(value) == text


def test_signed_figures_carry_a_true_minus_sign():
    assert french.decimal(12.54) == "12,5"
    assert french.decimal(1234.5, digits=0) == f"1{NNBSP}234"
    assert french.decimal(1.5, sign=True) == "+1,5"
    assert french.decimal(-0.8, sign=True) == f"{MINUS}0,8"
    assert french.decimal(0, sign=True) == "+0,0"


def test_prices_are_written_as_a_french_reader_expects():
    assert french.euros(Decimal("1234.5")) == f"1{NNBSP}234,50{NBSP}€"
    assert french.euros(9) == f"9,00{NBSP}€"
    assert french.euros(12345.4, cents=False) == f"12{NNBSP}345{NBSP}€"
    assert french.euros(None) is None


def test_dates_say_1er_and_keep_the_day_with_its_month():
    assert french.date(dt.date(2026, 12, 1)) == f"1er{NBSP}décembre 2026"
    assert french.date("2026-11-16") == f"16{NBSP}novembre 2026"
    assert french.date(None) == "—"
    assert french.date("", missing="") == ""
    # a moment is read in the estate's time: 23:30 UTC on 31 December is already 1 January in Paris
    assert french.date(dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone.utc)) == f"1er{NBSP}janvier 2027"
    assert french.datetime(dt.datetime(2026, 11, 16, 5, 12, tzinfo=dt.timezone.utc)) == f"16{NBSP}novembre 2026 à 06:12"


def test_periods_name_the_month_and_year_once_when_they_share_them():
    assert french.period(dt.date(2026, 11, 9), dt.date(2026, 11, 15)) == f"du 9 au 15{NBSP}novembre 2026"
    assert french.period(dt.date(2026, 10, 26), dt.date(2026, 11, 1)) == f"du 26{NBSP}octobre au 1er{NBSP}novembre 2026"
    assert french.period(dt.date(2026, 12, 28), dt.date(2027, 1, 3)) == (
        f"du 28{NBSP}décembre 2026 au 3{NBSP}janvier 2027")


def test_zero_and_one_take_the_singular():
    assert french.plural(0, "nouveau fichier", "nouveaux fichiers") == "0 nouveau fichier"
    assert french.plural(1, "ligne") == "1 ligne"
    assert french.plural(2, "ligne") == "2 lignes"
    assert french.plural(12000, "e-mail") == f"12{NNBSP}000 e-mails"
