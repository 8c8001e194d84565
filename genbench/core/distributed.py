"""Data parallelism across ranks (``torchrun``): sharded evaluation and averaged gradients.

Evaluation: each rank takes every world-th item and sums are all-reduced. Training: each
rank takes its share of every batch and gradients are averaged before each optimizer step
(which fits alternating updates, unlike a DDP wrapper that needs ``forward``). Without
``torch.distributed`` initialised this is a single rank and every function is an identity,
so the same code runs in one process unchanged.
"""

from __future__ import annotations

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
    """Average every parameter's gradient over the ranks (data-parallel training)."""
    world = rank_and_world()[1]
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


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
