"""The archive of published results: one small JSON record per run, from which the committed tables
are rendered on any checkout (``genbench.results.published``).

A record is ``<archive>/<suite>/<budget>/<run>-seed<k>-<key8>.json``: the ``result.json`` of a done
run (``genbench.results.rundir``: its identity with training and evaluation settings, metric values
with their uncertainties, learning curve, timings, versions and key), less what held only on the
machine that ran it: no run folder (a reader finds the checkpoint, where there is one, under its
own runs folder by the identity), no producer (job and host), no suite file path, no data cache
folder. Non-finite values (the NaN uncertainty of one seed and one point, a diverged point of a
curve) are left out, as the database leaves them out when it renders: the file is strict JSON.

Reading treats a record as data from anyone: a regular file of at most ``MAX_ARCHIVED_BYTES``, strict
JSON (no NaN, no Infinity, no number too large for a float), only the fields above, the fields a
results row needs (``check_finished``: finite metric values, a curve of epochs ...), an identity
that hashes to its key, filed under the name its identity gives. A record that fails is refused in
one line, never skipped: a published table renders from every record or from none.

Writing is a temporary file linked into place, so a reader never sees half a record, and a record
never replaces another under its name: the same record again adds nothing, a different one is
refused in one line (a key names one run; replacing its numbers is a person's decision: remove
the old record first).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genbench.core.errors import GenbenchError, log
from genbench.results.db import FinishedRun, check_finished
from genbench.results.rundir import RESULT_FORMAT, RESULT_VERSION, read_regular, results_under
from genbench.train.identity import RunIdentity

#: the archive's folder inside the published folder (``leaderboards/archive``)
ARCHIVE_DIR = "archive"
#: the largest record read: a run's metrics and a curve of a few thousand epochs take far less
MAX_ARCHIVED_BYTES = 4 << 20
#: what a row rendered from the archive names as the run's producer
ARCHIVE_PRODUCER = "archive"
#: the outcome fields a record keeps (a FinishedRun's, less where and by whom it ran)
OUTCOME_FIELDS = ("status", "device", "world_size", "backend", "metrics", "skipped", "curve",
                  "train_seconds", "eval_seconds", "versions", "started_at", "finished_at")
#: every field a record holds, and those it must hold
RECORD_FIELDS = ("format", "version", "key", "run", *OUTCOME_FIELDS)
REQUIRED_FIELDS = ("format", "version", "key", "run", "status", "device", "metrics", "versions",
                   "finished_at")
#: evaluation settings that say where files were on the machine that ran (not part of the key)
MACHINE_SETTINGS = ("cache_root",)


@dataclass(frozen=True)
class ArchivedRun:
    """One record read back: its file, the run's identity and its outcome (the run folder under the
    reader's runs folder, where its checkpoint is if it is anywhere)."""

    path: Path
    run: RunIdentity
    finished: FinishedRun


@dataclass
class Archived:
    """What archiving a folder of results did."""

    added: list[Path] = field(default_factory=list)
    """Records written now."""
    known: int = 0
    """Results archived before (the same record was there)."""
    left: int = 0
    """Results not archived: failed runs, or runs of another suite or budget than asked for."""
    unreadable: list[str] = field(default_factory=list)
    """Files that are not a genbench result, each with why."""


# --- the record ----------------------------------------------------------------------------------
def record_path(archive_dir: Path, run: RunIdentity) -> Path:
    """Where the record of ``run`` lies: named as its run folder is, inside ``archive_dir``."""
    folder = run.run_dir(Path(archive_dir))  # refuses a name that would put it elsewhere
    return folder.parent / f"{folder.name}.json"


def archived_record(run: RunIdentity, finished: FinishedRun) -> dict:
    """The archive's record of a done run: its identity and outcome without machine-specific fields,
    non-finite values left out."""
    if finished.status != "done":
        raise GenbenchError(f"run {run.name} seed {run.seed} ({run.key}) is {finished.status}: only done "
                            "runs are archived")
    evaluation = {k: (None if k in MACHINE_SETTINGS else v) for k, v in run.eval.items()}
    outcome = {name: getattr(finished, name) for name in OUTCOME_FIELDS}
    outcome["metrics"] = _finite(finished.metrics)
    outcome["curve"] = [_finite(row) for row in finished.curve]
    identity = {**asdict(run), "data_shape": list(run.data_shape), "eval": evaluation}
    return {"format": RESULT_FORMAT, "version": RESULT_VERSION, "key": run.key, "run": identity, **outcome}


def _finite(values: dict) -> dict:
    return {k: v for k, v in values.items() if not (isinstance(v, float) and not math.isfinite(v))}


def record_bytes(record: dict) -> bytes:
    """A record's file: sorted keys, one field a line (a diff shows what changed), strict JSON."""
    return (json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


# --- reading -------------------------------------------------------------------------------------
def read_record(path: Path, archive_dir: Path, runs_dir: Path) -> ArchivedRun:
    """The record at ``path`` (inside ``archive_dir``), checked as the module says; its run folder is
    the one its identity names under ``runs_dir``."""
    record = _strict_json(path, _bounded_bytes(path))
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if unknown or missing:
        said = "; ".join(part for part in (f"unknown fields {', '.join(unknown)}" if unknown else "",
                                           f"missing {', '.join(missing)}" if missing else "") if part)
        raise GenbenchError(f"{path}: not an archived genbench result ({said})")
    if record["format"] != RESULT_FORMAT or record["version"] != RESULT_VERSION:
        raise GenbenchError(f"{path}: not an archived genbench result (format {record['format']!r}, version "
                            f"{record['version']!r})")
    if record["status"] != "done":
        raise GenbenchError(f"{path}: its status is {record['status']!r}; the archive holds done runs only")
    try:
        raw = record["run"]
        run = RunIdentity(**{**raw, "data_shape": tuple(raw["data_shape"])})
        outcome = {name: record[name] for name in OUTCOME_FIELDS if name in record}
        finished = FinishedRun(run_dir="", producer=ARCHIVE_PRODUCER, **outcome)
    except (KeyError, TypeError, ValueError) as exc:
        raise GenbenchError(f"{path}: an archived result with missing or unknown fields ({exc})") from None
    check_finished(run, finished, str(path))  # a row's fields: finite metrics, a curve of epochs ...
    if not isinstance(finished.finished_at, str):
        raise GenbenchError(f"{path}: its finished_at is {finished.finished_at!r}, not text")
    if run.key != record["key"]:
        raise GenbenchError(f"{path}: its run's identity hashes to {run.key}, not the key {record['key']!r} "
                            "it names")
    if any(run.eval.get(name) is not None for name in MACHINE_SETTINGS):
        raise GenbenchError(f"{path}: its evaluation settings name a folder of the machine that ran it "
                            f"({', '.join(MACHINE_SETTINGS)})")
    expected = record_path(archive_dir, run)
    if Path(os.path.abspath(path)) != Path(os.path.abspath(expected)):
        raise GenbenchError(f"{path}: the record of run {run.name} seed {run.seed} ({run.key}) belongs at "
                            f"{expected}")
    run_dir = str(run.run_dir(Path(runs_dir)))
    return ArchivedRun(Path(path), run, FinishedRun(**{**asdict(finished), "run_dir": run_dir}))


def read_archive(archive_dir: Path, runs_dir: Path) -> list[ArchivedRun]:
    """Every record of the archive, in the order of their paths; the first that fails the checks
    is refused in one line (a temporary file of a writer, ``.*``, is not a record)."""
    archive_dir = Path(archive_dir)
    if not archive_dir.is_dir():
        return []
    paths = []
    for folder, dirs, files in os.walk(archive_dir):  # links to folders are not followed
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths += [Path(folder) / f for f in files if f.endswith(".json") and not f.startswith(".")]
    return [read_record(path, archive_dir, runs_dir) for path in sorted(paths)]


def _bounded_bytes(path: Path) -> bytes:
    """A regular file's bytes (not a link, FIFO or device), at most ``MAX_ARCHIVED_BYTES``."""
    try:
        return read_regular(path, MAX_ARCHIVED_BYTES, "an archived record")
    except OSError as exc:
        raise GenbenchError(f"{path}: unreadable ({exc.strerror or exc})") from None


def _not_allowed(text: str):
    raise ValueError(f"{text} is not strict JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} does not fit a float")
    return value


def _strict_json(path: Path, data: bytes) -> dict:
    """A JSON object of ``data``: no NaN or Infinity, no number that overflows a float."""
    try:
        record = json.loads(data.decode("utf-8"), parse_constant=_not_allowed, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise GenbenchError(f"{path}: not strict JSON ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(record, dict):
        raise GenbenchError(f"{path}: not a JSON object")
    return record


# --- writing -------------------------------------------------------------------------------------
def write_record(archive_dir: Path, record: dict, run: RunIdentity) -> bool:
    """Put ``record`` (of ``run``) into the archive; whether it was added (False: the same record
    was there). A different record under its name is refused in one line, nothing written."""
    path = record_path(archive_dir, run)
    data = record_bytes(record)
    if _same_or_absent(path, data):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    try:
        os.chmod(tmp.name, 0o644)
        os.link(tmp.name, path)  # never replaces: a writer that got there first wins
    except FileExistsError:  # written meanwhile: the same record, or refused
        _same_or_absent(path, data)
        return False
    finally:
        os.unlink(tmp.name)
    return True


def _same_or_absent(path: Path, data: bytes) -> bool:
    """True where ``path`` holds ``data``; False where there is no file; a different file: refused."""
    if not os.path.lexists(path):
        return False
    if _bounded_bytes(path) == data:
        return True
    raise GenbenchError(f"{path}: the archive holds a different record under this name; not replaced "
                        "(a key names one run: remove the old record first to replace its numbers)")


def archive_results(runs_dir: Path, archive_dir: Path, suite: str | None = None, budget: str | None = None,
                    warn=log) -> Archived:
    """Archive the done results (``result.json``) under ``runs_dir``, of ``suite`` and ``budget`` where
    given. Every record is made and checked against the archive before any is written: a different
    record under one of their names refuses them all, in one line."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise GenbenchError(f"archive: {runs_dir} is not a folder")
    report = Archived()
    chosen: dict[Path, tuple[RunIdentity, dict]] = {}
    for path, (run, finished, _) in results_under(runs_dir, report.unreadable, warn):
        if finished.status != "done" or suite not in (None, run.suite) or budget not in (None, run.budget):
            report.left += 1
            continue
        record = archived_record(run, finished)
        target = record_path(archive_dir, run)
        if target in chosen and record_bytes(chosen[target][1]) != record_bytes(record):
            raise GenbenchError(f"{path}: a second, different result of run {run.key} under {runs_dir}; "
                                "nothing archived")
        chosen[target] = (run, record)
    known = {target for target, (_, record) in chosen.items()
             if _same_or_absent(target, record_bytes(record))}
    for target, (run, record) in sorted(chosen.items()):
        if target not in known and write_record(archive_dir, record, run):
            report.added.append(target)
        else:
            report.known += 1
    return report
