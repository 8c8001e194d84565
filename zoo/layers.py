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
    """A diagonal Gaussian with event shape ``[latent]``. Its arguments are not validated: the scale
    is positive by construction, and checking it would read the device on every call."""
    normal = torch.distributions.Normal(mean, log_std.exp(), validate_args=False)
    return torch.distributions.Independent(normal, 1, validate_args=False)


def fused_supported(module: nn.Module) -> bool:
    """Whether the fused Adam kernel runs where the module's parameters live (faster, on a CPU
    too: benchmarks/RESULTS.md, "Figures behind code choices")."""
    return next(module.parameters()).device.type in ("cpu", "cuda")


class TopDownPrior(torch.distributions.Distribution):
    """p(z_1, ..., z_L) = p(z_L) prod_{l < L} N(z_l | f_l(z_{l+1})): a hierarchical model's joint prior
    over all its stochastic layers, z = cat(z_1, ..., z_L) (lowest first), as a distribution.

    ``top_log_prob`` and ``top_sample(shape)`` are p(z_L)'s; ``conditionals[l]`` maps z_{l+1} to the
    mean and log std of z_l. ``log_prob`` is differentiable in z (what HMC needs) and takes any
    leading shape; ``sample`` draws top-down from torch's global RNG.
    """

    arg_constraints: dict = {}
    support = torch.distributions.constraints.real_vector

    def __init__(self, top_log_prob, top_sample, conditionals, sizes: list[int]):
        if len(conditionals) != len(sizes) - 1:
            raise ValueError(f"{len(sizes)} layers need {len(sizes) - 1} conditionals, "
                             f"got {len(conditionals)}")
        self.top_log_prob, self.top_sample = top_log_prob, top_sample
        self.conditionals, self.sizes = list(conditionals), list(sizes)
        super().__init__(torch.Size(), torch.Size([sum(sizes)]), validate_args=False)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        zs = [self.top_sample(torch.Size(sample_shape))]
        for conditional in reversed(self.conditionals):
            zs.insert(0, rsample_gaussian(*conditional(zs[0]))[0])
        return torch.cat(zs, dim=-1)

    def log_prob(self, z: Tensor) -> Tensor:
        parts = z.split(self.sizes, dim=-1)
        out = self.top_log_prob(parts[-1])
        for l, conditional in enumerate(self.conditionals):
            out = out + gaussian_log_prob(parts[l], *conditional(parts[l + 1]))
        return out
