"""The one importance-sampling estimator behind every latent-variable metric.

Given a model's ``log_importance_weights(x, k)`` (``[k, B]`` values log p(x, z) - log q(z|x)):
- the ELBO estimate is the mean of log w over the k samples (L_1 averaged over k draws);
- the IWAE bound is L_k = log (1/k) sum_i w_i, which increases with k towards log p(x);
- the NLL estimate is -L_k with large k (5000 in the IWAE paper).

Memory: one model call holds at most ``max_rows`` (samples x data points) rows. Data points
are evaluated together (``max_rows // k`` per call), so each x is encoded once for all its
k samples; only when k alone exceeds ``max_rows`` are its samples drawn in chunks, combined
with a streaming logsumexp. Weights are accumulated in float64. Where the calls are many enough
to pay for it (``genbench.core.compile``: k = 5000 on thousands of points), the model's
``log_importance_weights`` is compiled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.core.compile import compiled
from genbench.core.numerics import log_mean_exp  # noqa: F401  (public: genbench.metrics.log_mean_exp)


def default_max_rows(device: torch.device) -> int:
    """Rows per model call: ~100 MB of activations for an MNIST MLP on a CPU, more on a GPU.

    On a CPU a call's largest activation should stay in the last-level cache: with 8192 rows an
    MNIST decoder's logits (at k = 5000 one point a call, 5000 x 784 floats, 16 MB) fit a 32 MB L3,
    with 16384 (three points, 47 MB) the softplus pass reads them back from memory, which is slower
    (``benchmarks/nll_estimator.py --max-rows``; the figures are in benchmarks/RESULTS.md, Benchmarks)."""
    return 1 << 18 if device.type == "cuda" else 1 << 13


def call_grouping(k: int, max_rows: int) -> tuple[int, int]:
    """(data points, samples) per model call: as many points as fit ``max_rows`` with all their k
    samples, at least one; a point's samples split only where k alone exceeds ``max_rows``."""
    return max(1, max_rows // k), min(k, max_rows)


@dataclass
class Bounds:
    """Per-example bounds in nats, float64: both from the same k samples."""

    elbo: Tensor  # mean_i log w_i, an unbiased estimate of the ELBO L_1
    iwae: Tensor  # L_k = log mean_i w_i


@torch.no_grad()
def importance_bounds(model, x: Tensor, k: int, max_rows: int | None = None) -> Bounds:
    """ELBO and L_k for every row of ``x`` from k importance samples each."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    max_rows = max_rows or default_max_rows(x.device)
    points_per_call, samples_per_call = call_grouping(k, max_rows)
    calls = -(-x.shape[0] // points_per_call) * -(-k // samples_per_call)
    log_weights = compiled(model.log_importance_weights, calls, "estimator")
    elbos, iwaes = [], []
    for start in range(0, x.shape[0], points_per_call):
        xb = x[start : start + points_per_call]
        lse = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
        total = torch.zeros(xb.shape[0], dtype=torch.float64, device=x.device)
        for done in range(0, k, samples_per_call):
            kc = min(samples_per_call, k - done)
            log_w = log_weights(xb, kc).to(torch.float64)
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, dim=0))
            total += log_w.sum(0)
        elbos.append(total / k)
        iwaes.append(lse - math.log(k))
    return Bounds(elbo=torch.cat(elbos), iwae=torch.cat(iwaes))


def iwae_bound(model, x: Tensor, k: int, max_rows: int | None = None) -> Tensor:
    """L_k per example, ``[B]`` nats (L_1 is the ELBO)."""
    return importance_bounds(model, x, k, max_rows).iwae


def elbo(model, x: Tensor, k: int = 1, max_rows: int | None = None) -> Tensor:
    """The ELBO per example, ``[B]`` nats, averaged over k samples (lower variance)."""
    return importance_bounds(model, x, k, max_rows).elbo
