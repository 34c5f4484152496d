"""Units a reader can hold in their head: no class over 250 lines and no function over 60
in gateway/ and providers/, unless the line that opens it says why (`# long: <reason>`).
Complexity (at most 12 branches) is ruff's C901, in .ci/run's lint stage."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60


def units() -> list[tuple[str, int, int]]:
    """(where, lines, limit) of every class and function whose opening line gives no reason."""
    found = []
    for path in sorted([*ROOT.glob("gateway/**/*.py"), *ROOT.glob("providers/**/*.py")]):
        source = path.read_text()
        lines = source.split("\n")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                limit = MAX_FUNCTION_LINES
            else:
                continue
            assert node.end_lineno is not None
            opening = lines[node.lineno - 1]
            if "# long:" not in opening:
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                found.append((where, node.end_lineno - node.lineno + 1, limit))
    return found


def test_no_class_or_function_is_longer_than_a_reader_can_hold() -> None:
    too_long = [f"{where}: {n} lines (> {limit})" for where, n, limit in units() if n > limit]
    assert not too_long, "split these, or say why on their first line:\n" + "\n".join(too_long)


def test_the_check_sees_every_unit() -> None:
    found = {where.split(" ")[1] for where, _, _ in units()}
    assert {"create_app", "Preparation", "EventStream", "OpenAIProvider"} <= found
