"""PNG grids a user can look at beside the numbers: samples and test reconstructions of a run.

Written into the run directory when a run finishes, by the grid writer of the leaderboards'
figures (``genbench.results.figures``: reproducible bytes). The reconstructed test images are a
seeded random subset (``genbench.metrics.subsets``), never a prefix: the statically binarized
MNIST test set is sorted by class, so its first 32 images are all zeros.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from genbench.core.protocols import Reconstructor
from genbench.core.rng import seeded_rng
from genbench.core.weights import atomic_write
from genbench.metrics.subsets import subset_index
from genbench.results.figures import grid_png, model_samples


def reconstruction_points(test: Tensor, n: int, seed: int) -> Tensor:
    """The ``n`` test images a reconstruction grid shows: a random subset seeded by ``seed``."""
    return test[subset_index(len(test), n, seed).to(test.device)]


@torch.no_grad()
def reconstruction_pairs(model: nn.Module, test: Tensor, n: int = 64, seed: int = 0) -> Tensor | None:
    """``n // 2`` test images each followed by its reconstruction (None where the model has none)."""
    if not isinstance(model, Reconstructor):
        return None
    x = reconstruction_points(test, n // 2, seed)
    with seeded_rng(seed, x.device):
        recon = model.reconstruct(x).float().clamp(0, 1)
    return torch.stack([x.float(), recon], dim=1).flatten(0, 1)


@torch.no_grad()
def save_pictures(model: nn.Module, test: Tensor, run_dir: Path, n: int = 64, seed: int = 0) -> list[Path]:
    """``samples.png`` (if the model samples) and ``reconstructions.png`` (each test image
    followed by its reconstruction, 8 to a row) in ``run_dir``."""
    written = []
    for name, images in (("samples.png", model_samples(model, seed, n)),
                         ("reconstructions.png", reconstruction_pairs(model, test, n, seed))):
        if images is not None:
            path = Path(run_dir) / name
            data = grid_png(images)
            atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
            written.append(path)
    return written
