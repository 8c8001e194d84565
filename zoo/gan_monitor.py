"""What a GAN run leaves to look at: a sample grid per evaluation and a learning curve.

GANs have no likelihood to watch, so each training epoch (the loop's ``EpochCallback`` hook)
writes ``samples_epoch{N}.png`` from a fixed set of latent codes (the same codes every epoch,
so the grids show one set of samples evolving) and a row of mean losses to
``learning_curve.csv``. Loss sums live in buffers, so they are in the checkpoint and an
interrupted run's curve is the same as an uninterrupted one's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.utils import save_image

GRID_SEED = 1234


class LossRecord(nn.Module):
    """Running sums of each named loss since the last epoch end."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = names
        self.register_buffer("sums", torch.zeros(len(names), dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(len(names), dtype=torch.float64))

    def add(self, name: str, loss: Tensor) -> None:
        i = self.names.index(name)
        self.sums[i] += loss.detach().to(self.sums.dtype)
        self.counts[i] += 1

    def means_and_reset(self) -> dict[str, float]:
        means = (self.sums / self.counts.clamp(min=1)).tolist()
        self.sums.zero_()
        self.counts.zero_()
        return dict(zip(self.names, means, strict=True))


@torch.no_grad()
def save_grid(model: nn.Module, generate: Callable[[Tensor], Tensor], latent: int, run_dir: Path,
              epoch: float, n: int = 64) -> Path:
    """``samples_epoch{epoch}.png``: ``generate`` at n fixed codes, the model in eval mode."""
    device = next(model.parameters()).device
    z = torch.randn(n, latent, generator=torch.Generator().manual_seed(GRID_SEED)).to(device)
    was_training = model.training
    model.eval()
    try:
        images = generate(z).float().clamp(0, 1).cpu()
    finally:
        model.train(was_training)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"samples_epoch{epoch:g}.png"
    save_image(images, path, nrow=8)
    return path
