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
exactly 1 and coverage exactly 1 (no ties). The distances are ``genbench.metrics.knn``'s:
float64, a block of real rows at a time against all reals or all fakes, so memory is one block
(at most ``knn.BLOCK_BYTES``, 256 MiB, whatever N and M) plus the two sets in float64, never
N x M. Radii and real-fake distances come from the same computation, so a fake identical to a
real point is compared with the bitwise same numbers as that real point's neighbours.

Standard errors are over the points each value averages, the other set held fixed: density
is a mean over fakes of (balls holding fake j) / k, so its s.e. is their standard deviation
over sqrt(M); coverage is a mean of N indicators, binomial. They omit the noise of the balls
themselves (a bootstrap would not capture it either: resampled duplicates collapse k-NN radii
to zero).
"""

from __future__ import annotations

from torch import Tensor

from genbench.metrics.knn import ball_counts, centred, check_rows, kth_sq_radii


def knn_radii(real: Tensor, k: int = 5, chunk: int | None = None) -> Tensor:
    """Distance of each real point to its k-th nearest other real point, float64 [N] (``chunk``: rows
    of a block; None: as many as ``knn.BLOCK_BYTES`` allows)."""
    check_rows(chunk)
    real = centred(real, real, k)[0]
    return kth_sq_radii(real, k, chunk).sqrt()


def binomial_se(fraction: float, n: int) -> float:
    """Standard error of a fraction of n independent indicators."""
    return (fraction * (1 - fraction) / n) ** 0.5


def density_coverage(real: Tensor, fake: Tensor, k: int = 5, chunk: int | None = None) -> dict[str, float]:
    """{"density", "coverage"} of fake [M, D] against real [N, D] with k-NN balls (Naeem et al. 2020),
    with their standard errors ``density_se`` and ``coverage_se`` (see the module docstring).
    ``chunk``: real rows of a block of distances (None: as many as ``knn.BLOCK_BYTES`` allows)."""
    check_rows(chunk)
    real, fake = centred(real, fake, k)
    balls_per_fake, covered = ball_counts(real, kth_sq_radii(real, k, chunk), fake, closed=False, rows=chunk)
    coverage = int(covered.sum()) / len(real)
    spread = float((balls_per_fake.double() / k).std()) if len(fake) > 1 else float("nan")
    return {"density": int(balls_per_fake.sum()) / (k * len(fake)), "density_se": spread / len(fake) ** 0.5,
            "coverage": coverage, "coverage_se": binomial_se(coverage, len(real))}
