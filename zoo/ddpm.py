"""DDPM (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models") for 8-bit images.

Discrete time: T = 1000 steps, beta linear from 1e-4 to 0.02, alpha-bar_i = prod_{j <= i} (1 - beta_j);
a U-Net predicts eps (``zoo.diffusion_unet``), trained with L_simple = E ||eps - eps_hat(x_i, i)||^2
over uniform steps i; ancestral sampling. In genbench's contract (``DiffusionModel``) step i of
1 .. T is t = (i - 1) / (T - 1), and log alpha-bar is the smooth function whose value at step i is
the midpoint rule for sum_{j <= i} log(1 - beta_j): the integral of log(1 - beta(u)) from 1/2 to
i + 1/2, beta linear in u (within 1e-7 of the sum on every step, tested), so ``noise_schedule`` is
smooth in t and the probability-flow ODE's adaptive solver meets no kink between steps; ``time_steps`` =
T - 1 makes the variational bound L_vlb = L_T + sum_{i=2}^{T} L_{i-1} + L_0 on exactly the paper's
steps, with L_0 the paper's discretised decoder: N(x_hat(x_1), beta_1) over each level's bin.

Deviations: the bound's reverse steps use the posterior's variance beta-tilde (one of Ho et al.'s
two choices, the one that makes L_{i-1} the KL of ``genbench.metrics.diffusion_bound``), as does
the sampler; no EMA of the weights; attention, if on, only at the lowest resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import bounded
from zoo.diffusion_parts import (
    DiffusionNetwork,
    UNetConfig,
    ancestral_sample,
    discretized_gaussian_log_prob,
    to_data_space,
    to_model_space,
)


@dataclass
class DDPMConfig(UNetConfig):
    """Ho et al.'s schedule; the network's size in ``UNetConfig``."""

    timesteps: int = bounded(1000, "[2, 100000]")
    """T, the steps of the forward process."""
    beta_start: float = bounded(1e-4, "(0, 1)")
    beta_end: float = bounded(0.02, "(0, 1)")
    sample_steps: int = bounded(0, "[0, 100000]")
    """Reverse steps of the ancestral sampler (0: all T - 1 of them, the paper's; fewer: respaced)."""

    def __post_init__(self):
        super().__post_init__()
        if self.beta_end < self.beta_start:
            raise ValueError(f"beta_end ({self.beta_end}) must be at least beta_start ({self.beta_start})")


class DDPM(DiffusionNetwork):
    """DiffusionModel, DiffusionDecoder, Sampler, Trainable."""

    def __init__(self, config: DDPMConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape, "ddpm")
        self.time_steps = config.timesteps - 1
        #: beta(u) = beta_start + (u - 1) slope at step position u, beta(T) = beta_end
        self.slope = (config.beta_end - config.beta_start) / self.time_steps
        self.sample_steps = config.sample_steps or self.time_steps
        if self.sample_steps > self.time_steps:
            raise GenbenchError(f"ddpm: sample_steps ({config.sample_steps}) exceeds the T - 1 = "
                                f"{self.time_steps} reverse steps")

    # --- DiffusionModel -----------------------------------------------------------------------------
    def noise_schedule(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = sqrt(alpha-bar), sigma = sqrt(1 - alpha-bar) at step 1 + t (T - 1)."""
        log_alpha_bar = self.log_alpha_bar(1 + t.double() * self.time_steps).to(t.dtype)  # float64: see below
        return (log_alpha_bar / 2).exp(), (-torch.expm1(log_alpha_bar)).sqrt()

    def log_alpha_bar(self, step: Tensor) -> Tensor:
        """The integral of log(1 - beta(u)) du from 1/2 to step + 1/2, beta(u) = beta_start + (u - 1) slope: a
        difference of two values near T / slope, so ``step`` must be float64 (float32 would lose 1e-3)."""
        beta_start = self.config.beta_start
        if self.slope == 0:
            return step * math.log1p(-beta_start)

        def antiderivative(u):  # of log w(u), w = 1 - beta(u): -(w log w - w) / slope
            w = 1 - beta_start - (u - 1) * self.slope
            return -(w * torch.log(w) - w) / self.slope

        return antiderivative(step + 0.5) - antiderivative(torch.full_like(step, 0.5))

    def predict_noise(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t)

    # --- DiffusionDecoder ------------------------------------------------------------------------
    def decoder_log_prob(self, x: Tensor, z_0: Tensor) -> Tensor:
        """L_0's decoder: x's bins under N(x_hat(z_0), beta_1), x_hat = (z_0 - sigma_0 eps_hat) / alpha_0."""
        t_0 = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        alpha_0, sigma_0 = (v.reshape(-1, *[1] * (x.dim() - 1)) for v in self.noise_schedule(t_0))
        mean = (z_0 - sigma_0 * self.predict_noise(z_0, t_0)) / alpha_0
        return discretized_gaussian_log_prob(x, mean, self.config.beta_start ** 0.5)

    # --- Sampler, Trainable ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Ancestral sampling over ``sample_steps`` steps, then the 8-bit level of x_hat."""
        y = ancestral_sample(self, (n, *self.data_shape), self.sample_steps, self.anchor.device,
                             self.anchor.dtype)
        return to_data_space(y)

    def training_losses(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        """L_simple: the mean squared error of eps at a uniformly drawn step per image."""
        y = to_model_space(x)
        step = torch.randint(0, self.time_steps + 1, (len(y),), device=y.device)
        t = step.to(y.dtype) / self.time_steps
        alpha, sigma = (v.reshape(-1, *[1] * (y.dim() - 1)) for v in self.noise_schedule(t))
        eps = torch.randn_like(y)
        yield "model", (eps - self.predict_noise(alpha * y + sigma * eps, t)).square().mean()
