"""Small building blocks shared by the zoo's models."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Dense layers ``sizes[0] -> ... -> sizes[-1]``, activation after every layer."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers)


class GaussianLayer(nn.Module):
    """Deterministic hidden layers, then a diagonal Gaussian: mean and log std heads."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int):
        super().__init__()
        self.body = mlp([n_in, *hidden])
        self.mean = nn.Linear(hidden[-1], n_out)
        self.log_std = nn.Linear(hidden[-1], n_out)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(h)
        return self.mean(h), self.log_std(h)


class GatedDense(nn.Module):
    """h = (W x + b) * sigmoid(V x + c): the gated dense layer of the VampPrior paper's models
    (Dauphin et al. 2017)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.value = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.value(x) * torch.sigmoid(self.gate(x))


def bernoulli_log_likelihood(x: Tensor, hidden: Tensor, out: nn.Linear) -> Tensor:
    """log Bernoulli(x | logits = out(hidden)) summed over pixels, for hidden ``[k, B, H]``.

    sum_d x_d l_d - softplus(l_d): x . l is computed as hidden . (W^T x) + b . x, once per
    data point, instead of an elementwise pass over all k x B x D logits (the estimator's
    hot path). ``x`` is ``[B, D]``.
    """
    x_dot_logits = (hidden * (x @ out.weight)).sum(-1) + x @ out.bias
    return x_dot_logits - torch.nn.functional.softplus(out(hidden)).sum(-1)


def gaussian_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(z | mean, exp(log_std)^2), summed over the last dimension."""
    eps = (z - mean) * torch.exp(-log_std)
    return -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_std.sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (z.square() + LOG_2PI).sum(-1)


def rsample_gaussian(mean: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
    """One reparameterised sample per row of ``mean`` and its log density (summed)."""
    eps = torch.randn_like(mean)
    z = mean + torch.exp(log_std) * eps
    log_q = -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_std.sum(-1)
    return z, log_q


def diagonal_normal(mean: Tensor, log_std: Tensor) -> torch.distributions.Distribution:
    """A diagonal Gaussian with event shape ``[latent]``."""
    return torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)


def fused_supported(module: nn.Module) -> bool:
    """Whether the fused Adam kernel runs where the module's parameters live (2x faster on CPU)."""
    return next(module.parameters()).device.type in ("cpu", "cuda")
