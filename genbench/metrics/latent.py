"""Representation statistics of latent-variable models: active units (Burda et al. 2015).

A unit u is active when Var_x(E_q[z_u | x]) > 0.01 (population variance, as Burda's
``get_units_variances`` in yburda/iwae). Where genbench departs from that code:

- the points: genbench uses the evaluated test points (a seeded random subset, the NLL's own),
  where Burda's code uses the first 500 training images (one binarization of each where the
  data are binarized dynamically);
- the upper layers: genbench takes layer l+1's posterior mean at layer l's *mean*
  (``LayeredEncoder.encode_layers``), where Burda's code feeds layer 2 *one sample* of h1, so
  its layer-2 statistic also carries the noise of that sample.

The count comes with a bootstrap std over the points, which Burda's code does not report.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genbench.core.protocols import LayeredEncoder

#: bootstrap resamples of the test points behind the active-unit count's uncertainty
BOOTSTRAP_RESAMPLES = 200


@torch.no_grad()
def posterior_means(model, data: Tensor, batch_size: int = 1000) -> list[Tensor]:
    """Per stochastic layer, ``[N, d]`` posterior means E_q[z | x] of every point (float64)."""
    means: list[list[Tensor]] = []
    for start in range(0, data.shape[0], batch_size):
        x = data[start : start + batch_size]
        layers = model.encode_layers(x) if isinstance(model, LayeredEncoder) else [model.encode(x)]
        for i, q in enumerate(layers):
            if len(means) <= i:
                means.append([])
            means[i].append(q.mean.to(torch.float64))
    return [torch.cat(m) for m in means]


def posterior_mean_variances(model, data: Tensor, batch_size: int = 1000) -> list[Tensor]:
    """Per stochastic layer, Var_x(E_q[z_u]) of every unit u (float64)."""
    return [m.var(0, unbiased=False) for m in posterior_means(model, data, batch_size)]


def active_units_per_layer(model, data: Tensor, threshold: float = 0.01) -> list[int]:
    """Active units (Burda et al. 2015) of each stochastic layer, lowest first."""
    return active_units_with_std(model, data, threshold, resamples=0)[0]


def active_units_with_std(model, data: Tensor, threshold: float = 0.01,
                          resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[list[int], float]:
    """Active units per layer, and the std of their total over ``resamples`` bootstrap resamples
    of ``data`` (:func:`active_units_bootstrap_std`; nan when ``resamples`` is 0)."""
    means = posterior_means(model, data)
    per_layer = [int((m.var(0, unbiased=False) > threshold).sum()) for m in means]
    std = active_units_bootstrap_std(means, threshold, resamples) if resamples else float("nan")
    return per_layer, std


def active_units(model, data: Tensor, threshold: float = 0.01) -> int:
    """Units u with Cov_x(E_q[z_u]) > threshold, over all stochastic layers."""
    return sum(active_units_per_layer(model, data, threshold))


def active_units_bootstrap_std(means: list[Tensor], threshold: float = 0.01,
                               resamples: int = BOOTSTRAP_RESAMPLES,
                               generator: torch.Generator | None = None) -> float:
    """Std of the total active-unit count over bootstrap resamples of the points.

    ``means`` are :func:`posterior_means`' per-layer ``[N, d]`` matrices. Each resample draws N
    points with replacement; its per-unit variance is E_w[m^2] - E_w[m]^2 under the resample's
    point weights, for all resamples in one matmul per layer (float64). A unit near the threshold
    flips between resamples; a count far from every threshold has std 0.
    """
    n, device = means[0].shape[0], means[0].device
    index = torch.randint(n, (resamples, n), generator=generator, device="cpu").to(device)
    weights = torch.zeros(resamples, n, dtype=torch.float64, device=device)
    weights.scatter_add_(1, index, torch.full(index.shape, 1.0 / n, dtype=torch.float64, device=device))
    counts = torch.zeros(resamples, dtype=torch.float64, device=device)
    for m in means:
        centred = m - m.mean(0)  # the variance is shift-free; centring avoids cancellation
        first, second = weights @ centred, weights @ centred.square()
        counts += ((second - first.square()) > threshold).sum(1)
    return counts.std().item()
