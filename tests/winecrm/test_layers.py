"""The architecture's import rules (docs/architecture.md), checked on the code itself."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "winecrm"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_winecrm_airflow_imports_airflow():
    """Everything else runs without a scheduler: the CLI, the receiver, the demo's warehouse work."""
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    offenders = [f"{path.relative_to(PACKAGE)}: {sorted(n for n in _imported_modules(path) if n.split('.')[0] == 'airflow')}"
                 for path in modules if path.relative_to(PACKAGE).parts[0] != "airflow"
                 and any(n.split(".")[0] == "airflow" for n in _imported_modules(path))]
    assert not offenders, offenders
