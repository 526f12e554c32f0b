"""The sales week and the estate's clock (winecrm.core.weeks)."""

from __future__ import annotations

import datetime as dt


def test_one_setting_sets_the_estates_time_zone(tmp_path, monkeypatch):
    """schedule.timezone of pipeline.yaml is the one place: the week a moment falls in, the times
    people read and the SMS hours all follow it; a name that is no time zone is refused."""
    import pytest
    from winecrm.core import settings, weeks
    from winecrm.events import actions

    from tests.conftest import use_config

    moment = dt.datetime(2026, 11, 16, 2, 0, tzinfo=dt.timezone.utc)  # Monday 03:00 in Paris
    assert weeks.estate_zone().key == "Europe/Paris"
    assert weeks.Week.before(moment).start == dt.date(2026, 11, 9)
    use_config(tmp_path, monkeypatch, schedule={"timezone": "America/Martinique"})  # Sunday 22:00 there
    assert weeks.estate_zone().key == "America/Martinique"
    assert weeks.Week.before(moment).start == dt.date(2026, 11, 2)
    assert weeks.paris(moment).startswith("15/11/2026 22:00")
    cfg = settings.pipeline_config()
    assert cfg.schedule.timezone == "America/Martinique"
    allowed = actions.sms_allowed_from(moment, actions.SmsSettings())
    assert allowed.astimezone(weeks.estate_zone()).weekday() == 0  # Monday, in the estate's time
    use_config(tmp_path, monkeypatch, schedule={"timezone": "Alsace/Colmar"})
    with pytest.raises(settings.ConfigError, match="unknown time zone 'Alsace/Colmar'"):
        settings.pipeline_config()
