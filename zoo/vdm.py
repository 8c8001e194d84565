"""VDM (Kingma, Salimans, Poole & Ho 2021, "Variational Diffusion Models") for 8-bit images.

Continuous time, variance preserving: alpha_t^2 = sigmoid(-gamma(t)), sigma_t^2 = sigmoid(gamma(t)),
with gamma = -log SNR a learned monotone function (the paper's network: a monotone linear term plus
a monotone 1024-unit sigmoid layer, all weights kept positive, rescaled to run from gamma_0 to
gamma_1, both learned, starting at -13.3 and 5). The U-Net predicts eps. Trained on the
continuous-time bound in bits/dim, -log p(x) <= prior + L_infinity + reconstruction:

- L_infinity = E_t[gamma'(t) ||eps - eps_hat(z_t, t)||^2] / 2 with antithetic (low-discrepancy) times
  over the batch, t_j = (u + j / B) mod 1;
- the paper's factorised decoder p(x_i given z_0,i) proportional to q(z_0,i given x_i) over the 256
  levels (``zoo.diffusion_parts``);
- the prior N(0, sigma_1^2 I) (the paper's N(0, I); sigma_1^2 = sigmoid(gamma_1) is within 1% of 1
  for gamma_1 >= 5), the prior the probability-flow likelihood ends in too.

genbench scores the same bound (``genbench.metrics.diffusion_bound``, continuous time: the model has
no ``time_steps``) and the probability-flow likelihood. Sampling is ancestral on a uniform grid of
``sample_steps`` (the paper's T = 1000 by default), ending at the 8-bit level of x_hat(z_0).

Deviations: no Fourier features of z at the network's input; the schedule's interior shape follows
the bound's own gradient (zero in expectation: the paper trains it to minimise the loss's variance
instead); attention, if on, only at the lowest resolution.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.hyperparameters import bounded
from zoo.diffusion_parts import (
    DiffusionNetwork,
    UNetConfig,
    ancestral_sample,
    factorized_decoder_log_prob,
    to_data_space,
    to_model_space,
)

#: hidden units of the monotone schedule network (the paper's)
SCHEDULE_UNITS = 1024


@dataclass
class VDMConfig(UNetConfig):
    """The paper's schedule ends; the network's size in ``UNetConfig``."""

    gamma_min: float = bounded(-13.3, "[-30, 30]")
    """gamma(0) = -log SNR(0) at the start (learned)."""
    gamma_max: float = bounded(5.0, "[-30, 30]")
    """gamma(1) at the start (learned)."""
    sample_steps: int = bounded(1000, "[1, 100000]")
    """Steps of the ancestral sampler."""

    def __post_init__(self):
        super().__post_init__()
        if self.gamma_max <= self.gamma_min:
            raise ValueError(f"gamma_max ({self.gamma_max}) must exceed gamma_min ({self.gamma_min})")


class MonotoneLinear(nn.Module):
    """y = x |W|^T + b: nondecreasing in every input."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(outputs, inputs) / inputs**0.5)
        self.bias = nn.Parameter(torch.zeros(outputs))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.abs().T + self.bias


class LearnedSchedule(nn.Module):
    """gamma(t), increasing from gamma_0 to gamma_1 (both learned), by Kingma et al.'s monotone network."""

    def __init__(self, gamma_0: float, gamma_1: float):
        super().__init__()
        self.linear = MonotoneLinear(1, 1)
        self.hidden = MonotoneLinear(1, SCHEDULE_UNITS)
        self.out = MonotoneLinear(SCHEDULE_UNITS, 1)
        self.gamma_0 = nn.Parameter(torch.tensor(float(gamma_0)))
        self.gamma_1 = nn.Parameter(torch.tensor(float(gamma_1)))

    def _unscaled(self, t: Tensor) -> Tensor:
        h = t[:, None]
        bump = 2 * (torch.sigmoid(self.hidden(2 * (h - 0.5))) - 0.5)
        return (self.linear(h) + self.out(bump) / SCHEDULE_UNITS).squeeze(1)

    def forward(self, t: Tensor) -> Tensor:
        ends = self._unscaled(torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device))
        fraction = (self._unscaled(t) - ends[0]) / (ends[1] - ends[0])
        return self.gamma_0.to(t.dtype) + (self.gamma_1 - self.gamma_0).to(t.dtype) * fraction


class VDM(DiffusionNetwork):
    """DiffusionModel, DiffusionDecoder, Sampler, Trainable."""

    def __init__(self, config: VDMConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape, "vdm")
        self.gamma = LearnedSchedule(config.gamma_min, config.gamma_max)
        self.sample_steps = config.sample_steps

    # --- DiffusionModel ---------------------------------------------------------------------------
    def noise_schedule(self, t: Tensor) -> tuple[Tensor, Tensor]:
        gamma = self.gamma(t)
        return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()

    def predict_noise(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t)

    # --- DiffusionDecoder ---------------------------------------------------------------------------
    def decoder_log_prob(self, x: Tensor, z_0: Tensor) -> Tensor:
        alpha_0, sigma_0 = self.noise_schedule(torch.zeros(1, dtype=x.dtype, device=x.device))
        return factorized_decoder_log_prob(x, z_0, alpha_0[0], sigma_0[0])

    # --- Sampler, Trainable -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        y = ancestral_sample(self, (n, *self.data_shape), self.sample_steps, self.anchor.device,
                             self.anchor.dtype)
        return to_data_space(y)

    def bound_terms(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[B]`` prior, L_infinity and reconstruction (nats) of genbench's x in [0, 1], one draw each,
        times antithetic over the batch; differentiable in every parameter, the schedule's included."""
        y = to_model_space(x)
        n = len(y)
        u = torch.rand((), device=y.device, dtype=y.dtype)
        t = ((u + torch.arange(n, device=y.device, dtype=y.dtype) / n) % 1).requires_grad_(True)
        gamma = self.gamma(t)
        (gamma_rate,) = torch.autograd.grad(gamma.sum(), t, create_graph=True)
        column = [1] * (y.dim() - 1)
        alpha = torch.sigmoid(-gamma).sqrt().reshape(-1, *column)
        sigma = torch.sigmoid(gamma).sqrt().reshape(-1, *column)
        eps = torch.randn_like(y)
        error = (eps - self.predict_noise(alpha * y + sigma * eps, t.detach())).flatten(1).square().sum(1)
        diffusion = gamma_rate * error / 2
        gamma_1 = self.gamma.gamma_1
        prior = torch.exp(-gamma_1) * y.flatten(1).square().sum(1) / 2  # SNR(1) ||y||^2 / 2
        alpha_0, sigma_0 = torch.sigmoid(-self.gamma.gamma_0).sqrt(), torch.sigmoid(self.gamma.gamma_0).sqrt()
        z_0 = alpha_0 * y + sigma_0 * torch.randn_like(y)
        reconstruction = -factorized_decoder_log_prob(y, z_0, alpha_0, sigma_0)
        return prior, diffusion, reconstruction

    def training_losses(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        """The continuous-time bound in bits/dim (8 for a uniform model)."""
        prior, diffusion, reconstruction = self.bound_terms(x)
        yield "model", self.bits(prior + diffusion + reconstruction).mean()
