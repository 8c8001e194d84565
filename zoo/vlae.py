"""The Variational Lossy Autoencoder (Chen et al. 2016, arXiv:1611.02731) for binary images.

Three parts, each a section of the paper:

- decoder p(x | z) (Section 3.1, "lossy code via explicit information placement"): a
  PixelCNN whose receptive field is a small local window (6 masked 3 x 3 layers: at most 6
  rows up and 6 columns either side). It can model local texture on its own, so only what a local
  window cannot see (the digit's global shape) is worth paying for in z.
- prior p(z) (Section 3.2, "AF prior"): a standard normal pushed through an autoregressive
  flow of MADE steps; log p(z) inverts the flow in one parallel pass per step, sampling runs
  the flow forward, sequentially over dimensions. As the paper notes, this bound equals that
  of an IAF posterior, with a deeper generative model.
- q(z | x): a diagonal Gaussian from a small strided-convolution encoder.

The paper's binarized-MNIST setup, as far as it could be checked (secondary sources, the
appendix was not at hand): a 32-dimensional code, a 6-layer PixelCNN of 3 x 3 masked
convolutions, an AF prior of MADE steps (640 hidden units), a ResNet encoder, Adamax. Here
the encoder is a small strided CNN and the decoder has 32 channels, to keep training and
sampling tractable on a CPU; both are hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import bounded
from zoo.autoregressive import MADE, MaskedConv2d, causal_reach
from zoo.layers import diagonal_normal, rsample_gaussian, standard_normal_log_prob
from zoo.objectives import ObjectiveConfig, VariationalTerms, VariationalTraining

#: softplus(raw + SOFTPLUS_ONE) + MIN_SCALE = 1 at raw = 0: a zero-initialised step is the identity
MIN_SCALE = 1e-4
SOFTPLUS_ONE = math.log(math.expm1(1.0 - MIN_SCALE))


# --- the AF prior (Section 3.2) -------------------------------------------------------------------
class AffineAutoregressiveStep(nn.Module):
    """One AF step: z_d = shift_d(z_<d) + scale_d(z_<d) * u_d, shift and scale from a MADE.

    ``inverse`` (z -> u) is one parallel MADE pass; ``forward`` (u -> z) is sequential. The
    MADE's output layer starts at zero, so the step starts as the identity.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.dim = dim
        self.made = MADE(dim, [hidden], outputs_per_dim=2)
        nn.init.zeros_(self.made.head.weight)
        nn.init.zeros_(self.made.head.bias)

    def shift_and_scale(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw_scale = self.made(z).unbind(-2)
        return shift, F.softplus(raw_scale + SOFTPLUS_ONE) + MIN_SCALE

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """u and log |det du/dz| = -sum_d log scale_d, for every row of z."""
        shift, scale = self.shift_and_scale(z)
        return (z - shift) / scale, -scale.log().sum(-1)

    def forward(self, u: Tensor) -> Tensor:
        """z from u by fixed-point iteration: after pass d the first d dimensions are exact.

        z = shift(z) + scale(z) * u is triangular, so ``dim`` passes solve it; every pass
        is out of place, so the result is differentiable (a reparameterised sample).
        """
        z = torch.zeros_like(u)
        for _ in range(self.dim):
            shift, scale = self.shift_and_scale(z)
            z = shift + scale * u
        return z


class AutoregressiveFlow(nn.Module):
    """z = f_T(R f_{T-1}(... R f_1(u))), u ~ N(0, I), R reversing the order between steps.

    Reversal lets every dimension depend on every other after two steps (Kingma et al.
    2016, IAF). ``log_prob`` is exact: log N(f^-1(z)) + log |det d f^-1 / dz|.
    """

    def __init__(self, dim: int, steps: int, hidden: int):
        super().__init__()
        self.dim = dim
        self.steps = nn.ModuleList(AffineAutoregressiveStep(dim, hidden) for _ in range(steps))
        # follows .to() and .double(), so samples land where the model lives (even with no steps)
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """u = f^-1(z) and log |det du/dz|; one parallel pass per step."""
        log_det = z.new_zeros(z.shape[:-1])
        for t in reversed(range(len(self.steps))):
            z, step_log_det = self.steps[t].inverse(z)
            log_det = log_det + step_log_det
            if t > 0:
                z = z.flip(-1)
        return z, log_det

    def forward(self, u: Tensor) -> Tensor:
        for t, step in enumerate(self.steps):
            if t > 0:
                u = u.flip(-1)
            u = step(u)
        return u

    def log_prob(self, z: Tensor) -> Tensor:
        u, log_det = self.inverse(z)
        return standard_normal_log_prob(u) + log_det

    def sample(self, n: int) -> Tensor:
        return self(torch.randn(n, self.dim, device=self.anchor.device, dtype=self.anchor.dtype))


class FlowPrior(Distribution):
    """The AF prior as a ``torch.distributions.Distribution``: event ``[dim]``, learned density."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, flow: AutoregressiveFlow):
        self.flow = flow
        super().__init__(torch.Size(), torch.Size([flow.dim]), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        """Evaluated in the flow's dtype (metrics may hand in float64 codes)."""
        return self.flow.log_prob(value.to(self.flow.anchor.dtype))

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        shape = torch.Size(sample_shape)
        return self.flow.sample(shape.numel()).view(*shape, self.flow.dim)


# --- q(z | x) --------------------------------------------------------------------------------------
class GaussianConvEncoder(nn.Module):
    """Two stride-2 3 x 3 convolutions (28 -> 14 -> 7), a dense layer, mean and log-std heads."""

    def __init__(self, data_shape: tuple[int, int, int], hidden: int, latent: int):
        super().__init__()
        channels, height, width = data_shape
        reduced = (math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2))
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2, padding=1), nn.ELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ELU(),
            nn.Flatten(), nn.Linear(64 * reduced[0] * reduced[1], hidden), nn.ELU(),
        )
        self.mean = nn.Linear(hidden, latent)
        self.log_std = nn.Linear(hidden, latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mean(h), self.log_std(h)


# --- p(x | z) (Section 3.1) -------------------------------------------------------------------------
class LatentFeatureMaps(nn.Module):
    """z -> one full-resolution feature map per decoder layer, added to its pre-activation.

    A dense layer makes a coarse grid of features (1/4 resolution where the image size
    allows: 7 x 7 for MNIST); per layer, a transposed convolution with kernel = stride paints
    each cell over its block with learned weights, so z can place detail at every pixel.
    Maps are made one layer at a time (:meth:`maps`), so a long batch holds one full-size
    map at once; they are channels-last, the faster layout for the decoder's convolutions.
    """

    def __init__(self, latent: int, channels: int, layers: int, size: tuple[int, int]):
        super().__init__()
        self.channels = channels
        self.stride = next(s for s in (4, 2, 1) if size[0] % s == 0 and size[1] % s == 0)
        self.coarse_size = (size[0] // self.stride, size[1] // self.stride)
        self.dense = nn.Linear(latent, channels * self.coarse_size[0] * self.coarse_size[1])
        self.per_layer = nn.ModuleList(
            nn.ConvTranspose2d(channels, channels, self.stride, stride=self.stride) for _ in range(layers))

    def maps(self, z: Tensor) -> Iterator[Tensor]:
        """For codes ``[..., latent]``, each layer's map ``[..., channels, H, W]`` in turn."""
        coarse = F.relu(self.dense(z)).view(-1, self.channels, *self.coarse_size)
        coarse = coarse.contiguous(memory_format=torch.channels_last)
        for upsample in self.per_layer:
            full = upsample(coarse)
            yield full.view(*z.shape[:-1], *full.shape[1:])


class LocalPixelCNN(nn.Module):
    """p(x | z) = prod_i Bernoulli(x_i | x_window(i), z): masked convolutions 'A', 'B', ..., 'B'.

    Each hidden layer is residual, h + relu(conv(h) + map_l(z)); a 1 x 1 convolution and a
    per-pixel bias give the logits. The prediction for pixel (i, j) sees only earlier pixels
    in rows i - reach .. i and columns j - reach .. j + reach, reach = layers * (kernel // 2).
    """

    #: most images per decoder pass in ``log_prob`` (k x B rows are evaluated in chunks)
    max_rows = 1024

    def __init__(self, data_shape: tuple[int, int, int], latent: int, channels: int, layers: int,
                 kernel_size: int):
        super().__init__()
        c, height, width = data_shape
        self.data_shape = (c, height, width)
        self.first = MaskedConv2d(c, channels, kernel_size, "A")
        self.hidden = nn.ModuleList(
            MaskedConv2d(channels, channels, kernel_size, "B") for _ in range(layers - 1))
        self.out = nn.Conv2d(channels, c, 1)
        self.pixel_bias = nn.Parameter(torch.zeros(c, height, width))
        self.condition = LatentFeatureMaps(latent, channels, layers, (height, width))
        self.reach = causal_reach(layers, kernel_size)

    def _logits(self, x: Tensor, maps: Iterable[Tensor]) -> Tensor:
        """Logits without the pixel bias, given each layer's z map.

        The first convolution sees only x: with x ``[B, ...]`` and maps ``[k, B, ...]`` it
        runs once per image and its output is broadcast over the k codes. Later layers add
        their map and rectify in place (a convolution's output is not needed for its backward).
        Features are channels-last, faster for these convolutions on a CPU
        (benchmarks/RESULTS.md, "Figures behind code choices").
        """
        maps = iter(maps)
        h = F.relu_(self.first(x) + next(maps)).flatten(0, -4).contiguous(memory_format=torch.channels_last)
        for conv in self.hidden:
            h = h + F.relu_(conv(h).add_(next(maps).flatten(0, -4)))
        return self.out(h)

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Logits ``[N, C, H, W]`` for images x ``[N, C, H, W]`` and codes z ``[N, latent]``."""
        return self._logits(x, self.condition.maps(z)) + self.pixel_bias

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) ``[k, B]`` for x ``[B, C, H, W]`` and z ``[k, B, latent]``.

        Teacher forcing: one batched pass over all k x B images (chunked to ``max_rows``).
        """
        per_chunk = max(1, self.max_rows // x.shape[0])
        out = []
        for zc in z.split(per_chunk):
            logits = self._logits(x, self.condition.maps(zc)) + self.pixel_bias
            logits = logits.view(zc.shape[0], *x.shape)
            out.append((x * logits - F.softplus(logits)).sum((-3, -2, -1)))
        return torch.cat(out)

    @torch.no_grad()
    def sample(self, z: Tensor, uniforms: Tensor | None = None) -> Tensor:
        """x ~ p(x | z), pixel by pixel in raster order: x_i = [u_i < sigmoid(logit_i)].

        ``uniforms`` ``[n, C, H, W]`` (drawn if not given) make the draw checkable.
        """
        _, height, width = self.data_shape
        x = z.new_zeros(z.shape[0], *self.data_shape)
        u = torch.rand_like(x) if uniforms is None else uniforms
        maps = list(self.condition.maps(z))
        for i in range(height):
            for j in range(width):
                logit = self._pixel_logit(x, maps, i, j)
                x[:, :, i, j] = (u[:, :, i, j] < torch.sigmoid(logit)).to(x.dtype)
        return x

    def _pixel_logit(self, x: Tensor, maps: list[Tensor], i: int, j: int) -> Tensor:
        """The logit ``[n, C]`` of pixel (i, j), computing only the features it depends on.

        Layer l's output is needed where the remaining layers can still reach (i, j):
        rows i - d .. i and columns j - d .. j + d, d = (layers - l) * (kernel // 2). Each
        convolution runs on the previous layer's region; the zero padding at that region's
        edges corrupts only a border of kernel // 2 pixels, which is cut away (at the
        image's own edges the padding is the true one).
        """
        width = self.data_shape[2]
        step = self.first.reach
        layers = [self.first, *self.hidden]

        def region(depth: int) -> tuple[int, int, int]:
            return max(0, i - depth * step), max(0, j - depth * step), min(width, j + depth * step + 1)

        top, left, right = region(len(layers))
        h = x[:, :, top : i + 1, left:right]
        for depth, conv in enumerate(layers, start=1):
            new_top, new_left, new_right = region(len(layers) - depth)
            keep = (..., slice(new_top - top, None), slice(new_left - left, new_right - left))
            out = F.relu_(conv(h)[keep] + maps[depth - 1][:, :, new_top : i + 1, new_left:new_right])
            h = out if conv is self.first else h[keep] + out
            top, left, right = new_top, new_left, new_right
        return self.out(h)[:, :, 0, 0] + self.pixel_bias[:, i, j]


# --- the model ----------------------------------------------------------------------------------------
@dataclass
class VLAEConfig(ObjectiveConfig):
    latent: int = bounded(32, "[1, 1024]")
    """Dimensions of the global code z (the paper's MNIST setup: 32)."""
    flow_steps: int = bounded(2, "[0, 64]")
    """Autoregressive-flow steps in the prior; the order is reversed between steps."""
    flow_hidden: int = bounded(640, "[1, 8192]")
    """Hidden units of each step's MADE (one hidden layer)."""
    decoder_layers: int = bounded(6, "[1, 64]")
    """Masked convolutions in the PixelCNN decoder: its window reaches layers * (kernel // 2) pixels."""
    decoder_channels: int = bounded(32, "[1, 1024]")
    """Feature maps per decoder layer."""
    kernel_size: int = bounded(3, "[3, 15]")
    """Odd kernel size of the masked convolutions."""
    encoder_hidden: int = bounded(256, "[1, 4096]")
    """Dense units between the encoder's convolutions and the Gaussian heads."""

    def __post_init__(self):
        super().__post_init__()
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")


class VLAE(VariationalTraining, nn.Module):
    """VLAE: AF prior, diagonal Gaussian q(z | x), local PixelCNN p(x | z), Bernoulli pixels."""

    def __init__(self, config: VLAEConfig, data_shape: tuple[int, ...]):
        super().__init__()
        if len(data_shape) != 3:
            raise GenbenchError(f"vlae: needs images [C, H, W], got data shape {list(data_shape)}")
        self.config = config
        self.data_shape = tuple(data_shape)
        self.encoder = GaussianConvEncoder(self.data_shape, config.encoder_hidden, config.latent)
        self.flow = AutoregressiveFlow(config.latent, config.flow_steps, config.flow_hidden)
        self.decoder = LocalPixelCNN(self.data_shape, config.latent, config.decoder_channels,
                                     config.decoder_layers, config.kernel_size)

    # --- LatentVariableModel (log_importance_weights from VariationalTraining) ------------
    def variational_terms(self, x: Tensor, k: int) -> VariationalTerms:
        mean, log_std = self.encoder(x)  # x is encoded once for all k samples
        z, log_q = rsample_gaussian(mean.expand(k, *mean.shape), log_std.expand(k, *log_std.shape))
        kl = log_q - self.flow.log_prob(z)
        return VariationalTerms(self.decoder.log_prob(x, z), [kl])

    def encode(self, x: Tensor) -> Distribution:
        return diagonal_normal(*self.encoder(x))

    def prior(self) -> Distribution:
        return FlowPrior(self.flow)

    # --- Sampler and pictures ------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.decoder.sample(self.flow.sample(n))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """A draw from p(x | z) at the posterior mean: the paper's "decompression" (Figure 1).

        An autoregressive decoder has no closed-form mean; the draw shows what z kept.
        """
        mean, _ = self.encoder(x)
        return self.decoder.sample(mean)

    # --- DataInitialized, Trainable ------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x_train: Tensor) -> None:
        """The decoder's per-pixel bias starts at the logit of the training mean."""
        mean = x_train.float().mean(0).clamp(1e-4, 1 - 1e-4)
        self.decoder.pixel_bias.copy_(torch.logit(mean))

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Adamax, the paper's optimiser."""
        return {"model": torch.optim.Adamax(self.parameters(), lr=lr)}
