"""The architecture's import rules (docs/architecture.md), checked on the code itself."""

from __future__ import annotations

from pathlib import Path

from tests.source_imports import imported_names

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "winecrm"


def test_only_winecrm_airflow_imports_airflow():
    """Everything else runs without a scheduler: the CLI, the receiver, the demo's warehouse work."""
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    offenders = []
    for path in modules:
        if path.relative_to(PACKAGE).parts[0] == "airflow":
            continue
        used = sorted(n for n in imported_names(path) if n.split(".")[0] == "airflow")
        if used:
            offenders.append(f"{path.relative_to(PACKAGE)}: {used}")
    assert not offenders, offenders
