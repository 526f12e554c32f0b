"""Runtime settings: environment variables first, then the YAML pipeline config.

Everything a deployment tunes lives either in the environment (paths, URLs, secrets) or in
``include/config/pipeline.yaml`` (thresholds and business rules). Nothing is read at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[3]
INCLUDE_DIR = PROJECT_ROOT / "include"
SQL_DIR = INCLUDE_DIR / "sql"
CONFIG_DIR = INCLUDE_DIR / "config"
TEMPLATES_DIR = INCLUDE_DIR / "templates"


def _path_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Paths:
    data_dir: Path  # local runtime state (embedded PostgreSQL, work files, Data Docs)
    raw_dir: Path  # root of the RAW exports: <raw_dir>/isavigne/<dataset>/...
    work_dir: Path  # per-run intermediate files
    docs_dir: Path  # Great Expectations project (Data Docs live under it)

    @property
    def data_docs_index(self) -> Path:
        return self.docs_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def paths() -> Paths:
    data_dir = _path_from_env("CRM_DATA_DIR", PROJECT_ROOT / ".crm")
    return Paths(
        data_dir=data_dir,
        raw_dir=_path_from_env("CRM_RAW_DIR", data_dir / "raw"),
        work_dir=_path_from_env("CRM_WORK_DIR", data_dir / "work"),
        docs_dir=_path_from_env("CRM_DOCS_DIR", data_dir / "quality"),
    )


@lru_cache(maxsize=4)
def _load_yaml(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def pipeline_config() -> dict[str, Any]:
    """The pipeline YAML (``CRM_PIPELINE_CONFIG`` overrides its location)."""
    path = os.environ.get("CRM_PIPELINE_CONFIG", str(CONFIG_DIR / "pipeline.yaml"))
    return _load_yaml(path)


def scoring_config() -> dict[str, Any]:
    """The scoring / recommendation YAML (``CRM_SCORING_CONFIG`` overrides its location)."""
    path = os.environ.get("CRM_SCORING_CONFIG", str(CONFIG_DIR / "scoring.yaml"))
    return _load_yaml(path)

