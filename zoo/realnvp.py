"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP") for 8-bit images.

An exact-likelihood flow: z = f(y) with f a stack of invertible steps, z ~ N(0, I), so
log p(y) = log N(f(y)) + log |det df/dy|. The pieces, each a section of the paper:

- affine coupling (Section 3.3): y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x)), with a
  checkerboard mask b or a channel-wise one (Section 3.4); log |det| = sum of s. s and t come
  from one residual network; s = scale * tanh(raw), per channel, as in the reference code
  (tensorflow/models research/real_nvp), so the log-scale stays bounded.
- multi-scale architecture (Section 3.6): per scale, 3 checkerboard couplings, a 2 x 2 squeeze
  (space to depth), 3 channel-wise couplings, then half the channels are factored out as
  latents; the last scale has 4 checkerboard couplings. Each scale doubles the residual
  networks' width (the channel-wise couplings use twice that), as in the reference code.
- normalisation after every coupling, counted in the log-determinant (Section 3.7): the
  paper's batch norm (batch statistics while training, optionally lagged by the running
  average as in Appendix E; running averages in eval mode) or act-norm (Kingma & Dhariwal
  2018: a per-channel affine map initialised from data). ``norm`` picks one for the flow and
  for the residual networks; act-norm (the default) keeps ``log_prob`` a fixed function of x.
- preprocessing (Section 4.1): uniform dequantization x_c = (pixel + u) / 256, u ~ U[0, 1),
  then y = logit(alpha + (1 - 2 alpha) x_c) with alpha = 0.05; its Jacobian is counted.

Units: ``log_density(x_c)`` is the continuous log-density of x_c in [0, 1]^D; ``log_prob(x)``
is the dequantization bound of the discrete pixels, log p(x_c) - D ln 256 with one uniform
draw per call (E_u[log p(x_c)] - D ln 256 <= log P(pixels) by Jensen), so
``bits_per_dim(-log_prob, D)`` is the paper's bits/dim and ``ln 256`` is counted here, once.

Deviations from the paper: no weight normalisation in the residual networks and no skip
connections from each block to the output (the reference code has both); act-norm by
default.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Hyperparameters, bounded
from zoo.layers import fused_supported, standard_normal_log_prob

NORMS = ("actnorm", "batchnorm")
#: added to batch norm's variance before dividing
NORM_EPS = 1e-4
#: act-norm init leaves the scale of a channel with less spread than this at 1
MIN_INIT_STD = 1e-3


# --- normalisation ----------------------------------------------------------------------------------
class ActNorm(nn.Module):
    """y = (x + loc) * exp(log_scale) per channel; the identity until initialised from data.

    While ``pending_init`` is set, the next forward pass first sets loc and log_scale so that
    its own output has zero mean and unit variance per channel (Kingma & Dhariwal 2018). A
    channel that is constant on that data (a coupling on a 1 x 1 image conditions on nothing, so
    its network sees only constants) keeps scale 1: dividing by a zero spread would blow up
    every later change.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.pending_init = False

    def forward(self, x: Tensor) -> Tensor:
        if self.pending_init:
            with torch.no_grad():
                std = x.std((0, 2, 3), keepdim=True)
                self.loc.copy_(-x.mean((0, 2, 3), keepdim=True))
                self.log_scale.copy_(torch.where(std > MIN_INIT_STD, -std.log(), 0.0))
            self.pending_init = False
        return (x + self.loc) * self.log_scale.exp()


class ActNormStep(nn.Module):
    """Act-norm as a flow step: log |det| = H W sum_c log_scale_c."""

    def __init__(self, channels: int, config: RealNVPConfig):
        super().__init__()
        self.norm = ActNorm(channels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self.norm(x)
        log_det = self.norm.log_scale.sum() * x.shape[-2] * x.shape[-1]
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * (-self.norm.log_scale).exp() - self.norm.loc


class BatchNormStep(nn.Module):
    """The paper's batch norm on a coupling's output: y = (x - mean) / sqrt(var + eps) per channel.

    Training uses the batch's statistics, moved towards the running averages by ``lag``
    (Appendix E: mean = lag * running + (1 - lag) * batch, gradients through the batch part
    only; lag 0, the reference code's default, is plain batch statistics); the running
    averages follow the batch statistics at rate ``momentum``. Eval mode and ``inverse`` use
    the running averages, so the step is an exact bijection there. log |det| =
    -H W / 2 sum_c log(var_c + eps), the statistics taken as constants.
    """

    def __init__(self, channels: int, config: RealNVPConfig):
        super().__init__()
        self.momentum, self.lag = config.batchnorm_momentum, config.batchnorm_lag
        self.register_buffer("running_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("running_var", torch.ones(1, channels, 1, 1))
        self.pending_init = False

    def _statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not (self.training or self.pending_init):
            return self.running_mean, self.running_var
        mean = x.mean((0, 2, 3), keepdim=True)
        var = x.var((0, 2, 3), keepdim=True, unbiased=False)
        if self.pending_init:  # data init: the running averages become this data's statistics
            used, rate = (mean, var), 1.0
        else:
            running = self.running_mean.clone(), self.running_var.clone()
            used = mean.lerp(running[0], self.lag), var.lerp(running[1], self.lag)
            rate = self.momentum
        with torch.no_grad():
            self.running_mean.lerp_(mean, rate)
            self.running_var.lerp_(var, rate)
        self.pending_init = False
        return used

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, var = self._statistics(x)
        log_std = 0.5 * (var + NORM_EPS).log()
        log_det = -log_std.sum() * x.shape[-2] * x.shape[-1]
        return (x - mean) * (-log_std).exp(), log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * (self.running_var + NORM_EPS).sqrt() + self.running_mean


#: the flow's normalisation step after each coupling, and the residual networks' feature norm
NORM_STEPS = {"actnorm": ActNormStep, "batchnorm": BatchNormStep}
FEATURE_NORMS = {"actnorm": ActNorm, "batchnorm": lambda channels: nn.BatchNorm2d(channels, eps=NORM_EPS)}


# --- the s and t networks ---------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """h + conv(relu(norm(conv(relu(norm(h)))))), 3 x 3 convolutions (pre-activation ResNet)."""

    def __init__(self, width: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            FEATURE_NORMS[norm](width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
            FEATURE_NORMS[norm](width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ScaleShiftNet(nn.Module):
    """The coupling's s and t: a 3 x 3 convolution, residual blocks, norm, ReLU, 3 x 3 output.

    The output convolution starts at zero, so every coupling starts as the identity; the
    log-scale is ``scale * tanh(raw)`` with a learned per-channel ``scale`` (starting at 1).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, blocks: int, norm: str):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            *[ResidualBlock(width, norm) for _ in range(blocks)],
            FEATURE_NORMS[norm](width), nn.ReLU())
        self.out = nn.Conv2d(width, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.scale = nn.Parameter(torch.ones(1, out_channels, 1, 1))

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        raw, shift = self.out(self.net(h)).chunk(2, dim=1)
        return self.scale * torch.tanh(raw), shift


# --- coupling layers and the squeeze ------------------------------------------------------------------
def checkerboard(height: int, width: int, parity: int, like: Tensor) -> Tensor:
    """``[1, 1, H, W]``: 1 where (i + j) % 2 == parity (the pixels a coupling conditions on)."""
    i = torch.arange(height, device=like.device)[:, None]
    j = torch.arange(width, device=like.device)[None, :]
    return ((i + j) % 2 == parity).to(like.dtype)[None, None]


class CheckerboardCoupling(nn.Module):
    """Affine coupling with a checkerboard mask b: pixels with b = 1 pass unchanged and condition
    the others. The network sees b * x and b itself (as the reference code does)."""

    def __init__(self, channels: int, parity: int, width: int, blocks: int, norm: str):
        super().__init__()
        self.parity = parity
        self.st = ScaleShiftNet(channels + 1, channels, width, blocks, norm)

    def _scale_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b = checkerboard(x.shape[-2], x.shape[-1], self.parity, x)
        s, t = self.st(torch.cat([x * b, b.expand(x.shape[0], 1, -1, -1)], dim=1))
        return s * (1 - b), t * (1 - b)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(x)
        return x * s.exp() + t, s.sum((1, 2, 3))

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self._scale_shift(y)  # the conditioning pixels are the same in x and y
        return (y - t) * (-s).exp()


class ChannelCoupling(nn.Module):
    """Affine coupling on channel halves: with parity 0 the first half conditions the second,
    with parity 1 the other way round."""

    def __init__(self, channels: int, parity: int, width: int, blocks: int, norm: str):
        super().__init__()
        self.parity = parity
        self.st = ScaleShiftNet(channels // 2, channels // 2, width, blocks, norm)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        halves = x.chunk(2, dim=1)
        return (halves[0], halves[1]) if self.parity == 0 else (halves[1], halves[0])

    def _join(self, fixed: Tensor, changed: Tensor) -> Tensor:
        return torch.cat([fixed, changed] if self.parity == 0 else [changed, fixed], dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        fixed, changed = self._split(x)
        s, t = self.st(fixed)
        return self._join(fixed, changed * s.exp() + t), s.sum((1, 2, 3))

    def inverse(self, y: Tensor) -> Tensor:
        fixed, changed = self._split(y)
        s, t = self.st(fixed)
        return self._join(fixed, (changed - t) * (-s).exp())


#: 2 x 2 sub-pixel order of the squeeze: (0, 0), (1, 1) first, so that the first half of the
#: squeezed channels is one checkerboard colour and the second half the other (as the
#: reference code's ordered squeeze): channel couplings and factoring out split by colour
SUBPIXEL_ORDER = (0, 3, 1, 2)


class Squeeze(nn.Module):
    """[C, H, W] -> [4C, H/2, W/2], channel = subpixel * C + c; volume preserving."""

    def __init__(self):
        super().__init__()
        self.register_buffer("order", torch.tensor(SUBPIXEL_ORDER), persistent=False)
        self.register_buffer("inverse_order", torch.argsort(self.order), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        blocks = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
        blocks = blocks.reshape(b, 4, c, h // 2, w // 2)
        return blocks[:, self.order].reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y: Tensor) -> Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        blocks = y.reshape(b, 4, c, h, w)[:, self.inverse_order].reshape(b, 2, 2, c, h, w)
        return blocks.permute(0, 3, 4, 1, 5, 2).reshape(b, c, 2 * h, 2 * w)


# --- the model ---------------------------------------------------------------------------------------
@dataclass
class RealNVPConfig(Hyperparameters):
    """Defaults are the paper's CIFAR-10 model (8 residual blocks, 64 features, one downscale)."""

    scales: int = bounded(2, "[1, 8]")
    """Scales of the multi-scale architecture; each but the last squeezes, so H and W must be
    divisible by 2^(scales - 1) (28 x 28: at most 3, 32 x 32: at most 6)."""
    width: int = bounded(64, "[1, 1024]")
    """Features of the first scale's s/t networks; doubled at every scale."""
    blocks: int = bounded(8, "[1, 64]")
    """Residual blocks per s/t network."""
    norm: str = "actnorm"
    """'actnorm' (data-initialised, deterministic) or 'batchnorm' (the paper's)."""
    alpha: float = bounded(0.05, "(0, 0.5)")
    """y = logit(alpha + (1 - 2 alpha) x): keeps the logit away from 0 and 1."""
    weight_decay: float = bounded(5e-5, "[0, 1]")
    """L2 coefficient on the s/t networks' convolution weights (the paper's 5e-5)."""
    batchnorm_momentum: float = bounded(0.1, "(0, 1]")
    """Rate at which batch norm's running averages follow the batch (the reference code's 0.1)."""
    batchnorm_lag: float = bounded(0.0, "[0, 1)")
    """Appendix E: weight of the running average in the statistics used while training."""
    init_points: int = bounded(512, "[1, 60000]")
    """Training images (a seeded subset) in ``init_from_data``'s one forward pass."""

    def __post_init__(self):
        super().__post_init__()
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")


def max_scales(height: int, width: int) -> int:
    """1 + the number of times both sides halve exactly (28 -> 14 -> 7: 3)."""
    halvings = 0
    while height % 2 == 0 and width % 2 == 0:
        height, width, halvings = height // 2, width // 2, halvings + 1
    return 1 + halvings


class FlowScale(nn.Module):
    """One scale's steps (couplings, norms, the squeeze); ``factor_out``: half its output
    channels leave as latents."""

    def __init__(self, channels: int, width: int, last: bool, config: RealNVPConfig):
        super().__init__()
        self.factor_out = not last
        norm = config.norm
        steps: list[nn.Module] = []
        for k in range(4 if last else 3):
            steps += [CheckerboardCoupling(channels, k % 2, width, config.blocks, norm),
                      NORM_STEPS[norm](channels, config)]
        if not last:
            steps.append(Squeeze())
            for k in range(3):
                steps += [ChannelCoupling(4 * channels, k % 2, 2 * width, config.blocks, norm),
                          NORM_STEPS[norm](4 * channels, config)]
        self.steps = nn.ModuleList(steps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, step_log_det = step(x)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, y: Tensor) -> Tensor:
        for step in reversed(self.steps):
            y = step.inverse(y)
        return y


class RealNVP(nn.Module):
    """Multi-scale RealNVP on logit-transformed, dequantized 8-bit images; z ~ N(0, I)."""

    def __init__(self, config: RealNVPConfig, data_shape: tuple[int, ...]):
        super().__init__()
        if len(data_shape) != 3:
            raise GenbenchError(f"realnvp: needs images [C, H, W], got data shape {list(data_shape)}")
        channels, height, width = data_shape
        most = max_scales(height, width)
        if config.scales > most:
            raise GenbenchError(f"realnvp: {height} x {width} images halve {most - 1} times, so at most "
                                f"{most} scales; got scales={config.scales}")
        self.config = config
        self.data_shape = tuple(data_shape)
        self.dims = math.prod(self.data_shape)
        scales, shapes = [], []
        for i in range(config.scales):
            last = i == config.scales - 1
            scales.append(FlowScale(channels, config.width * 2**i, last, config))
            if not last:
                channels, height, width = 2 * channels, height // 2, width // 2
                shapes.append((channels, height, width))  # the factored-out half
        shapes.append((channels, height, width))
        self.scales = nn.ModuleList(scales)
        #: shapes of the latent pieces: each scale's factored-out half, then the last output
        self.latent_shapes = shapes
        # follows .to() and .double(), so samples land where the model lives
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    # --- the flow y <-> z -------------------------------------------------------------------
    def flow_forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """z ``[B, D]`` (the latent pieces, flattened and concatenated) and log |det dz/dy| ``[B]``."""
        pieces, log_det = [], y.new_zeros(y.shape[0])
        h = y
        for scale in self.scales:
            h, scale_log_det = scale(h)
            log_det = log_det + scale_log_det
            if scale.factor_out:
                h, out = h.chunk(2, dim=1)
                pieces.append(out.flatten(1))
        pieces.append(h.flatten(1))
        return torch.cat(pieces, dim=1), log_det

    def flow_inverse(self, z: Tensor) -> Tensor:
        """y ``[B, C, H, W]`` from z ``[B, D]``: the exact inverse of :meth:`flow_forward` (in eval
        mode, where batch norm uses its running averages)."""
        sizes = [math.prod(shape) for shape in self.latent_shapes]
        pieces = [p.reshape(-1, *shape) for p, shape in zip(z.split(sizes, dim=1), self.latent_shapes,
                                                          strict=True)]
        h = pieces.pop()
        for scale in reversed(self.scales):
            if scale.factor_out:
                h = torch.cat([h, pieces.pop()], dim=1)
            h = scale.inverse(h)
        return h

    # --- preprocessing ------------------------------------------------------------------------
    def dequantize(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_c = (pixel + u) / 256, u ~ U[0, 1), for x = pixel / 255."""
        pixels = (x * 255).round().clamp(0, 255)
        u = torch.rand(pixels.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (pixels + u) / 256

    def logit_transform(self, x_c: Tensor) -> tuple[Tensor, Tensor]:
        """y = logit(alpha + (1 - 2 alpha) x_c) and log |det dy/dx_c| ``[B]``."""
        alpha = self.config.alpha
        p = alpha + (1 - 2 * alpha) * x_c
        y = p.log() - (-p).log1p()
        log_det = (math.log(1 - 2 * alpha) - p.log() - (-p).log1p()).flatten(1).sum(1)
        return y, log_det

    def inverse_logit_transform(self, y: Tensor) -> Tensor:
        return (torch.sigmoid(y) - self.config.alpha) / (1 - 2 * self.config.alpha)

    # --- ExactLikelihood ----------------------------------------------------------------------
    def log_density(self, x_c: Tensor) -> Tensor:
        """``[B]`` log-density (nats) of continuous x_c in [0, 1]^D: the flow's Gaussian log-density,
        its log-determinant and that of the logit transform."""
        y, logit_log_det = self.logit_transform(x_c)
        z, flow_log_det = self.flow_forward(y)
        return standard_normal_log_prob(z) + flow_log_det + logit_log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """``[B]`` lower bound (nats) on log P(pixels) for x = pixel / 255: log p(x_c) - D ln 256 at
        one dequantization x_c (a fresh uniform draw per call; its mean over draws is the bound)."""
        return self.log_density(self.dequantize(x)) - self.dims * math.log(256)

    # --- Sampler -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """z ~ N(0, I), the inverse flow and logit, then the 8-bit level: floor(256 x_c) / 255."""
        z = torch.randn(n, self.dims, device=self.anchor.device, dtype=self.anchor.dtype)
        x_c = self.inverse_logit_transform(self.flow_inverse(z))
        return (x_c * 256).floor().clamp(0, 255) / 255

    # --- DataInitialized, Trainable --------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x_train: Tensor) -> None:
        """One forward pass over ``init_points`` training images (seeded subset and noise): every
        act-norm layer sets itself to give zero mean and unit variance on it; batch norm takes
        its running averages from it."""
        gen = torch.Generator().manual_seed(0)
        n = min(self.config.init_points, x_train.shape[0])
        idx = torch.randperm(x_train.shape[0], generator=gen)[:n].to(x_train.device)
        x = x_train[idx].to(self.anchor.dtype)
        x_c = self.dequantize(x.cpu(), gen).to(x.device)
        was_training = self.training
        for module in self.modules():
            if hasattr(module, "pending_init"):
                module.pending_init = True
        self.train()
        self.log_density(x_c)
        self.train(was_training)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Adam; L2 ``weight_decay`` (coupled, as the paper's loss term) on the convolution weights only."""
        convs = [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]
        conv_ids = {id(p) for p in convs}
        rest = [p for p in self.parameters() if id(p) not in conv_ids]
        groups = [{"params": convs, "weight_decay": self.config.weight_decay},
                  {"params": rest, "weight_decay": 0.0}]
        return {"model": torch.optim.Adam(groups, lr=lr, fused=fused_supported(self))}

    def training_losses(self, x: Tensor) -> Iterator[tuple[str, Tensor]]:
        """The batch's mean NLL bound in bits/dim (the paper's objective; 8 for a uniform model)."""
        yield "model", -self.log_prob(x).mean() / (self.dims * math.log(2))
