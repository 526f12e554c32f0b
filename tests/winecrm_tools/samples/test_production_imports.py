"""What runs in production imports neither the demo, the backtest nor the sample estate: those
are development tools and fixtures (the winecrm_tools distribution, tools/)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "dags").rglob("*.py")]
TOOLS = ROOT / "tools" / "winecrm_tools"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_production_modules_import_no_development_tool():
    assert len(PRODUCTION) > 50, "the production code was not found"
    offenders = []
    for path in sorted(PRODUCTION):
        used = [name for name in _imports(path) if name.split(".")[0] == "winecrm_tools"]
        if used:
            offenders.append(f"{path.relative_to(ROOT)}: {', '.join(sorted(used))}")
    assert not offenders, offenders


def test_the_backtest_takes_the_sample_estate_from_the_fixtures_not_the_demo():
    paths = list((TOOLS / "evaluation").rglob("*.py"))
    assert paths
    for path in paths:
        assert not [n for n in _imports(path) if n.startswith("winecrm_tools.demo")], path
