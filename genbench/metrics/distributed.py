"""Sharding evaluation across ranks: each rank takes every world-th item, sums are all-reduced.

Without ``torch.distributed`` initialised this is a single rank and the functions are
identities, so the same metric code runs under ``torchrun`` unchanged.
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


def global_mean(per_example: Tensor) -> float:
    """Mean over all ranks' examples of a per-example tensor."""
    stats = torch.stack([per_example.sum(), torch.tensor(per_example.numel(), device=per_example.device,
                                                         dtype=per_example.dtype)])
    total, count = all_reduce_sum(stats).tolist()
    return total / count
