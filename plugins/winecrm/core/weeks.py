"""The sales week a run covers, and the estate's clock (its time zone; a timestamp as it reads it).
French dates and numbers in running text are in ``winecrm.core.french``.

Light on purpose (standard library only): the DAG file, the Airflow listener and the plugin's
pages import it.
"""

from __future__ import annotations

import datetime as dt
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
