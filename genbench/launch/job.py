"""The job of a sweep: train runs into their run directories, away from the database.

A ``RunJob`` is what submitit runs: a Slurm array task holds one run, a local worker every run of
its sweep (it takes each one whose directory no other worker has locked, so W workers share the
runs as they come). A job never opens the SQLite database: each run's outcome goes into its run
directory's ``result.json``, atomically, for the launcher or ``genbench collect`` to ingest.

A run of several GPUs (``ranks`` > 1) runs under torchrun inside the job: ``python -m
torch.distributed.run --standalone --nproc-per-node G -m genbench.launch.job SPEC``, this module's
main, one rank per GPU (gloo ranks on CPU).

Preempted or timed out, Slurm (and the local executor, for tests) signals the job; submitit calls
``RunJob.checkpoint``, which stops a torchrun child and returns the same job to requeue. The
requeued job skips the runs that are done and resumes the others from genbench's own checkpoint
in their run directories (written every ``checkpoint_every`` steps), to the same parameters as an
uninterrupted run (training is deterministic given the step: ``genbench.train.loop``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genbench.core.distributed import barrier, broadcast, is_main, main_first, rank_and_world
from genbench.core.errors import GenbenchError, log
from genbench.results.rundir import RunDirLock, finished_run, holding, result_status, write_result

#: what a job says of each run it was given
STATUSES = ("done", "done already", "busy", "failed", "error")


@dataclass(frozen=True)
class RunSpec:
    """One (run, seed) of a suite, as plain values a job can be given (pickled by submitit, or JSON on
    the command line of a torchrun child)."""

    suite: str
    """A built-in suite's name or the absolute path of a suite file."""
    dataset: str | None
    """``--dataset``: every run of the suite on this data set instead (None: the suite's)."""
    budget: str
    name: str
    seed: int
    key: str
    """The run's identity key when the sweep was planned: a job refuses a suite changed since."""
    run_dir: str
    runs_dir: str
    data_root: str | None = None
    device: str = "auto"
    ranks: int = 1
    """Processes (GPUs) of the run: torchrun inside the job where more than one."""
    threads: int | None = None
    """torch threads of each process (None: torch's default)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Holder:
    """Who trains a job's runs, as ``owner.json`` and the result files name it."""

    producer: str
    job_id: str | None = None
    log_path: str | None = None

    @classmethod
    def of_job(cls, job_id: str | None, log_path: str | None) -> Holder:
        """This process, in submitit job ``job_id`` (None: outside one)."""
        producer = f"job {job_id} on {socket.gethostname()}" if job_id else socket.gethostname()
        return cls(producer, job_id, log_path)


def execute(spec: RunSpec, datasets: dict, holder: Holder, device: torch.device | None = None) -> str:
    """Train and evaluate one run into its directory and write its result file, unless it is done
    or another process holds it (one of ``STATUSES``). Under torchrun every rank calls it: rank 0
    decides, locks and writes. ``datasets`` keeps the data set of the last run in memory."""
    from genbench.data import load_dataset
    from genbench.runner import failure_reason, load_suite, locate, run_identity, train_and_evaluate, world
    from genbench.train.device import select_device

    suite = load_suite(spec.suite)
    if spec.dataset:
        suite = suite.with_dataset(spec.dataset)
    budget = suite.budget(spec.budget)
    entry = next((r for r in suite.runs if r.name == spec.name), None)
    if entry is None:
        raise GenbenchError(f"suite {suite.name} has no run {spec.name!r} any more")
    device = device or select_device(spec.device)
    name = suite.dataset_of(entry)
    if name not in datasets:
        datasets.clear()
        with main_first():
            datasets[name] = load_dataset(name, spec.data_root, device)
    dataset = datasets[name]
    here = locate(run_identity(suite, entry, spec.seed, budget, dataset.shape), Path(spec.runs_dir),
                  spec.data_root)
    run = here.run
    if run.key != spec.key or str(here.run_dir) != spec.run_dir:
        raise GenbenchError(f"run {spec.name} seed {spec.seed}: suite {spec.suite} changed since the sweep "
                            f"was planned (key {run.key}, planned {spec.key}); plan the sweep again")
    run_dir = Path(spec.run_dir)
    lock = RunDirLock(run_dir)
    try:
        action = broadcast(_decide(run_dir, run.key, lock) if is_main() else None)
        if action != "train":
            return action
        main = is_main()
        with holding(run_dir, holder.producer, holder.job_id, holder.log_path) if main else nullcontext():
            try:
                trained = train_and_evaluate(here, dataset, progress=False)
                if main:
                    write_result(run_dir, run, trained.finished(run_dir, str(device), holder.producer),
                                 spec.suite, trained.extra())
                barrier()
                return "done"
            except Exception as exc:
                if not isinstance(exc, GenbenchError):
                    log(traceback.format_exc().rstrip())
                if main:
                    write_result(run_dir, run, finished_run("failed", run_dir, str(device), holder.producer,
                                                            world(), error=failure_reason(exc)), spec.suite)
                if rank_and_world()[1] > 1 and not isinstance(exc, GenbenchError):
                    raise  # this rank's own failure: torchrun stops every rank
                return "failed"
    finally:
        lock.release()


def _decide(run_dir: Path, key: str, lock: RunDirLock) -> str:
    if result_status(run_dir, key) == "done":
        return "done already"
    if not lock.acquire():
        return "busy"
    if result_status(run_dir, key) == "done":  # finished by the holder just before the lock was free
        return "done already"
    return "train"


def job_environment() -> tuple[str | None, str | None]:
    """(job id, log path) of the submitit job this process runs in; (None, None) outside one."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.job_id, str(env.paths.stdout)
    except (ImportError, KeyError, RuntimeError):
        return None, None


class RunJob:
    """The submitit callable: every run of ``specs`` in order, each done, skipped or failed alone."""

    def __init__(self, specs: list[RunSpec]):
        self.specs = list(specs)
        self._child: subprocess.Popen | None = None

    def __getstate__(self):
        return {"specs": self.specs}  # a running child is no part of what is requeued

    def __setstate__(self, state):
        self.specs, self._child = state["specs"], None

    def __call__(self) -> list[str]:
        holder = Holder.of_job(*job_environment())
        datasets: dict = {}
        statuses = []
        for spec in self.specs:
            if spec.threads:
                torch.set_num_threads(spec.threads)
            started = time.perf_counter()
            try:
                if spec.ranks > 1:
                    status = self._torchrun(spec, holder)
                else:
                    status = execute(spec, datasets, holder)
            except GenbenchError as exc:
                log(f"genbench: {exc}")
                status = "error"
            except Exception:  # this run could not be tried (its data, its suite): the others still are
                log(traceback.format_exc().rstrip())
                status = "error"
            seconds = time.perf_counter() - started
            log(f"[{status}] {spec.name} seed {spec.seed} ({spec.run_dir}), {seconds:.1f} s")
            statuses.append(status)
        return statuses

    def _torchrun(self, spec: RunSpec, holder: Holder) -> str:
        """One run in ``spec.ranks`` processes of this node under torchrun; its status from its result."""
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={spec.ranks}", "-m", "genbench.launch.job", spec.to_json(),
                   holder.job_id or "", holder.log_path or ""]
        self._child = subprocess.Popen(command)
        code = self._child.wait()
        self._child = None
        status = result_status(Path(spec.run_dir), spec.key)
        if code != 0 and status is None:
            raise GenbenchError(f"torchrun of {spec.name} seed {spec.seed} exited with status {code}")
        return status or "busy"

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on preemption or timeout: stop a torchrun child and requeue this job, which
        resumes each unfinished run from genbench's checkpoint in its run directory."""
        import submitit

        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()  # torchrun passes it to its ranks
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        log(f"preempted or timed out: requeued; {len(self.specs)} run(s) resume from their checkpoints")
        return submitit.helpers.DelayedSubmission(RunJob(self.specs))


def main(argv: list[str]) -> int:
    """A torchrun rank of one run: ``python -m genbench.launch.job SPEC_JSON [JOB_ID LOG_PATH]``."""
    from genbench.launch.torchrun import process_group

    spec = RunSpec.from_json(argv[0])
    job_id, log_path = (argv[1:3] + ["", ""])[:2]
    if spec.threads:
        torch.set_num_threads(spec.threads)
    with process_group(spec.device) as device:
        status = execute(spec, {}, Holder.of_job(job_id or None, log_path or None), device)
        if is_main():
            log(f"[{status}] {spec.name} seed {spec.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
