"""What runs in production imports neither the demo, the backtest nor the sample estate: those
are development tools and fixtures (the winecrm_tools distribution, tools/)."""

from __future__ import annotations

from pathlib import Path

from tests.source_imports import imported_names

ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "dags").rglob("*.py")]
TOOLS = ROOT / "tools" / "winecrm_tools"


def test_production_modules_import_no_development_tool():
    assert len(PRODUCTION) > 50, "the production code was not found"
    offenders = []
    for path in sorted(PRODUCTION):
        used = [name for name in imported_names(path) if name.split(".")[0] == "winecrm_tools"]
        if used:
            offenders.append(f"{path.relative_to(ROOT)}: {', '.join(sorted(used))}")
    assert not offenders, offenders


def test_the_backtest_takes_the_sample_estate_from_the_fixtures_not_the_demo():
    paths = list((TOOLS / "evaluation").rglob("*.py"))
    assert paths
    for path in paths:
        assert not [n for n in imported_names(path) if n.startswith("winecrm_tools.demo")], path
