"""The variational bound of a diffusion model with a decoder: -log p(x) <= prior + diffusion + reconstruction.

For x_t = alpha_t x + sigma_t eps (any schedule; Kingma et al. 2021, Section 3 and Appendix):

- prior: KL(q(z_1 given x) || N(0, sigma_1^2 I)) = SNR(1) ||x||^2 / 2, the prior the probability-flow
  likelihood (``genbench.metrics.probability_flow``) also ends in;
- diffusion, on a uniform grid of N steps s = (i - 1)/N < t = i/N, the KL of the true reverse step
  q(z_s given z_t, x) from the model's (the same Gaussian, x replaced by its prediction):
  sum_i (SNR(s) / SNR(t) - 1) ||eps - eps_hat(z_t, t)||^2 / 2 (Ho et al.'s L_{t-1} with the
  posterior's variance beta-tilde); in continuous time (N -> infinity) E_t[gamma'(t) ||eps -
  eps_hat||^2] / 2 with gamma = -log SNR (Kingma et al.'s L_infinity);
- reconstruction: -log p(x given z_0) by the model's ``decoder_log_prob`` at t = 0.

Each point's terms are Monte Carlo estimates (eps, and i or t): unbiased, so the mean over points with
its s.e. over points is an unbiased estimate of the mean bound. With ``time_samples`` >= N every step
enters exactly once. Continuous-time draws are stratified over the batch (Kingma et al.'s antithetic,
low-discrepancy times: t_j = (u + j / n) mod 1), each still uniform on its own. Doubling N tightens
the bound wherever the denoising error falls as the noise does (Kingma et al., Appendix).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.core.errors import GenbenchError
from genbench.metrics.noise_schedules import broadcast, schedule, schedule_with_derivatives, times


@dataclass(frozen=True)
class DiffusionBound:
    """``[B]`` terms of -ELBO in nats (float64); ``total`` is their sum."""

    prior: Tensor
    diffusion: Tensor
    reconstruction: Tensor
    steps: int | None
    """The grid's steps N (None: continuous time)."""

    @property
    def total(self) -> Tensor:
        return self.prior + self.diffusion + self.reconstruction


def _squared_error(model, x: Tensor, t: Tensor, generator: torch.Generator | None) -> Tensor:
    """``[B]`` ||eps - eps_hat(z_t, t)||^2 for one fresh eps per point."""
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    alpha, sigma = schedule(model, t)
    z_t = broadcast(alpha, x) * x + broadcast(sigma, x) * eps
    return (eps - model.predict_noise(z_t, t)).flatten(1).square().sum(1).to(torch.float64)


def _discrete_diffusion(model, x: Tensor, steps: int, time_samples: int,
                        generator: torch.Generator | None) -> Tensor:
    """``[B]`` the grid's diffusion term: every step once (time_samples >= steps), else the mean of
    ``time_samples`` uniformly drawn steps times ``steps``."""
    exhaustive = time_samples >= steps
    draws = steps if exhaustive else time_samples
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for j in range(draws):
        if exhaustive:
            i = torch.full((x.shape[0],), j + 1, dtype=torch.float64)
        else:
            i = torch.randint(1, steps + 1, (x.shape[0],), generator=generator).to(torch.float64)
        s, t = (i - 1).div(steps).to(x), i.div(steps).to(x)
        snr_s, snr_t = (a.square() / b.square() for a, b in (schedule(model, s), schedule(model, t)))
        weight = (snr_s / snr_t - 1).to(torch.float64) / 2
        total = total + weight * _squared_error(model, x, t, generator)
    return total if exhaustive else total * steps / draws


def _continuous_diffusion(model, x: Tensor, time_samples: int, generator: torch.Generator | None) -> Tensor:
    """``[B]`` E_t[gamma'(t) ||eps - eps_hat||^2] / 2, the mean over ``time_samples`` stratified draws."""
    n = x.shape[0]
    total = torch.zeros(n, dtype=torch.float64, device=x.device)
    for _ in range(time_samples):
        u = torch.rand((), generator=generator, dtype=torch.float64)
        t = ((u + torch.arange(n, dtype=torch.float64) / n) % 1)[torch.randperm(n, generator=generator)]
        t = t.clamp_min(torch.finfo(x.dtype).tiny).to(x)  # (0, 1]: log SNR is finite there
        alpha, sigma, d_alpha, d_sigma = schedule_with_derivatives(model, t)
        gamma_rate = -2 * (d_alpha / alpha - d_sigma / sigma)  # d(-log SNR)/dt
        total = total + gamma_rate.to(torch.float64) / 2 * _squared_error(model, x, t, generator)
    return total / time_samples


@torch.no_grad()
def diffusion_bound(model, x: Tensor, steps: int | None = None, time_samples: int = 1,
                    generator: torch.Generator | None = None) -> DiffusionBound:
    """-ELBO of x ``[B, *data_shape]`` (in the model's space: its discrete levels where its decoder is
    discrete, so the bound is one on the discrete NLL), per point, on a grid of ``steps`` (None: in
    continuous time) with ``time_samples`` draws of the step or the time per point."""
    if time_samples < 1 or (steps is not None and steps < 1):
        raise GenbenchError(f"diffusion_bound: steps and time_samples must be >= 1, got {steps}, "
                            f"{time_samples}")
    alpha_1, sigma_1 = schedule(model, times(1.0, x))
    prior = (broadcast(alpha_1 / sigma_1, x) * x).flatten(1).square().sum(1).to(torch.float64) / 2
    if steps is None:
        diffusion = _continuous_diffusion(model, x, time_samples, generator)
    else:
        diffusion = _discrete_diffusion(model, x, steps, time_samples, generator)
    t_0 = times(0.0, x)
    alpha_0, sigma_0 = schedule(model, t_0)
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    z_0 = broadcast(alpha_0, x) * x + broadcast(sigma_0, x) * eps
    reconstruction = -model.decoder_log_prob(x, z_0).to(torch.float64)
    return DiffusionBound(prior=prior, diffusion=diffusion, reconstruction=reconstruction, steps=steps)
