"""Where a run's randomness comes from: every draw of step s is seeded from (seed, s).

The data order of epoch e is a permutation seeded with (seed, e), and the global generators
are seeded with (seed, step) before every step, so step s sees the same batch and the same
noise whether or not the run was interrupted before it, and whether it trains alone or as a
member of a seed ensemble.
"""

from __future__ import annotations

import torch


def step_seed(seed: int, step: int) -> int:
    """The seed of ``step`` of the run seeded ``seed`` (negative steps: draws outside the steps)."""
    return (seed * 1_000_003 + step) % (2**63 - 1)


def seed_step(seed: int, device: torch.device) -> None:
    """Seed the generators a step draws from: the CPU's and, on an accelerator, that device's.

    ``torch.manual_seed`` would do both but also queues seeding of every lazily initialised
    backend with a formatted stack trace each call, a sizeable part of a small model's step on a
    CPU (benchmarks/RESULTS.md, "Figures behind code choices")."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.default_generators[device.index or 0].manual_seed(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the ``n`` training points in ``epoch``."""
    gen = torch.Generator().manual_seed(step_seed(seed + 7919, epoch))
    return torch.randperm(n, generator=gen)
