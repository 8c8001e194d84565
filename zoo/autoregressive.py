"""Masked building blocks for autoregressive models: PixelCNN convolutions and MADE layers.

- :class:`MaskedConv2d` (van den Oord et al. 2016, "Pixel Recurrent Neural Networks",
  Section 3.5): a convolution that only sees pixels before the current one in raster order.
  Mask 'A' (first layer) also hides the current pixel, mask 'B' (later layers) lets a
  feature see its own position, so a stack 'A', 'B', 'B', ... never sees x_i when predicting
  x_i. All channels of a pixel form one step: with C > 1 input channels the channels of the
  current pixel are hidden together.
- :class:`MaskedLinear` and :class:`MADE` (Germain et al. 2015, "MADE: Masked Autoencoder
  for Distribution Estimation"): a dense network whose output for dimension d depends only
  on inputs 1..d-1, through connectivity masks built from unit degrees.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_TYPES = ("A", "B")


def causal_reach(layers: int, kernel_size: int) -> int:
    """How far (in rows up, and columns either side) a stack of masked convolutions sees.

    Output (i, j) of ``layers`` stacked k x k masked convolutions depends only on inputs in
    rows i - reach .. i and columns j - reach .. j + reach, with reach = layers * (k // 2).
    """
    return layers * (kernel_size // 2)


def pixelcnn_mask(kernel_size: int, mask_type: str) -> Tensor:
    """The ``[k // 2 + 1, k]`` kernel mask: all rows above, and the left part of the last row.

    Rows below the current pixel are always masked, so they are not stored at all: the
    kernel is cropped to the rows above plus the current row (a third fewer multiply-adds
    for a 3 x 3 kernel than masking a full square kernel).
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    r = kernel_size // 2
    mask = torch.ones(r + 1, kernel_size)
    mask[r, r + (mask_type == "B"):] = 0
    return mask


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution (odd k, stride 1, same output size) that sees only earlier pixels.

    The weight holds the kernel's top k // 2 + 1 rows (see :func:`pixelcnn_mask`). The
    convolution pads k // 2 zeros on every side and drops the k // 2 extra output rows at
    the bottom, so output row i sees input rows i - k // 2 .. i (no separate padding copy).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 bias: bool = True):
        mask = pixelcnn_mask(kernel_size, mask_type)
        super().__init__(in_channels, out_channels, tuple(mask.shape), bias=bias)
        self.mask_type = mask_type
        self.reach = kernel_size // 2
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x, self.weight * self.mask, self.bias, padding=self.reach)
        return out[..., : x.shape[-2], :]


class MaskedLinear(nn.Linear):
    """A dense layer whose weight is multiplied by a fixed 0/1 connectivity ``mask [out, in]``."""

    def __init__(self, mask: Tensor, bias: bool = True):
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(dim: int, hidden: list[int], outputs_per_dim: int) -> list[Tensor]:
    """MADE connectivity masks (Germain et al. 2015, Eqs. 12-13), one per layer.

    Input d has degree d (1-based); hidden units get degrees 1..dim-1 in turn (a fixed,
    seed-free assignment); a hidden unit sees inputs of degree <= its own, and output d sees
    hidden units of degree < d. Output d therefore depends on inputs 1..d-1 only. Outputs
    are laid out ``[outputs_per_dim, dim]``, flattened.
    """
    degrees = [torch.arange(1, dim + 1)]
    for width in hidden:
        degrees.append(torch.arange(width) % max(1, dim - 1) + 1)
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in pairwise(degrees)]
    out_degrees = torch.arange(1, dim + 1).repeat(outputs_per_dim)
    masks.append((out_degrees[:, None] > degrees[-1][None, :]).float())
    return masks


class MADE(nn.Module):
    """``outputs_per_dim`` values per dimension, each a function of the preceding inputs only.

    ``forward(x [..., dim]) -> [..., outputs_per_dim, dim]``; output ``[..., j, d]`` depends
    on ``x[..., :d]`` (nothing for d = 0: a learned constant).
    """

    def __init__(self, dim: int, hidden: list[int], outputs_per_dim: int,
                 activation: type[nn.Module] = nn.ELU):
        super().__init__()
        self.dim, self.outputs_per_dim = dim, outputs_per_dim
        layers: list[nn.Module] = []
        masks = made_masks(dim, hidden, outputs_per_dim)
        for mask in masks[:-1]:
            layers += [MaskedLinear(mask), activation()]
        self.body = nn.Sequential(*layers)
        self.head = MaskedLinear(masks[-1])

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.body(x))
        return out.view(*x.shape[:-1], self.outputs_per_dim, self.dim)
