"""External results: a model genbench did not train, recorded beside the zoo's runs.

``genbench score ... --db PATH --name NAME [--suite S]`` records a successful evaluation as a done
run of budget ``external``, with its provenance (what was scored, the sha256 of its files, the
``--init`` arguments) in the run's ``external`` column (JSON; NULL for every zoo run). Its run key
is the suite, data set and name alone, so a name is recorded once per suite and data set: a second
one is refused, never overwrites. With ``--suite S`` it is a row of S's leaderboard (re-rendered at
once, and by every ``genbench run --suite S``); without, it goes to the suite ``external``, on no
leaderboard but in the external section of every paper table on its data set.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genbench.core.errors import GenbenchError, log
from genbench.core.names import check_name
from genbench.core.weights import file_sha256
from genbench.data import DATASETS
from genbench.results.db import ResultsDB, run_key_taken
from genbench.train.identity import RunIdentity

#: the suite of an external result recorded without --suite: on no leaderboard, in paper tables
EXTERNAL_SUITE = "external"
#: the budget name of every external row (it was not trained by genbench)
EXTERNAL_BUDGET = "external"


def run_key(suite: str, dataset: str, name: str) -> str:
    """The key of an external result: one per suite, data set and name (no zoo key has a '/')."""
    return f"external/{suite}/{dataset}/{name}"


def is_external(run: dict) -> bool:
    return bool(run.get("external"))


def run_label(run: dict) -> str:
    """A run's name as tables show it: an external one marked."""
    return f"{run['name']} (external)" if is_external(run) else run["name"]


def model_label(run: dict) -> str:
    """A run's model as tables show it: an external one's code reference."""
    return run["external"]["code"] if is_external(run) else run["model"]


def sha256(path: Path) -> str:
    """The sha256 of a file, or of a folder's files (their relative names and contents, sorted)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{sha256(file)}\0".encode())
        return digest.hexdigest()
    return file_sha256(path)


def _suite_of(args):
    """The suite the result is attached to (None: ``external``), checked against the registry."""
    from genbench.suites import SUITES

    return None if args.suite is None else SUITES[args.suite]


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


def prepare_recording(args, code_file: Callable[[str], Path | None]) -> Callable[[dict], None] | None:
    """Check ``--db/--name/--suite`` before anything is evaluated; the function that records the
    report of a successful evaluation (None: no recording asked for). ``code_file`` finds the file
    of a ``--model-code`` spec (the harness's ``user_code_file``: results sit below the harness)."""
    if args.name is None:
        if args.db is not None or args.suite is not None:
            raise GenbenchError("--db and --suite record the result: give --name NAME too")
        return None
    if args.db is None:
        raise GenbenchError("--name records the result in a results database: give --db PATH too")
    check_name(args.name, "--name")  # a table cell and part of the run key: an identifier
    suite = _suite_of(args)
    _check_suite(suite, args.name, args.dataset)
    suite_name = suite.name if suite else EXTERNAL_SUITE
    if args.dataset is not None and run_key_taken(args.db, run_key(suite_name, args.dataset, args.name)):
        raise GenbenchError(f"{args.name!r} is recorded already for suite {suite_name} on {args.dataset} "
                            f"in {args.db}: pick another --name")
    started = time.monotonic()
    return lambda report: record(args, report, suite, provenance(args, report, code_file),
                                 time.monotonic() - started)


def provenance(args, report: dict, code_file: Callable[[str], Path | None]) -> dict[str, Any]:
    """What was scored, for the ``external`` column: the code reference and its file's sha256, the
    weights (or generator or sample set) and theirs, the --init arguments and why metrics are absent."""
    code = args.model_code or _reference(report)
    path = code_file(args.model_code) if args.model_code else None
    out = {"code": code, "weights": str(args.path), "weights_sha256": sha256(Path(args.path)),
           "init": list(args.init), "not_applicable": report.get("not_applicable", {}),
           "scored_by": "genbench score"}
    if path is not None and path.is_file():
        out["code_sha256"] = sha256(path)
    return out


def _reference(report: dict) -> str:
    """The code reference of a result without --model-code: the generator, sample set or checkpoint."""
    for kind in ("generator", "samples"):
        if kind in report:
            return f"{kind} {Path(report[kind]).name}"
    return f"{report['model']} checkpoint {Path(report['checkpoint']).name}"


def _settings(report: dict) -> dict[str, Any]:
    """The evaluation settings a result was scored with: a model's EvalSettings, or those of a
    sample set's or generator's sample-quality metrics (named as EvalSettings names them)."""
    if "settings" in report:
        return report["settings"]
    keys = ("features", "latent_dim", "latent_dist", "output_range", "seed")
    return {"quality_samples": report["n_samples"], "quality_reference": report["n_reference"],
            "quality_split": report["reference_split"], **{k: report[k] for k in keys if k in report}}


def _model_name(args, report: dict) -> str:
    """The model column of the row: --model-code's NAME, "generator", "samples" or the zoo model."""
    if args.model_code:
        return args.model_code.rpartition(":")[2]
    return next((kind for kind in ("generator", "samples") if kind in report), report.get("model", ""))


def record(args, report: dict, suite, external: dict[str, Any], seconds: float) -> None:
    """The report as a done external run, in one transaction; S's leaderboard re-rendered with it.
    Adds where it went to the report under ``recorded``."""
    from genbench.train.device import select_device

    suite_name, dataset = (suite.name if suite else EXTERNAL_SUITE), report["dataset"]
    _check_suite(suite, args.name, dataset)  # a checkpoint's data set is known only now
    skipped = {m: r.removeprefix("skipped: ") for m, r in report.get("not_applicable", {}).items()
               if r.startswith("skipped: ")}
    identity = RunIdentity(suite_name, args.name, _model_name(args, report), report.get("config") or {},
                           dataset, tuple(DATASETS[dataset].shape), EXTERNAL_BUDGET, {"seed": 0},
                           _settings(report))
    key = run_key(suite_name, dataset, args.name)
    db = ResultsDB(args.db)
    db.record_external(key, identity, external, report["metrics"], skipped,
                       str(select_device(args.device)), seconds)
    report["recorded"] = {"db": str(args.db), "name": args.name, "suite": suite_name, "run_key": key}
    where = "on no leaderboard (give --suite S for one)"
    if suite is not None:
        from genbench.results.leaderboard import render_leaderboard

        md, _ = render_leaderboard(db, suite, args.leaderboards)
        report["recorded"]["leaderboard"] = str(md)
        where = f"leaderboard {md}"
    log(f"recorded as {args.name} (external) in {args.db}, suite {suite_name}; {where}")
