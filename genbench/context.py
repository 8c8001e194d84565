"""What a suite run needs, carried as two objects through the runner and the launchers.

``SuiteRequest`` says which runs: a suite, its budget, the runs and seeds chosen, and where the
suite came from (sweep jobs load it again). ``RunContext`` says how and where they run: the results
database, the runs folder, the device, the data root, progress bars, where its lines go, the seed
ensemble mode (decided once, when the context is built) and, for a sweep, the launcher's options.
Both are frozen: a run never changes what it was asked.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genbench.core.errors import GenbenchError, log
from genbench.results.db import ResultsDB
from genbench.suites import Budget, Suite
from genbench.train.ensemble import Verdict

#: ``genbench run --ensemble``: when a run's seeds train as one vectorised ensemble (where it applies).
#: auto: on an accelerator only. On a CPU whether it wins depends on the machine (benchmarks/ensemble.py;
#: figures in benchmarks/RESULTS.md), since a CPU is matmul- and memory-bound at these sizes; one seed
#: after another gives each seed the numbers of training it alone, bit for bit
ENSEMBLE_MODES = ("auto", "on", "off")


def check_ensemble_mode(mode: str) -> None:
    """A mode not in ``ENSEMBLE_MODES`` is one clear error, before anything is loaded or trained."""
    if mode not in ENSEMBLE_MODES:
        raise GenbenchError(f"unknown --ensemble {mode!r}; valid: {', '.join(ENSEMBLE_MODES)}")


def seeds_apart(mode: str, device: torch.device | None) -> Verdict | None:
    """Why ``mode`` trains a run's seeds one by one on ``device``; None where the ensemble is wanted
    if it applies to the run."""
    check_ensemble_mode(mode)
    if mode == "off":
        return Verdict(False, "--ensemble off")
    if device is None:
        return Verdict(False, "a sweep trains each seed as a job of its own")
    if mode == "auto" and device.type == "cpu":
        return Verdict(False, "on a CPU a seed ensemble gains little or loses against one seed after "
                              "another, by machine (benchmarks/ensemble.py); --ensemble on trains it anyway")
    return None


@dataclass(frozen=True)
class LaunchOptions:
    """``genbench run --launcher ...``'s flags: a sweep of jobs (``genbench.launch``)."""

    launcher: str
    """local | slurm"""
    workers: int = 1
    partition: str | None = None
    gpus_per_run: int | None = None
    """GPUs (torchrun ranks) of each run; None: 1 where CUDA is (on Slurm: always 1), else 0 (CPU)."""
    time: str | None = None
    """Slurm's time-limit syntax: MINUTES, HH:MM:SS, D-HH[:MM[:SS]]."""
    array_parallelism: int | None = None
    device: str = "auto"

    def __post_init__(self):
        if self.launcher not in ("local", "slurm"):
            raise GenbenchError(f"unknown launcher {self.launcher!r}; valid: local, slurm")
        if self.time is not None:
            parse_time(self.time)  # a bad --time fails before anything is planned
        if self.launcher == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
            raise GenbenchError("--launcher slurm: sbatch/srun not found here; run it on a Slurm login node "
                                "(or use --launcher local)")


def parse_time(text: str) -> int:
    """Minutes (rounded up) of a Slurm time limit: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        raise GenbenchError(f"--time {text!r}: not a Slurm time limit (MINUTES, HH:MM:SS or D-HH:MM:SS)")
    days, first, second, third = (int(g) if g is not None else None for g in match.groups())
    if days is not None:  # D-H[:M[:S]]
        seconds = days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    elif third is not None:  # H:M:S
        seconds = first * 3600 + second * 60 + third
    elif second is not None:  # M:S
        seconds = first * 60 + second
    else:  # M
        seconds = first * 60
    if seconds <= 0:
        raise GenbenchError(f"--time {text!r}: a time limit must be positive")
    return -(-seconds // 60)


@dataclass(frozen=True)
class SuiteRequest:
    """Which runs of a suite: every (run, seed) of ``only`` (None: all its runs) and ``seeds`` (None:
    the suite's) under ``budget``."""

    suite: Suite
    budget: Budget
    only: list[str] | None = None
    seeds: int | None = None
    source: str | None = None
    """Where the suite came from, for sweep jobs to load it again: a built-in suite's name or the
    absolute path of its file (None: the suite's name)."""
    dataset: str | None = None
    """``--dataset``: applied to ``suite`` already; sweep jobs apply it again."""

    def entries(self):
        """The suite's runs chosen, in order (an unknown name is one clear error)."""
        return self.suite.select(self.only)

    def seed_list(self) -> list[int]:
        return list(range(self.seeds or self.suite.seeds))

    def suite_source(self) -> str:
        return self.source or self.suite.name


@dataclass(frozen=True)
class RunContext:
    """How and where a suite's runs run. Under torchrun every rank has one, ``db`` None on the ranks
    other than 0 (only rank 0 records and logs)."""

    db: ResultsDB | None
    runs_dir: Path
    device: torch.device | None = None
    """Where runs train in this process; None for a sweep, whose jobs pick theirs (``launch.device``)."""
    data_root: str | None = None
    progress: bool = True
    log: Callable[[str], None] = log
    """Where each run's one line goes."""
    warn: Callable[[str], None] = log
    """Where runs left to other processes, and the tracebacks of unexpected failures, go (stderr)."""
    ensemble: str = "auto"
    """One of ``ENSEMBLE_MODES``."""
    launch: LaunchOptions | None = None
    """A sweep's launcher and its flags; None: runs train in this process."""
    seeds_apart: Verdict | None = field(init=False)
    """The ensemble mode decided for the device: why seeds train one by one, or None where the
    ensemble is wanted wherever it applies."""

    def __post_init__(self):
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))
        object.__setattr__(self, "seeds_apart", seeds_apart(self.ensemble, self.device))
