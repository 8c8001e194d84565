"""k-nearest-neighbour balls of feature sets in bounded memory, and precision/recall on them.

Precision and recall (Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing
Generative Models", NeurIPS 2019) and density and coverage (Naeem et al. 2020,
``genbench.metrics.density_coverage``) all put a ball around each point of a set, of radius its
distance to its k-th nearest other point, and count points of the other set inside the balls.

Squared distances are float64, |x|^2 + |y|^2 - 2 x.y (one matmul) after centring both sets on
the real mean (smaller norms, less cancellation), computed a block of rows at a time against
all of the other set and reduced at once (k-th smallest, counts inside balls): the N x M matrix
never exists. A block is ``rows`` x M float64 distances (``CELL_BYTES`` each; a ball test is
written over them, and the one block is reused), and ``block_rows(M)`` keeps it within
``BLOCK_BYTES`` (256 MiB) for any N and M (one row at least: 8 M bytes, 0.8 MB at M = 100,000).
The peak memory of a k-NN metric is that block, the two sets as float64 (8 (N + M) D bytes:
205 MB for 100,000 + 100,000 LeNet features of D = 128) and O(N + M) counters; unblocked,
100,000 x 100,000 distances would be 80 GB. Blocking changes which rows are computed together,
not what is counted: the tests hold several block sizes, dividing N or not, to full matrices.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: the most bytes one block of distances (and its ball test) may take
BLOCK_BYTES = 256 << 20
#: bytes of one cell of a block: its float64 squared distance (a ball test is written over it)
CELL_BYTES = 8


def block_rows(columns: int, budget: int = BLOCK_BYTES) -> int:
    """Rows of a block against ``columns`` points that fit ``budget`` bytes (at least one)."""
    return max(1, budget // (CELL_BYTES * max(1, columns)))


def centred(real: Tensor, fake: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Both sets as float64 on the CPU, centred on the real mean; shapes and ``k`` validated."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake must be [N, D] and [M, D]; got {tuple(real.shape)}, "
                         f"{tuple(fake.shape)}")
    if not 1 <= k < len(real):
        raise ValueError(f"need 1 <= k < N; got k={k}, N={len(real)}")
    real, fake = (x.detach().cpu().to(torch.float64) for x in (real, fake))
    centre = real.mean(0)
    return real - centre, fake - centre


def check_rows(rows: int | None) -> None:
    """A block size given by hand must be a positive number of rows (None: from ``BLOCK_BYTES``)."""
    if rows is not None and rows < 1:
        raise ValueError(f"need rows >= 1 per block; got {rows}")


def sq_distance_blocks(x: Tensor, y: Tensor, rows: int | None = None):
    """(row slice, squared distances [rows, len(y)]) for blocks of rows of ``x`` (``rows`` None: the
    most that fit ``BLOCK_BYTES``). Every block is written into one buffer: use a block before taking
    the next (so that two never exist at once)."""
    rows = min(rows or block_rows(len(y)), len(x))
    y_sq = y.pow(2).sum(1)
    buffer = torch.empty(rows, len(y), dtype=x.dtype)
    for start in range(0, len(x), rows):
        block = slice(start, start + rows)
        part = x[block]
        d = torch.add(part.pow(2).sum(1, keepdim=True), y_sq, out=buffer[:len(part)])
        yield block, d.addmm_(part, y.T, alpha=-2).clamp_(min=0)


def kth_sq_radii(x: Tensor, k: int, rows: int | None = None) -> Tensor:
    """Squared distance of each point of ``x`` to its k-th nearest other point, float64 [N]."""
    radii = torch.empty(len(x), dtype=x.dtype)
    for block, d in sq_distance_blocks(x, x, rows):
        # the (k+1)-th smallest (the point itself is the smallest, 0); topk, faster than kthvalue
        radii[block] = d.topk(k + 1, dim=1, largest=False).values[:, -1]
    return radii


def ball_counts(centres: Tensor, sq_radii: Tensor, points: Tensor, closed: bool,
                rows: int | None = None) -> tuple[Tensor, Tensor]:
    """(for each point, how many balls B(centre_i, r_i) hold it, int64 [M]; for each centre, whether
    its ball holds any point, bool [N]). ``closed``: distance <= r (else < r)."""
    inside = torch.le if closed else torch.lt
    per_point = torch.zeros(len(points), dtype=torch.float64)  # exact: counts stay far below 2^53
    any_point = torch.empty(len(centres), dtype=torch.bool)
    for block, d in sq_distance_blocks(centres, points, rows):
        # 1.0 inside, 0.0 outside, written over the distances: a bool block would be cast whole to
        # an integer type by sum(), a second block's worth of memory
        hit = inside(d, sq_radii[block, None], out=d)
        per_point += hit.sum(dim=0)
        any_point[block] = hit.amax(dim=1) > 0
    return per_point.to(torch.int64), any_point


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, rows: int | None = None) -> dict[str, float]:
    """{"precision", "recall"} of fake [M, D] against real [N, D] (Kynkäänniemi et al. 2019), as
    torch-fidelity defines them: precision is the fraction of fakes inside some real point's closed
    ball of radius its k-th nearest-real distance, recall the fraction of reals inside some fake's."""
    check_rows(rows)
    if not 1 <= k < len(fake):
        raise ValueError(f"need 1 <= k < M; got k={k}, M={len(fake)}")
    real, fake = centred(real, fake, k)
    fakes_in_real_balls, _ = ball_counts(real, kth_sq_radii(real, k, rows), fake, closed=True, rows=rows)
    reals_in_fake_balls, _ = ball_counts(fake, kth_sq_radii(fake, k, rows), real, closed=True, rows=rows)
    return {"precision": float((fakes_in_real_balls > 0).double().mean()),
            "recall": float((reals_in_fake_balls > 0).double().mean())}
