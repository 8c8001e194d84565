"""Test-set likelihood: NLL (exact or importance-sampled) and bits per dimension.

Conventions for bits/dim:
- Discrete data (binary or 8-bit): bits/dim = NLL / (D ln 2), NLL in nats of the discrete
  probability mass.
- A continuous density on dequantized 8-bit data x = (pixel + u) / 256 in [0, 1]^D gives a
  discrete NLL bound by adding D ln 256: -log P(pixel) <= -log p(x) + D ln 256. Use
  :func:`discrete_nll_from_density` once, then :func:`bits_per_dim`. A uniform model
  scores 8 bits/dim either way.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genbench.core.distributed import global_mean, global_mean_and_se, shard
from genbench.core.protocols import ExactLikelihood, LatentVariableModel
from genbench.metrics.importance import importance_bounds


@torch.no_grad()
def nll_per_example(model, data: Tensor, k: int = 5000, batch_size: int = 1000,
                    max_rows: int | None = None) -> Tensor:
    """``[N]`` NLL in nats: exact ``-log_prob`` where the model has it, else ``-L_k``."""
    parts = []
    for start in range(0, data.shape[0], batch_size):
        x = data[start : start + batch_size]
        if isinstance(model, ExactLikelihood):
            parts.append(-model.log_prob(x).to(torch.float64))
        elif isinstance(model, LatentVariableModel):
            parts.append(-importance_bounds(model, x, k, max_rows).iwae)
        else:
            raise TypeError(f"{type(model).__name__} has neither log_prob nor log_importance_weights")
    return torch.cat(parts)


def nll(model, data: Tensor, k: int = 5000, batch_size: int = 1000,
        max_rows: int | None = None) -> float:
    """Mean test-set NLL in nats (the IWAE estimate -L_k, or exact), sharded across ranks."""
    return global_mean(nll_per_example(model, shard(data), k, batch_size, max_rows))


def nll_and_se(model, data: Tensor, k: int = 5000, batch_size: int = 1000,
               max_rows: int | None = None) -> tuple[float, float]:
    """Mean test-set NLL in nats and its standard error over the test points (what another draw
    of as many test points would change; the estimator's own noise at k is inside it)."""
    return global_mean_and_se(nll_per_example(model, shard(data), k, batch_size, max_rows))


def bits_per_dim(nll_nats: float | Tensor, dims: int) -> float | Tensor:
    """NLL in nats of discrete data -> bits per dimension."""
    return nll_nats / (dims * math.log(2))


def discrete_nll_from_density(nll_density_nats: float | Tensor, dims: int,
                              levels: int = 256) -> float | Tensor:
    """-log p(x) of a density on data scaled to [0, 1] by ``levels`` -> discrete NLL (nats)."""
    return nll_density_nats + dims * math.log(levels)
