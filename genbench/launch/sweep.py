"""A suite's runs as a sweep of jobs: plan against the database, submit, wait, collect.

``genbench run --suite S --launcher local|slurm`` plans every (run, seed) on this machine, the one
that holds the database: a run done already (in the database, or in a result file not yet
collected) is reused, one a live process trains (its database row or its run directory's owner)
is left to it, and the others become jobs (``genbench.launch.job``). Two launchers plan one after
the other (a lock on the sweeps folder), so they never submit the same run twice at once.

The sweep's record, ``RUNS_DIR/sweeps/ID/sweep.json``, names its runs, its jobs and their logs
(submitit's folder is beside it); ``genbench status`` reads it. The launcher waits for the jobs and
ingests each result as it lands, exactly once (``ResultsDB.ingest``); a launcher stopped early
loses nothing: ``genbench collect RUNS_DIR`` ingests what the jobs wrote since.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from genbench.context import LaunchOptions, RunContext, SuiteRequest
from genbench.core.errors import GenbenchError
from genbench.core.weights import atomic_write
from genbench.launch import executors
from genbench.launch.job import RunJob, RunSpec
from genbench.results.db import ResultsDB, now
from genbench.results.rundir import (
    clear_failed_result,
    describe_owner,
    owner_is_live,
    read_owner,
    read_result,
)
from genbench.runner import RunOutcome, ingest_result, locate_seed, say_outcome

SWEEPS = "sweeps"
MANIFEST = "sweep.json"
#: seconds between the launcher's looks at its jobs and their results, per launcher: local jobs
#: are a process poll and a file read (a run's result is taken up at once), Slurm's ask sacct
POLL_SECONDS = {"local": 0.2, "slurm": 2.0}


@dataclass
class Planned:
    """One (run, seed) of a sweep and what the plan does with it: submit, cached or busy."""

    spec: RunSpec
    action: str
    error: str | None = None


def sweeps_dir(runs_dir: Path) -> Path:
    return Path(runs_dir) / SWEEPS


@contextmanager
def planning_lock(runs_dir: Path):
    """One launcher at a time plans and submits into ``runs_dir`` (a blocking flock, held briefly)."""
    folder = sweeps_dir(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".plan.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system: the run directories' locks still hold
            pass
        yield
    finally:
        os.close(fd)


def plan(request: SuiteRequest, ctx: RunContext) -> list[Planned]:
    """Every (run, seed) of the request with what to do with it (see the module's docstring)."""
    from genbench.data import DATASETS

    db, options = ctx.db, ctx.launch
    ranks = max(1, executors.gpus_per_run(options))
    planned = []
    for entry in request.entries():
        shape = DATASETS[request.suite.dataset_of(entry)].shape
        for seed in request.seed_list():
            here = locate_seed(request, entry, seed, shape, ctx)
            run, run_dir = here.run, here.run_dir
            spec = RunSpec(request.suite_source(), request.dataset, request.budget.name, entry.name, seed,
                           run.key, str(run_dir.absolute()), str(ctx.runs_dir.absolute()), ctx.data_root,
                           options.device, ranks)
            if db.done_run(run.key) is not None or ingest_result(db, run_dir, run.key, ctx.warn):
                planned.append(Planned(spec, "cached"))
                continue
            holder = db.live_holder(run.key)
            owner = _owner(run_dir)
            if holder is not None:
                planned.append(Planned(spec, "busy", f"being trained by {holder.describe_holder()}; skipped"))
            elif owner_is_live(owner):
                planned.append(Planned(spec, "busy", f"being trained by {describe_owner(owner)}; skipped"))
            else:
                clear_failed_result(run_dir)  # an earlier try's: this sweep tries again
                planned.append(Planned(spec, "submit"))
    return planned


def _owner(run_dir: Path) -> dict | None:
    try:
        return read_owner(run_dir)
    except GenbenchError:
        return None


def submit(specs: list[RunSpec], options: LaunchOptions, folder: Path, job_name: str) -> list:
    """The sweep's jobs: one Slurm array task per run, or ``--workers`` local processes sharing the runs."""
    if options.launcher == "slurm":
        executor = executors.slurm_executor(folder, options, job_name)
        threads = executors.CPUS_PER_GPU
        specs = [replace(s, threads=threads) for s in specs]
        with executor.batch():
            jobs = [executor.submit(RunJob([spec])) for spec in specs]
        return jobs
    import torch

    workers = min(options.workers, len(specs))
    ranks = specs[0].ranks
    cuda = options.device != "cpu" and torch.cuda.is_available() and executors.gpus_per_run(options) > 0
    threads = executors.local_threads(workers, ranks)
    specs = [replace(s, threads=threads) for s in specs]
    executor = executors.local_executor(folder, options)
    jobs = []
    for worker in range(workers):
        if cuda:
            gpus = executors.local_gpus(worker, ranks)
            executor.update_parameters(visible_gpus=gpus, gpus_per_node=len(gpus))
        jobs.append(executor.submit(RunJob(specs)))
    return jobs


def new_sweep_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def write_manifest(folder: Path, manifest: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))


def run_sweep(request: SuiteRequest, ctx: RunContext, wait: bool = True,
              poll: float | None = None) -> tuple[list[RunOutcome], str]:
    """Plan, submit and (with ``wait``) wait for a sweep of the request's runs with the context's
    launcher, ingesting each result as it lands: (an outcome per run, as ``run_suite``'s, and the
    sweep's id). Submitted runs not waited for have the status ``submitted``."""
    db, options, runs_dir = ctx.db, ctx.launch, ctx.runs_dir
    sweep_id = new_sweep_id()
    folder = sweeps_dir(runs_dir) / sweep_id
    with planning_lock(runs_dir):
        planned = plan(request, ctx)
        to_submit = [p.spec for p in planned if p.action == "submit"]
        jobs_folder = folder / "jobs"
        jobs = submit(to_submit, options, jobs_folder, f"genbench-{request.suite.name}") if to_submit else []
        write_manifest(folder, _manifest(sweep_id, request, ctx, planned, jobs, jobs_folder))
    outcomes = {}
    for p in planned:
        if p.action == "cached":
            outcomes[p.spec.run_dir] = _cached(db, p.spec)
        elif p.action == "busy":
            outcomes[p.spec.run_dir] = RunOutcome(p.spec.name, p.spec.seed, "busy", {}, Path(p.spec.run_dir),
                                                  error=p.error)
        if p.action != "submit":
            say_outcome(outcomes[p.spec.run_dir], ctx.log, ctx.warn)
    if to_submit:
        where = "Slurm job array" if options.launcher == "slurm" else f"{len(jobs)} local worker(s)"
        ctx.warn(f"sweep {sweep_id}: {len(to_submit)} run(s) as {where}; see `genbench status --runs-dir "
             f"{runs_dir} --sweep {sweep_id}`")
    pending = [p.spec for p in planned if p.action == "submit"]
    if not wait:
        for spec in pending:
            outcomes[spec.run_dir] = RunOutcome(spec.name, spec.seed, "submitted", {}, Path(spec.run_dir))
    else:
        try:
            _wait(jobs, pending, outcomes, POLL_SECONDS[options.launcher] if poll is None else poll, ctx)
        except KeyboardInterrupt:
            if options.launcher == "slurm":
                ctx.warn(f"the launcher stopped; the jobs go on: `genbench collect {runs_dir}` ingests their "
                     "results")
            raise
    return [outcomes[p.spec.run_dir] for p in planned], sweep_id


def _manifest(sweep_id: str, request: SuiteRequest, ctx: RunContext, planned: list[Planned], jobs: list,
              jobs_folder: Path) -> dict:
    """The sweep's record (``sweep.json``): its runs, its jobs and their logs."""
    submitted = [p.spec for p in planned if p.action == "submit"]
    per_run = {}
    if ctx.launch.launcher == "slurm":  # one array task per run, in order
        per_run = {spec.run_dir: {"job_id": str(job.job_id), "log": str(job.paths.stdout)}
                   for spec, job in zip(submitted, jobs, strict=True)}
    return {"id": sweep_id, "created": now(), "created_at": time.time(), "launcher": ctx.launch.launcher,
            "suite": request.suite.name, "suite_source": request.suite_source(),
            "budget": request.budget.name, "db": str(ctx.db.path), "host": socket.gethostname(),
            "launcher_pid": os.getpid(),
            "jobs_folder": str(jobs_folder.absolute()),
            "jobs": [{"job_id": str(job.job_id), "log": str(job.paths.stdout)} for job in jobs],
            "runs": [{"name": p.spec.name, "seed": p.spec.seed, "key": p.spec.key, "run_dir": p.spec.run_dir,
                      "planned": p.action, **per_run.get(p.spec.run_dir, {})} for p in planned]}


def _cached(db: ResultsDB, spec: RunSpec) -> RunOutcome:
    done = db.done_run(spec.key)
    return RunOutcome(spec.name, spec.seed, "cached", done.metrics, Path(done.run_dir))


def _wait(jobs: list, pending: list[RunSpec], outcomes: dict, poll: float, ctx: RunContext) -> None:
    """Until every job has ended: ingest each run's result as it lands (a done one, or a failure)."""
    db, log, warn = ctx.db, ctx.log, ctx.warn
    left = list(pending)
    while left:
        ended = all(job.done() for job in jobs)
        for spec in list(left):
            outcome = _landed(db, spec)
            if outcome is not None:
                outcomes[spec.run_dir] = outcome
                say_outcome(outcome, log, warn)
                left.remove(spec)
        if ended:
            break
        time.sleep(poll)
    for spec in left:  # no result: another process holds the run, or its job ended without one
        owner = _owner(Path(spec.run_dir))
        if owner_is_live(owner):
            outcome = RunOutcome(spec.name, spec.seed, "busy", {}, Path(spec.run_dir),
                                 error=f"being trained by {describe_owner(owner)}; skipped")
        else:
            logs = ", ".join(sorted({str(job.paths.stdout) for job in jobs}))
            outcome = RunOutcome(spec.name, spec.seed, "failed", {}, Path(spec.run_dir),
                                 error=f"its job ended without a result (see {logs})")
        outcomes[spec.run_dir] = outcome
        say_outcome(outcome, log, warn)


def _landed(db: ResultsDB, spec: RunSpec) -> RunOutcome | None:
    """The outcome of a run whose result file is there (recorded in the database now, once), else None."""
    try:
        found = read_result(Path(spec.run_dir))
    except GenbenchError:
        return None  # being replaced, or not ours: looked at again at the next poll
    if found is None or found[0].key != spec.key:
        done = db.done_run(spec.key)  # collected by another launcher from a result since replaced
        return None if done is None else _cached(db, spec)
    run, finished, _ = found
    db.ingest(run, finished)
    if finished.status == "done":
        return RunOutcome(spec.name, spec.seed, "done", db.done_run(spec.key).metrics, Path(spec.run_dir))
    return RunOutcome(spec.name, spec.seed, "failed", {}, Path(spec.run_dir), error=finished.error)
