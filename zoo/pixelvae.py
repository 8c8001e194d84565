"""PixelVAE (Gulrajani et al. 2016, "PixelVAE: A Latent Variable Model for Natural Images",
arXiv:1611.05013): a VAE whose decoder is a shallow gated PixelCNN conditioned on z.

- q(z | x): a diagonal Gaussian from a small strided-convolution encoder (the VLAE's).
- p(z) = N(0, I).
- p(x | z) = prod_i p(x_i | x_<i, z): a gated PixelCNN of a few layers (``zoo.pixelcnn``)
  whose gates all add V * s(z), s(z) a full-resolution feature map painted from z by a dense
  layer and a transposed convolution (the VLAE's :class:`~zoo.vlae.LatentFeatureMaps`): the
  conditional PixelCNN's location-dependent conditioning. The paper's point is that a few
  autoregressive layers model local detail, so z is left the global structure.

Bernoulli pixels for binary data, a 256-way softmax for 8-bit data (``output``). The bounds
come from the zoo's one objective (``VariationalTerms``); sampling draws z from the prior and
runs the decoder's sampler. Deviations from the paper's code: the VLAE's encoder (two strided
convolutions and a dense layer) instead of the paper's eight-layer one, and a learned map added
to every gate instead of z concatenated to the image or a per-channel bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import bounded
from zoo.layers import diagonal_normal, rsample_gaussian, standard_normal_log_prob
from zoo.objectives import ObjectiveConfig, VariationalTerms, VariationalTraining
from zoo.pixelcnn import GatedPixelCNN, check_gated_stack
from zoo.vlae import GaussianConvEncoder, LatentFeatureMaps


@dataclass
class PixelVAEConfig(ObjectiveConfig):
    output: str = "bernoulli"
    """'bernoulli' for binary data, 'softmax256' for 8-bit data (x = level / 255)."""
    latent: int = bounded(16, "[1, 1024]")
    """Dimensions of z (the reference code's binarized-MNIST setting)."""
    decoder_layers: int = bounded(3, "[1, 64]")
    """Gated PixelCNN layers in the decoder, the first one masked 'A'."""
    decoder_channels: int = bounded(32, "[1, 1024]")
    """Features per stack of the decoder."""
    kernel_size: int = bounded(3, "[1, 15]")
    """Odd kernel width of the decoder layers after the first."""
    first_kernel_size: int = bounded(7, "[1, 15]")
    """Odd kernel width of the decoder's first layer."""
    condition_channels: int = bounded(32, "[1, 1024]")
    """Channels of the map s(z) that every gate of the decoder sees."""
    encoder_hidden: int = bounded(256, "[1, 4096]")
    """Dense units between the encoder's convolutions and the Gaussian heads."""

    def __post_init__(self):
        super().__post_init__()
        check_gated_stack(self.output, self.kernel_size, self.first_kernel_size)


class PixelVAE(VariationalTraining, nn.Module):
    """PixelVAE: Gaussian q(z | x) and p(z), a gated PixelCNN p(x | z) conditioned on a map of z."""

    #: most (sample, image) pairs per decoder pass in ``variational_terms``
    max_rows = 256

    def __init__(self, config: PixelVAEConfig, data_shape: tuple[int, ...]):
        super().__init__()
        if len(data_shape) != 3:
            raise GenbenchError(f"pixelvae: needs images [C, H, W], got data shape {list(data_shape)}")
        self.config = config
        self.data_shape = tuple(data_shape)
        self.encoder = GaussianConvEncoder(self.data_shape, config.encoder_hidden, config.latent)
        self.condition = LatentFeatureMaps(config.latent, config.condition_channels, 1, self.data_shape[1:])
        self.decoder = GatedPixelCNN(self.data_shape, config.output, config.decoder_channels,
                                     config.decoder_layers, config.kernel_size, config.first_kernel_size,
                                     condition_channels=config.condition_channels)

    def condition_map(self, z: Tensor) -> Tensor:
        """s(z) ``[N, F, H, W]`` for codes ``[N, latent]``."""
        return next(self.condition.maps(z))

    # --- LatentVariableModel (log_importance_weights from VariationalTraining) ------------
    def variational_terms(self, x: Tensor, k: int) -> VariationalTerms:
        mean, log_std = self.encoder(x)  # x is encoded once for all k samples
        z, log_q = rsample_gaussian(mean.expand(k, *mean.shape), log_std.expand(k, *log_std.shape))
        return VariationalTerms(self.log_likelihood(x, z), [log_q - standard_normal_log_prob(z)])

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) ``[k, B]`` for x ``[B, C, H, W]`` and z ``[k, B, latent]``, teacher-forced
        in passes of at most ``max_rows`` (sample, image) pairs."""
        per_pass = max(1, self.max_rows // x.shape[0])
        out = []
        for zc in z.split(per_pass):
            images = x.expand(zc.shape[0], *x.shape).flatten(0, 1)
            out.append(self.decoder.log_prob(images, self.condition_map(zc.flatten(0, 1))).view(zc.shape[:2]))
        return torch.cat(out)

    def encode(self, x: Tensor) -> Distribution:
        return diagonal_normal(*self.encoder(x))

    def prior(self) -> Distribution:
        zeros = self.encoder.mean.bias.new_zeros(self.config.latent)
        return diagonal_normal(zeros, zeros)

    # --- Sampler and pictures ------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.config.latent, device=self.encoder.mean.bias.device,
                        dtype=self.encoder.mean.bias.dtype)
        return self.decoder.sample(n, self.condition_map(z))

    @torch.no_grad()
    def sample_given_z(self, z: Tensor) -> Tensor:
        """x ~ p(x | z) for z ``[n, latent]``: the decoder's sampler (DecoderModel, for BDMC)."""
        return self.decoder.sample(z.shape[0], self.condition_map(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """A draw from p(x | z) at the posterior mean: what z kept (the decoder has no closed-form mean)."""
        mean, _ = self.encoder(x)
        return self.decoder.sample(x.shape[0], self.condition_map(mean))

    # --- Trainable -------------------------------------------------------------------------
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Adam, as in the paper's code."""
        return {"model": torch.optim.Adam(self.parameters(), lr=lr)}
