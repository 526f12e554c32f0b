"""How the platform writes French for people (../shared/design/FRENCH-COPY.md): numbers, money,
dates, plurals and spacing, in one place for the e-mails, the weekly report, the run notes, the
approval request and the privacy pages.

Numbers, money, month names and plural rules come from Babel (the CLDR data for fr_FR); the few
things CLDR does not write as French running text wants are added here: « 1er » for the first of
the month, a no-break space inside a date, a true minus sign on signed figures, and the spacing of
text nobody formatted (a template, a rule's SMS, a reason quoted from the warehouse).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

from winecrm.core.weeks import estate_zone

LOCALE = "fr_FR"
NBSP = "\u00a0"   # before « : » and « % », between a number and its unit, inside guillemets
NNBSP = "\u202f"  # narrow: before « ; ! ? », between thousands (CLDR's fr grouping sign)
MINUS = "\u2212"
_PLURAL_FORM = Locale.parse(LOCALE).plural_form  # CLDR's rule: "one" for 0 and 1 in French

_UNITS = r"(?:€|%|cl|L|bouteilles?|magnums?|demi-bouteilles?)(?![\w-])"


# --- numbers and money ------------------------------------------------------------------------

def number(value: int | float | Decimal) -> str:
    """« 12 345 », « 12,5 », « 37,5 »: as many decimals as the value has (three at most), narrow
    no-break space between thousands."""
    return format_decimal(Decimal(str(value)), locale=LOCALE)


def decimal(value: float, digits: int = 1, sign: bool = False) -> str:
    """« 12,5 », « 1 234,5 »; signed: « +1,5 », « −0,8 » (a true minus sign)."""
    text = format_decimal(Decimal(str(value)), format="#,##0." + "0" * digits if digits else "#,##0",
                          locale=LOCALE)
    if not sign:
        return text
    return MINUS + text[1:] if text.startswith("-") else "+" + text


def euros(amount: Decimal | float | int | None, cents: bool = True) -> str | None:
    """« 1 234,50 € » (decimal comma, narrow space between thousands, no-break space before €);
    « 1 235 € » with ``cents=False``; None stays None (no price known)."""
    if amount is None:
        return None
    value = Decimal(str(amount))
    if cents:
        return format_currency(value, "EUR", locale=LOCALE)
    return format_currency(value, "EUR", format="#,##0\u00a0¤", locale=LOCALE, currency_digits=False)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """« 1 nouveau fichier », « 3 nouveaux fichiers », « 0 nouveau fichier » (French: 0 and 1
    take the singular, by CLDR's plural rules)."""
    word = singular if _PLURAL_FORM(abs(count)) == "one" else (plural_form or singular + "s")
    return f"{number(count)} {word}"


# --- dates ------------------------------------------------------------------------------------

def _local_date(day: dt.date | dt.datetime | str) -> dt.date:
    """A date; a datetime is read in the estate's time (UTC when naive); ISO text is accepted."""
    if isinstance(day, str):
        day = dt.datetime.fromisoformat(day) if "T" in day or " " in day else dt.date.fromisoformat(day)
    if isinstance(day, dt.datetime):
        day = (day if day.tzinfo else day.replace(tzinfo=dt.timezone.utc)).astimezone(estate_zone()).date()
    return day


def day_and_month(day: dt.date) -> str:
    """« 15 novembre », « 1er décembre » (no-break space: the day never ends a line alone)."""
    return ("1er" if day.day == 1 else str(day.day)) + NBSP + format_date(day, "MMMM", locale=LOCALE)


def date(day: dt.date | dt.datetime | str | None, missing: str = "—") -> str:
    """« 16 novembre 2026 », « 1er décembre 2026 »; ``missing`` when there is no date."""
    if day is None or day == "":
        return missing
    day = _local_date(day)
    return f"{day_and_month(day)} {day.year}"


def datetime(moment: dt.datetime) -> str:
    """« 16 novembre 2026 à 06:12 » in the estate's time."""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).astimezone(estate_zone())
    return f"{date(local.date())} à {local:%H:%M}"


def period(start: dt.date, end: dt.date) -> str:
    """« du 9 au 15 novembre 2026 », « du 26 octobre au 1er novembre 2026 »."""
    if (start.year, start.month) == (end.year, end.month):
        first = "1er" if start.day == 1 else str(start.day)
    elif start.year == end.year:
        first = day_and_month(start)
    else:
        first = date(start)
    return f"du {first} au {date(end)}"


# --- spacing ----------------------------------------------------------------------------------

def spacing(text: str) -> str:
    """French spacing over text nobody formatted: a no-break space before « : » and « % », a narrow
    one before « ; ! ? », between thousands (« 10 000 € »), a no-break space between a number and
    its unit (€, %, cl, bouteilles) and inside « guillemets ». Only spaces are replaced: URLs (no
    spaces) are untouched."""
    text = re.sub(r"[ \u00a0\u202f]+:", NBSP + ":", text)
    text = re.sub(r"[ \u00a0\u202f]+([;!?])", NNBSP + r"\1", text)
    text = re.sub(r"(?<=\d)[ \u202f](?=\d{3}(?!\d))", NNBSP, text)
    text = re.sub(rf"(?<=\d) (?={_UNITS})", NBSP, text)
    text = re.sub(r" %", NBSP + "%", text)
    text = re.sub(r"€ (?=TTC\b)", "€" + NBSP, text)
    text = re.sub(r"« ", "«" + NBSP, text)
    return re.sub(r" »", NBSP + "»", text)


def spacing_markup(markup: str) -> str:
    """:func:`spacing` over the text of a markup document: tags, attributes and style sheets kept."""
    parts = re.split(r"(<mj-style\b.*?</mj-style>|<style\b.*?</style>|<[^>]*>)", markup, flags=re.S)
    return "".join(p if i % 2 else spacing(p) for i, p in enumerate(parts))
