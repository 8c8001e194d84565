"""Images laid out as one grid and written as PNG bytes: the sample grids of runs and leaderboards.

torchvision's ``make_grid`` does the same layout, but importing torchvision imports torch's
compiler stack (about a second of every process that draws a grid); the layout is a few lines.
"""

from __future__ import annotations

import io
import math

import torch
from PIL import Image, PngImagePlugin
from torch import Tensor

#: pixels of black between neighbouring images and around the grid
PADDING = 2


def image_grid(images: Tensor, nrow: int = 8, padding: int = PADDING) -> Tensor:
    """``[C, H', W']``: images ``[N, C, H, W]`` in rows of ``nrow``, ``padding`` pixels of 0 between
    them and around the grid (torchvision's ``make_grid`` layout, kept gray for one channel)."""
    n, channels, height, width = images.shape
    cols = max(1, min(nrow, n))
    rows = math.ceil(n / cols)
    grid = images.new_zeros(channels, rows * (height + padding) + padding, cols * (width + padding) + padding)
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        grid[:, top:top + height, left:left + width] = image
    return grid


def grid_png(images: Tensor, text: dict[str, str] | None = None, nrow: int = 8) -> bytes:
    """A grid of images ``[N, C, H, W]`` in [0, 1] (clamped), ``PADDING`` pixels apart, as PNG bytes:
    gray (mode L) for one channel, RGB for three; ``text`` as the PNG's text chunks."""
    images = images.detach().float().clamp(0, 1).cpu()
    pixels = (image_grid(images, nrow) * 255).round().to(torch.uint8)
    array = pixels[0].numpy() if images.shape[1] == 1 else pixels.permute(1, 2, 0).numpy()
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
