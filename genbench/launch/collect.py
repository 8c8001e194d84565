"""``genbench collect RUNS_DIR``: the result files sweep jobs left, into the database, each once.

Every ``result.json`` under the folder is read and handed to ``ResultsDB.ingest``, which records
it in one transaction unless the run is done already (or the failure is recorded already): so a
second collect, or one running beside a launcher that collects the same results, adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genbench.core.errors import GenbenchError, log
from genbench.launch.rundir import RESULT_FILE, read_result
from genbench.results.db import ResultsDB


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
    for path in sorted(runs_dir.rglob(RESULT_FILE)):
        try:
            found = read_result(path)
        except GenbenchError as exc:
            warn(f"warning: {exc}")
            report.unreadable.append(str(exc))
            continue
        if found is None:
            continue
        run, finished, record = found
        if db.ingest(run, finished):
            report.added.append((record.get("suite_source") or run.suite, record))
        else:
            report.known += 1
    return report
