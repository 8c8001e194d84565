"""Running a suite: train every (run, seed), evaluate it, record it, render the leaderboard.

A run's identity (its key) is a hash of suite, model, hyperparameters, data set, training
config, budget and seed. A run already done is not repeated; an unfinished one resumes from
the checkpoint in its run directory.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from genbench.data import load_dataset
from genbench.errors import GenbenchError, TrainingDiverged
from genbench.metrics.registry import evaluate
from genbench.metrics.sample_quality import curve_monitor
from genbench.protocols import EpochCallback, Sampler
from genbench.results.curves import read_curve
from genbench.results.db import ResultsDB, RunSpec
from genbench.results.pictures import save_pictures
from genbench.scoring import load_for_scoring
from genbench.suites import Budget, RunEntry, Suite
from genbench.train.loop import train
from zoo import MODELS
from zoo.registry import config_dict


@dataclass
class RunOutcome:
    name: str
    seed: int
    status: str  # done | cached | failed
    metrics: dict[str, float]
    run_dir: Path
    error: str | None = None


#: budget fields that only add metrics a finished run can compute later from its checkpoint
#: (sample quality): left out of the key, so asking for them never retrains a run
ADDABLE_LATER = ("quality_samples",)


def run_key(suite: Suite, entry: RunEntry, config: dict, train_cfg: dict, budget: Budget) -> str:
    ident = {"suite": suite.name, "name": entry.name, "model": entry.model, "config": config,
             "dataset": suite.dataset_of(entry), "train": train_cfg,
             "budget": {k: v for k, v in asdict(budget).items() if k not in ADDABLE_LATER}}
    evaluation = {k: v for k, v in entry.budgets.get(budget.name, {}).items()
                  if k != "epochs" and k not in ADDABLE_LATER}
    if evaluation:  # epochs are already in the training config
        ident["eval"] = evaluation
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


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
            shown = ", ".join(f"{k} {v:.2f}" for k, v in outcome.metrics.items()
                              if k in ("nll", "elbo", "active_units", "is_lenet", "fid_lenet"))
            log(f"[{outcome.status}] {entry.name} seed {seed}: {outcome.error or shown}")
            outcomes.append(outcome)
    return outcomes


def run_one(suite: Suite, entry: RunEntry, seed: int, budget: Budget, dataset, db: ResultsDB,
            runs_dir: Path, device: torch.device, progress: bool = True,
            data_root: str | None = None) -> RunOutcome:
    model_entry = MODELS[entry.model]
    config = config_dict(model_entry.make_config(entry.config))
    train_cfg = suite.train_config(budget, seed, entry)
    key = run_key(suite, entry, config, asdict(train_cfg), budget)
    run_dir = runs_dir / suite.name / budget.name / f"{entry.name}-seed{seed}-{key[:8]}"
    settings = replace(suite.budget_for(entry, budget).eval_settings(), cache_root=data_root)
    done = db.done_run(key)
    if done is not None:
        if _needs_sample_quality(done, settings):
            _add_sample_quality(done, settings, dataset, db)
        return RunOutcome(entry.name, seed, "cached", db.metrics(done["id"]), Path(done["run_dir"]))
    spec = RunSpec(run_key=key, suite=suite.name, name=entry.name, model=entry.model,
                   dataset=suite.dataset_of(entry), config=config, seed=seed, budget=budget.name,
                   train=asdict(train_cfg), eval=asdict(settings), run_dir=str(run_dir), device=str(device))
    run_id = db.start_run(spec)
    try:
        torch.manual_seed(seed)
        model = model_entry.build(config, dataset.shape)
        meta = {"name": entry.name, "model": entry.model, "config": config,
                "dataset": suite.dataset_of(entry), "data_shape": list(dataset.shape), "suite": suite.name,
                "budget": budget.name}
        curve_wanted = isinstance(model, EpochCallback) and isinstance(model, Sampler)
        monitor = curve_monitor(dataset, settings) if curve_wanted else None
        result = train(model, dataset, train_cfg, run_dir, meta, progress=progress, monitor=monitor)
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
    if result.best_epoch is not None:  # early stopping: how much training the numbers had
        metrics |= {"epochs_trained": result.epochs_trained, "best_epoch": float(result.best_epoch)}
    db.finish_run(run_id, metrics, result.seconds, eval_seconds, skipped, read_curve(run_dir))
    return RunOutcome(entry.name, seed, "done", metrics, run_dir)


#: evaluation settings the sample-quality values of a run depend on
QUALITY_SETTINGS = ("quality_samples", "quality_reference", "quality_split", "features", "seed")


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
    db.add_results(done["id"], "sample_quality", values, skipped.get("sample_quality"),
                   {**stored, **{name: getattr(settings, name) for name in QUALITY_SETTINGS},
                    "cache_root": settings.cache_root}, time.perf_counter() - started)
