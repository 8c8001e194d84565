"""Numerical helpers shared by the metrics and the zoo's objectives."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    """log (1/n) sum exp(values) along ``dim``, stably."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])
