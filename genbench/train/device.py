"""Device auto-selection: cuda, then mps, then cpu, unless the user names one."""

from __future__ import annotations

import torch

from genbench.core.errors import GenbenchError


def select_device(name: str | None = None) -> torch.device:
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GenbenchError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenbenchError("device 'cuda' requested but CUDA is not available here")
    return device
