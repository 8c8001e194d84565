"""Docstrings and comments say what and why; measured figures live in benchmarks/RESULTS.md, where
the benchmark scripts that produce them are named, so none goes stale in the code."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for folder in ("genbench", "zoo") for p in (ROOT / folder).rglob("*.py"))
#: a date, or a measured speed: "2026-12-07", "1.5x faster", "~10% faster", "21.5 ms"
FIGURE = re.compile(r"\b20\d\d-\d\d-\d\d\b|\b\d+(?:\.\d+)?x\s+(?:faster|slower)\b"
                    r"|\d+%\s+(?:faster|slower)|\b\d+(?:\.\d+)? ?ms\b")


def prose(source: str) -> list[tuple[int, str]]:
    """(line, text) of every docstring (string statement) and comment of a module."""
    strings = [(node.lineno, node.value.value) for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
               and isinstance(node.value.value, str)]
    comments = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT]
    return strings + comments


def figures(source: str) -> list[str]:
    """The figures in a module's docstrings and comments, with their lines."""
    return [f"line {line}: {match.group()}" for line, text in prose(source)
            for match in FIGURE.finditer(text)]


def test_no_docstring_or_comment_holds_a_dated_figure():
    example = 'def f():\n    """1.45x slower (2026-12-07)."""\n    return 1  # 21.5 ms a step\n'
    assert figures(example) == ["line 2: 1.45x slower", "line 2: 2026-12-07", "line 3: 21.5 ms"]
    assert figures('NAME = "weights-2015-12-05.pth"  # a file name\n') == []  # code, not prose
    found = {str(path.relative_to(ROOT)): found for path in SOURCES if (found := figures(path.read_text()))}
    assert found == {}, "move each figure to benchmarks/RESULTS.md and point there"
