"""README and docs/ stay true: every `genbench` command they show parses with genbench's own argument
parser (a removed or renamed flag fails here; a command quoted in a sentence may leave out the
arguments the sentence does not need), every flag they give a script is one it declares, every
relative link and image points at a file that exists (and at a heading that exists, where it names
one), every repository file they name exists, dates stay in benchmarks/RESULTS.md, and README stays
a front door whose leaderboard excerpt is the committed table."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from genbench.cli import build_parser
from genbench.core.errors import GenbenchError

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PAGES = [README, *DOCS, ROOT / "benchmarks" / "README.md", RESULTS]
README_MAX_LINES = 300

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
# where a documented command starts: `genbench ...`, a prompt, torchrun's `-m genbench`, the venv's own
START = re.compile(r"(?:^|^\$ |\s-m |\.venv/bin/)genbench (?=\S)")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
# a script the pages run: `python benchmarks/x.py --flag ...`, `python -m genbench.metrics.lenet --flag`
SCRIPT = re.compile(r"(?:^|\s)(?:-m (genbench(?:\.\w+)+)|((?:benchmarks|examples)/[\w/]+\.py))((?:\s+\S+)*)")
FLAG = re.compile(r"(?<!\S)--[a-z][a-z0-9-]*")
# a file of the repository named in inline code: `genbench/metrics/registry.py`, `leaderboards/mnist.md`
REPO_PATH = re.compile(r"^(?:genbench|zoo|tests|benchmarks|examples|leaderboards|docs|\.ci)/[\w./-]*$")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_lines(text: str) -> list[str]:
    """The lines of fenced code blocks, backslash continuations joined."""
    lines = []
    for block in FENCE.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def table_cells(text: str) -> list[str]:
    """The inline code spans of table rows, markdown's escaped pipe unescaped."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [span.replace("\\|", "|") for row in rows for span in INLINE.findall(row)]


def commands(text: str) -> list[str]:
    """Every `genbench` command line of a page's code blocks and table cells, without `genbench`."""
    found = []
    for line in code_lines(text) + table_cells(text):
        match = START.search(line.strip())
        if match:
            found.append(line.strip()[match.end():])
    return found


def prose_commands(text: str) -> list[str]:
    """The `genbench` commands quoted in sentences (inline code outside code blocks and tables)."""
    prose = "\n".join(line for line in FENCE.sub("", text).splitlines() if not line.startswith("|"))
    spans = (span.strip() for span in INLINE.findall(prose.replace("\n", " ")))
    return [span[match.end():] for span in spans if (match := START.search(span))]


def argv_of(command: str) -> list[str]:
    """A documented command as parser input: optional groups [..] taken, the first of a|b alternatives,
    `...` dropped, an UPPERCASE placeholder given the value 10 (valid for every flag and positional)."""
    argv = []
    for token in shlex.split(command, comments=True):
        token = token.strip("[]").split("|")[0]
        if token in ("", "..."):
            continue
        argv.append("10" if PLACEHOLDER.match(token) else token)
    return argv


def strict_parser() -> argparse.ArgumentParser:
    """genbench's parser, refusing abbreviated flags: the docs spell every flag out."""
    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in [parser, *(p for a in subs for p in a.choices.values())]:
        sub.allow_abbrev = False
    return parser


def parse_error(command: str, partial: bool = False) -> str | None:
    """Why genbench's parser refuses the command, or None; ``partial``: a missing required argument is
    no error (a sentence quotes the flags it speaks of)."""
    try:
        strict_parser().parse_args(argv_of(command))
    except GenbenchError as exc:
        missing = partial and str(exc).startswith("the following arguments are required")
        return None if missing else str(exc)
    except SystemExit as exc:  # --help, or argparse's own exit
        return None if exc.code == 0 else f"exit {exc.code}"
    return None


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(path.read_text()):
        base = slug(heading)
        out.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return out


def broken_link(page: Path, target: str) -> str | None:
    """Why a link of a page is broken, or None: an external or bare-anchor link is not checked here."""
    if re.match(r"^[a-z]+:", target):
        return None
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    if not resolved.exists():
        return f"{target}: no such file"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"{target}: no heading #{anchor} in {rel(resolved)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_documented_command_parses(page):
    found = commands(page.read_text())
    refused = [f"genbench {c}: {why}" for c in found if (why := parse_error(c))]
    assert not refused, "\n".join(refused)


def test_the_pages_show_commands_of_every_subcommand():
    """The extraction finds the documented commands: each subcommand appears somewhere."""
    shown = {argv_of(c)[0] for page in PAGES for c in commands(page.read_text())}
    assert shown >= {"run", "score", "compare", "tables", "report", "collect", "status", "list"}


def test_a_flag_the_parser_lacks_is_refused():
    """The check itself: a renamed flag, a removed one, or an unknown command fails."""
    text = ("```bash\ngenbench score RUN_DIR --ais-steps 100 --n-points 3\n```\n"
            "| `genbench runn --suite mnist` |\n")
    assert commands(text) == ["score RUN_DIR --ais-steps 100 --n-points 3", "runn --suite mnist"]
    assert all(parse_error(c) for c in commands(text))
    assert parse_error("score RUN_DIR --ais-steps 100 --bdmc [N]") is None
    assert parse_error("run --suite S [--ensemble auto|on|off] ...") is None
    prose = "Use `genbench score --model-code FILE.py:NAME` or `genbench score --model-cod X`.\n"
    assert prose_commands(prose) == ["score --model-code FILE.py:NAME", "score --model-cod X"]
    assert [parse_error(c, partial=True) is None for c in prose_commands(prose)] == [True, False]


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_command_quoted_in_a_sentence_has_real_flags(page):
    found = prose_commands(page.read_text())
    refused = [f"genbench {c}: {why}" for c in found if (why := parse_error(c, partial=True))]
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_point_at_files_that_exist(page):
    broken = [why for target in LINK.findall(page.read_text()) if (why := broken_link(page, target))]
    assert not broken, "\n".join(broken)


def named_paths_missing(text: str) -> list[str]:
    """Repository paths a page names in inline code that do not exist (placeholders such as NAME aside)."""
    spans = {span for span in INLINE.findall(text) if REPO_PATH.match(span)}
    return sorted(span for span in spans if not (ROOT / span).exists()
                  and not any(PLACEHOLDER.match(part) for part in re.split(r"[/.]", span)))


def prose_without_code_or_links(text: str) -> str:
    """A page's words: code blocks, inline code and links (paths, sample output) removed."""
    return LINK.sub("", INLINE.sub("", FENCE.sub("", text)))


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_files_the_pages_name_exist(page):
    assert not named_paths_missing(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if p != RESULTS], ids=rel)
def test_dated_figures_live_only_in_results_md(page):
    """A measurement carries its date in benchmarks/RESULTS.md alone; the other pages link there."""
    assert not DATE.findall(prose_without_code_or_links(page.read_text()))


def test_the_path_and_date_checks_see_what_they_look_for():
    text = "See `genbench/metrics/registy.py` and `leaderboards/figures/NAME.png`; measured 2026-12-07.\n"
    assert named_paths_missing(text) == ["genbench/metrics/registy.py"]
    assert DATE.findall(prose_without_code_or_links(text)) == ["2026-12-07"]
    assert not DATE.findall(prose_without_code_or_links("[a](leaderboards/long-2026-12-04/mnist.md)"))


def test_readme_is_a_front_door_that_links_every_docs_page():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(text)}
    assert DOCS and not [rel(page) for page in DOCS if page.resolve() not in linked]


def test_readme_keeps_the_install_and_test_commands_ci_follows():
    """.ci/run installs and tests as README says."""
    text = README.read_text()
    assert ("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/python -m pytest -q"
            in text)
    assert "--no-deps pythae==0.1.2 && .venv/bin/pip install -e '.[pythae]'" in text.replace("\n", " ")


def table_rows(text: str) -> list[list[str]]:
    """A markdown page's table rows as stripped cells, separator rows left out."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]
    return [row for row in rows if not all(set(cell) <= set("-: ") for cell in row)]


def test_readmes_glimpse_is_the_committed_table():
    """README's excerpt of a paper table holds the committed table's cells, header included."""
    text = README.read_text()
    source = re.search(r"An excerpt of `([^`]+)`", text).group(1)
    committed = {tuple(row[:2]): row for row in table_rows((ROOT / source).read_text())}
    excerpt = [row for row in table_rows(text) if row[0] == "stoch. layers" or row[0].isdigit()]
    assert excerpt and all(row == committed[tuple(row[:2])][:len(row)] for row in excerpt)


def script_flags(text: str) -> set[tuple[str, str]]:
    """(script file, flag) for every flag a page gives a script, in code blocks, tables and sentences."""
    spans = code_lines(text) + INLINE.findall(FENCE.sub("", text))
    found = set()
    for span in spans:
        for module, path, rest in SCRIPT.findall(span):
            script = module.replace(".", "/") + ".py" if module else path
            found |= {(script, flag.split("=")[0]) for flag in FLAG.findall(rest)}
    return found


def flags_missing(pairs: set[tuple[str, str]]) -> list[str]:
    """The documented script flags that the script does not declare (its argparse flags, as written)."""
    missing = []
    for script, flag in sorted(pairs):
        path = ROOT / script
        if not path.exists() or f'"{flag}"' not in path.read_text():
            missing.append(f"{script} {flag}")
    return missing


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_documented_script_flag_is_declared_by_its_script(page):
    assert not flags_missing(script_flags(page.read_text()))


def test_script_flags_are_found_and_checked():
    text = ("`benchmarks/ensemble.py --threads 1 2` and\n```bash\n.venv/bin/python -m genbench.metrics.lenet "
            "--retrain --out FILE\n.venv/bin/python benchmarks/compile.py --thread 1\n```\n")
    pairs = script_flags(text)
    assert pairs == {("benchmarks/ensemble.py", "--threads"), ("genbench/metrics/lenet.py", "--retrain"),
                     ("genbench/metrics/lenet.py", "--out"), ("benchmarks/compile.py", "--thread")}
    assert flags_missing(pairs) == ["benchmarks/compile.py --thread"]
