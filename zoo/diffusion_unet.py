"""The noise (or velocity) network of the zoo's diffusion models: Ho et al.'s U-Net, sizeable down to a CPU.

A 3 x 3 input convolution; per resolution level ``res_blocks`` residual blocks (GroupNorm, SiLU,
3 x 3 convolution, the time embedding added, GroupNorm, SiLU, dropout, 3 x 3 convolution), then a
stride-2 convolution down; a middle of two residual blocks (with self-attention between them where
``attention`` is set); the mirror image up (nearest-neighbour upsampling, a 3 x 3 convolution, the
level's skip concatenated); GroupNorm, SiLU and a zero-initialised 3 x 3 output convolution. Time
enters as the Transformer's sinusoidal embedding of 1000 t through a two-layer SiLU MLP.

Ho et al.'s CIFAR-10 network is width 128, channel multipliers 1, 2, 2, 2, 2 blocks per level,
attention at 16 x 16 and dropout 0.1; here attention is at the lowest resolution only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genbench.core.errors import GenbenchError

#: the time embedding sees 1000 t, as Ho et al.'s sees the step index of T = 1000
TIME_SCALE = 1000.0


def parse_multipliers(text: str) -> tuple[int, ...]:
    """``"1,2,2"`` -> (1, 2, 2): the width multiplier of each resolution level."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise GenbenchError(f"channel_mults must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1 or max(values) > 16 or len(values) > 6:
        raise GenbenchError(f"channel_mults must be 1 to 6 integers in [1, 16], got {text!r}")
    return values


def sinusoidal_embedding(t: Tensor, dims: int) -> Tensor:
    """``[B, dims]`` sin/cos of TIME_SCALE t at geometrically spaced frequencies (Vaswani et al.)."""
    half = dims // 2
    index = torch.arange(half, device=t.device, dtype=t.dtype)
    freqs = torch.exp(-math.log(10_000) * index / max(half - 1, 1))
    angles = TIME_SCALE * t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, time_dims: int, dropout: float):
        super().__init__()
        self.first = nn.Sequential(_norm(in_channels), nn.SiLU(),
                                   nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.time = nn.Linear(time_dims, out_channels)
        self.second = nn.Sequential(_norm(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                    nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        out = self.first(h) + self.time(emb)[:, :, None, None]
        return self.skip(h) + self.second(out)


class SelfAttention(nn.Module):
    """One-head self-attention over positions, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, h: Tensor) -> Tensor:
        b, c, height, width = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(b, 3, c, height * width).unbind(1)
        attended = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return h + self.out(attended.transpose(1, 2).reshape(b, c, height, width))


class UNet(nn.Module):
    """``forward(x [B, C, H, W], t [B]) -> [B, C, H, W]``."""

    def __init__(self, channels: int, height: int, width: int, base: int, multipliers: tuple[int, ...],
                 res_blocks: int, attention: bool, dropout: float):
        super().__init__()
        halvings = len(multipliers) - 1
        if height % 2**halvings or width % 2**halvings:
            raise GenbenchError(f"a U-Net of {len(multipliers)} levels halves the image {halvings} times: "
                                f"{height} x {width} does not divide by {2**halvings}")
        time_dims = 4 * base
        self.base = base
        self.time_mlp = nn.Sequential(nn.Linear(base, time_dims), nn.SiLU(), nn.Linear(time_dims, time_dims))
        self.inp = nn.Conv2d(channels, base, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        widths, current = [], base
        for level, mult in enumerate(multipliers):
            blocks = nn.ModuleList()
            for _ in range(res_blocks):
                blocks.append(ResidualBlock(current, base * mult, time_dims, dropout))
                current = base * mult
            self.down.append(blocks)
            widths.append(current)
            last = level == halvings
            halve = nn.Conv2d(current, current, 3, stride=2, padding=1)
            self.downsample.append(nn.Identity() if last else halve)
        self.middle = nn.ModuleList([ResidualBlock(current, current, time_dims, dropout),
                                     ResidualBlock(current, current, time_dims, dropout)])
        self.attention = SelfAttention(current) if attention else nn.Identity()
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, mult in reversed(list(enumerate(multipliers))):
            last = level == halvings
            self.upsample.append(nn.Identity() if last else nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(current, current, 3, padding=1)))
            blocks = nn.ModuleList()
            for i in range(res_blocks):
                skip = widths[level] if i == 0 else 0
                blocks.append(ResidualBlock(current + skip, base * mult, time_dims, dropout))
                current = base * mult
            self.up.append(blocks)
        self.out = nn.Sequential(_norm(current), nn.SiLU(), nn.Conv2d(current, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t.to(x.dtype), self.base))
        h, skips = self.inp(x), []
        for blocks, down in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.middle[0](h, emb)
        h = self.middle[1](self.attention(h), emb)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            h = up(h)
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
        return self.out(h)
