"""A small synthetic binary image set made in memory (no files): for tests and smoke runs.

Images are 8x8 binary patterns drawn from a handful of noisy prototypes, so a model can
learn something in seconds and a likelihood has room to improve.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.data.base import ImageDataset

SIZE = 8
PROTOTYPES = 6
FLIP = 0.05


def make_toy(n_train: int = 2000, n_test: int = 500, seed: int = 1234) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(PROTOTYPES, 1, SIZE, SIZE, generator=gen) < 0.5

    def draw(n: int) -> torch.Tensor:
        which = torch.randint(PROTOTYPES, (n,), generator=gen)
        flips = torch.rand(n, 1, SIZE, SIZE, generator=gen) < FLIP
        return (protos[which] ^ flips).to(torch.uint8)

    return ImageDataset(
        name="toy",
        kind="binary",
        splits={"train": draw(n_train), "valid": draw(n_test), "test": draw(n_test)},
        description=f"synthetic 8x8 binary images: {PROTOTYPES} prototypes, {FLIP:.0%} bit flips",
        source="generated",
    )


def load_toy(root: Path, download: bool) -> ImageDataset:
    return make_toy()
