"""What a person can ask of one run from Airflow's trigger form, checked before anything runs.

The form (``winecrm.airflow.trigger_params``) shows titles and descriptions; this model is the
second, stricter check made by ``prepare_run``, which records the result in ``etl.runs.params``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from winecrm.core.weeks import Week


class RunParamsError(ValueError):
    """A trigger-form value that cannot be used: the message names the param and why."""


class RunParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    week: dt.date | None = None  # any day of the sales week; None = the week before the run's date
    dry_run: bool = True  # campaign e-mails rendered to the outbox, never sent
    reingest_files: list[str] = Field(default_factory=list)  # RAW files to take again
    accept_files: list[str] = Field(default_factory=list)  # RAW files let through the quality gate
    settle_seconds: float | None = Field(None, ge=0)  # overrides files.settle_seconds for this run

    @field_validator("week", mode="before")
    @classmethod
    def _blank_week(cls, value):
        return None if value in ("", None) else value

    @field_validator("reingest_files", "accept_files", mode="before")
    @classmethod
    def _file_list(cls, value):
        if value in (None, ""):
            return []
        if isinstance(value, str):  # one path per line in the form's text area
            value = value.splitlines()
        return [str(v).strip() for v in value if str(v).strip()]

    @field_validator("reingest_files", "accept_files")
    @classmethod
    def _relative_paths(cls, value: list[str]) -> list[str]:
        for item in value:
            path = PurePosixPath(item.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{item!r}: give the file's path inside RAW (as shown in the run summary) "
                                 "or its name, not an absolute path or one with '..'")
        return value

    def week_of(self, logical_date: dt.datetime, today: dt.date) -> Week:
        """The week the run covers: the form's week, else the week before the run's date."""
        if self.week is None:
            return Week.before(logical_date)
        week = Week.containing(self.week)
        if week.end >= today:
            raise RunParamsError(f"week: the week of {week.start:%d/%m/%Y}–{week.end:%d/%m/%Y} is not over yet "
                                 f"(today is {today:%d/%m/%Y}); choose a day of a past week")
        return week

    @classmethod
    def parse(cls, values: dict | None) -> "RunParams":
        try:
            return cls.model_validate({k: v for k, v in (values or {}).items() if k in cls.model_fields})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors())
            raise RunParamsError(f"Trigger form: {problems}") from None

    def recorded(self) -> dict:
        return self.model_dump(mode="json")
