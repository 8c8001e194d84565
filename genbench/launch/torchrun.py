"""The process group of ``torchrun -m genbench ...``: from torchrun's environment variables.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for
each process it starts. With a world of more than one, every rank joins one process group: nccl
where it trains on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``), gloo on CPU. Ranks other than 0
write nothing: their stdout goes nowhere and their (duplicate) warnings are silenced.

The group is left with ``destroy_process_group``, which frees it (gloo's worker threads stopped and
joined) only where nothing else holds it: ``_import_before_the_group`` sees to that.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from genbench.core.errors import GenbenchError, log

#: how long a rank waits at a collective for the others (rank 0 writing a checkpoint, a slow rank)
TIMEOUT = timedelta(minutes=30)


def launched_world() -> int:
    """The world size torchrun started this process in (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise GenbenchError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def choose_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(requested: str) -> torch.device:
    """This rank's device: its own GPU (``cuda:LOCAL_RANK``) where CUDA is asked for or found, else
    the device named."""
    from genbench.train.device import select_device

    device = select_device(requested)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise GenbenchError(f"rank {os.environ.get('RANK')} has LOCAL_RANK {local} but only "
                                f"{torch.cuda.device_count()} GPU(s) are visible")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return device


def _import_before_the_group() -> None:
    """Import ``torch.distributed.nn`` while no process group exists.

    Its functions take ``group=group.WORLD``, a default evaluated at import: imported after
    ``init_process_group`` (torch._dynamo imports it, lazily, the first time a torch op passes
    through its wrappers: a model's ``//`` of tensors does), ten functions hold the group, and
    ``destroy_process_group`` cannot free it. gloo's worker threads then outlive it into interpreter
    shutdown, where a worker that drops its last finished collective (tensors Python made) takes the
    GIL, and a finalizing Python ends that thread with ``pthread_exit`` through C++ frames:
    std::terminate, "terminate called without an active exception", the rank dies of SIGABRT
    (tests/harness/test_distributed.py reproduces it). The import is cheap (benchmarks/RESULTS.md, "Figures
    behind code choices")."""
    import torch.distributed.nn  # noqa: F401


@contextlib.contextmanager
def process_group(requested_device: str) -> Iterator[torch.device | None]:
    """Inside ``torchrun`` (a world of more than one): join the process group and yield this rank's
    device, with the output of ranks other than 0 silenced; it is left at the end. Outside: yield None
    (one process, nothing to do)."""
    if launched_world() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield None
        return
    if not dist.is_available():
        raise GenbenchError("torchrun started genbench but this torch has no torch.distributed")
    device = rank_device(requested_device)
    backend = choose_backend(device)
    _import_before_the_group()
    dist.init_process_group(backend, timeout=TIMEOUT, **({"device_id": device} if backend == "nccl" else {}))
    rank, world = dist.get_rank(), dist.get_world_size()
    quiet = contextlib.ExitStack()
    if rank != 0:
        devnull = quiet.enter_context(open(os.devnull, "w"))  # noqa: SIM115 (closed by the stack)
        quiet.enter_context(contextlib.redirect_stdout(devnull))
        quiet.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
    else:
        log(f"torchrun: {world} ranks, backend {backend}, rank 0 on {device}")
    try:
        with quiet:
            yield device
    finally:
        sys.stdout.flush()
        dist.destroy_process_group()
