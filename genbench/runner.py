"""Running a suite: train every (run, seed), evaluate it, record it, render the leaderboard.

A run's identity (``genbench.train.identity.RunIdentity``) names its database row, its run
directory and its checkpoint. A run already done is not repeated; an unfinished one resumes
from the checkpoint in its run directory.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from genbench.core.errors import GenbenchError, TrainingDiverged
from genbench.core.models import MODELS, config_dict
from genbench.data import load_dataset
from genbench.metrics.registry import METRICS, EvalSettings, evaluate
from genbench.metrics.sample_quality import curve_monitor
from genbench.results.db import ResultsDB
from genbench.results.pictures import save_pictures
from genbench.scoring import load_for_scoring, write_evaluation
from genbench.suites import Budget, RunEntry, Suite
from genbench.train.callbacks import QualityMonitor, watches_samples
from genbench.train.identity import LOCATIONS, RunIdentity
from genbench.train.loop import TrainConfig, train


@dataclass
class RunOutcome:
    name: str
    seed: int
    status: str  # done | cached | failed
    metrics: dict[str, float]
    run_dir: Path
    error: str | None = None


def run_identity(suite: Suite, entry: RunEntry, seed: int, budget: Budget, data_shape) -> RunIdentity:
    """The identity of one (run, seed) of a suite under a budget (the run's own overrides applied)."""
    config = config_dict(MODELS[entry.model].make_config(entry.config))
    train_cfg = suite.train_config(budget, seed, entry)
    settings = replace(suite.budget_for(entry, budget).eval, seed=seed)  # evaluation noise follows the seed
    return RunIdentity(suite.name, entry.name, entry.model, config, suite.dataset_of(entry),
                       tuple(data_shape), budget.name, asdict(train_cfg), asdict(settings))


def run_suite(suite: Suite, budget: Budget, db: ResultsDB, runs_dir: Path, device: torch.device,
              data_root: str | None = None, only: list[str] | None = None,
              seeds: int | None = None, progress: bool = True, log=print) -> list[RunOutcome]:
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
            outcome = run_one(suite, entry, seed, budget, dataset, db, runs_dir, device, progress, data_root)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in outcome.metrics.items() if _headline(k))
            log(f"[{outcome.status}] {entry.name} seed {seed}: {outcome.error or shown}")
            outcomes.append(outcome)
    return outcomes


def run_one(suite: Suite, entry: RunEntry, seed: int, budget: Budget, dataset, db: ResultsDB,
            runs_dir: Path, device: torch.device, progress: bool = True,
            data_root: str | None = None) -> RunOutcome:
    run = run_identity(suite, entry, seed, budget, dataset.shape)
    run_dir = run.run_dir(runs_dir)
    settings = replace(EvalSettings(**run.eval), cache_root=data_root)
    done = db.done_run(run.key)
    if done is not None:
        if _needs_sample_quality(done, settings):
            _add_sample_quality(done, settings, dataset, db)
        return RunOutcome(entry.name, seed, "cached", db.metrics(done["id"]), Path(done["run_dir"]))
    run_id = db.start_run(replace(run, eval=asdict(settings)), run_dir, str(device))
    try:
        torch.manual_seed(seed)
        model = MODELS[entry.model].build(run.config, dataset.shape)
        callbacks = []
        monitor = curve_monitor(dataset, settings) if watches_samples(model) else None
        if monitor is not None:
            callbacks.append(QualityMonitor(monitor))
        result = train(model, dataset, TrainConfig(**run.train), run_dir, run.checkpoint_meta(),
                       progress=progress, callbacks=callbacks)
        started = time.perf_counter()
        torch.manual_seed(seed)
        test = dataset.eval_tensor("test")
        skipped: dict[str, str] = {}
        metrics = evaluate(model, test, settings, dataset=dataset, skipped=skipped)
        eval_seconds = time.perf_counter() - started
        save_pictures(model, test, run_dir, seed=seed)
    except (TrainingDiverged, GenbenchError) as exc:
        db.fail_run(run_id, str(exc))
        return RunOutcome(entry.name, seed, "failed", {}, run_dir, error=str(exc))
    except BaseException as exc:
        db.fail_run(run_id, f"{type(exc).__name__}: {exc}")
        raise
    metrics |= result.bookkeeping()  # with early stopping: how much training the numbers had
    write_evaluation(run_dir, asdict(settings))
    db.finish_run(run_id, metrics, result.seconds, eval_seconds, skipped, result.curve)
    return RunOutcome(entry.name, seed, "done", metrics, run_dir)


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


def _add_sample_quality(done: dict, settings, dataset, db: ResultsDB) -> None:
    """Evaluate the sample-quality metric of a finished run from its final checkpoint (the
    weights its other metrics were computed with) and add it to the run's results."""
    started = time.perf_counter()
    skipped: dict[str, str] = {}
    try:
        model = load_for_scoring(Path(done["run_dir"]), None, {}, None).model.to(dataset.device)
        values = evaluate(model, dataset.eval_tensor("test"), settings, only=["sample_quality"],
                          dataset=dataset, skipped=skipped)
    except GenbenchError as exc:  # its run directory is gone or unreadable: say so in the table
        values, skipped = {}, {"sample_quality": f"not added to the finished run: {exc}"}
    stored = json.loads(done["eval"])
    recorded = {**stored, **{name: getattr(settings, name) for name in QUALITY_SETTINGS},
                "cache_root": settings.cache_root}
    if Path(done["run_dir"]).is_dir():
        write_evaluation(Path(done["run_dir"]), recorded)
    db.add_results(done["id"], "sample_quality", values, skipped.get("sample_quality"), recorded,
                   time.perf_counter() - started)
