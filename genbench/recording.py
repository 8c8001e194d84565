"""Recording a scored model: ``genbench score ... --db PATH --name NAME [--suite S]``.

A successful evaluation is recorded as a done run of budget ``external``, with its provenance (what
was scored, the sha256 of its files, the ``--init`` arguments) in the run's ``external`` column
(JSON; NULL for every zoo run). Its run key is the suite, data set and name alone, so a name is
recorded once per suite and data set: a second one is refused, never overwrites. With ``--suite S``
it is a row of S's leaderboard (re-rendered at once, and by every ``genbench run --suite S``);
without, it goes to the suite ``external``, on no leaderboard but in the external section of every
paper table on its data set. The request is checked before anything is evaluated
(``prepare_recording``). How tables show an external run is ``genbench.results.external``'s.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.core.errors import GenbenchError, log
from genbench.core.names import check_name
from genbench.core.weights import file_sha256
from genbench.data import DATASETS
from genbench.results.db import ResultsDB, run_key_taken
from genbench.results.external import EXTERNAL_BUDGET, EXTERNAL_SUITE, run_key
from genbench.scoring import ScoreReport
from genbench.train.identity import RunIdentity
from genbench.user_models import user_code_file


@dataclass(frozen=True)
class RecordRequest:
    """Where a score is recorded: under ``name`` in the database ``db``, on ``suite``'s leaderboard
    (None: suite ``external``, on none), written to ``leaderboards``. No name: nothing recorded."""

    name: str | None
    db: str | None
    suite: str | None
    leaderboards: Path


@dataclass(frozen=True)
class Subject:
    """What is scored, as the command named it: the file or folder, the user's code reference and its
    ``--init`` arguments, and the data set when given (a checkpoint's is known only once read)."""

    path: Path
    model_code: str | None
    init: tuple[str, ...]
    dataset: str | None


@dataclass(frozen=True)
class Recording:
    """A checked recording request, waiting for its score."""

    request: RecordRequest
    subject: Subject
    suite: Any
    started: float


#: records a successful score on the device it ran on; returns where it went (the report's ``recorded``)
Recorder = Callable[[ScoreReport, str], dict[str, str]]


def sha256(path: Path) -> str:
    """The sha256 of a file, or of a folder's files (their relative names and contents, sorted)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{sha256(file)}\0".encode())
        return digest.hexdigest()
    return file_sha256(path)


def _suite_of(name: str | None):
    """The suite the result is attached to (None: ``external``), checked against the registry."""
    from genbench.suites import SUITES

    return None if name is None else SUITES[name]


def _check_suite(suite, name: str, dataset: str | None) -> None:
    """A name of the suite's own runs, or a data set none of its runs is on, is refused."""
    if suite is None:
        return
    if name in {entry.name for entry in suite.runs}:
        raise GenbenchError(f"suite {suite.name} has a run named {name!r} of its own: pick another --name")
    datasets = sorted({suite.dataset, *(suite.dataset_of(entry) for entry in suite.runs)})
    if dataset is not None and dataset not in datasets:
        raise GenbenchError(f"suite {suite.name} is on {', '.join(datasets)}, not {dataset}: its leaderboard "
                            "compares models on the same data")


def prepare_recording(request: RecordRequest, subject: Subject) -> Recorder | None:
    """Check ``--db/--name/--suite`` before anything is evaluated; the function that records the
    report of a successful evaluation (None: no recording asked for)."""
    if request.name is None:
        if request.db is not None or request.suite is not None:
            raise GenbenchError("--db and --suite record the result: give --name NAME too")
        return None
    if request.db is None:
        raise GenbenchError("--name records the result in a results database: give --db PATH too")
    check_name(request.name, "--name")  # a table cell and part of the run key: an identifier
    suite = _suite_of(request.suite)
    _check_suite(suite, request.name, subject.dataset)
    suite_name = suite.name if suite else EXTERNAL_SUITE
    if subject.dataset is not None and run_key_taken(request.db, run_key(suite_name, subject.dataset,
                                                                          request.name)):
        raise GenbenchError(f"{request.name!r} is recorded already for suite {suite_name} on "
                            f"{subject.dataset} in {request.db}: pick another --name")
    recording = Recording(request, subject, suite, time.monotonic())
    return lambda report, device: record(recording, report, device)


def provenance(subject: Subject, report: ScoreReport) -> dict[str, Any]:
    """What was scored, for the ``external`` column: the code reference and its file's sha256, the
    weights (or generator or sample set) and theirs, the --init arguments and why metrics are absent."""
    path = user_code_file(subject.model_code) if subject.model_code else None
    out = {"code": subject.model_code or report.reference, "weights": str(subject.path),
           "weights_sha256": sha256(Path(subject.path)), "init": list(subject.init),
           "not_applicable": report.not_applicable or {}, "scored_by": "genbench score"}
    if path is not None and path.is_file():
        out["code_sha256"] = sha256(path)
    return out


def _model_name(subject: Subject, report: ScoreReport) -> str:
    """The model column of the row: --model-code's NAME, else the report's model."""
    return subject.model_code.rpartition(":")[2] if subject.model_code else report.model


def record(recording: Recording, report: ScoreReport, device: str) -> dict[str, str]:
    """The report as a done external run, in one transaction; S's leaderboard re-rendered with it.
    Returns where it went (the report's ``recorded``)."""
    request, subject, suite = recording.request, recording.subject, recording.suite
    suite_name, dataset = (suite.name if suite else EXTERNAL_SUITE), report.dataset
    _check_suite(suite, request.name, dataset)  # a checkpoint's data set is known only now
    external = provenance(subject, report)
    skipped = {m: r.removeprefix("skipped: ") for m, r in (report.not_applicable or {}).items()
               if r.startswith("skipped: ")}
    identity = RunIdentity(suite_name, request.name, _model_name(subject, report), report.config, dataset,
                           tuple(DATASETS[dataset].shape), EXTERNAL_BUDGET, {"seed": 0}, report.settings)
    key = run_key(suite_name, dataset, request.name)
    db = ResultsDB(request.db)
    db.record_external(key, identity, external, report.metrics, skipped, device,
                       time.monotonic() - recording.started)
    recorded = {"db": str(request.db), "name": request.name, "suite": suite_name, "run_key": key}
    where = "on no leaderboard (give --suite S for one)"
    if suite is not None:
        from genbench.results.leaderboard import render_leaderboard

        md, _ = render_leaderboard(db, suite, request.leaderboards)
        recorded["leaderboard"] = str(md)
        where = f"leaderboard {md}"
    log(f"recorded as {request.name} (external) in {request.db}, suite {suite_name}; {where}")
    return recorded
