"""beta-VAE (Higgins et al. 2017) with the convolutional networks used on dSprites.

Encoder: four 4x4 stride-2 convolutions (32, 32, 64, 64 channels, ReLU) on the 64x64
image, a dense layer of 256, then the mean and log-std of a 10-dim diagonal Gaussian;
the decoder mirrors it with transposed convolutions and gives Bernoulli logits (the
architecture of Burgess et al. 2018 and disentanglement_lib). beta weights the KL
(beta = 1 is the VAE); ``capacity`` > 0 switches to Burgess et al.'s controlled-capacity
objective gamma |KL - C| with C annealed (``zoo.objectives``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import bounded
from zoo.layers import diagonal_normal, fused_supported, rsample_gaussian, standard_normal_log_prob
from zoo.objectives import ObjectiveConfig, VariationalTerms, VariationalTraining

IMAGE_SIZE = 64
CHANNELS = (32, 32, 64, 64)
DENSE = 256


@dataclass
class BetaVAEConfig(ObjectiveConfig):
    latent: int = bounded(10, "[1, 1024]")
    beta: float = bounded(4.0, "[0, 10000]")


def conv_encoder(in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in zip((in_channels, *CHANNELS[:-1]), CHANNELS, strict=True):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(CHANNELS[-1] * 4 * 4, DENSE), nn.ReLU())


def conv_decoder(latent: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(latent, DENSE), nn.ReLU(),
                               nn.Linear(DENSE, CHANNELS[-1] * 4 * 4), nn.ReLU(),
                               nn.Unflatten(1, (CHANNELS[-1], 4, 4))]
    widths = (*CHANNELS[::-1], out_channels)
    for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BetaVAE(VariationalTraining, nn.Module):
    def __init__(self, config: BetaVAEConfig, data_shape: tuple[int, ...]):
        super().__init__()
        if len(data_shape) != 3 or tuple(data_shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise GenbenchError(f"betavae: needs {IMAGE_SIZE}x{IMAGE_SIZE} images (dSprites), "
                                f"got data shape {list(data_shape)}")
        self.config = config
        self.data_shape = tuple(data_shape)
        channels = data_shape[0]
        self.encoder = conv_encoder(channels)
        self.posterior = nn.Linear(DENSE, 2 * config.latent)
        self.decoder = conv_decoder(config.latent, channels)

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.posterior(self.encoder(x)).chunk(2, dim=-1)
        return mean, log_std

    def _logits(self, z: Tensor) -> Tensor:
        """Bernoulli logits ``[*z.shape[:-1], C, H, W]`` for z of any leading shape."""
        flat = self.decoder(z.reshape(-1, z.shape[-1]))
        return flat.view(*z.shape[:-1], *self.data_shape)

    def variational_terms(self, x: Tensor, k: int) -> VariationalTerms:
        mean, log_std = self._posterior(x)
        z, log_q = rsample_gaussian(mean.expand(k, *mean.shape), log_std.expand(k, *log_std.shape))
        logits = self._logits(z)
        ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return VariationalTerms(ll.flatten(2).sum(-1), [log_q - standard_normal_log_prob(z)])

    def encode(self, x: Tensor) -> torch.distributions.Distribution:
        return diagonal_normal(*self._posterior(x))

    def prior(self) -> torch.distributions.Distribution:
        zeros = self.posterior.bias.new_zeros(self.config.latent)
        return diagonal_normal(zeros, zeros)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) ``[k, B]`` (Bernoulli pixels) for z ``[k, B, latent]`` (DecoderModel)."""
        logits = self._logits(z)
        ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return ll.flatten(2).sum(-1)

    @torch.no_grad()
    def sample_given_z(self, z: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(self._logits(z)))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.config.latent, device=self.posterior.bias.device)
        return torch.bernoulli(torch.sigmoid(self._logits(z)))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self._logits(self._posterior(x)[0]))

    @torch.no_grad()
    def init_from_data(self, x_train: Tensor) -> None:
        """Output bias: the logit of the mean training image's mean pixel (one bias per channel)."""
        mean = x_train.float().mean().clamp(1e-4, 1 - 1e-4).item()
        self.decoder[-1].bias.fill_(math.log(mean / (1 - mean)))

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=lr, fused=fused_supported(self))}
