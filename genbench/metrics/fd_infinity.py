"""The Fréchet distance of two Gaussians and FD∞, FID extrapolated to infinitely many samples.

FID estimated from N samples is biased upwards, by roughly c / N with a c that depends on the
model (Chong & Forsyth, "Effectively Unbiased FID and Inception Score and where to find
them", CVPR 2020): comparing models at one N compares their biases too. FD∞ evaluates FID on
random subsets of the fake features at several sizes, fits FID(n) = FD∞ + slope / n by least
squares and reports the intercept. The paper's protocol: 15 sizes evenly spaced from 5,000
to 50,000 (a tenth of N to N), subsets drawn without replacement (their
``score_infinity.py``). genbench's default starts at a fifth of N: with the few thousand
samples it usually has, the smallest subsets at a tenth are so noisy and so far from the
1/n regime (n not >> D) that FD∞ scatters more (Gaussian toy, D = 32, N = 2000: standard
deviation 0.030 at 0.1 against 0.024 at 0.2) and its standard error is too small.
Everything is float64, converted a block of ``ROW_BLOCK_BYTES`` rows at a time: moments and
influences are accumulated block by block, so beyond the features as given (float32 from
torch-fidelity) memory is one block, D x D matrices and N influence values, never a float64
copy of the N x D features (1.6 GB for 100,000 Inception features). The real statistics are
taken as given: FD∞ removes the bias of the fakes' statistics only; real moments from N_r
samples keep theirs (about slope / N_r when N_r ~ N), which is why the paper uses 50,000 real
images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: bytes of float64 feature rows converted at a time
ROW_BLOCK_BYTES = 32 << 20


def _as_float64(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _as_features(x: Tensor | np.ndarray) -> np.ndarray:
    """Features as a numpy array in their own float32 or float64 (other dtypes as float64): no copy."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float64)).numpy()
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _row_blocks(x: np.ndarray, index: np.ndarray | None = None):
    """float64 copies of blocks of rows of ``x`` (of ``x[index]``), ``ROW_BLOCK_BYTES`` at a time."""
    n = len(x) if index is None else len(index)
    rows = max(1, ROW_BLOCK_BYTES // (8 * max(1, x.shape[1])))
    for start in range(0, n, rows):
        part = x[start:start + rows] if index is None else x[index[start:start + rows]]
        yield part.astype(np.float64)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance; eigenvalues below 0 (rounding) are taken as 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _trace_sqrt_product(sigma1: np.ndarray, sqrt_sigma2: np.ndarray) -> float:
    """tr sqrt(sigma1 sigma2) as tr sqrt(S sigma1 S), S = sigma2^(1/2): a symmetric PSD matrix.

    sigma1 sigma2 and S sigma1 S are similar, so their eigenvalues agree; the symmetric form
    needs only ``eigvalsh`` and has real eigenvalues. Those just below 0 (rounding) count as
    0, which is what torch-fidelity's real part of the complex square root gives.
    """
    a = sqrt_sigma2 @ sigma1 @ sqrt_sigma2
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((a + a.T) / 2), 0, None)).sum())


def frechet_distance(mu1: Tensor | np.ndarray, sigma1: Tensor | np.ndarray,
                     mu2: Tensor | np.ndarray, sigma2: Tensor | np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), in float64.

    The squared 2-Wasserstein distance of N(mu1, sigma1) and N(mu2, sigma2), i.e. FID when the
    moments are those of network features (Heusel et al. 2017).
    """
    mu1, sigma1, mu2, sigma2 = map(_as_float64, (mu1, sigma1, mu2, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shapes differ: mu {mu1.shape}, {mu2.shape}; sigma {sigma1.shape}, {sigma2.shape}")
    return _frechet(mu1, sigma1, mu2, sigma2, _psd_sqrt(sigma2))


def _frechet(mu1, sigma1, mu2, sigma2, sqrt_sigma2) -> float:
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * _trace_sqrt_product(sigma1, sqrt_sigma2))


def _moments(x: np.ndarray, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased ((n-1)-normalised) covariance of the rows of ``x`` (of ``x[index]``), as
    ``np.cov`` and torch-fidelity, accumulated over blocks of rows (two passes: the mean first)."""
    n = len(x) if index is None else len(index)
    mu = sum(block.sum(0) for block in _row_blocks(x, index)) / n
    scatter = np.zeros((x.shape[1],) * 2)
    for block in _row_blocks(x, index):
        block -= mu
        scatter += block.T @ block
    return mu, scatter / (n - 1)


def _first_order_variance(x: np.ndarray, mu1, sigma1, mu2, sqrt_sigma2) -> float:
    """Variance of the influence function of FID at the fakes x: var(FID of N fakes) ~ this / N.

    The delta method: FID = f(mean, cov) with df/dmean = 2 (mu1 - mu2) and
    df/dcov = I - S (S sigma1 S)^(-1/2) S, S = sigma2^(1/2) (pseudo-inverse on a null space).
    It vanishes when the two Gaussians coincide (FID is then second order in the noise).
    """
    w, v = np.linalg.eigh(sqrt_sigma2 @ sigma1 @ sqrt_sigma2)
    keep = w > w.max() * 1e-12
    inv_sqrt = (v[:, keep] / np.sqrt(w[keep])) @ v[:, keep].T
    grad_cov = np.eye(len(mu1)) - sqrt_sigma2 @ inv_sqrt @ sqrt_sigma2
    influence = np.concatenate([_influence(block - mu1, mu1 - mu2, grad_cov) for block in _row_blocks(x)])
    return float(influence.var(ddof=1))


def _influence(centred: np.ndarray, mean_gap: np.ndarray, grad_cov: np.ndarray) -> np.ndarray:
    """The influence function of FID at rows already centred on the fakes' mean (one value a row)."""
    return 2 * centred @ mean_gap + ((centred @ grad_cov) * centred).sum(1)


def fid_stderr(fake: Tensor | np.ndarray, real_mu: Tensor | np.ndarray,
               real_sigma: Tensor | np.ndarray) -> float:
    """Delta-method standard error of the FID of the N fakes over draws of the fakes (the real
    statistics held fixed). Near zero where the two Gaussians coincide: FID is then second order."""
    x, mu2, sigma2 = _as_features(fake), _as_float64(real_mu), _as_float64(real_sigma)
    mu1, sigma1 = _moments(x)
    return (_first_order_variance(x, mu1, sigma1, mu2, _psd_sqrt(sigma2)) / len(x)) ** 0.5


def subset_sizes(n: int, sizes: int = 15, min_fraction: float = 0.2) -> np.ndarray:
    """``sizes`` subset sizes evenly spaced from ``min_fraction * n`` to ``n`` (truncated to int)."""
    out = np.linspace(min_fraction * n, n, sizes).astype(np.int64)
    if sizes < 3 or not 0 < min_fraction <= 1 or out[0] < 2 or len(np.unique(out)) < 3:
        raise ValueError(f"FD-infinity needs >= 3 distinct subset sizes of >= 2 points; got {out.tolist()} "
                         f"from n={n}, sizes={sizes}, min_fraction={min_fraction}")
    return out


def fd_infinity(fake: Tensor, real_mu: Tensor | np.ndarray, real_sigma: Tensor | np.ndarray, *,
                rng: np.random.Generator, sizes: int = 15, min_fraction: float = 0.2) -> dict:
    """FD∞ of fake features [N, D] against real moments (Chong & Forsyth 2020).

    For each of ``subset_sizes(N, sizes, min_fraction)`` a fresh random subset (without
    replacement) of the fakes gives an FID; ordinary least squares of FID on 1/n gives
    FID(n) = fd_infinity + slope / n. Returns

    - ``fd_infinity``: the intercept; ``slope``: the fitted bias coefficient (FID at n is
      about fd_infinity + slope / n);
    - ``stderr``: standard error of fd_infinity over draws of the N fakes, for intervals
      (``fd_infinity +- 2 stderr``: about 95%). The sum in quadrature of ``stderr_fit``, the
      regression's standard error of the intercept (the scatter of the subset FIDs, given
      the N fakes), and the delta-method standard error of the FID of all N fakes (the noise
      the subsets share, which the fit cannot see: alone, ``stderr_fit`` was 2.3x too small
      on a Gaussian toy, the sum within 10% of the true scatter);
    - ``fid``: plain FID of all N fakes (the last size is N); ``sizes``, ``fids``: the points
      of the fit, for plots and checks.

    Subsets much smaller than D make FID(n) bend away from the line; keep min size >> D.
    """
    x = _as_features(fake)
    mu2, sigma2 = _as_float64(real_mu), _as_float64(real_sigma)
    if x.ndim != 2 or mu2.shape != (x.shape[1],) or sigma2.shape != (x.shape[1],) * 2:
        raise ValueError(f"fake must be [N, D] with real_mu [D], real_sigma [D, D]; got {x.shape}, "
                         f"{mu2.shape}, {sigma2.shape}")
    ns = subset_sizes(len(x), sizes, min_fraction)
    sqrt_sigma2 = _psd_sqrt(sigma2)
    mu1, sigma1 = _moments(x)
    fids = np.empty(len(ns))
    for i, n in enumerate(ns):
        moments = (mu1, sigma1) if n == len(x) else _moments(x, rng.permutation(len(x))[:n])
        fids[i] = _frechet(*moments, mu2, sigma2, sqrt_sigma2)
    pool_variance = _first_order_variance(x, mu1, sigma1, mu2, sqrt_sigma2) / len(x)
    design = np.stack([np.ones(len(ns)), 1.0 / ns], axis=1)
    coef, *_ = np.linalg.lstsq(design, fids, rcond=None)
    residual = fids - design @ coef
    variance = residual @ residual / (len(ns) - 2)
    fit_variance = float(variance * np.linalg.inv(design.T @ design)[0, 0])
    return {"fd_infinity": float(coef[0]), "slope": float(coef[1]),
            "stderr": (fit_variance + pool_variance) ** 0.5, "stderr_fit": fit_variance ** 0.5,
            "fid_stderr": pool_variance ** 0.5,
            "fid": float(fids[-1]), "sizes": ns.tolist(), "fids": fids.tolist()}
