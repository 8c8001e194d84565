"""Flow matching (Lipman, Chen, Ben-Hamu, Nickel & Le 2023) on the optimal-transport Gaussian path.

With genbench's time running from data (t = 0) to noise (t = 1) the paper's OT path is
x_t = (1 - t) x + (sigma_min + (1 - sigma_min) t) eps (its time is 1 - t), so alpha_t = 1 - t,
sigma_t = sigma_min + (1 - sigma_min) t. A U-Net v(x_t, t) regresses the path's velocity
u = dx_t/dt = (1 - sigma_min) eps - x (the conditional flow matching loss ||v - u||^2). The model is a
``VelocityField``: the probability-flow ODE is dx_t/dt = v itself, so its likelihood
(``genbench.metrics.probability_flow_nll``) needs no division by alpha_t, zero at t = 1. As a
``DiffusionModel`` its noise prediction is eps_hat = x_t + (1 - t) v (the path's inverse:
alpha sigma' - alpha' sigma = 1). It has no decoder, hence no variational bound: its likelihood is the
ODE's alone. Samples: ``sample_steps`` Euler steps of the ODE from N(0, I), then the 8-bit level.

Deviations: the paper's likelihoods and samples use an adaptive solver (dopri5); sampling here uses
fixed Euler steps so that its cost is stated (the likelihood uses dopri5 as the paper).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.core.hyperparameters import bounded
from zoo.diffusion_parts import DiffusionNetwork, UNetConfig, euler_sample, to_data_space, to_model_space


@dataclass
class FlowMatchingConfig(UNetConfig):
    """The path's sigma_min and the sampler; the network's size in ``UNetConfig``."""

    sigma_min: float = bounded(1e-4, "(0, 1)")
    """The path's noise at the data end (t = 0)."""
    sample_steps: int = bounded(100, "[1, 100000]")
    """Euler steps of the sampler."""


class FlowMatching(DiffusionNetwork):
    """DiffusionModel, VelocityField, Sampler, Trainable."""

    def __init__(self, config: FlowMatchingConfig, data_shape: tuple[int, ...]):
        super().__init__(config, data_shape, "flow-matching")
        self.sigma_min = config.sigma_min
        self.sample_steps = config.sample_steps

    def noise_schedule(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1 - t, self.sigma_min + (1 - self.sigma_min) * t

    def velocity(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t)

    def predict_noise(self, x_t: Tensor, t: Tensor) -> Tensor:
        return x_t + (1 - t).reshape(-1, *[1] * (x_t.dim() - 1)) * self.velocity(x_t, t)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        shape = (n, *self.data_shape)
        y = euler_sample(self, shape, self.sample_steps, self.anchor.device, self.anchor.dtype)
        return to_data_space(y)

    def training_losses(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        """Conditional flow matching: E ||v(x_t, t) - u||^2 per dimension, t ~ U[0, 1]."""
        y = to_model_space(x)
        t = torch.rand(len(y), device=y.device, dtype=y.dtype)
        eps = torch.randn_like(y)
        alpha, sigma = (v.reshape(-1, *[1] * (y.dim() - 1)) for v in self.noise_schedule(t))
        target = (1 - self.sigma_min) * eps - y
        yield "model", (self.velocity(alpha * y + sigma * eps, t) - target).square().mean()
