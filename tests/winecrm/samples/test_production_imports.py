"""What runs in production imports neither the demo, the backtest nor the sample estate: those
are development tools and fixtures (winecrm.demo, winecrm.evaluation, winecrm.samples)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "plugins" / "winecrm"
DEVELOPMENT = ("winecrm.demo", "winecrm.evaluation", "winecrm.samples")


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
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).parts[0]
        if where in ("demo", "evaluation", "samples"):
            continue
        used = [name for name in _imports(path) if name.startswith(DEVELOPMENT)]
        if used:
            offenders.append(f"{path.relative_to(PACKAGE)}: {', '.join(sorted(used))}")
    assert not offenders, offenders


def test_the_backtest_takes_the_sample_estate_from_the_fixtures_not_the_demo():
    for path in (PACKAGE / "evaluation").rglob("*.py"):
        assert not [n for n in _imports(path) if n.startswith("winecrm.demo")], path
