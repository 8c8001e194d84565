"""Representative subsets: fewer than all points of a split are a seeded random subset, never a prefix.

Data files are often sorted (the static binarized MNIST test set is sorted by class: its first
1000 images are 977 zeros), so a prefix measures something else than the split. Every
evaluation on n of N points takes the first n of one permutation of range(N), seeded by the
evaluation seed alone: every model of a table is scored on the same points (paired rows), and
a larger n contains a smaller one. The indices are sorted, so the data keep their order.
"""

from __future__ import annotations

import torch
from torch import Tensor


def subset_index(total: int, n: int | None, seed: int) -> Tensor:
    """Sorted indices of n of ``total`` points (all of them where n is None or >= total)."""
    if n is None or n >= total:
        return torch.arange(total)
    if n < 0:
        raise ValueError(f"a subset needs n >= 0, got {n}")
    permutation = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return permutation[:n].sort().values


def representative(data: Tensor, n: int | None, seed: int) -> Tensor:
    """n rows of ``data`` (all where n is None or >= len): the seeded subset of ``subset_index``."""
    if n is None or n >= len(data):
        return data
    return data[subset_index(len(data), n, seed).to(data.device)]


def describe(n: int | None, total: int, seed: int) -> str:
    """How a table says which points a number used."""
    if n is None or n >= total:
        return f"all {total}"
    return f"a random {n} of {total} (seed {seed})"
