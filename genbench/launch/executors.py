"""The submitit executors a sweep's jobs go to: ``local`` (processes on this machine) or ``slurm``.

Both run the same ``RunJob``. Slurm gets one array task per run (``--array=0-N%M``, M the array
parallelism), each with ``--gpus-per-run`` GPUs, 1 task and ``CPUS_PER_GPU`` CPUs per GPU, and a
signal ``SIGNAL_DELAY_S`` before its time limit so that submitit can requeue it. Local gets
``--workers`` processes, each with its own GPUs where there are any, and the machine's cores
shared out between them (torch threads). Their flags arrive as ``genbench.context.LaunchOptions``.
"""

from __future__ import annotations

import os
from pathlib import Path

from genbench.context import LaunchOptions, parse_time
from genbench.core.errors import GenbenchError

#: CPUs Slurm gives a job per GPU (per job, for a job without GPUs)
CPUS_PER_GPU = 4
#: seconds before the time limit at which Slurm signals a job (submitit then requeues it)
SIGNAL_DELAY_S = 120
#: time limit of a local job when --time is not given (local jobs are requeued at it, like Slurm's)
LOCAL_TIME_MIN = 7 * 24 * 60
#: time limit of a Slurm job when --time is not given
SLURM_TIME_MIN = 24 * 60


def gpus_per_run(options: LaunchOptions) -> int:
    if options.gpus_per_run is not None:
        return options.gpus_per_run
    if options.launcher == "slurm":
        return 1
    import torch

    return 1 if options.device != "cpu" and torch.cuda.is_available() else 0


def slurm_parameters(options: LaunchOptions, job_name: str) -> dict:
    """The parameters of submitit's SlurmExecutor (sbatch's options) for a sweep's jobs."""
    gpus = gpus_per_run(options)
    params = {"job_name": job_name, "time": parse_time(options.time) if options.time else SLURM_TIME_MIN,
              "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": CPUS_PER_GPU * max(1, gpus),
              "signal_delay_s": SIGNAL_DELAY_S, "stderr_to_stdout": True}
    if gpus:
        params["gpus_per_node"] = gpus
    if options.partition:
        params["partition"] = options.partition
    if options.array_parallelism:
        params["array_parallelism"] = options.array_parallelism
    return params


def slurm_executor(folder: Path, options: LaunchOptions, job_name: str):
    """submitit's SlurmExecutor for the sweep's job array."""
    from submitit import SlurmExecutor

    executor = SlurmExecutor(folder=folder)
    executor.update_parameters(**slurm_parameters(options, job_name))
    return executor


def local_executor(folder: Path, options: LaunchOptions):
    """submitit's LocalExecutor: each submitted job is a process of this machine."""
    from submitit import LocalExecutor

    executor = LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=parse_time(options.time) if options.time else LOCAL_TIME_MIN,
                               stderr_to_stdout=True)
    return executor


def local_threads(workers: int, ranks: int) -> int:
    """torch threads of each process when ``workers`` workers of ``ranks`` processes share this machine:
    its cores shared out, at most ``OMP_NUM_THREADS`` where that is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // max(1, workers * ranks))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share


def local_gpus(worker: int, gpus: int) -> list[int]:
    """The GPUs of local worker ``worker`` (its own: none shared), checked against the machine's."""
    if gpus == 0:
        return []
    import torch

    have = torch.cuda.device_count()
    wanted = list(range(worker * gpus, (worker + 1) * gpus))
    if wanted[-1] >= have:
        raise GenbenchError(f"--workers x --gpus-per-run needs {wanted[-1] + 1} GPUs; this machine has "
                            f"{have}")
    return wanted
