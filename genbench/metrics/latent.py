"""Representation statistics of latent-variable models."""

from __future__ import annotations

import torch
from torch import Tensor

from genbench.core.protocols import LayeredEncoder


@torch.no_grad()
def posterior_mean_variances(model, data: Tensor, batch_size: int = 1000) -> list[Tensor]:
    """Per stochastic layer, Var_x(E_q[z_u]) of every unit u (float64)."""
    means: list[list[Tensor]] = []
    for start in range(0, data.shape[0], batch_size):
        x = data[start : start + batch_size]
        layers = model.encode_layers(x) if isinstance(model, LayeredEncoder) else [model.encode(x)]
        for i, q in enumerate(layers):
            if len(means) <= i:
                means.append([])
            means[i].append(q.mean.to(torch.float64))
    return [torch.cat(m).var(0, unbiased=False) for m in means]


def active_units_per_layer(model, data: Tensor, threshold: float = 0.01) -> list[int]:
    """Active units (Burda et al. 2015) of each stochastic layer, lowest first."""
    return [int((v > threshold).sum()) for v in posterior_mean_variances(model, data)]


def active_units(model, data: Tensor, threshold: float = 0.01) -> int:
    """Units u with Cov_x(E_q[z_u]) > threshold, over all stochastic layers."""
    return sum(active_units_per_layer(model, data, threshold))
