"""ELBO surgery (Hoffman & Johnson 2016): the ELBO's average KL term split in two.

With n uniform over N training points, q(n, z) = q(z|x_n) / N and the aggregate posterior
q(z) = (1/N) sum_m q(z|x_m),

    (1/N) sum_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q(z) || p(z)).

The index-code mutual information (at most log N) is KL that buys information about x; the
marginal KL is a mismatch between the aggregate posterior and the prior, which a better prior
could remove. The ELBO is E_q[log p(x|z)] minus the left-hand side.

Estimator. S samples z ~ q(z|x_n) per point n carrying samples; per sample the terms
``log q(z|x_n) - log p(z)`` (avg KL), ``log q(z|x_n) - log q(z)`` (mutual information) and
``log q(z) - log p(z)`` (marginal KL) are averaged. The same samples and the same log q(z)
serve all three, so avg_kl = mutual_info + marginal_kl holds to rounding. log q(z) is the
mixture of the N diagonal-Gaussian posteriors evaluated exactly, in chunks: the quadratic
form of every (sample, component) pair is one matmul ``[z^2, z, 1] @ [-1/(2 s^2), m/s^2, c]^T``
in float64, reduced by a streaming logsumexp. Cost grows with samples x components; memory
is one chunk, sized from a byte budget.

Component subsample (``n_components = M``). For a sample z drawn from q(z|x_n) the estimate is

    q^(z) = q(z|x_n) / N + (N-1)/N * mean_{m in C, m != n} q(z|x_m),

C a uniform random set of M of the N points (one draw shared by all samples). The sample's
own component always enters exactly, the others through an unbiased subsample, so
E_C[q^(z)] = q(z) at every z, but log q^(z) is biased low (Jensen), by about
Var(q^)/(2 q^2) = O(1/M): mutual_info is overestimated and marginal_kl underestimated by the
same amount, avg_kl (no q(z) in it) is unaffected and the identity still holds exactly. The
bias vanishes as M grows and the estimate is the exact mixture once C holds all N points.
Because q^(z) >= q(z|x_n) / N, the estimated mutual information stays <= log N. Two tempting
alternatives are worse: a plain subsample mean (1/M) sum_{m in C} q(z|x_m) misses the own
component for most samples, and with narrow posteriors q^ is then orders of magnitude too
small, so mutual_info is overestimated without bound (past log N); putting the own
component in with weight 1/M caps the estimated mutual_info at log M, far below the truth
when posteriors separate more than M points. The estimator here is of the stratified kind
Chen et al. (2018, beta-TCVAE) use for minibatch estimates of log q(z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from genbench.metrics.importance import importance_bounds

LOG_2PI = math.log(2 * math.pi)
#: bytes of float64 temporaries per (sample, component) pair: scores, their exp, a margin
BYTES_PER_PAIR = 3 * 8


@dataclass(frozen=True)
class KLDecomposition:
    """Averages over all samples (nats) with their standard errors over samples."""

    avg_kl: float
    mutual_info: float
    marginal_kl: float
    avg_kl_stderr: float
    mutual_info_stderr: float
    marginal_kl_stderr: float
    points: Tensor  # indices of the points that carried samples
    n_components: int  # size of the mixture's component subsample (N: the exact mixture)


@dataclass(frozen=True)
class Surgery:
    """The decomposition plus the ELBO (one sample per carrying point), all in nats."""

    elbo: float
    terms: KLDecomposition


def diagonal_gaussian(dist: Distribution) -> tuple[Tensor, Tensor]:
    """(mean, std) in float64 of a diagonal Gaussian with event shape [d]."""
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal) \
            and dist.reinterpreted_batch_ndims == 1:
        base = dist.base_dist
        return base.loc.to(torch.float64), base.scale.to(torch.float64).expand_as(base.loc)
    raise TypeError(f"ELBO surgery needs diagonal Gaussians (Independent(Normal, 1)), got {dist!r}")


@torch.no_grad()
def encode_gaussian(model, x: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Every point's q(z|x) as (mean, std), ``[N, d]`` float64 each."""
    parts = [diagonal_gaussian(model.encode(x[s : s + batch_size])) for s in range(0, len(x), batch_size)]
    return torch.cat([m for m, _ in parts]), torch.cat([s for _, s in parts])


def default_memory_bytes(device: torch.device) -> int:
    """Chunk budget: 16 MiB on a CPU (cache-sized chunks ran faster than 256 MiB ones:
    benchmarks/RESULTS.md, "Figures behind code choices");
    on a GPU a quarter of the free memory, at most 4 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return min(free // 4, 4 << 30)
    return 16 << 20


def chunk_shape(rows: int, cols: int, memory_bytes: int) -> tuple[int, int]:
    """(sample rows, component columns) per chunk so that one chunk fits ``memory_bytes``."""
    pairs = max(1, memory_bytes // BYTES_PER_PAIR)
    chunk_cols = min(cols, max(1, pairs // 256))  # at least 256 rows per matmul where possible
    chunk_rows = min(rows, max(1, pairs // chunk_cols))
    return chunk_rows, chunk_cols


def gaussian_log_prob(z: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(z | mean, diag(std^2)), summed over the last dimension."""
    return -0.5 * (((z - mean) / std).square() + LOG_2PI).sum(-1) - std.log().sum(-1)


def log_prior(prior: Distribution, z: Tensor) -> Tensor:
    """log p(z) in float64: closed form for a diagonal Gaussian, else the prior's own log_prob."""
    try:
        mean, std = diagonal_gaussian(prior)
    except TypeError:
        return prior.log_prob(z).to(torch.float64)
    return gaussian_log_prob(z, mean.to(z.device), std.to(z.device))


def _component_table(mean: Tensor, std: Tensor) -> Tensor:
    """``[M, 2d+1]`` rows (-1/(2 s^2), m/s^2, c): the mixture's log densities as one matmul."""
    inv_var = std.pow(-2)
    const = -0.5 * (mean.square() * inv_var).sum(-1) - std.log().sum(-1) - 0.5 * mean.shape[-1] * LOG_2PI
    return torch.cat([-0.5 * inv_var, mean * inv_var, const.unsqueeze(-1)], dim=-1)


def log_aggregate_posterior(z: Tensor, own: Tensor, own_log_q: Tensor, mean: Tensor, std: Tensor,
                            components: Tensor | None = None, memory_bytes: int | None = None) -> Tensor:
    """log q(z) per row of ``z`` (``[Z, d]``), each drawn from the posterior of point ``own``.

    ``components`` (indices into the N points, default all) are the mixture's subsample; the
    row's own component enters with weight 1/N from ``own_log_q`` whether drawn or not (see
    the module docstring). Exact mixture density when ``components`` covers all N points.
    """
    n_total = mean.shape[0]
    if components is None:
        components = torch.arange(n_total, device=mean.device)
    position = torch.full((n_total,), -1, dtype=torch.long, device=mean.device)
    position[components] = torch.arange(len(components), device=mean.device)
    own_column = position[own]  # where each row's own component sits among the columns, or -1
    others = len(components) - (own_column >= 0).to(torch.float64)
    if n_total > 1 and bool((others == 0).any()):
        raise ValueError("the component subsample must hold a point other than the sample's own")
    table = _component_table(mean[components], std[components])
    memory_bytes = memory_bytes or default_memory_bytes(mean.device)
    chunk_rows, chunk_cols = chunk_shape(z.shape[0], table.shape[0], memory_bytes)
    out = torch.empty(z.shape[0], dtype=torch.float64, device=mean.device)
    for r0 in range(0, z.shape[0], chunk_rows):
        part = slice(r0, r0 + chunk_rows)
        zr, own_col = z[part], own_column[part]
        features = torch.cat([zr.square(), zr, torch.ones_like(zr[:, :1])], dim=-1)
        rows = torch.arange(len(zr), device=mean.device)
        lse = torch.full((len(zr),), -math.inf, dtype=torch.float64, device=mean.device)
        for c0 in range(0, table.shape[0], chunk_cols):
            scores = features @ table[c0 : c0 + chunk_cols].T
            inside = (own_col >= c0) & (own_col < c0 + scores.shape[1])
            scores[rows[inside], own_col[inside] - c0] = -math.inf  # the own term enters exactly below
            lse = torch.logaddexp(lse, torch.logsumexp(scores, dim=1))
        log_weight_others = math.log(max(n_total - 1, 1) / n_total) - others[part].clamp_min(1).log()
        out[part] = torch.logaddexp(own_log_q[part] - math.log(n_total), lse + log_weight_others)
    return out


def _mean_and_stderr(values: Tensor) -> tuple[float, float]:
    n = values.numel()
    stderr = values.std().item() / math.sqrt(n) if n > 1 else math.nan
    return values.mean().item(), stderr


@torch.no_grad()
def kl_decomposition(mean: Tensor, std: Tensor, prior: Distribution, samples: int = 1,
                     n_points: int | None = None, n_components: int | None = None, seed: int = 0,
                     memory_bytes: int | None = None) -> KLDecomposition:
    """avg KL = mutual information + marginal KL from encoder outputs ``[N, d]`` (float64).

    ``n_points`` points (a uniform subsample, default all) carry ``samples`` draws each;
    ``n_components`` subsamples the mixture (default all N components: exact). All draws come
    from one CPU generator seeded with ``seed``, so results do not depend on the device or
    the chunking.
    """
    n_total, device = mean.shape[0], mean.device
    gen = torch.Generator().manual_seed(seed)
    points = torch.arange(n_total)
    if n_points is not None and n_points < n_total:
        points = torch.randperm(n_total, generator=gen)[:n_points].sort().values
    eps = torch.randn(len(points) * samples, mean.shape[1], generator=gen, dtype=torch.float64).to(device)
    components = None  # drawn after the samples: a subsample changes the mixture, not the samples
    if n_components is not None and n_components < n_total:
        if n_components < 2:
            raise ValueError(f"n_components must be >= 2, got {n_components}")
        components = torch.randperm(n_total, generator=gen)[:n_components].sort().values.to(device)
    own = points.to(device).repeat_interleave(samples)
    z = mean[own] + std[own] * eps
    own_log_q = -0.5 * (eps.square() + LOG_2PI).sum(-1) - std[own].log().sum(-1)
    log_q_z = log_aggregate_posterior(z, own, own_log_q, mean, std, components, memory_bytes)
    log_p_z = log_prior(prior, z)
    avg_kl, avg_kl_se = _mean_and_stderr(own_log_q - log_p_z)
    mi, mi_se = _mean_and_stderr(own_log_q - log_q_z)
    marginal, marginal_se = _mean_and_stderr(log_q_z - log_p_z)
    used = n_total if components is None else len(components)
    return KLDecomposition(avg_kl, mi, marginal, avg_kl_se, mi_se, marginal_se, points, used)


@torch.no_grad()
def elbo_surgery(model, x: Tensor, samples: int = 1, n_points: int | None = None,
                 n_components: int | None = None, seed: int = 0, memory_bytes: int | None = None,
                 batch_size: int = 1000) -> Surgery:
    """The decomposition for a model with a fixed prior over the training points ``x``.

    The aggregate posterior is over all rows of ``x``; the ELBO is the mean over the points
    that carry samples, one sample each. ``model.prior()`` raising NotImplementedError (a
    hierarchical model's learned p(z_1)) propagates: the decomposition needs a fixed prior.
    """
    prior = model.prior()
    mean, std = encode_gaussian(model, x, batch_size)
    terms = kl_decomposition(mean, std, prior, samples, n_points, n_components, seed, memory_bytes)
    elbo = importance_bounds(model, x[terms.points.to(x.device)], k=1).elbo.mean().item()
    return Surgery(elbo=elbo, terms=terms)
