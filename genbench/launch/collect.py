"""``genbench collect RUNS_DIR``: the result files sweep jobs left, into the database, each once.

Every ``result.json`` under the folder is read and handed to ``ResultsDB.ingest``, which records
it in one transaction unless the run is done already (or the failure is recorded already): so a
second collect, or one running beside a launcher that collects the same results, adds nothing.
A record that is not a well-formed result (not JSON, a metric that is not a number, no seed, a
curve row without its epoch, a FIFO or a link named ``result.json``) is skipped and named in one
warning; nothing of it is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genbench.core.errors import GenbenchError, log
from genbench.results.db import DatabaseUnusable, ResultsDB
from genbench.results.rundir import results_under


@dataclass
class Collected:
    added: list[tuple[str, dict]] = field(default_factory=list)
    """(suite source, the result record) of every result recorded now."""
    known: int = 0
    """Results recorded before (nothing added)."""
    unreadable: list[str] = field(default_factory=list)
    """Files that are not a genbench result, each with why."""


def collect(runs_dir: Path, db: ResultsDB, warn=log) -> Collected:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise GenbenchError(f"collect: {runs_dir} is not a folder")
    report = Collected()
    for _, (run, finished, record) in results_under(runs_dir, report.unreadable, warn):
        try:
            added = db.ingest(run, finished)
        except DatabaseUnusable:
            raise  # the database's fault, not the record's: one line, no more records tried
        except GenbenchError as exc:
            warn(f"warning: {exc}; skipped")
            report.unreadable.append(str(exc))
            continue
        if added:
            report.added.append((_suite_source(record, run.suite), record))
        else:
            report.known += 1
    return report


def _suite_source(record: dict, suite: str) -> str:
    """Where the result's suite came from (its TOML file, or a built-in suite's name)."""
    source = record.get("suite_source")
    return source if isinstance(source, str) and source else suite
