"""The on-call runbook (docs/runbook.md) against the code: every failure the platform raises (read
from the source, not from a list kept by hand) is on the page — its message's opening words, or
its exception class when the message is built elsewhere. A new failure message fails this test
until the runbook says what it means and what to do."""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "winecrm"
# Not for on-call: programming errors, command-line usage, HTTP answers, internal control flow.
NOT_FAILURES = {"ValueError", "TypeError", "KeyError", "NotImplementedError", "AssertionError", "StopIteration",
                "SystemExit", "HTTPException", "_EncodingRetry", "_unsafe_xml", "_fail_fast", "cls"}
NOT_RUN_BY_AIRFLOW = ("evaluation/", "demo/")  # the backtest and the demo: developers' tools


def _literal_parts(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.BinOp):  # "..." + "..." or f"..." + ...
        return _literal_parts(node.left) + _literal_parts(node.right)
    return []


def opening_words(message: ast.AST | None) -> str | None:
    """The first literal piece of a message long enough to recognise it (at most ~60 characters,
    cut at a word), or None when the message is built elsewhere."""
    for part in _literal_parts(message) if message is not None else []:
        text = part.split("\n")[0].strip(" :;,.()")
        if len(text) >= 12:
            if len(text) > 60:
                text = text[:60].rsplit(" ", 1)[0]
            return text
    return None


def raised_failures() -> list[tuple[str, str, str | None]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith(NOT_RUN_BY_AIRFLOW):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "?")
            if name not in NOT_FAILURES:
                found.append((f"{where}:{node.lineno}", name, opening_words(node.exc.args[0] if node.exc.args else None)))
    return found


def runbook_text() -> str:
    text = html.unescape((ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")).replace("`", "")
    return re.sub(r"\s+", " ", text)


def test_every_failure_the_code_raises_is_in_the_runbook():
    failures = raised_failures()
    assert len(failures) > 50  # the reader sees the package
    text = runbook_text()
    missing = [f"{where}: {name} « {words} »" if words else f"{where}: {name}"
               for where, name, words in failures if (words or name) not in text]
    assert not missing, "not in docs/runbook.md:\n" + "\n".join(missing)


def test_the_check_notices_a_new_message(tmp_path):
    """The reader finds the opening words of a new message, and the runbook does not have them."""
    source = 'def f(path):\n    raise FileRejected(f"{path}: the estate exported a spreadsheet of cats")\n'
    (node,) = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Raise)]
    words = opening_words(node.exc.args[0])
    assert words == "the estate exported a spreadsheet of cats"
    assert words not in runbook_text()
