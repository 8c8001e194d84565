"""In-memory image data sets: one uint8 tensor per split, batches are index slices.

MNIST is 47 MB as uint8, so every split lives on the training device as one tensor and a
batch is ``split[idx]``: no per-item transforms, no DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

#: Value conventions a data set can have (``ImageDataset.kind``), each with the largest
#: stored value, which model input divides by:
#: - ``binary``: 0/1 floats (static or dynamic binarization)
#: - ``gray8``: 8-bit gray levels as floats ``pixel / 255`` in [0, 1], one channel
#: - ``rgb8``: 8-bit color levels, ``pixel / 255`` in [0, 1] per channel, channels R, G, B
MAX_LEVEL = {"binary": 1, "gray8": 255, "rgb8": 255}
KINDS = tuple(MAX_LEVEL)

#: Seed of every one-time binarization (the fixed test set of dynamically binarized data).
EVAL_BINARIZATION_SEED = 0


@dataclass
class ImageDataset:
    """Splits of one data set plus how to turn stored bytes into model inputs.

    ``splits`` maps a split name ("train", "valid", "test") to a uint8 tensor
    ``[N, C, H, W]``. With ``dynamic_binarization`` the stored values are gray levels and
    each training batch is re-sampled ``Bernoulli(pixel / 255)`` every time it is drawn
    (Burda et al.); evaluation splits were binarized once with a fixed seed at load time.
    """

    name: str
    kind: str
    splits: dict[str, Tensor]
    dynamic_binarization: bool = False
    description: str = ""
    source: str = ""
    labels: dict[str, Tensor] = field(default_factory=dict)
    feature_source: str | None = None
    """The labelled data set whose LeNet scores this one's samples (None: its own labels).

    Every MNIST variant names ``mnist8``, so FID-LeNet uses one network across them."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"data set kind must be one of {KINDS}, got {self.kind!r}")
        if self.dynamic_binarization and self.kind != "binary":
            raise ValueError("dynamic binarization yields binary data (kind 'binary')")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"].shape[1:])

    @property
    def dims(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def size(self, split: str) -> int:
        return int(self.splits[split].shape[0])

    def to(self, device: torch.device | str) -> ImageDataset:
        self.splits = {k: v.to(device) for k, v in self.splits.items()}
        return self

    @property
    def device(self) -> torch.device:
        return self.splits["train"].device

    def train_batch(self, idx: Tensor) -> Tensor:
        """The training batch ``idx`` as model input (re-binarized when dynamic).

        Dynamic binarization draws from the global torch RNG, which the training loop
        seeds per step, so a resumed run sees the same bits.
        """
        raw = self.splits["train"][idx]
        if self.dynamic_binarization:
            return torch.bernoulli(raw.float() / 255.0)
        return self._to_float(raw)

    def eval_tensor(self, split: str = "test") -> Tensor:
        """A fixed evaluation split as model input (a subset of it: ``genbench.metrics.subsets``,
        never a prefix, since files are often sorted).

        Where binarization is dynamic the training split holds gray levels; its evaluation
        view is one fixed draw (the seed of the test set's binarization).
        """
        raw = self.splits[split]
        if self.dynamic_binarization and split == "train":
            raw = binarize_once(raw.cpu(), EVAL_BINARIZATION_SEED).to(raw.device)
        return self._to_float(raw)

    def _to_float(self, raw: Tensor) -> Tensor:
        return raw.float() / MAX_LEVEL[self.kind]


def binarize_once(gray: Tensor, seed: int) -> Tensor:
    """Bernoulli(pixel / 255) with a fixed seed: the fixed test set of dynamic MNIST."""
    gen = torch.Generator().manual_seed(seed)
    probs = gray.float() / 255.0
    return torch.bernoulli(probs, generator=gen).to(torch.uint8)
