"""What the zoo's diffusion models share: the data map into [-1, 1], the two discretised decoders, the
samplers and the network's hyperparameters.

Units: genbench's x = pixel / 255 in [0, 1] is ``2 x - 1`` in the models' space (``data_interval`` =
(-1, 1)), so the 256 levels are 2 pixel / 255 - 1, 2 / 255 apart.

- Ho et al.'s decoder (Section 3.3): each pixel's level has the mass of N(mean, std^2) over its bin
  [v - 1/255, v + 1/255], the end bins reaching to -infinity and +infinity.
- Kingma et al.'s decoder (VDM, Appendix): p(x_i given z_0,i) proportional to q(z_0,i given x_i =
  v) over the 256 levels v: a softmax of -(z_0,i - alpha_0 v)^2 / (2 sigma_0^2).
Both are probabilities of the levels and sum to 1 over them (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.core.discretized import LEVELS, discretized_gaussian_log_prob, level_index  # noqa: F401 (re-exported)
from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Hyperparameters, bounded
from zoo.diffusion_unet import UNet, parse_multipliers
from zoo.layers import fused_supported

#: the models' space
DATA_INTERVAL = (-1.0, 1.0)


@dataclass
class UNetConfig(Hyperparameters):
    """The network's size: defaults for a CPU's short budget (Ho et al.'s CIFAR-10 network: width 128,
    channel_mults "1,2,2,2", res_blocks 2, attention true, dropout 0.1)."""

    width: int = bounded(32, "[1, 1024]")
    """Channels of the first level."""
    channel_mults: str = "1,2"
    """Width multiplier per resolution level, comma separated; each level but the last halves H and W."""
    res_blocks: int = bounded(1, "[1, 16]")
    """Residual blocks per level."""
    attention: bool = False
    """Self-attention at the lowest resolution."""
    dropout: float = bounded(0.0, "[0, 1)")


def to_model_space(x: Tensor) -> Tensor:
    """genbench's x in [0, 1] -> [-1, 1]."""
    return 2 * x - 1


def to_data_space(y: Tensor) -> Tensor:
    """A point of [-1, 1] (or beyond) -> the nearest 8-bit level, as genbench's pixel / 255."""
    return ((y + 1) / 2 * (LEVELS - 1)).round().clamp(0, LEVELS - 1) / (LEVELS - 1)


def factorized_decoder_log_prob(x: Tensor, z_0: Tensor, alpha_0: Tensor, sigma_0: Tensor) -> Tensor:
    """``[B]`` log p(x given z_0) of Kingma et al.'s decoder; alpha_0, sigma_0 scalars (tensors)."""
    levels = torch.linspace(*DATA_INTERVAL, LEVELS, dtype=z_0.dtype, device=z_0.device)
    logits = -(z_0.unsqueeze(-1) - alpha_0 * levels).square() / (2 * sigma_0.square())
    log_p = torch.log_softmax(logits, dim=-1)
    return log_p.gather(-1, level_index(x).unsqueeze(-1)).squeeze(-1).flatten(1).sum(1)


def _expand(values: Tensor, like: Tensor) -> Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def prior_sample(model, shape: tuple[int, ...], device, dtype) -> Tensor:
    """z_1 ~ N(0, sigma_1^2 I), the prior both likelihoods end in."""
    _, sigma_1 = model.noise_schedule(torch.ones(shape[0], device=device, dtype=dtype))
    return sigma_1.reshape(-1, *([1] * (len(shape) - 1))) * torch.randn(shape, device=device, dtype=dtype)


@torch.no_grad()
def ancestral_sample(model, shape: tuple[int, ...], steps: int, device, dtype) -> Tensor:
    """z_1 ~ N(0, sigma_1^2 I), then ``steps`` reverse steps on a uniform grid of [0, 1], each a draw of
    q(z_s given z_t, x = x_hat(z_t)) (Ho et al.'s Algorithm 2 with the posterior's variance
    beta-tilde, respaced where ``steps`` is below the model's own); returns x_hat(z_0) in [-1, 1]."""
    n = shape[0]
    z = prior_sample(model, shape, device, dtype)
    for i in range(steps, 0, -1):
        t = torch.full((n,), i / steps, device=device, dtype=dtype)
        s = torch.full((n,), (i - 1) / steps, device=device, dtype=dtype)
        (alpha_t, sigma_t), (alpha_s, sigma_s) = model.noise_schedule(t), model.noise_schedule(s)
        eps = model.predict_noise(z, t)
        x_hat = ((z - _expand(sigma_t, z) * eps) / _expand(alpha_t, z)).clamp(*DATA_INTERVAL)
        alpha_ts = alpha_t / alpha_s  # q(z_t given z_s) = N(alpha_ts z_s, sigma_ts^2)
        var_ts = sigma_t.square() - alpha_ts.square() * sigma_s.square()
        mean = (_expand(alpha_ts * sigma_s.square() / sigma_t.square(), z) * z
                + _expand(alpha_s * var_ts / sigma_t.square(), z) * x_hat)
        std = (var_ts * sigma_s.square() / sigma_t.square()).clamp_min(0).sqrt()
        z = mean + _expand(std, z) * torch.randn_like(z)
    t_0 = torch.zeros(n, device=device, dtype=dtype)
    alpha_0, sigma_0 = model.noise_schedule(t_0)
    return (z - _expand(sigma_0, z) * model.predict_noise(z, t_0)) / _expand(alpha_0, z)


@torch.no_grad()
def euler_sample(model, shape: tuple[int, ...], steps: int, device, dtype) -> Tensor:
    """z_1 ~ N(0, sigma_1^2 I), then ``steps`` Euler steps of the probability-flow ODE from t = 1 to 0,
    by the model's ``velocity``; returns z_0."""
    n = shape[0]
    z = prior_sample(model, shape, device, dtype)
    for i in range(steps, 0, -1):
        t = torch.full((n,), i / steps, device=device, dtype=dtype)
        z = z - model.velocity(z, t) / steps
    return z



class DiffusionNetwork(torch.nn.Module):
    """The zoo's diffusion models' common half: the U-Net on [C, H, W] images, the models' space and
    Adam. A subclass adds its schedule, loss and sampler."""

    data_interval = DATA_INTERVAL

    def __init__(self, config: UNetConfig, data_shape: tuple[int, ...], name: str):
        super().__init__()
        if len(data_shape) != 3:
            raise GenbenchError(f"{name}: needs images [C, H, W], got data shape {list(data_shape)}")
        self.config = config
        self.data_shape = tuple(data_shape)
        self.dims = math.prod(data_shape)
        self.net = UNet(data_shape[0], data_shape[1], data_shape[2], config.width,
                        parse_multipliers(config.channel_mults), config.res_blocks, config.attention,
                        config.dropout)
        # follows .to() and .double(), so samples land where the model lives
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr, fused=fused_supported(self))}

    def bits(self, nats: Tensor) -> Tensor:
        """nats per image -> bits per dimension."""
        return nats / (self.dims * math.log(2))
