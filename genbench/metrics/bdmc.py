"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Grosse et al. 2016): how tight AIS is.

On data simulated from the model, (z, x) ~ p(z) p(x | z), the generating z is an exact posterior
sample of its x. Forward AIS from the prior gives a stochastic lower bound on log p(x); reverse AIS
from that z (beta from 1 to 0) gives a stochastic upper bound (its weights have mean 1 / p(x)). The
true log p(x) lies between them in expectation, so the gap, upper - lower, bounds the error of AIS
at that number of steps and chains on data like the model's own.

Both directions use the same schedule, chains and step sizes (adapted by one pilot pass on the
simulated points, ``genbench.metrics.ais``), so every move of either direction is a fixed HMC kernel. The
simulation draws from the model's own samplers (``prior().sample``, ``sample_given_z``) under the
seed, as the chains do: the same seed gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.protocols import LatentSimulator, decoder_prior
from genbench.metrics.ais import (
    DEFAULT_HMC,
    HMC,
    _forward,
    _pilot_steps,
    _reverse,
    chunks,
    frozen,
    log_mean_exp_and_se,
    make_schedule,
    rows_limit,
    seeded_rng,
)


@dataclass
class BDMCResult:
    """Per simulated point, nats (float64): lower <= log p(x) <= upper in expectation."""

    x: Tensor  # [n, *data_shape] the simulated data
    z: Tensor  # [n, latent] their exact posterior samples
    lower: Tensor  # [n] forward AIS, log mean_c w_c
    upper: Tensor  # [n] reverse AIS, -log mean_c w'_c
    lower_se: Tensor  # [n] delta-method s.e. over chains
    upper_se: Tensor

    @property
    def gap(self) -> Tensor:
        """[n] upper - lower: how far the AIS lower bound can be from log p(x) at these settings."""
        return self.upper - self.lower


@torch.no_grad()
def bdmc(model, n: int, steps: int, chains: int = 16, schedule: str = "sigmoid", *, hmc: HMC = DEFAULT_HMC,
         seed: int | None = None, generator: torch.Generator | None = None,
         max_rows: int | None = None, device: torch.device | str | None = None) -> BDMCResult:
    """Simulate n points from a DecoderModel that can sample p(x | z) (``LatentSimulator``), then bound
    each one's log p(x) from both sides with forward and reverse AIS. Call it on a model in eval mode."""
    if not isinstance(model, LatentSimulator):
        raise GenbenchError(f"{type(model).__name__} cannot simulate x given z (sample_given_z), which "
                            "BDMC needs")
    if n < 1 or chains < 1:
        raise ValueError(f"BDMC needs n >= 1 and chains >= 1, got {n} and {chains}")
    betas = make_schedule(schedule, steps)
    prior = decoder_prior(model)
    device = torch.device(device) if device is not None else _device_of(model)
    with seeded_rng(device, seed, generator), frozen(model):
        z = prior.sample((n,))
        x = model.sample_given_z(z)
        limit = rows_limit(model, max_rows, device)
        lower_w = torch.empty(chains, n, dtype=torch.float64, device=device)
        upper_w = torch.empty_like(lower_w)
        for points, chain_parts in chunks(n, chains, limit):
            steps = _pilot_steps(model, prior, x[points], betas, hmc)
            for part in chain_parts:
                xs, zs = x[points], z[points]
                lower_w[part, points] = _forward(model, prior, xs, part, betas, hmc, steps).log_w
                upper_w[part, points] = _reverse(model, prior, xs, zs, part, betas, hmc, steps).log_w
    lower, lower_se = log_mean_exp_and_se(lower_w)
    neg_upper, upper_se = log_mean_exp_and_se(upper_w)
    return BDMCResult(x, z, lower, -neg_upper, lower_se, upper_se)


def _device_of(model) -> torch.device:
    """Where the model's (or a wrapped generator's) tensors live; cpu for one that holds none."""
    module = getattr(model, "generator", model)
    if isinstance(module, nn.Module):
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device
    return torch.device("cpu")
