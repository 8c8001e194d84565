"""The markdown genbench writes, as HTML: the subset its leaderboards and paper tables use.

Headings (``#``), paragraphs, bullet lists, pipe tables (each a sortable table), images, inline
code and bold. Everything else is text, escaped. Images are resolved by the caller (a data URI of
the file); one it cannot resolve shows its alt text, never a broken link.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*")
HEADING = re.compile(r"(#{1,6}) (.*)")
#: a pipe table's separator line: |---|:--:|
SEPARATOR = re.compile(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?")

Resolve = Callable[[str, str], str]
"""``resolve(src, alt)``: the HTML of an image linked as ``src`` (an <img>, or the alt text)."""


def inline(text: str, resolve: Resolve) -> str:
    """One line's inline markdown as HTML: `code`, **bold**, ![alt](src); the rest escaped."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: plain text
        parts = [text]
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        pieces, last = [], 0
        for match in IMAGE.finditer(part):
            pieces.append(_text(part[last:match.start()]))
            pieces.append(resolve(match.group(2), match.group(1)))
            last = match.end()
        pieces.append(_text(part[last:]))
        out.append("".join(pieces))
    return "".join(out)


def _text(text: str) -> str:
    return BOLD.sub(r"<strong>\1</strong>", html.escape(text, quote=False))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_html(header: list[str], rows: list[list[str]], resolve: Resolve, css: str = "sortable") -> str:
    head = "".join(f'<th scope="col">{inline(cell, resolve)}</th>' for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{inline(cell, resolve)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return (f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def to_html(markdown: str, resolve: Resolve, shift: int = 0) -> str:
    """The HTML of ``markdown``; headings ``shift`` levels lower (a page's own h1 stays its title)."""
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif heading := HEADING.fullmatch(line):
            level = min(6, len(heading.group(1)) + shift)
            out.append(f"<h{level}>{inline(heading.group(2), resolve)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i])
                i += 1
            rows = [_cells(b) for b in block if not SEPARATOR.fullmatch(b.strip())]
            out.append(table_html(rows[0], rows[1:], resolve))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:], resolve)}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i]):
                paragraph.append(lines[i].strip())
                i += 1
            out.append(f"<p>{inline(' '.join(paragraph), resolve)}</p>")
    return "\n".join(out)


def _starts_block(line: str) -> bool:
    return bool(HEADING.fullmatch(line)) or line.lstrip().startswith("|") or line.startswith("- ")
