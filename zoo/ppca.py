"""Probabilistic PCA (Tipping & Bishop 1999), fitted in closed form.

p(z) = N(0, I), p(x | z) = N(W z + mu, sigma^2 I), so p(x) = N(mu, W W^T + sigma^2 I) and the
posterior p(z | x) is Gaussian. genbench uses it as the exact-likelihood reference row and
as the check of the importance-sampling estimator: with q(z | x) the exact posterior every
importance weight equals p(x).

Maximum likelihood: with the sample covariance's eigenvalues l_1 >= ... >= l_D and vectors
U, sigma^2 is the mean of the D - q discarded eigenvalues and W = U_q (L_q - sigma^2 I)^1/2.
Then W^T W + sigma^2 I = L_q, which makes every formula below diagonal in the eigenbasis.
Everything is computed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Hyperparameters, bounded
from zoo.layers import LOG_2PI, diagonal_normal, standard_normal_log_prob

#: floor on sigma^2 for data with constant pixels (MNIST's corners)
MIN_VARIANCE = 1e-6


def _read_fitted(module, incompatible_keys) -> None:
    module._fitted = bool(module.fitted)


@dataclass
class PPCAConfig(Hyperparameters):
    latent: int = bounded(50, "[1, 4096]")
    """Dimension q of z."""


class PPCA(nn.Module):
    #: a Gaussian density even on binary pixels: its NLL checks the estimator, bits/dim would mean nothing
    log_prob_is_density = True

    def __init__(self, config: PPCAConfig, data_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.data_shape = tuple(data_shape)
        dims = math.prod(self.data_shape)
        if config.latent >= dims:
            raise GenbenchError(f"ppca: latent {config.latent} must be below the data dimension {dims}")
        q = config.latent
        f64 = torch.float64
        self.register_buffer("mean", torch.zeros(dims, dtype=f64))
        self.register_buffer("components", torch.zeros(dims, q, dtype=f64))  # U_q
        self.register_buffer("eigenvalues", torch.ones(q, dtype=f64))  # L_q
        self.register_buffer("noise_variance", torch.ones((), dtype=f64))  # sigma^2
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._fitted = False  # the buffer's value, read once where it is set or loaded, never per call
        self.register_load_state_dict_post_hook(_read_fitted)

    # --- DataInitialized: the closed-form fit ---------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x_train: Tensor) -> None:
        x = x_train.flatten(1).to(torch.float64)
        mean = x.mean(0)
        centred = x - mean
        cov = centred.T @ centred / x.shape[0]
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        q = self.config.latent
        sigma2 = evals[q:].mean().clamp_min(MIN_VARIANCE)
        self.mean.copy_(mean)
        self.components.copy_(evecs[:, :q])
        self.eigenvalues.copy_(torch.maximum(evals[:q], sigma2))
        self.noise_variance.copy_(sigma2)
        self.fitted.fill_(True)
        self._fitted = True

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise GenbenchError("ppca: the model has not been fitted (init_from_data)")

    @property
    def loading(self) -> Tensor:
        """W = U_q (L_q - sigma^2 I)^1/2."""
        return self.components * (self.eigenvalues - self.noise_variance).clamp_min(0).sqrt()

    # --- ExactLikelihood -----------------------------------------------------------------
    def log_prob(self, x: Tensor) -> Tensor:
        self._check_fitted()
        d = x.flatten(1).to(torch.float64) - self.mean
        proj = d @ self.components
        sigma2 = self.noise_variance
        dims, q = self.components.shape
        mahalanobis = (proj.square() / self.eigenvalues).sum(-1) + (
            d.square().sum(-1) - proj.square().sum(-1)
        ) / sigma2
        log_det = self.eigenvalues.log().sum() + (dims - q) * sigma2.log()
        return -0.5 * (dims * LOG_2PI + log_det + mahalanobis)

    # --- LatentVariableModel, with the exact posterior as q ---------------------------------
    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check_fitted()
        d = x.flatten(1).to(torch.float64) - self.mean
        lam, sigma2 = self.eigenvalues, self.noise_variance
        mean = (d @ self.components) * (lam - sigma2).clamp_min(0).sqrt() / lam
        log_std = 0.5 * (sigma2.log() - lam.log())
        return mean, log_std.expand_as(mean)

    def encode(self, x: Tensor) -> torch.distributions.Distribution:
        return diagonal_normal(*self._posterior(x))

    def prior(self) -> torch.distributions.Distribution:
        zeros = torch.zeros(self.config.latent, dtype=torch.float64, device=self.mean.device)
        return diagonal_normal(zeros, zeros)

    def log_likelihood_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) for z of shape ``[..., B, q]``."""
        resid = x.flatten(1).to(torch.float64) - (z @ self.loading.T + self.mean)
        dims = resid.shape[-1]
        sigma2 = self.noise_variance
        return -0.5 * (resid.square().sum(-1) / sigma2 + dims * (LOG_2PI + sigma2.log()))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) ``[k, B]`` for z ``[k, B, q]`` (DecoderModel): a density, in float64."""
        return self.log_likelihood_given_z(x, z)

    @torch.no_grad()
    def sample_given_z(self, z: Tensor) -> Tensor:
        """x ~ N(W z + mu, sigma^2 I) for z ``[n, q]``, in float64 (BDMC's simulated data)."""
        mean = z.to(torch.float64) @ self.loading.T + self.mean
        x = mean + self.noise_variance.sqrt() * torch.randn_like(mean)
        return x.view(-1, *self.data_shape)

    def log_importance_weights(self, x: Tensor, k: int) -> Tensor:
        mean, log_std = self._posterior(x)
        eps = torch.randn((k, *mean.shape), dtype=mean.dtype, device=mean.device)
        z = mean + log_std.exp() * eps
        log_q = -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_std.sum(-1)
        return self.log_likelihood_given_z(x, z) + standard_normal_log_prob(z) - log_q

    # --- Sampler -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        self._check_fitted()
        dims, q = self.components.shape
        z = torch.randn(n, q, dtype=torch.float64, device=self.mean.device)
        noise = torch.randn(n, dims, dtype=torch.float64, device=self.mean.device)
        x = z @ self.loading.T + self.mean + self.noise_variance.sqrt() * noise
        return x.float().view(n, *self.data_shape)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        mean, _ = self._posterior(x)
        return (mean @ self.loading.T + self.mean).float().view(-1, *self.data_shape)
