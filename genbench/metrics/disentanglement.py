"""Disentanglement scores: pure functions of (ground-truth data, representation, rng, settings).

- :func:`beta_vae_score` (Higgins et al. 2017): per point a factor y is chosen uniformly and L
  pairs of factor vectors share factor y (the rest random); the feature is the mean over
  the pairs of |r(x1) - r(x2)|; a linear classifier predicts y. Accuracy in [1/F, 1].
- :func:`factor_vae_score` (Kim & Mnih 2018): each latent is scaled by its std over the data,
  collapsed latents (std below a threshold) are dropped; per point one factor is fixed over
  L observations and the latent of least (scaled) variance votes for it; a majority-vote
  classifier maps latents to factors.
- :func:`mig`: the mutual information gap as disentanglement_lib computes it (its
  ``discrete_mig``), a binned variant of Chen et al.'s (2018): each latent of the representation
  (the posterior mean) is binned into 20 equal-width bins over its range on ``n_mig`` sampled
  observations; the gap between the two latents sharing most discrete mutual information with a
  factor, over the factor's entropy, averaged over factors. In [0, 1]. Chen et al. instead
  estimate I(z_j; v_k) from the full posterior q(z_j | x) (samples and its density, a Monte Carlo
  entropy estimate) over the whole data set, factor by factor. genbench also leaves out factors
  with zero entropy (disentanglement_lib would divide by zero).

All three draw every factor vector first (the rng stream does not depend on batching), then
render and represent observations through :func:`represent_factors` in large batches. The
representation is a function ``Tensor [B, C, H, W] -> [B, d]``, deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from genbench.data.ground_truth import GroundTruthData

RepresentationFn = Callable[[Tensor], Tensor]

#: bootstrap resamples of the observations behind MIG's uncertainty
MIG_RESAMPLES = 100


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent points (the classifier fixed)."""
    return float(np.sqrt(accuracy * (1.0 - accuracy) / n))


@dataclass(frozen=True)
class DisentanglementSettings:
    """Defaults are disentanglement_lib's."""

    group_size: int = 64
    """L: pairs per beta-VAE point, observations per FactorVAE point."""
    n_train: int = 10_000
    n_eval: int = 5_000
    n_variance: int = 10_000
    """FactorVAE: observations for each latent's std over the data."""
    prune_threshold: float = 0.05
    """FactorVAE: latents whose std is below this are collapsed and cannot vote."""
    n_mig: int = 10_000
    """MIG: observations."""
    n_bins: int = 20
    batch_size: int = 512
    """Observations rendered and represented per call: a few hundred 64x64 images suit CPU
    caches (the registry passes 4096 on a GPU)."""


@torch.no_grad()
def represent_factors(data: GroundTruthData, represent: RepresentationFn, factors: np.ndarray,
                      rng: np.random.Generator, batch_size: int = 512) -> np.ndarray:
    """``[n, d]`` float64 representations of one observation per row of ``factors``."""
    out = []
    for start in range(0, len(factors), batch_size):
        x = data.sample_observations_from_factors(factors[start : start + batch_size], rng)
        out.append(torch.as_tensor(represent(x)).to("cpu", torch.float64).numpy())
    return np.concatenate(out)


def _point_chunks(n_points: int, group_size: int, batch_size: int) -> list[slice]:
    """Point ranges whose groups of ``group_size`` rows hold about ``batch_size`` observations."""
    per_chunk = max(1, batch_size // group_size)
    return [slice(s, min(s + per_chunk, n_points)) for s in range(0, n_points, per_chunk)]


# --- beta-VAE score ----------------------------------------------------------------------------

def beta_vae_pairs(data: GroundTruthData, n_points: int, group_size: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels [n], factors1 [n*L, F], factors2 [n*L, F]): rows n*L..n*L+L-1 share factor labels[n]."""
    labels = rng.integers(len(data.factor_sizes), size=n_points)
    first = data.sample_factors(n_points * group_size, rng)
    second = data.sample_factors(n_points * group_size, rng)
    rows, fixed = np.arange(n_points * group_size), np.repeat(labels, group_size)
    second[rows, fixed] = first[rows, fixed]
    return labels, first, second


def beta_vae_batch(data: GroundTruthData, represent: RepresentationFn, n_points: int,
                   rng: np.random.Generator,
                   settings: DisentanglementSettings) -> tuple[np.ndarray, np.ndarray]:
    """(features [n, d], labels [n]): the beta-VAE classifier's inputs and targets."""
    group = settings.group_size
    labels, first, second = beta_vae_pairs(data, n_points, group, rng)
    features = []
    for points in _point_chunks(n_points, 2 * group, settings.batch_size):
        rows = slice(points.start * group, points.stop * group)
        r1 = represent_factors(data, represent, first[rows], rng, settings.batch_size)
        r2 = represent_factors(data, represent, second[rows], rng, settings.batch_size)
        features.append(np.abs(r1 - r2).reshape(-1, group, r1.shape[1]).mean(1))
    return np.concatenate(features), labels


def linear_classifier_accuracies(train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray,
                                 eval_y: np.ndarray) -> dict[str, float]:
    """Train and eval accuracy of a logistic regression (lbfgs: deterministic) fitted on train."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000).fit(train_x, train_y)
    accuracy = float(model.score(eval_x, eval_y))
    return {"train_accuracy": float(model.score(train_x, train_y)), "eval_accuracy": accuracy,
            "eval_accuracy_se": binomial_se(accuracy, len(eval_y))}


def beta_vae_score(data: GroundTruthData, represent: RepresentationFn, rng: np.random.Generator,
                   settings: DisentanglementSettings = DisentanglementSettings()) -> dict[str, float]:
    """Higgins et al.'s score: {train_accuracy, eval_accuracy}."""
    train_x, train_y = beta_vae_batch(data, represent, settings.n_train, rng, settings)
    eval_x, eval_y = beta_vae_batch(data, represent, settings.n_eval, rng, settings)
    return linear_classifier_accuracies(train_x, train_y, eval_x, eval_y)


# --- FactorVAE score ---------------------------------------------------------------------------

def _factor_vae_votes(data: GroundTruthData, represent: RepresentationFn, n_points: int,
                      rng: np.random.Generator, settings: DisentanglementSettings, scale: np.ndarray,
                      active: np.ndarray) -> np.ndarray:
    """``[F, active latents]`` counts: per point, (fixed factor, latent of least scaled variance)."""
    group = settings.group_size
    labels = rng.integers(len(data.factor_sizes), size=n_points)
    factors = data.sample_factors(n_points * group, rng)
    rows, fixed = np.arange(n_points * group), np.repeat(labels, group)
    factors[rows, fixed] = factors[::group][np.arange(n_points), labels].repeat(group)
    argmins = []
    for points in _point_chunks(n_points, group, settings.batch_size):
        codes = represent_factors(data, represent, factors[points.start * group : points.stop * group],
                                  rng, settings.batch_size)
        local_var = codes.reshape(-1, group, codes.shape[1]).var(1, ddof=1)
        argmins.append((local_var[:, active] / scale[active] ** 2).argmin(1))
    votes = np.zeros((len(data.factor_sizes), int(active.sum())), dtype=np.int64)
    np.add.at(votes, (labels, np.concatenate(argmins)), 1)
    return votes


def factor_vae_score(data: GroundTruthData, represent: RepresentationFn, rng: np.random.Generator,
                     settings: DisentanglementSettings = DisentanglementSettings()) -> dict[str, float]:
    """Kim & Mnih's score: {train_accuracy, eval_accuracy, active_dims}."""
    codes = represent_factors(data, represent, data.sample_factors(settings.n_variance, rng), rng,
                              settings.batch_size)
    scale = codes.std(0, ddof=1)
    active = scale >= settings.prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "eval_accuracy_se": 0.0, "active_dims": 0.0}
    train_votes = _factor_vae_votes(data, represent, settings.n_train, rng, settings, scale, active)
    classifier = train_votes.argmax(0)  # each latent predicts the factor it voted for most
    latents = np.arange(train_votes.shape[1])
    eval_votes = _factor_vae_votes(data, represent, settings.n_eval, rng, settings, scale, active)
    accuracy = float(eval_votes[classifier, latents].sum() / eval_votes.sum())
    return {"train_accuracy": float(train_votes[classifier, latents].sum() / train_votes.sum()),
            "eval_accuracy": accuracy, "eval_accuracy_se": binomial_se(accuracy, int(eval_votes.sum())),
            "active_dims": float(active.sum())}


# --- MIG ---------------------------------------------------------------------------------------

def histogram_bins(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """``[n, d]`` bin index of each value among ``n_bins`` equal-width bins over its column's range."""
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, high - low, 1.0)
    return np.clip(((codes - low) / width * n_bins).astype(np.int64), 0, n_bins - 1)


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[da, db]`` mutual information (nats) between the int columns of ``a`` and of ``b``."""
    out = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        size_a = int(a[:, i].max()) + 1
        for j in range(b.shape[1]):
            size_b = int(b[:, j].max()) + 1
            joint = np.bincount(a[:, i] * size_b + b[:, j], minlength=size_a * size_b) / len(a)
            joint = joint.reshape(size_a, size_b)
            outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
            seen = joint > 0
            out[i, j] = float((joint[seen] * np.log(joint[seen] / outer[seen])).sum())
    return out


def discrete_entropy(a: np.ndarray) -> np.ndarray:
    """``[d]`` entropy (nats) of each int column of ``a``."""
    out = np.zeros(a.shape[1])
    for i in range(a.shape[1]):
        p = np.bincount(a[:, i]) / len(a)
        p = p[p > 0]
        out[i] = float(-(p * np.log(p)).sum())
    return out


def mutual_information_gap(codes: np.ndarray, factors: np.ndarray, n_bins: int) -> float:
    """MIG of ``[n, d]`` representations against their ``[n, F]`` int factors."""
    info = discrete_mutual_info(histogram_bins(codes, n_bins), factors)  # [d, F]
    entropy = discrete_entropy(factors)
    top = -np.sort(-info, axis=0)
    second = top[1] if len(top) > 1 else np.zeros(info.shape[1])
    varies = entropy > 0
    return float(((top[0] - second)[varies] / entropy[varies]).mean())


def mig(data: GroundTruthData, represent: RepresentationFn, rng: np.random.Generator,
        settings: DisentanglementSettings = DisentanglementSettings()) -> dict[str, float]:
    """disentanglement_lib's binned mutual information gap (after Chen et al.) over factors that vary
    (entropy > 0): {mig, mig_std}.

    ``mig_std`` is the std of the same estimator on MIG_RESAMPLES bootstrap resamples of the
    observations, drawn after the observations so that ``mig`` itself does not depend on them.
    """
    factors = data.sample_factors(settings.n_mig, rng)
    codes = represent_factors(data, represent, factors, rng, settings.batch_size)
    value = mutual_information_gap(codes, factors, settings.n_bins)
    resampled = [mutual_information_gap(codes[rows], factors[rows], settings.n_bins)
                 for rows in rng.integers(len(codes), size=(MIG_RESAMPLES, len(codes)))]
    return {"mig": value, "mig_std": float(np.std(resampled, ddof=1))}
