"""The published tables: what ``genbench tables`` renders from the archive into ``leaderboards/``.

``leaderboards/tables.toml`` lists them. A ``[[leaderboard]]`` is ``NAME.md`` and ``NAME.csv`` of one
suite's runs of one budget (its figures in ``figures/<suite>/``); a ``[[paper]]`` is ``NAME.md`` of one
paper's table with the cells measured at one budget (its chart ``figures/NAME.png``). Each is
rendered from a database built, in a temporary folder, from the archive's records of its budget
(``genbench.results.archive``), so the same records give the same bytes on any checkout: the
records are read in the order of their paths, nothing rendered says the current date or a path of
this machine, and a figure is redrawn only where its sources changed. A sample grid needs its
run's checkpoint, which the archive does not hold: it is drawn where the checkpoint is under the
runs folder, else the committed grid is kept as it is.
"""

from __future__ import annotations

import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from genbench.core.errors import GenbenchError, log
from genbench.core.names import inside, is_name
from genbench.core.weights import atomic_write
from genbench.results.archive import ARCHIVE_DIR, ArchivedRun, read_archive
from genbench.results.db import ResultsDB
from genbench.results.figures import paper_chart
from genbench.results.leaderboard import FIGURES_DIR, leaderboard_markdown
from genbench.results.paper_tables import available_papers, render_paper_table
from genbench.suites import SUITES

#: the list of published tables, in the published folder
MANIFEST = "tables.toml"
#: where a published leaderboard says its rows came from
ARCHIVE_SOURCE = ("Rendered by `genbench tables` from the result records in `leaderboards/archive/` "
                  "(docs/runs.md, \"Publishing results: the archive\").")
#: the largest manifest read
MAX_MANIFEST_BYTES = 1 << 16
#: the owner a database built from the archive is opened as (it claims nothing)
ARCHIVE_OWNER = "genbench-tables"
#: each kind of table and the keys an entry of it has
KINDS = {"leaderboard": ("name", "suite", "budget"), "paper": ("name", "paper", "budget")}


@dataclass(frozen=True)
class Table:
    """One published table: its kind (``leaderboard`` or ``paper``), file name without ``.md``, what it
    shows (a suite's name or a paper's key) and the budget of its runs."""

    kind: str
    name: str
    source: str
    budget: str


def read_manifest(folder: Path) -> list[Table]:
    """The tables ``folder/tables.toml`` lists, checked: known keys only, names that stay file names in
    the folder (each once), built-in suites and their budgets, papers genbench has."""
    path = Path(folder) / MANIFEST
    if not path.is_file():  # absent, or a FIFO or device that reading would block on
        raise GenbenchError(f"{path}: no list of published tables here (is {folder} the published "
                            "folder, leaderboards/?)")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise GenbenchError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise GenbenchError(f"{path}: over the limit of {MAX_MANIFEST_BYTES:,} bytes")
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GenbenchError(f"{path}: not TOML ({exc})") from None
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise GenbenchError(f"{path}: unknown table kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    tables = []
    for kind, keys in KINDS.items():
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            raise GenbenchError(f"{path}: {kind} is not a list of tables ([[{kind}]])")
        tables += [_table(path, kind, keys, i, entry) for i, entry in enumerate(entries)]
    names = [t.name for t in tables]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GenbenchError(f"{path}: table name(s) {', '.join(twice)} given twice")
    return tables


def _table(path: Path, kind: str, keys: tuple[str, ...], i: int, entry: object) -> Table:
    where = f"{path}: {kind} {i + 1}"
    if not isinstance(entry, dict) or set(entry) != set(keys):
        raise GenbenchError(f"{where}: needs exactly the keys {', '.join(keys)}")
    bad = [k for k in keys if not is_name(entry[k])]
    if bad:
        raise GenbenchError(f"{where}: its {bad[0]} {entry[bad[0]]!r} is not a name")
    name, source, budget = (entry[k] for k in keys)
    if kind == "leaderboard":
        if source not in SUITES:
            raise GenbenchError(f"{where}: no built-in suite {source!r}; known: {', '.join(sorted(SUITES))}")
        if budget not in SUITES[source].budgets:
            raise GenbenchError(f"{where}: suite {source} has no budget {budget!r}")
    elif source not in available_papers():
        raise GenbenchError(f"{where}: no paper {source!r}; known: {', '.join(available_papers())}")
    return Table(kind, name, source, budget)


def render_published(folder: Path, runs_dir: Path, paper: str | None = None, warn=log) -> list[Path]:
    """Render the tables ``folder/tables.toml`` lists (only paper ``paper``'s where given) from the
    records of ``folder/archive`` into ``folder``; the files written, in the manifest's order. Every
    record is checked before anything is written."""
    folder = Path(folder)
    tables = read_manifest(folder)
    if paper is not None:
        tables = [t for t in tables if t.kind == "paper" and t.source == paper]
        if not tables:
            raise GenbenchError(f"--paper {paper}: {folder / MANIFEST} lists no table of it")
    records = read_archive(folder / ARCHIVE_DIR, runs_dir)
    if paper is None:
        _say_unpublished(records, tables, warn)
    written = []
    with tempfile.TemporaryDirectory(prefix="genbench-tables-") as scratch:
        for budget in sorted({t.budget for t in tables}):
            of_budget = [r for r in records if r.run.budget == budget]
            db = archive_database(of_budget, Path(scratch) / f"{budget}.sqlite")
            for table in (t for t in tables if t.budget == budget):
                written += _render(table, db, folder)
    order = {t.name: i for i, t in enumerate(tables)}
    return sorted(written, key=lambda p: (order.get(p.stem, len(order)), p.suffix))


def archive_database(records: list[ArchivedRun], path: Path) -> ResultsDB:
    """A results database at ``path`` holding ``records``, ingested in their order."""
    db = ResultsDB(path, owner=ARCHIVE_OWNER)
    for record in records:
        db.ingest(record.run, record.finished)
    return db


def _render(table: Table, db: ResultsDB, folder: Path) -> list[Path]:
    md = inside(folder, folder / f"{table.name}.md")
    if table.kind == "leaderboard":
        text, frame = leaderboard_markdown(db, SUITES[table.source], folder, source=ARCHIVE_SOURCE)
        csv = inside(folder, folder / f"{table.name}.csv")
        atomic_write(csv, lambda tmp: frame.to_csv(tmp, index=False))
        atomic_write(md, lambda tmp: tmp.write_text(text))
        return [md, csv]
    chart = paper_chart(table.source, db, folder / FIGURES_DIR, name=table.name)
    text = render_paper_table(table.source, db, chart=f"{FIGURES_DIR}/{chart}" if chart else None)
    atomic_write(md, lambda tmp: tmp.write_text(text))
    return [md]


def _say_unpublished(records: list[ArchivedRun], tables: list[Table], warn) -> None:
    """One line per suite and budget the archive holds that no published leaderboard shows."""
    shown = {(t.source, t.budget) for t in tables if t.kind == "leaderboard"}
    held = sorted({(r.run.suite, r.run.budget) for r in records} - shown)
    for suite, budget in held:
        warn(f"note: the archive holds runs of suite {suite}, budget {budget}, that no leaderboard of "
             f"{MANIFEST} shows")
