"""The settings files go through one validated model: a typo fails the run's first task, naming
the file, the key and the reason."""

from __future__ import annotations

import pytest
from winecrm import pipeline
from winecrm.core import settings

from tests.conftest import MONDAY_RUN, use_config


def test_the_shipped_files_are_valid_and_give_the_documented_defaults():
    cfg, scoring = settings.pipeline_config(), settings.scoring_config()
    assert cfg.quality_gate.max_bad_row_share == 0.05 and cfg.exports.max_wait_hours == 6
    assert cfg.revenue.sale_document_types == ["VENTE", "FACTURE"] and cfg.revenue.credit_note_types == ["AVOIR"]
    assert scoring.recommendations.scenario("At Risk") == "rebuy" and scoring.segments.vip_min == 3.5
    assert settings.PipelineConfig() == cfg.model_copy(update={})  # the YAML states the model's defaults


@pytest.mark.parametrize("section, value, message", [
    ("exports", {"max_wait_hours": "six"}, "exports.max_wait_hours: Input should be a valid number"),
    ("quality_gate", {"max_bad_row_shar": 0.1}, "quality_gate.max_bad_row_shar: Extra inputs are not permitted"),
    ("revenue", {"sale_document_types": ["VENTE", "DEVIS"]}, "revenue: DEVIS not in validation.document_types"),
    ("revenue", {"credit_note_types": ["VENTE"]}, "both sale and credit note: VENTE"),
])
def test_a_bad_key_fails_prepare_run_naming_it(conn, tmp_path, monkeypatch, section, value, message):
    path = use_config(tmp_path, monkeypatch, **{section: value})
    with pytest.raises(settings.ConfigError) as info:
        pipeline.prepare(conn, pipeline.week_window("run_1", MONDAY_RUN))
    assert str(info.value).startswith(str(path)) and message in str(info.value)
    assert conn.execute("SELECT count(*) FROM etl.runs").fetchone()[0] == 0


def test_a_file_that_is_not_yaml_is_named(tmp_path, monkeypatch):
    bad = tmp_path / "scoring.yaml"
    bad.write_text("rfm: [unclosed", encoding="utf-8")
    monkeypatch.setenv("CRM_SCORING_CONFIG", str(bad))
    with pytest.raises(settings.ConfigError, match=f"{bad}: not valid YAML"):
        settings.scoring_config()


def test_where_files_go_comes_from_the_environment(monkeypatch, tmp_path):
    """CRM_* variables through pydantic-settings: set ones win (~ expanded, made absolute), empty
    or unset ones fall back under the data folder, the Data Docs link follows CRM_DATA_DOCS_URL."""
    from winecrm.core import settings

    for name in ("CRM_RAW_DIR", "CRM_WORK_URL", "CRM_DOCS_DIR", "CRM_OUTBOX_DIR", "CRM_REPORTS_DIR",
                 "CRM_DATA_DOCS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRM_RAW_DIR", "")  # empty: as unset
    monkeypatch.setenv("CRM_WORK_URL", "s3://bucket/work")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CRM_OUTBOX_DIR", "~/outbox")
    paths = settings.paths()
    assert paths.raw_dir == tmp_path / "data" / "raw" and paths.work_url == "s3://bucket/work"
    assert paths.outbox_dir == tmp_path / "outbox" and paths.reports_dir == tmp_path / "data" / "reports"
    assert paths.data_docs_link("x.html").endswith("quality/gx/uncommitted/data_docs/local_site/x.html")
    monkeypatch.setenv("CRM_DATA_DOCS_URL", "https://airflow.example.com/winecrm/data-docs/")
    assert settings.paths().data_docs_link("x.html") == "https://airflow.example.com/winecrm/data-docs/x.html"
