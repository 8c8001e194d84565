"""Diffusion models whose every quantity has a closed form, for the estimators' tests.

``GaussianDiffusion``: data N(mu, Sigma) under a variance-preserving schedule (log SNR linear in t),
with the exact optimal noise predictor E[eps given z_t] = sigma_t C_t^-1 (z_t - alpha_t mu), C_t =
alpha_t^2 Sigma + sigma_t^2 I (linear in z_t), and the exact posterior q(x given z_0) as its decoder.
``UniformDiffusion``: data uniform on the model's interval [lo, hi]^D, its exact predictor per dimension
from p_t(z) proportional to Phi((z - alpha lo) / sigma) - Phi((z - alpha hi) / sigma).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal


def vp_schedule(t: Tensor, log_snr_0: float, log_snr_1: float) -> tuple[Tensor, Tensor]:
    """alpha_t^2 = sigmoid(gamma), sigma_t^2 = sigmoid(-gamma), log SNR gamma linear from t = 0 to 1."""
    gamma = log_snr_0 + (log_snr_1 - log_snr_0) * t
    return torch.sigmoid(gamma).sqrt(), torch.sigmoid(-gamma).sqrt()


class GaussianDiffusion(nn.Module):
    def __init__(self, mu: Tensor, cov: Tensor, log_snr_0: float = 8.0, log_snr_1: float = -24.0):
        super().__init__()
        self.mu, self.cov = mu.double(), cov.double()
        self.log_snr_0, self.log_snr_1 = log_snr_0, log_snr_1
        self.eye = torch.eye(len(mu), dtype=torch.float64)

    def noise_schedule(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return vp_schedule(t, self.log_snr_0, self.log_snr_1)

    def marginal(self, t: float) -> MultivariateNormal:
        """p_t = N(alpha_t mu, C_t)."""
        alpha, sigma = (v.item() for v in self.noise_schedule(torch.tensor([t], dtype=torch.float64)))
        return MultivariateNormal(alpha * self.mu, alpha**2 * self.cov + sigma**2 * self.eye)

    def predict_noise(self, z: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = self.noise_schedule(t)
        cov_t = alpha[:, None, None] ** 2 * self.cov + sigma[:, None, None] ** 2 * self.eye
        centred = z - alpha[:, None] * self.mu
        return sigma[:, None] * torch.linalg.solve(cov_t, centred.unsqueeze(-1)).squeeze(-1)

    def decoder_log_prob(self, x: Tensor, z_0: Tensor) -> Tensor:
        """log q(x given z_0): N(S (Sigma^-1 mu + alpha_0 z_0 / sigma_0^2), S), S^-1 = Sigma^-1 + SNR_0 I."""
        alpha, sigma = (v.item() for v in self.noise_schedule(torch.zeros(1, dtype=torch.float64)))
        precision = torch.linalg.inv(self.cov) + alpha**2 / sigma**2 * self.eye
        post_cov = torch.linalg.inv(precision)
        mean = (post_cov @ (torch.linalg.solve(self.cov, self.mu)[:, None] + alpha / sigma**2 * z_0.T)).T
        return MultivariateNormal(mean, post_cov).log_prob(x)

    def data_log_prob(self, x: Tensor) -> Tensor:
        return MultivariateNormal(self.mu, self.cov).log_prob(x)


def random_gaussian(dims: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(mu, Sigma): a random mean and a random well-conditioned covariance, far from the identity (so
    the divergence integral is far from 0)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dims, dims, generator=gen, dtype=torch.float64) / math.sqrt(dims)
    cov = 2 * (a @ a.T) + 0.6 * torch.eye(dims, dtype=torch.float64)
    return torch.randn(dims, generator=gen, dtype=torch.float64), cov


class UniformDiffusion(nn.Module):
    def __init__(self, interval: tuple[float, float] = (-1.0, 1.0), log_snr_0: float = 16.0,
                 log_snr_1: float = -16.0):
        super().__init__()
        self.data_interval = interval
        self.log_snr_0, self.log_snr_1 = log_snr_0, log_snr_1

    def noise_schedule(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return vp_schedule(t, self.log_snr_0, self.log_snr_1)

    def predict_noise(self, z: Tensor, t: Tensor) -> Tensor:
        """-sigma d/dz log p_t(z), per dimension."""
        alpha, sigma = (v.reshape(-1, *[1] * (z.dim() - 1)) for v in self.noise_schedule(t))
        lo, hi = self.data_interval
        u_lo, u_hi = (z - alpha * lo) / sigma, (z - alpha * hi) / sigma
        density = lambda u: torch.exp(-u**2 / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        mass = torch.special.ndtr(u_lo) - torch.special.ndtr(u_hi)
        return -(density(u_lo) - density(u_hi)) / mass
