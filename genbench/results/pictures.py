"""PNG grids a user can look at beside the numbers: samples and test reconstructions."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.utils import save_image

from genbench.core.protocols import Reconstructor, Sampler


@torch.no_grad()
def save_pictures(model: nn.Module, test: Tensor, run_dir: Path, n: int = 64, seed: int = 0) -> list[Path]:
    """``samples.png`` (if the model samples) and ``reconstructions.png`` (originals on the
    left half, reconstructions on the right) in ``run_dir``."""
    written = []
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if isinstance(model, Sampler):
            path = run_dir / "samples.png"
            save_image(model.sample(n).float().clamp(0, 1).cpu(), path, nrow=8)
            written.append(path)
        if isinstance(model, Reconstructor):
            x = test[: n // 2]
            recon = model.reconstruct(x).float().clamp(0, 1)
            pairs = torch.stack([x.float(), recon], dim=1).flatten(0, 1).cpu()
            path = run_dir / "reconstructions.png"
            save_image(pairs, path, nrow=8)
            written.append(path)
    finally:
        torch.random.set_rng_state(state)
    return written
