"""The sales week a run covers, and how the estate reads it (French dates, Paris time).

Light on purpose (standard library only): the DAG file, the Airflow listener and the plugin's
pages import it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


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
        local = moment.astimezone(PARIS).date()
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
    return f"{moment.astimezone(PARIS):%d/%m/%Y %H:%M}"


def number_fr(count: int) -> str:
    """12 345 with a narrow no-break space, as French typography writes thousands."""
    return f"{count:,}".replace(",", "\u202f")


def plural_fr(count: int, singular: str, plural: str | None = None) -> str:
    """« 1 nouveau fichier », « 3 nouveaux fichiers », « 0 nouveau fichier » (French: 0 and 1 are singular)."""
    word = singular if abs(count) < 2 else (plural or singular + "s")
    return f"{number_fr(count)} {word}"
