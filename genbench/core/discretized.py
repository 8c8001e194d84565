"""Ho et al.'s discretised Gaussian decoder of 8-bit data: one definition for every diffusion model.

8-bit pixels live in a model's space [-1, 1] as 256 levels 2/255 apart. Level v has the mass of
N(mean, std^2) over [v - 1/255, v + 1/255], the first and last bins reaching to -infinity and
+infinity, so the 256 probabilities of a pixel sum to 1 (Ho et al. 2020, eq. 13). The zoo's ddpm and
the diffusers adapter both decode with it (the adapter cannot import the zoo).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: 8-bit data
LEVELS = 256


def level_index(x: Tensor) -> Tensor:
    """The level (0 .. 255) of x in [-1, 1]."""
    return ((x + 1) / 2 * (LEVELS - 1)).round().clamp(0, LEVELS - 1).long()


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor | float) -> Tensor:
    """``[B]`` log P(x) of the decoder, x the levels in [-1, 1], summed over dimensions."""
    half_bin = 1.0 / (LEVELS - 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    upper = (x + half_bin - mean) / std
    lower = (x - half_bin - mean) / std
    log_cdf = torch.special.log_ndtr
    # an inner bin's mass Phi(upper) - Phi(lower), computed on the side of the mean where it is stable
    flip = lower > 0
    a, b = torch.where(flip, -lower, upper), torch.where(flip, -upper, lower)
    log_a, log_b = log_cdf(a), log_cdf(b)
    inner = log_a + torch.log1p(-torch.exp((log_b - log_a).clamp(max=0))).clamp_min(-1e4)
    level = level_index(x)
    # the first bin: everything below its upper edge; the last: everything above its lower edge
    log_p = torch.where(level == 0, log_cdf(upper), torch.where(level == LEVELS - 1, log_cdf(-lower), inner))
    return log_p.flatten(1).sum(1)
