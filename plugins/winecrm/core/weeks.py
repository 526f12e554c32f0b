"""The sales week a run covers, and how the estate reads it (French dates, Paris time).

Light on purpose (standard library only): the DAG file, the Airflow listener and the plugin's
pages import it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo


def estate_zone() -> ZoneInfo:
    """The estate's time zone: ``schedule.timezone`` of pipeline.yaml (Europe/Paris), the one
    place it is set. With a broken file, the default: the run's first task fails naming the key,
    and the webhook receiver and the UI pages go on meanwhile."""
    from winecrm.core import settings

    try:
        return ZoneInfo(settings.pipeline_config().schedule.timezone)  # ZoneInfo keeps one per name
    except (settings.ConfigError, OSError):
        return ZoneInfo(settings.ScheduleConfig().timezone)


@dataclass(frozen=True)
class Week:
    start: dt.date  # Monday
    end: dt.date  # Sunday

    @classmethod
    def containing(cls, day: dt.date) -> "Week":
        start = day - dt.timedelta(days=day.weekday())
        return cls(start, start + dt.timedelta(days=6))

    @classmethod
    def before(cls, moment: dt.datetime) -> "Week":
        """The complete Monday–Sunday week before ``moment`` (read in Paris time): a run on
        Monday 16 Nov 06:00 covers Mon 9 – Sun 15 Nov."""
        local = moment.astimezone(estate_zone()).date()
        return cls.containing(local - dt.timedelta(days=7))

    @property
    def first_export_day(self) -> dt.date:
        """Exports dated from the Tuesday of the week…"""
        return self.start + dt.timedelta(days=1)

    @property
    def last_export_day(self) -> dt.date:
        """…to the Tuesday after it (the Monday export, one day late at most) belong to the week."""
        return self.end + dt.timedelta(days=2)

    def holds_export(self, export_date: dt.date) -> bool:
        return self.first_export_day <= export_date <= self.last_export_day

    def label_fr(self) -> str:
        """« Semaine du 09/11 au 15/11/2026 »"""
        return f"Semaine du {self.start:%d/%m} au {self.end:%d/%m/%Y}"


def paris(moment: dt.datetime | None) -> str:
    """A timestamp as the estate reads it: 16/11/2026 06:00 (Paris)."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return f"{moment.astimezone(estate_zone()):%d/%m/%Y %H:%M}"


MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre")


def date_fr(day: dt.date | dt.datetime | str | None) -> str:
    """A date in running French text: « 16 novembre 2026 », « 1er décembre 2026 » (a datetime is
    read in Paris time; an ISO string is accepted)."""
    if day is None:
        return "—"
    if isinstance(day, str):
        day = dt.datetime.fromisoformat(day) if "T" in day or " " in day else dt.date.fromisoformat(day)
    if isinstance(day, dt.datetime):
        day = (day if day.tzinfo else day.replace(tzinfo=dt.timezone.utc)).astimezone(estate_zone()).date()
    return f"{'1er' if day.day == 1 else day.day}\u00a0{MONTHS_FR[day.month - 1]} {day.year}"


def datetime_fr(moment: dt.datetime) -> str:
    """« 16 novembre 2026 à 06:12 » in Paris time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    local = moment.astimezone(estate_zone())
    return f"{date_fr(local.date())} à {local:%H:%M}"


def period_fr(start: dt.date, end: dt.date) -> str:
    """« du 9 au 15 novembre 2026 », « du 26 octobre au 1er novembre 2026 »."""
    if (start.year, start.month) == (end.year, end.month):
        first = "1er" if start.day == 1 else str(start.day)
    elif start.year == end.year:
        first = date_fr(start).rsplit(" ", 1)[0]
    else:
        first = date_fr(start)
    return f"du {first} au {date_fr(end)}"


def decimal_fr(value: float, digits: int = 1, sign: bool = False) -> str:
    """« 12,5 », « +1,5 », « −0,8 » (decimal comma; a true minus sign when signed)."""
    text = f"{value:{'+' if sign else ''}.{digits}f}".replace(".", ",")
    return text.replace("-", "\u2212") if sign else text


def number_fr(count: int) -> str:
    """12 345 with a narrow no-break space, as French typography writes thousands."""
    return f"{count:,}".replace(",", "\u202f")


def plural_fr(count: int, singular: str, plural: str | None = None) -> str:
    """« 1 nouveau fichier », « 3 nouveaux fichiers », « 0 nouveau fichier » (French: 0 and 1 are singular)."""
    word = singular if abs(count) < 2 else (plural or singular + "s")
    return f"{number_fr(count)} {word}"


NBSP, NNBSP = "\u00a0", "\u202f"


def french_spacing(text: str) -> str:
    """No-break spaces where French typography wants them, also in text people wrote (a rule's
    SMS) or quoted from the warehouse (a recommendation's reason): narrow before ; ! ? and inside
    « », normal before : and %, and between a number and €."""
    text = re.sub(r" ([;!?»])", NNBSP + r"\1", text)
    text = re.sub(r"« ", "«" + NNBSP, text)
    text = re.sub(r" ([:%])", NBSP + r"\1", text)
    return re.sub(r"(\d) €", r"\1" + NBSP + "€", text)
