"""torch's global RNG seeded for one block and restored after it: the one way genbench draws
reproducible samples, noise and initialisations without touching its caller's RNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Inside: the global generators seeded with ``seed`` (``torch.manual_seed``: the CPU's and every
    CUDA device's). After: the CPU's state restored, and that of ``device``'s CUDA generator where
    it is one (the current CUDA device's where ``device`` is None and CUDA is available)."""
    if device is None:
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    else:
        device = torch.device(device)
        devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
