"""Running a suite: train every (run, seed), evaluate it, record it, render the leaderboard.

A run's identity (``genbench.train.identity.RunIdentity``) names its database row, its run
directory and its checkpoint. A run already done is not repeated; an unfinished one resumes
from the checkpoint in its run directory.

Each run is claimed in the database before it trains (``ResultsDB.claim_run``): a run a live
process holds is skipped, one whose owner died is taken over, so several ``genbench run`` of
one suite share its runs. Whatever goes wrong in one run (an exception of any kind, weights or
a metric that are not finite) fails that run with its reason and the suite goes on; an
interrupt fails the run it was in and stops the suite.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from genbench.core.errors import GenbenchError, TrainingDiverged, log
from genbench.core.models import MODELS, config_dict
from genbench.data import load_dataset
from genbench.metrics.registry import METRICS, EvalSettings, evaluate
from genbench.metrics.sample_quality import curve_monitor
from genbench.results.db import Claim, Lease, ResultsDB
from genbench.results.pictures import save_pictures
from genbench.scoring import load_for_scoring, write_evaluation
from genbench.suites import Budget, RunEntry, Suite
from genbench.train.callbacks import Callback, QualityMonitor, watches_samples
from genbench.train.checkpoint import FILENAME as CHECKPOINT
from genbench.train.identity import LOCATIONS, RunIdentity
from genbench.train.loop import TrainConfig, train


@dataclass
class RunOutcome:
    name: str
    seed: int
    status: str
    """done (trained here) | cached (done before) | failed | busy (another live process holds
    it: skipped) | lost (another process took it over while it ran here)"""
    metrics: dict[str, float]
    run_dir: Path
    error: str | None = None


class RunTakenOver(GenbenchError):
    """Another process took over the run this process was training (its heartbeat had gone stale)."""


def prepare_folder(path: Path, flag: str) -> None:
    """Create the folder a run writes into, or say in one line why it cannot be one (a file is
    there, or above it), before anything trains."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GenbenchError(f"{flag} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenbenchError(f"{flag} {path}: cannot create the folder ({exc.strerror or exc})") from None


def report_outcomes(outcomes: list[RunOutcome], warn=log) -> int:
    """Say which runs were left to other processes and which failed (with their reasons);
    the exit status of ``genbench run``: 1 where any failed, else 0."""
    elsewhere = [o for o in outcomes if o.status in ("busy", "lost")]
    if elsewhere:
        warn(f"{len(elsewhere)} run(s) left to other processes: "
             + ", ".join(f"{o.name} seed {o.seed}" for o in elsewhere))
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        warn(f"{len(failed)} run(s) failed: {', '.join(f'{o.name} seed {o.seed}' for o in failed)}")
        for o in failed:
            warn(f"  {o.name} seed {o.seed}: {o.error}")
    return 1 if failed else 0


def run_identity(suite: Suite, entry: RunEntry, seed: int, budget: Budget, data_shape) -> RunIdentity:
    """The identity of one (run, seed) of a suite under a budget (the run's own overrides applied)."""
    config = config_dict(MODELS[entry.model].make_config(entry.config))
    train_cfg = suite.train_config(budget, seed, entry)
    settings = replace(suite.budget_for(entry, budget).eval, seed=seed)  # evaluation noise follows the seed
    return RunIdentity(suite.name, entry.name, entry.model, config, suite.dataset_of(entry),
                       tuple(data_shape), budget.name, asdict(train_cfg), asdict(settings))


def run_suite(suite: Suite, budget: Budget, db: ResultsDB, runs_dir: Path, device: torch.device,
              data_root: str | None = None, only: list[str] | None = None,
              seeds: int | None = None, progress: bool = True, log=log,
              warn=log) -> list[RunOutcome]:
    """Every (run, seed) of the suite, in order: one line each through ``log``; skipped, taken-over
    and lost runs, and the tracebacks of unexpected failures, through ``warn`` (stderr)."""
    entries = suite.select(only)
    datasets = {}
    outcomes = []
    for entry in entries:
        name = suite.dataset_of(entry)
        if name not in datasets:
            datasets.clear()  # one data set in memory at a time (dSprites is 3 GB)
            datasets[name] = load_dataset(name, data_root, device)
        dataset = datasets[name]
        for seed in range(seeds or suite.seeds):
            outcome = run_one(suite, entry, seed, budget, dataset, db, runs_dir, device, progress, data_root,
                              warn)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in outcome.metrics.items() if _headline(k))
            say = warn if outcome.status in ("busy", "lost") else log
            say(f"[{outcome.status}] {entry.name} seed {seed}: {outcome.error or shown}")
            outcomes.append(outcome)
    return outcomes


def run_one(suite: Suite, entry: RunEntry, seed: int, budget: Budget, dataset, db: ResultsDB,
            runs_dir: Path, device: torch.device, progress: bool = True,
            data_root: str | None = None, warn=log) -> RunOutcome:
    """Train, evaluate and record one (run, seed), unless it is done (then its results are reused,
    with sample quality added where the budget now asks for it) or a live process holds it."""
    run = run_identity(suite, entry, seed, budget, dataset.shape)
    run_dir = run.run_dir(runs_dir)
    settings = replace(EvalSettings(**run.eval), cache_root=data_root)
    done = db.done_run(run.key)
    if done is None:
        claim = db.claim_run(replace(run, eval=asdict(settings)), run_dir, str(device))
        if claim.status == "busy":
            return RunOutcome(entry.name, seed, "busy", {}, run_dir,
                              error=f"being trained by {claim.describe_holder()}; skipped")
        if claim.status == "claimed":
            if claim.taken_over:
                start = "resuming its checkpoint" if (run_dir / CHECKPOINT).exists() else "no checkpoint yet"
                warn(f"[takeover] {entry.name} seed {seed}: its owner {claim.describe_holder()} is gone; "
                     f"{start}")
            return _train_and_record(run, entry, seed, settings, dataset, db, claim, run_dir, progress, warn)
        done = db.done_run(run.key)  # finished by another process since
    if _needs_sample_quality(done, settings):
        _add_sample_quality(done, settings, dataset, db, warn)
    return RunOutcome(entry.name, seed, "cached", db.metrics(done["id"]), Path(done["run_dir"]))


def _train_and_record(run: RunIdentity, entry: RunEntry, seed: int, settings: EvalSettings, dataset,
                      db: ResultsDB, claim: Claim, run_dir: Path, progress: bool, warn) -> RunOutcome:
    """A claimed run, heartbeat beating: trained, evaluated and recorded done, or failed with its
    reason whatever went wrong. An interrupt (or SystemExit) fails it too, and goes on up."""
    lost = RunOutcome(entry.name, seed, "lost", {}, run_dir, error="another process took this run over")
    with db.holding(claim.run_id) as lease:
        try:
            metrics, skipped, result, eval_seconds = _train_and_evaluate(run, entry, seed, settings, dataset,
                                                                         run_dir, lease, progress)
            if not db.finish_run(claim.run_id, metrics, result.seconds, eval_seconds, skipped, result.curve):
                return lost
        except Exception as exc:
            if not isinstance(exc, GenbenchError):  # a bug or a broken environment: show where
                warn(traceback.format_exc().rstrip())
            reason = failure_reason(exc)
            if not db.fail_run(claim.run_id, reason):
                return lost
            return RunOutcome(entry.name, seed, "failed", {}, run_dir, error=reason)
        except BaseException as exc:
            db.fail_run(claim.run_id, failure_reason(exc))
            raise
    return RunOutcome(entry.name, seed, "done", metrics, run_dir)


def _train_and_evaluate(run: RunIdentity, entry: RunEntry, seed: int, settings: EvalSettings, dataset,
                        run_dir: Path, lease: Lease, progress: bool):
    """Train (resuming its checkpoint) and evaluate one run: (metrics, skipped metrics' reasons,
    the TrainResult, evaluation seconds). Weights or metric values that are not finite raise."""
    torch.manual_seed(seed)
    model = MODELS[entry.model].build(run.config, dataset.shape)
    callbacks: list[Callback] = [StopWhenTakenOver(lease)]
    monitor = curve_monitor(dataset, settings) if watches_samples(model) else None
    if monitor is not None:
        callbacks.append(QualityMonitor(monitor))
    result = train(model, dataset, TrainConfig(**run.train), run_dir, run.checkpoint_meta(),
                   progress=progress, callbacks=callbacks)
    check_finite_weights(model)
    started = time.perf_counter()
    torch.manual_seed(seed)
    test = dataset.eval_tensor("test")
    skipped: dict[str, str] = {}
    metrics = evaluate(model, test, settings, dataset=dataset, skipped=skipped)
    check_finite_metrics(metrics)
    eval_seconds = time.perf_counter() - started
    save_pictures(model, test, run_dir, seed=seed)
    write_evaluation(run_dir, asdict(settings))
    return metrics | result.bookkeeping(), skipped, result, eval_seconds  # bookkeeping: early stopping


class StopWhenTakenOver(Callback):
    """Ends training at the next step once the run's lease is lost (another process took the run
    over), rather than training on beside it."""

    name = "ownership"

    def __init__(self, lease: Lease):
        self.lease = lease

    def on_step_end(self, state, losses) -> None:
        if self.lease.lost.is_set():
            raise RunTakenOver(f"another process took this run over at step {state.step}")


def check_finite_weights(model: torch.nn.Module) -> None:
    """Refuse weights that are not finite after training (a last step can overflow though the
    loss checked before it was finite): evaluating them would crash or record nonsense."""
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise TrainingDiverged(f"parameter {name} has {bad} non-finite value(s) after training; "
                                   "run stopped")


def check_finite_metrics(metrics: dict[str, float]) -> None:
    """Refuse a metric value that is not finite (an uncertainty may be NaN: one seed, one point)."""
    for key, value in metrics.items():
        if not math.isfinite(value) and not _is_uncertainty(key):
            raise GenbenchError(f"metric {key} is {value}; run not recorded as done")


def _is_uncertainty(key: str) -> bool:
    """Whether ``key`` is another value's declared uncertainty (a standard error or std)."""
    for spec in METRICS.in_order():
        column = spec.column_of(key)
        if column is not None:
            return any(c.error == column.key for c in spec.columns)
    return False


def failure_reason(exc: BaseException) -> str:
    """What a failed run's row says: a GenbenchError's own message, else the exception's type,
    message and the line it was raised at."""
    if isinstance(exc, GenbenchError):
        return str(exc)
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and not isinstance(exc, KeyboardInterrupt):
        reason += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return reason


def _headline(key: str) -> bool:
    """A metric key worth a place in the one-line log of a run: a shown column's."""
    columns = (spec.column_of(key) for spec in METRICS.in_order())
    return any(c is not None and c.shown and not (c.layers and key != c.key) for c in columns)


#: evaluation settings the sample-quality values of a run depend on (where files live aside)
QUALITY_SETTINGS = tuple(name for name in METRICS["sample_quality"].settings if name not in LOCATIONS)


def _needs_sample_quality(done: dict, settings) -> bool:
    """A finished run whose sample-quality metric was evaluated under other settings than the
    budget's now (typically: none, before the budget asked for samples)."""
    stored = json.loads(done["eval"])
    return settings.quality_samples > 0 and any(
        stored.get(name) != getattr(settings, name) for name in QUALITY_SETTINGS)


def _add_sample_quality(done: dict, settings, dataset, db: ResultsDB, warn=log) -> None:
    """Evaluate the sample-quality metric of a finished run from its final checkpoint (the
    weights its other metrics were computed with) and add it to the run's results; where that
    fails, the reason is recorded instead (the run stays done)."""
    started = time.perf_counter()
    skipped: dict[str, str] = {}
    try:
        model = load_for_scoring(Path(done["run_dir"]), None, {}, None).model.to(dataset.device)
        values = evaluate(model, dataset.eval_tensor("test"), settings, only=["sample_quality"],
                          dataset=dataset, skipped=skipped)
    except Exception as exc:  # its run directory is gone or unreadable: say so in the table
        if not isinstance(exc, GenbenchError):
            warn(traceback.format_exc().rstrip())
        values, skipped = {}, {"sample_quality": f"not added to the finished run: {failure_reason(exc)}"}
    stored = json.loads(done["eval"])
    recorded = {**stored, **{name: getattr(settings, name) for name in QUALITY_SETTINGS},
                "cache_root": settings.cache_root}
    if Path(done["run_dir"]).is_dir():
        write_evaluation(Path(done["run_dir"]), recorded)
    db.add_results(done["id"], "sample_quality", values, skipped.get("sample_quality"), recorded,
                   time.perf_counter() - started)
