"""Density and coverage of fake features against real ones (Naeem et al., ICML 2020).

"Reliable Fidelity and Diversity Metrics for Generative Models" replaces precision/recall's
union of k-NN balls by counts over them. Real point i gets the ball B(real_i, r_i), r_i its
distance to its k-th nearest other real point; with M fakes and N reals

- density = 1/(k M) sum_j sum_i 1[fake_j in B(real_i, r_i)]: about 1 when the fakes follow the
  reals, above 1 when they crowd where the reals are dense (not bounded by 1);
- coverage = 1/N sum_i 1[some fake_j in B(real_i, r_i)]: the fraction of real balls hit, in
  [0, 1]; for fakes from the real distribution E = 1 - prod_{i=1..k} (N - i) / (M + N - i).

"In" is strict (distance < r_i), as in the authors' ``prdc``: then a real point's ball holds
itself and its k - 1 nearest neighbours, and fakes identical to the reals have density
exactly 1 and coverage exactly 1 (no ties). Squared distances are float64, from
|x|^2 + |y|^2 - 2 x.y (one matmul) after centring both sets on the real mean (smaller norms,
less cancellation), a block of ``chunk`` real rows at a time against all reals or all
fakes: memory ~ 8 chunk max(N, M) bytes (400 MB for 1024 x 50,000), never N x M. Radii and
real-fake distances come from the same computation, so a fake identical to a real point is
compared with the bitwise same numbers as that real point's neighbours.

Standard errors are over the points each value averages, the other set held fixed: density
is a mean over fakes of (balls holding fake j) / k, so its s.e. is their standard deviation
over sqrt(M); coverage is a mean of N indicators, binomial. They omit the noise of the balls
themselves (a bootstrap would not capture it either: resampled duplicates collapse k-NN radii
to zero).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(real: Tensor, fake: Tensor, k: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Both sets as float64 on the CPU, centred on the real mean; the settings validated."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake must be [N, D] and [M, D]; got {tuple(real.shape)}, "
                         f"{tuple(fake.shape)}")
    if not 1 <= k < len(real) or chunk < 1:
        raise ValueError(f"need 1 <= k < N and chunk >= 1; got k={k}, N={len(real)}, chunk={chunk}")
    real, fake = (x.detach().cpu().to(torch.float64) for x in (real, fake))
    centre = real.mean(0)
    return real - centre, fake - centre


def _blocks(real: Tensor, other: Tensor, chunk: int):
    """(row slice, squared distances [rows, len(other)]) for blocks of ``chunk`` real rows."""
    other_sq = other.pow(2).sum(1)
    for start in range(0, len(real), chunk):
        rows = slice(start, start + chunk)
        x = real[rows]
        yield rows, torch.addmm(x.pow(2).sum(1, keepdim=True) + other_sq, x, other.T, alpha=-2).clamp_(min=0)


def _knn_sq_radii(real: Tensor, k: int, chunk: int) -> Tensor:
    radii = torch.empty(len(real), dtype=real.dtype)
    for rows, d in _blocks(real, real, chunk):
        # the (k+1)-th smallest (the point itself is the smallest, 0); topk is ~10x faster than kthvalue
        radii[rows] = d.topk(k + 1, dim=1, largest=False).values[:, -1]
    return radii


def knn_radii(real: Tensor, k: int = 5, chunk: int = 1024) -> Tensor:
    """Distance of each real point to its k-th nearest other real point, float64 [N]."""
    real = _check(real, real, k, chunk)[0]
    return _knn_sq_radii(real, k, chunk).sqrt()


def binomial_se(fraction: float, n: int) -> float:
    """Standard error of a fraction of n independent indicators."""
    return (fraction * (1 - fraction) / n) ** 0.5


def density_coverage(real: Tensor, fake: Tensor, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """{"density", "coverage"} of fake [M, D] against real [N, D] with k-NN balls (Naeem et al. 2020),
    with their standard errors ``density_se`` and ``coverage_se`` (see the module docstring)."""
    real, fake = _check(real, fake, k, chunk)
    radii = _knn_sq_radii(real, k, chunk)
    balls_per_fake = torch.zeros(len(fake), dtype=torch.int64)
    covered = 0
    for rows, d in _blocks(real, fake, chunk):
        hit = d < radii[rows, None]
        balls_per_fake += hit.sum(dim=0)
        covered += int(hit.any(dim=1).sum())
    coverage = covered / len(real)
    spread = float((balls_per_fake.double() / k).std()) if len(fake) > 1 else float("nan")
    return {"density": int(balls_per_fake.sum()) / (k * len(fake)), "density_se": spread / len(fake) ** 0.5,
            "coverage": coverage, "coverage_se": binomial_se(coverage, len(real))}
