"""Data parallelism across ranks (``torchrun``): sharded evaluation and averaged gradients.

Evaluation: each rank takes every world-th item and sums are all-reduced. Training: each
rank takes its share of every batch and gradients are averaged before each optimizer step
(which fits alternating updates, unlike a DDP wrapper that needs ``forward``). Without
``torch.distributed`` initialised this is a single rank and every function is an identity,
so the same code runs in one process unchanged.

Coordination (``genbench run`` and ``genbench score`` under ``torchrun``): rank 0 alone decides
(claims a run, reads the database) and ``broadcast`` hands its decision to the others; it alone
writes files, and ``barrier``/``main_first`` make the others wait for it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(data: Tensor) -> Tensor:
    rank, world = rank_and_world()
    return data[rank::world]


def all_reduce_sum(values: Tensor) -> Tensor:
    if rank_and_world()[1] > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def average_gradients(params) -> None:
    """Average every parameter's gradient over the ranks (data-parallel training).

    The gradients travel as one flat buffer per dtype and device, one all-reduce for all of them,
    as DDP's buckets do: a collective's latency is paid once per step, not once per parameter
    (``benchmarks/allreduce.py``; benchmarks/RESULTS.md, All-reduce of the gradients). The sums are
    the same elementwise sums."""
    world = rank_and_world()[1]
    if world == 1:
        return
    buckets: dict[tuple, list[Tensor]] = {}
    for p in params:
        if p.grad is not None:
            buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view(g.shape))
            offset += g.numel()


def global_mean_and_se(per_example: Tensor) -> tuple[float, float]:
    """Mean over all ranks' examples of a per-example tensor, and its standard error
    (sample standard deviation / sqrt(n); nan for a single example), in float64."""
    x = per_example.detach().to(torch.float64).flatten()
    count = torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device)
    total, count = all_reduce_sum(torch.stack([x.sum(), count])).tolist()
    mean = total / count
    if count < 2:
        return mean, float("nan")
    squares = all_reduce_sum(((x - mean) ** 2).sum()).item()  # two passes: no cancellation
    return mean, (squares / (count - 1) / count) ** 0.5


def global_mean(per_example: Tensor) -> float:
    """Mean over all ranks' examples of a per-example tensor."""
    stats = torch.stack([per_example.sum(), torch.tensor(per_example.numel(), device=per_example.device,
                                                         dtype=per_example.dtype)])
    total, count = all_reduce_sum(stats).tolist()
    return total / count


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files, the database and the log."""
    return rank_and_world()[0] == 0


def backend() -> str:
    """The process group's backend (nccl, gloo), or 'none' in a single process."""
    return dist.get_backend() if rank_and_world()[1] > 1 else "none"


def describe_world() -> str:
    """How the log says where a run trains: '2 ranks (gloo)' under torchrun, else '1 process'."""
    world = rank_and_world()[1]
    return f"{world} ranks ({backend()})" if world > 1 else "1 process"


def broadcast(obj):
    """Rank 0's ``obj`` (any picklable value it decided alone: a claim, a plan) on every rank."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` is set on any rank (a collective: every rank must call it at the same point)."""
    if rank_and_world()[1] == 1:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def same_on_every_rank(value) -> bool:
    """Whether every rank holds an equal ``value`` (a small picklable one: a run's outcome)."""
    world = rank_and_world()[1]
    if world == 1:
        return True
    values = [None] * world
    dist.all_gather_object(values, value)
    return all(v == values[0] for v in values)


@contextmanager
def main_first():
    """Rank 0 runs the body first (a download, a cache it writes), the other ranks after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
