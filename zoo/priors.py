"""Priors over a Gaussian latent layer: standard, mixture of Gaussians, VampPrior.

Tomczak & Welling (2017) argue the standard normal prior over-regularises the VAE; the
optimal prior is the aggregate posterior (1/N) sum_n q(z | x_n), which the VampPrior
approximates with K learned pseudo-inputs u_k: p(z) = (1/K) sum_k q(z | u_k).

- ``standard``: N(0, I).
- ``mog``: K Gaussians with learned means and standard deviations, equal weights.
- ``vamp``: q(z | u_k) over K learned pseudo-inputs u_k = hardtanh(w_k) (clipped to [0, 1]),
  with w_k ~ N(0.05, 0.01^2) at initialisation: the reference code's (jmtomczak/vae_vampprior)
  setting for binary MNIST and OMNIGLOT, near-black images.
- ``vamp-data``: the same learned pseudo-inputs, w_k initialised to K training images chosen at
  random plus N(0, 0.01^2) noise, the paper's "VampPrior data" as its reference code does it
  (the first K images of its shuffled training set there, a seeded random K here).

Every prior gives ``log_prob(z)`` for any leading shape and a ``torch.distributions``
object (``distribution()``), so metrics such as ELBO surgery use the same density.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily
from torch.nn import functional as F

from genbench.core.errors import GenbenchError
from zoo.layers import diagonal_normal, standard_normal_log_prob

PRIORS = ("standard", "mog", "vamp", "vamp-data")

#: initial pseudo-input weights w_k ~ N(mean, std^2), u_k = hardtanh(w_k, 0, 1): the reference code's
#: setting for binary MNIST and OMNIGLOT (it uses 0.5 and 0.02 for Caltech 101 Silhouettes, 0.4 and
#: 0.05 for gray data)
PSEUDO_INPUT_INIT = (0.05, 0.01)
#: vamp-data: std of the noise added to the training images the weights start at (the reference code's)
DATA_INIT_NOISE = 0.01


def mixture_log_prob(z: Tensor, means: Tensor, log_stds: Tensor) -> Tensor:
    """log (1/K) sum_k N(z | means_k, diag exp(log_stds_k)^2) for z ``[..., D]``.

    The Gaussian exponent is expanded into matrix products, so memory is [rows, K], not
    [rows, K, D]: an importance-sampling evaluation passes tens of thousands of rows.
    """
    precision = torch.exp(-2 * log_stds)  # [K, D]
    flat = z.reshape(-1, z.shape[-1])
    quad = flat.square() @ precision.T - 2 * flat @ (means * precision).T  # [rows, K]
    const = (means.square() * precision).sum(-1) + 2 * log_stds.sum(-1) + z.shape[-1] * math.log(2 * math.pi)
    log_components = -0.5 * (quad + const)
    out = torch.logsumexp(log_components, dim=-1) - math.log(means.shape[0])
    return out.reshape(z.shape[:-1])


class StandardPrior(nn.Module):
    def __init__(self, latent: int):
        super().__init__()
        self.register_buffer("zeros", torch.zeros(latent))

    def log_prob(self, z: Tensor) -> Tensor:
        return standard_normal_log_prob(z)

    def distribution(self) -> Distribution:
        return diagonal_normal(self.zeros, self.zeros)


class MixturePrior(nn.Module):
    """Equal-weight mixture of diagonal Gaussians given by ``components() -> (means, log_stds)``."""

    def components(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        return mixture_log_prob(z, *self.components())

    def distribution(self) -> Distribution:
        means, log_stds = self.components()
        weights = Categorical(logits=torch.zeros(means.shape[0], device=means.device), validate_args=False)
        return MixtureSameFamily(weights, diagonal_normal(means, log_stds), validate_args=False)


class MoGPrior(MixturePrior):
    def __init__(self, latent: int, components: int):
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, latent))
        self.log_stds = nn.Parameter(torch.zeros(components, latent))

    def components(self) -> tuple[Tensor, Tensor]:
        return self.means, self.log_stds


class VampPrior(MixturePrior):
    """(1/K) sum_k q(z | u_k): ``encoder(u) -> (mean, log_std)`` is the model's own q.

    The pseudo-inputs u_k = hardtanh(w_k, 0, 1) are learned with the model (a w outside [0, 1] gets
    no gradient, as in the reference code). With ``from_data`` the weights start at training images
    plus noise, set by ``init_from_data`` (the paper's "VampPrior data"); otherwise that is a no-op.
    """

    def __init__(self, encoder: Callable[[Tensor], tuple[Tensor, Tensor]], dims: int, components: int,
                 from_data: bool = False):
        super().__init__()
        self._encoder = [encoder]  # a list: the encoder is a submodule of the model, not of the prior
        self.from_data = from_data
        mean, std = PSEUDO_INPUT_INIT
        self.pseudo_weights = nn.Parameter(torch.randn(components, dims) * std + mean)

    def pseudo_inputs(self) -> Tensor:
        return F.hardtanh(self.pseudo_weights, 0.0, 1.0)

    def components(self) -> tuple[Tensor, Tensor]:
        return self._encoder[0](self.pseudo_inputs())

    @torch.no_grad()
    def init_from_data(self, x_train: Tensor, seed: int = 0) -> None:
        """vamp-data: w_k = one of K training images chosen at random (seeded) + N(0, DATA_INIT_NOISE^2)."""
        if not self.from_data:
            return
        k, dims = self.pseudo_weights.shape
        if x_train.shape[0] < k:
            raise GenbenchError(f"vamp-data: {k} pseudo-inputs need at least {k} training images, "
                                f"got {x_train.shape[0]}")
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(x_train.shape[0], generator=gen)[:k]
        noise = torch.randn(k, dims, generator=gen) * DATA_INIT_NOISE
        images = x_train.flatten(1)[idx.to(x_train.device)]
        self.pseudo_weights.copy_(images.to(self.pseudo_weights) + noise.to(self.pseudo_weights))


def make_prior(kind: str, latent: int, components: int, dims: int,
               encoder: Callable[[Tensor], tuple[Tensor, Tensor]]) -> nn.Module:
    if kind == "standard":
        return StandardPrior(latent)
    if kind == "mog":
        return MoGPrior(latent, components)
    return VampPrior(encoder, dims, components, from_data=(kind == "vamp-data"))
