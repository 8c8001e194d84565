"""Running a suite: train every (run, seed), evaluate it, record it, render the leaderboard.

What to run comes as a ``SuiteRequest`` and how and where as a ``RunContext`` (``genbench.context``:
the database, the runs folder, the device, logging, the ensemble mode decided once). A run's
identity (``genbench.train.identity.RunIdentity``) names its database row, its run directory and
its checkpoint. A run already done is not repeated; an unfinished one resumes
from the checkpoint in its run directory.

Each run is claimed in the database before it trains (``ResultsDB.claim_run``): a run a live
process holds is skipped, one whose owner died is taken over, so several ``genbench run`` of
one suite share its runs. The run directory's lock (``genbench.results.rundir``) keeps out the
processes that do not use the database (sweep jobs); a run such a job finished is ingested from
its ``result.json``, not trained again, and every run finished here writes one too. Whatever goes
wrong in one run (an exception of any kind, weights or a metric that are not finite) fails that
run with its reason and the suite goes on; an interrupt fails the run it was in and stops the suite.

Under ``torchrun`` every rank trains and evaluates its shard of each run; rank 0 alone claims,
locks and records (its decisions are broadcast), writes checkpoints, pictures and result files,
and the others wait for it. A failure every rank sees at the same step (a loss that is not finite:
the loop all-reduces it; non-finite weights or metrics, identical on every rank) fails the run on
every rank; any other exception ends the process, and torchrun then stops every rank.
"""

from __future__ import annotations

import math
import time
import traceback
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from genbench.context import RunContext, SuiteRequest
from genbench.core.distributed import (
    any_rank,
    backend,
    broadcast,
    is_main,
    main_first,
    rank_and_world,
    same_on_every_rank,
)
from genbench.core.errors import GenbenchError, TrainingDiverged, log
from genbench.core.models import MODELS, config_dict
from genbench.data import load_dataset
from genbench.metrics.registry import METRICS, EvalSettings, evaluate
from genbench.metrics.sample_quality import curve_monitor
from genbench.report.nearest import save_nearest_figure
from genbench.results.db import Claim, Lease, ResultsDB
from genbench.results.pictures import save_pictures
from genbench.results.rows import RunRecord, UnreadableRun, is_uncertainty
from genbench.results.rundir import (
    RunDirLock,
    describe_owner,
    finished_run,
    holding,
    read_owner,
    read_result,
    write_result,
)
from genbench.scoring import load_for_scoring, write_evaluation
from genbench.suites import SUITES, Budget, RunEntry, Suite, parse_suite
from genbench.train.callbacks import Callback, QualityMonitor, watches_samples
from genbench.train.checkpoint import FILENAME as CHECKPOINT
from genbench.train.ensemble import ensemble_applies, train_ensemble
from genbench.train.identity import LOCATIONS, RunIdentity
from genbench.train.loop import TrainConfig, TrainResult, train


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


def load_suite(name: str) -> Suite:
    """A built-in suite by name, or a suite file of one's own (``--suite path/to/suite.toml``)."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise GenbenchError(f"--suite {name}: no such suite file")
        return parse_suite(path.read_text(), str(path))
    return SUITES[name]


def world() -> tuple[int, str]:
    """(world size, backend) of this process: what a run's row, checkpoint and result record."""
    return rank_and_world()[1], backend()


def run_identity(suite: Suite, entry: RunEntry, seed: int, budget: Budget, data_shape) -> RunIdentity:
    """The identity of one (run, seed) of a suite under a budget (the run's own overrides applied)."""
    config = config_dict(MODELS[entry.model].make_config(entry.config))
    train_cfg = suite.train_config(budget, seed, entry)
    # the Monte Carlo noise follows the run seed; the points scored (points_seed) do not
    settings = replace(suite.budget_for(entry, budget).eval, seed=seed)
    return RunIdentity(suite.name, entry.name, entry.model, config, suite.dataset_of(entry),
                       tuple(data_shape), budget.name, asdict(train_cfg), asdict(settings))


@dataclass(frozen=True)
class Located:
    """A run with its directory and its evaluation settings, the data root filled in (where the data
    live is no part of the key)."""

    run: RunIdentity
    run_dir: Path
    settings: EvalSettings


def locate(run: RunIdentity, runs_dir: Path, data_root: str | None) -> Located:
    settings = replace(EvalSettings(**run.eval), cache_root=data_root)
    run = replace(run, eval=asdict(settings))
    return Located(run, run.run_dir(runs_dir), settings)


def locate_seed(request: SuiteRequest, entry: RunEntry, seed: int, data_shape, ctx: RunContext) -> Located:
    """One (run, seed) of the request, located in the context's runs folder."""
    run = run_identity(request.suite, entry, seed, request.budget, data_shape)
    return locate(run, ctx.runs_dir, ctx.data_root)


def run_suite(request: SuiteRequest, ctx: RunContext) -> list[RunOutcome]:
    """Every (run, seed) of the request, in order: one line each through ``ctx.log``; skipped,
    taken-over and lost runs, and the tracebacks of unexpected failures, through ``ctx.warn``
    (stderr). Under torchrun every rank calls it (only rank 0 logs)."""
    datasets = {}
    outcomes = []
    for entry in request.entries():
        name = request.suite.dataset_of(entry)
        if name not in datasets:
            datasets.clear()  # one data set in memory at a time (dSprites is 3 GB)
            with main_first():  # rank 0 downloads it; the others read what it wrote
                datasets[name] = load_dataset(name, ctx.data_root, ctx.device)
        for outcome in run_seeds(request, entry, datasets[name], ctx):
            if is_main():
                say_outcome(outcome, ctx.log, ctx.warn)
            outcomes.append(outcome)
    return outcomes


def run_seeds(request: SuiteRequest, entry: RunEntry, dataset, ctx: RunContext):
    """The outcomes of one run's seeds, each as it is ready: trained together as one vectorised
    ensemble (``genbench.train.ensemble``) where there are several, they can be and the context's
    ensemble mode says so, else one by one."""
    seeds = request.seed_list()
    verdict = None
    if len(seeds) > 1:
        verdict = ctx.seeds_apart
        if verdict is None:
            members = [locate_seed(request, entry, seed, dataset.shape, ctx) for seed in seeds]
            models = _models(members, dataset)
            verdict = ensemble_applies(models, dataset, [TrainConfig(**m.run.train) for m in members])
    if verdict:
        yield from _run_as_ensemble(members, models, dataset, ctx)
        return
    if verdict is not None and is_main():
        ctx.log(f"[one by one] {entry.name}: its {len(seeds)} seeds train one after another "
                f"({verdict.reason})")
    for seed in seeds:
        yield run_one(locate_seed(request, entry, seed, dataset.shape, ctx), dataset, ctx)


def _models(members: list[Located], dataset) -> list[torch.nn.Module]:
    """Each seed's model as ``train_and_evaluate`` builds it."""
    models = []
    for member in members:
        torch.manual_seed(member.run.seed)
        models.append(MODELS[member.run.model].build(member.run.config, dataset.shape))
    return models


def say_outcome(outcome: RunOutcome, log=log, warn=log) -> None:
    """A run's one line: ``[status] name seed N: its headline metrics`` (or why it is not done);
    runs left to other processes through ``warn``."""
    shown = ", ".join(f"{k} {v:.2f}" for k, v in outcome.metrics.items() if _headline(k))
    say = warn if outcome.status in ("busy", "lost") else log
    say(f"[{outcome.status}] {outcome.name} seed {outcome.seed}: {outcome.error or shown}")


@dataclass(frozen=True)
class _Plan:
    """What rank 0 decided for a run (the others are told): busy (skip), train (``claim``), cached
    (``done``) or failed (its done row cannot be read)."""

    action: str
    claim: Claim | None = None
    done: RunRecord | None = None
    error: str | None = None


def run_one(here: Located, dataset, ctx: RunContext) -> RunOutcome:
    """Train, evaluate and record one (run, seed), unless it is done (then its results are reused,
    with sample quality added where the budget now asks for it) or a live process holds it."""
    lock = RunDirLock(here.run_dir)
    try:
        plan = broadcast(_plan(here, lock, ctx) if is_main() else None)
        if plan.action == "train":
            outcome = _train_and_record(here, dataset, plan.claim, ctx)
        else:
            outcome = _not_trained(here, plan, dataset, ctx)
    finally:
        lock.release()
    if not same_on_every_rank(outcome.status):
        raise GenbenchError(f"the ranks disagree on how run {here.run.name} seed {here.run.seed} ended; "
                            "stopped")
    return outcome


def _outcome(here: Located, status: str, metrics: dict[str, float] | None = None,
             error: str | None = None) -> RunOutcome:
    return RunOutcome(here.run.name, here.run.seed, status, metrics or {}, here.run_dir, error=error)


def _not_trained(here: Located, plan: _Plan, dataset, ctx: RunContext) -> RunOutcome:
    """A run left to another process (busy), one whose done row cannot be read (failed), or one done
    before (cached: later metrics added)."""
    if plan.action in ("busy", "failed"):
        return _outcome(here, plan.action, error=plan.error)
    done = plan.done
    due = _later_metrics_due(done, here.settings)
    for metric in due:
        done = _add_later_metric(metric, done, here.settings, dataset, ctx)
    if due and is_main():
        done = ctx.db.done_run(done.run_key)  # with the metrics added
    return RunOutcome(here.run.name, here.run.seed, "cached", done.metrics if is_main() else {},
                      Path(done.run_dir))


def _run_as_ensemble(members: list[Located], models, dataset, ctx: RunContext):
    """Claim every seed of the run, train the claimed ones as one ensemble (each into its own run
    directory and checkpoint, so each resumes alone too), then evaluate and record each as
    ``run_one`` does. Only where ``ensemble_applies``: one process, no torchrun."""
    locks = [RunDirLock(member.run_dir) for member in members]
    try:
        plans = [_plan(member, lock, ctx) for member, lock in zip(members, locks, strict=True)]
        claimed = [i for i, plan in enumerate(plans) if plan.action == "train"]
        with ExitStack() as held:
            leases = {i: held.enter_context(ctx.db.holding(plans[i].claim.run_id)) for i in claimed}
            for i in claimed:
                held.enter_context(holding(members[i].run_dir, ctx.db.owner))
            trained = {}
            if len(claimed) > 1:
                trained = _train_members([members[i] for i in claimed], [models[i] for i in claimed], dataset,
                                         [plans[i].claim for i in claimed], ctx)
                trained = dict(zip(claimed, trained, strict=True))
            for i, member in enumerate(members):
                if plans[i].action != "train":
                    yield _not_trained(member, plans[i], dataset, ctx)
                    continue
                yield _evaluate_and_record(member, dataset, plans[i].claim, ctx, leases[i], trained.get(i))
    finally:
        for lock in locks:
            lock.release()


def _train_members(members: list[Located], models, dataset, claims: list[Claim],
                   ctx: RunContext) -> list[TrainResult | Exception]:
    """The claimed seeds trained as one ensemble: each member's result, or the exception that
    fails it (the ensemble's own failure fails them all; an interrupt fails them all and goes on up)."""
    runs = [member.run for member in members]
    metas = [{**run.checkpoint_meta(), "world_size": 1, "backend": backend()} for run in runs]
    seeds = ", ".join(str(run.seed) for run in runs)
    ctx.log(f"[ensemble] {runs[0].name} seeds {seeds}: trained together as one vectorised ensemble")
    try:
        results = train_ensemble(models, dataset, [TrainConfig(**run.train) for run in runs],
                                 [member.run_dir for member in members], metas, progress=ctx.progress)
    except Exception as exc:  # noqa: BLE001 (recorded as each member's failure)
        return [exc] * len(runs)
    except BaseException as exc:
        for claim in claims:
            ctx.db.fail_run(claim.run_id, failure_reason(exc))
        raise
    done = next((r for r in results if isinstance(r, TrainResult)), None)
    if done is not None:
        ctx.log(f"[ensemble] {runs[0].name} seeds {seeds}: {len(runs)} members trained in "
                f"{done.seconds:.0f} s")
    return results


def _plan(here: Located, lock: RunDirLock, ctx: RunContext) -> _Plan:
    """Rank 0: what to do with the run (``_decide``); one whose done row cannot be read fails with
    why, and the suite goes on."""
    try:
        return _decide(here, lock, ctx)
    except UnreadableRun as exc:
        return _Plan("failed", error=str(exc))


def _decide(here: Located, lock: RunDirLock, ctx: RunContext) -> _Plan:
    """Reuse the run where it is done (in the database, or in a result file a sweep job left), else
    lock its directory and claim its row, unless another process holds either."""
    db, run, run_dir = ctx.db, here.run, here.run_dir
    done = db.done_run(run.key)
    if done is None and ingest_result(db, run_dir, run.key, ctx.warn):  # a sweep job finished it
        done = db.done_run(run.key)
    if done is None:
        if not lock.acquire():
            return _Plan("busy", error=f"being trained by {_holder_of(run_dir)}; skipped")
        claim = db.claim_run(run, run_dir, str(ctx.device), world())
        if claim.status == "busy":
            return _Plan("busy", error=f"being trained by {claim.describe_holder()}; skipped")
        if claim.status == "claimed":
            if claim.taken_over:
                start = "resuming its checkpoint" if (run_dir / CHECKPOINT).exists() else "no checkpoint yet"
                ctx.warn(f"[takeover] {run.name} seed {run.seed}: its owner {claim.describe_holder()} is "
                         f"gone; {start}")
            return _Plan("train", claim=claim)
        done = db.done_run(run.key)  # finished by another process since
    return _Plan("cached", done=done)


def ingest_result(db: ResultsDB, run_dir: Path, key: str | None = None, warn=log) -> bool:
    """Record the done result file of a run directory in the database (once: False where there is
    none, it is of another run than ``key``, or the run is recorded already)."""
    try:
        found = read_result(run_dir)
    except GenbenchError as exc:
        warn(f"warning: {exc}")
        return False
    if found is None or found[1].status != "done" or (key is not None and found[0].key != key):
        return False
    return db.ingest(found[0], found[1])


def _holder_of(run_dir: Path) -> str:
    try:
        return describe_owner(read_owner(run_dir))
    except GenbenchError:
        return "another process"


def _train_and_record(here: Located, dataset, claim: Claim, ctx: RunContext) -> RunOutcome:
    """A claimed run, heartbeat beating: trained, evaluated and recorded done, or failed with its
    reason whatever went wrong. An interrupt (or SystemExit) fails it too, and goes on up."""
    main = is_main()
    with ctx.db.holding(claim.run_id) if main else nullcontext(None) as lease, \
            holding(here.run_dir, ctx.db.owner) if main else nullcontext():
        return _evaluate_and_record(here, dataset, claim, ctx, lease)


def _evaluate_and_record(here: Located, dataset, claim: Claim, ctx: RunContext, lease: Lease | None,
                         pretrained: TrainResult | Exception | None = None) -> RunOutcome:
    """``_train_and_record`` inside the run's heartbeats; ``pretrained``: the run trained already
    (as an ensemble member), or the exception that failed it there."""
    main, db, run, run_dir = is_main(), ctx.db, here.run, here.run_dir
    device = str(dataset.device)
    try:
        if isinstance(pretrained, Exception):
            raise pretrained
        trained = train_and_evaluate(here, dataset, [StopWhenTakenOver(lease, dataset.device)],
                                     ctx.progress and main, pretrained)
        recorded = True
        if main:
            write_result(run_dir, run, trained.finished(run_dir, device, db.owner), extra=trained.extra())
            recorded = db.finish_run(claim.run_id, trained.metrics, trained.result.seconds,
                                     trained.eval_seconds, trained.skipped, trained.result.curve)
        if not broadcast(recorded):
            return _lost(here)
    except Exception as exc:
        if not isinstance(exc, GenbenchError):  # a bug or a broken environment: show where
            ctx.warn(traceback.format_exc().rstrip())
        reason = failure_reason(exc)
        recorded = True
        if main:
            write_result(run_dir, run, finished_run("failed", run_dir, device, db.owner, world(),
                                                    error=reason))
            recorded = db.fail_run(claim.run_id, reason)
        if rank_and_world()[1] > 1 and not isinstance(exc, GenbenchError):
            raise  # this rank's own failure: the process ends and torchrun stops every rank
        if not broadcast(recorded):
            return _lost(here)
        return _outcome(here, "failed", error=reason)
    except BaseException as exc:
        if main:
            db.fail_run(claim.run_id, failure_reason(exc))
        raise
    return _outcome(here, "done", trained.metrics)


def _lost(here: Located) -> RunOutcome:
    return _outcome(here, "lost", error="another process took this run over")


@dataclass
class Trained:
    """A run trained and evaluated: its metrics, why applicable metrics were skipped, the training's
    result and the evaluation's seconds."""

    metrics: dict[str, float]
    skipped: dict[str, str]
    result: TrainResult
    eval_seconds: float

    def finished(self, run_dir: Path, device: str, producer: str):
        """The done outcome, for the run's result file."""
        return finished_run("done", run_dir, device, producer, world(), metrics=self.metrics,
                            skipped=self.skipped, curve=self.result.curve, train_seconds=self.result.seconds,
                            eval_seconds=self.eval_seconds)

    def extra(self) -> dict:
        return {"steps": self.result.steps, "resumed_from": self.result.resumed_from}


def train_and_evaluate(here: Located, dataset, callbacks: list[Callback] = (), progress: bool = True,
                       pretrained: TrainResult | None = None) -> Trained:
    """Train (resuming its checkpoint) and evaluate one run, on every rank (each its shard); rank 0
    writes the pictures and the evaluation record. Weights or metric values that are not finite raise.
    ``pretrained``: the run was trained to its end already (an ensemble member): its checkpoint is
    loaded and that training's result is the one recorded."""
    run, run_dir, settings = here.run, here.run_dir, here.settings
    torch.manual_seed(run.seed)
    model = MODELS[run.model].build(run.config, dataset.shape)
    callbacks = list(callbacks)
    monitor = curve_monitor(dataset, settings) if watches_samples(model) else None
    if monitor is not None:
        callbacks.append(QualityMonitor(monitor))
    size, kind = world()
    meta = {**run.checkpoint_meta(), "world_size": size, "backend": kind}
    result = train(model, dataset, TrainConfig(**run.train), run_dir, meta, progress=progress,
                   callbacks=callbacks)
    if pretrained is not None:
        result = pretrained
    check_finite_weights(model)
    started = time.perf_counter()
    torch.manual_seed(run.seed)
    test = dataset.eval_tensor("test")
    skipped: dict[str, str] = {}
    metrics = evaluate(model, test, settings, dataset=dataset, skipped=skipped)
    check_finite_metrics(metrics)
    eval_seconds = time.perf_counter() - started
    if is_main():
        save_pictures(model, test, run_dir, seed=run.seed)
        save_nearest_figure(model, dataset, settings, run_dir)
        write_evaluation(run_dir, asdict(settings))
    # bookkeeping: early stopping
    return Trained(metrics | result.bookkeeping(), skipped, result, eval_seconds)


class StopWhenTakenOver(Callback):
    """Ends training at the next step once the run's lease is lost (another process took the run
    over), rather than training on beside it. Under torchrun only rank 0 holds the lease: the ranks
    agree on it every ``EVERY`` steps (a collective) and stop together."""

    name = "ownership"
    EVERY = 100

    def __init__(self, lease: Lease | None, device: torch.device | str = "cpu"):
        self.lease, self.device = lease, device

    def on_step_end(self, state, losses) -> None:
        lost = self.lease is not None and self.lease.lost.is_set()
        if rank_and_world()[1] > 1:
            if state.step % self.EVERY:
                return
            lost = any_rank(lost, self.device)
        if lost:
            raise RunTakenOver(f"another process took this run over at step {state.step}")


def check_finite_weights(model: torch.nn.Module) -> None:
    """Refuse weights that are not finite after training (a last step can overflow though the
    loss checked before it was finite): evaluating them would crash or record nonsense."""
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise TrainingDiverged(f"parameter {name} has {bad} non-finite value(s) after training; "
                                   "run stopped")


def check_finite_metrics(metrics: dict[str, float], outcome: str = "run not recorded as done") -> None:
    """Refuse a metric value that is not finite (an uncertainty may be NaN: one seed, one point);
    ``outcome`` says what became of the result."""
    for key, value in metrics.items():
        if not math.isfinite(value) and not is_uncertainty(key):
            raise GenbenchError(f"metric {key} is {value}; {outcome}")


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


#: metrics a finished run adds later from its final checkpoint, each with the setting that asks for it
#: (their settings are no part of the run key: ``genbench.train.identity.ADDABLE_LATER``)
LATER_METRICS = {"sample_quality": "quality_samples", "ais": "ais_steps"}


def _later_settings(metric: str) -> tuple[str, ...]:
    """The evaluation settings a later metric's values depend on (where files live aside)."""
    return tuple(name for name in METRICS[metric].settings if name not in LOCATIONS)


def _later_metrics_due(done: RunRecord, settings) -> list[str]:
    """The later metrics of a finished run the budget asks for, evaluated under other settings than
    the budget's now (typically: none, before the budget asked for them)."""
    stored = done.eval
    return [metric for metric, switch in LATER_METRICS.items()
            if getattr(settings, switch) > 0
            and any(stored.get(name) != getattr(settings, name) for name in _later_settings(metric))]


def _add_later_metric(metric: str, done: RunRecord, settings: EvalSettings, dataset,
                      ctx: RunContext) -> RunRecord:
    """Evaluate one later metric of a finished run from its final checkpoint (the weights its other
    metrics were computed with) and add it to the run's results; where that fails, the reason is
    recorded instead (the run stays done). Under torchrun every rank evaluates it and rank 0 records
    it. The run with its evaluation settings now."""
    started = time.perf_counter()
    skipped: dict[str, str] = {}
    try:
        model = load_for_scoring(Path(done.run_dir), None, {}, None).model.to(dataset.device)
        values = evaluate(model, dataset.eval_tensor("test"), settings, only=[metric],
                          dataset=dataset, skipped=skipped)
    except Exception as exc:  # its run directory is gone or unreadable: say so in the table
        if not isinstance(exc, GenbenchError):
            ctx.warn(traceback.format_exc().rstrip())
        values, skipped = {}, {metric: f"not added to the finished run: {failure_reason(exc)}"}
    recorded = {**done.eval, **{name: getattr(settings, name) for name in _later_settings(metric)},
                "cache_root": settings.cache_root}
    if is_main():
        if Path(done.run_dir).is_dir():
            write_evaluation(Path(done.run_dir), recorded)
        ctx.db.add_results(done.id, metric, values, skipped.get(metric), recorded,
                           time.perf_counter() - started)
    return replace(done, eval=recorded)
