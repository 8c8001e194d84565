"""Did the model copy its training set? Three tests on features of the same network as FID.

Each compares the samples' distances to their nearest training point with those of held-out real
images (the reference split, never the training split) in feature space:

- **C_T** (Meehan, Chaudhuri & Dasgupta, "A Non-Parametric Test to Detect Data-Copying in Generative
  Models", AISTATS 2020): k-means cells of the training features; in each cell, the Mann-Whitney U
  statistic of the samples' distances to the cell's training points against the held-out points'
  distances, z-scored under the null with the authors' continuity correction; C_T is the average of
  the cells' z-scores weighted by the held-out points' share of each cell, over the cells holding at
  least ``min_cell_samples`` samples (their threshold tau). C_T << 0: the samples are closer to the
  training set than new data are (copying); >> 0: farther (underfitting); about N(0, 1)-sized for
  samples drawn like the held-out data.
- **Authenticity** (Alaa, van Breugel, Saveliev & van der Schaar, "How Faithful is your Synthetic
  Data?", ICML 2022): a sample is unauthentic when it is no farther from its nearest training point
  than that training point is from its own nearest other training point. Held-out data are unauthentic at a
  base rate b of their own (about half in high dimension), so genbench reports the samples'
  authenticity beside the held-out points' and the **copied fraction** f = (u - b) / (1 - b), where u
  is the samples' unauthentic rate: a copy is always unauthentic and an honest sample at rate b, so a
  mixture with a fraction f of copies has u = f + (1 - f) b. Its s.e. is the delta method over both
  binomial rates.
- **Nearest-training-neighbour distances**: the samples' median distance to the training set over
  the held-out points' (1 for data like the held-out data, 0 for copies).

Distances are float64 and blocked (``genbench.metrics.knn``): at most ``knn.BLOCK_BYTES`` of them
exist at once whatever the set sizes. k-means is scikit-learn's, the U statistic scipy's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genbench.core.errors import MetricSkipped
from genbench.metrics.knn import check_rows, kth_sq_radii, sq_distance_blocks


@dataclass(frozen=True)
class CopyingSettings:
    """The tests' constants: Meehan et al.'s cells and minimum samples per cell."""

    cells: int = 50
    """k of the k-means partition of the training features: at most, where the samples are too few to
    give the average cell twice ``min_cell_samples`` (200 samples make 5 cells)."""
    min_cell_samples: int = 20
    """A cell enters C_T only with at least this many samples (the paper's tau)."""
    seed: int = 0
    """k-means' initialisation."""


def _float64(*sets: Tensor | np.ndarray) -> list[Tensor]:
    """The sets as float64 CPU tensors, centred on the first one's mean (smaller norms, less
    cancellation in |x|^2 + |y|^2 - 2 x.y); shapes checked."""
    tensors = [torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach())
               .cpu().to(torch.float64) for x in sets]
    if any(t.ndim != 2 or t.shape[1] != tensors[0].shape[1] for t in tensors):
        raise ValueError(f"feature sets must be [N, D] with one D; got {[tuple(t.shape) for t in tensors]}")
    centre = tensors[0].mean(0)
    return [t - centre for t in tensors]


#: squared distances below this fraction of the training set's mean squared norm are 0: what
#: |x|^2 + |y|^2 - 2 x.y leaves of two identical points is rounding, and a copy must be at distance 0
IDENTICAL = 1e-12


def _distances(sq: Tensor, train: Tensor) -> Tensor:
    """Distances from squared distances, rounding of identical points set to 0 (``IDENTICAL``)."""
    floor = IDENTICAL * float(train.pow(2).sum(1).mean())
    return sq.masked_fill(sq <= floor, 0).sqrt()


def nearest_training(queries: Tensor, train: Tensor, rows: int | None = None) -> tuple[Tensor, Tensor]:
    """(distance of each query to its nearest training point, float64 [N]; that point's index [N]),
    computed a block of query rows at a time."""
    check_rows(rows)
    train, queries = _float64(train, queries)
    sq = torch.empty(len(queries), dtype=torch.float64)
    index = torch.empty(len(queries), dtype=torch.int64)
    for block, d in sq_distance_blocks(queries, train, rows):
        best = d.min(dim=1)
        sq[block], index[block] = best.values, best.indices
    return _distances(sq, train), index


def nearest_other_distance(train: Tensor, rows: int | None = None) -> Tensor:
    """Distance of each training point to its nearest other training point (0 for a duplicate), [N]."""
    check_rows(rows)
    (train,) = _float64(train)
    return _distances(kth_sq_radii(train, 1, rows), train)


def _mann_whitney_z(sample_distances: np.ndarray, test_distances: np.ndarray) -> float:
    """Meehan et al.'s Z_U: the U statistic of the samples' distances against the held-out points'
    (scipy's, ties counted half), centred with their continuity correction and scaled by its null s.d."""
    from scipy.stats import mannwhitneyu

    m, n = len(sample_distances), len(test_distances)
    u = mannwhitneyu(sample_distances, test_distances, alternative="less").statistic
    return float((u - (m * n / 2 - 0.5)) / np.sqrt(m * n * (m + n + 1) / 12))


@dataclass(frozen=True)
class CTResult:
    value: float
    """C_T: the test-share-weighted mean of the cells' z-scores."""
    cells_used: int
    """Cells with at least ``min_cell_samples`` samples and one held-out point."""
    cell_z: dict[int, float]


def ct_statistic(train: Tensor, test: Tensor, samples: Tensor,
                 settings: CopyingSettings = CopyingSettings(), rows: int | None = None) -> CTResult:
    """Meehan et al.'s C_T of ``samples`` against held-out ``test`` points, cells from ``train``."""
    from sklearn.cluster import KMeans

    train, test, samples = _float64(train, test, samples)
    cells = max(1, min(settings.cells, len(train), len(samples) // (2 * settings.min_cell_samples)))
    kmeans = KMeans(n_clusters=cells, n_init="auto", random_state=settings.seed).fit(train.numpy())
    train_cell = kmeans.labels_
    test_cell, sample_cell = kmeans.predict(test.numpy()), kmeans.predict(samples.numpy())
    test_share = np.bincount(test_cell, minlength=cells) / len(test)
    sample_count = np.bincount(sample_cell, minlength=cells)
    z = {}
    for cell in np.flatnonzero((sample_count >= settings.min_cell_samples) & (test_share > 0)):
        cell_train = train[torch.from_numpy(train_cell == cell)]
        d_samples, _ = nearest_training(samples[torch.from_numpy(sample_cell == cell)], cell_train, rows)
        d_test, _ = nearest_training(test[torch.from_numpy(test_cell == cell)], cell_train, rows)
        z[int(cell)] = _mann_whitney_z(d_samples.numpy(), d_test.numpy())
    if not z:
        raise MetricSkipped(f"C_T: no k-means cell holds {settings.min_cell_samples} samples "
                            f"({len(samples)} samples in {cells} cells)")
    used = np.array(sorted(z))
    weights = test_share[used]
    value = float(weights @ np.array([z[c] for c in used]) / weights.sum())
    return CTResult(value=value, cells_used=len(used), cell_z=z)


def unauthentic(queries: Tensor, train: Tensor, train_nearest: Tensor, rows: int | None = None) -> Tensor:
    """bool [N]: whether each query is at most as far from its nearest training point as that point is
    from its own nearest other training point (``train_nearest``, from ``nearest_other_distance``), as
    Alaa et al.'s code decides it: a copy of a training image that the training set holds twice is
    unauthentic too."""
    distance, index = nearest_training(queries, train, rows)
    return distance <= train_nearest[index]


def copied_fraction(u: float, m: int, b: float, n: int) -> tuple[float, float]:
    """(f, its s.e.): the copied fraction of ``m`` samples unauthentic at rate ``u`` where ``n``
    held-out points are at rate ``b`` (module docstring), by the delta method over both rates."""
    if b >= 1:
        raise ValueError("every held-out point is unauthentic (b = 1): the copied fraction is undefined")
    f = (u - b) / (1 - b)
    var_u, var_b = u * (1 - u) / m, b * (1 - b) / n
    var = (var_u + ((1 - u) / (1 - b)) ** 2 * var_b) / (1 - b) ** 2
    return float(f), float(np.sqrt(var))


def copying_tests(train: Tensor, test: Tensor, samples: Tensor, net: str,
                  settings: CopyingSettings = CopyingSettings(), rows: int | None = None) -> dict[str, float]:
    """C_T, authenticity, the copied fraction and the nearest-neighbour distance ratio of ``samples``
    (features [M, D]) against ``train`` with held-out ``test`` as the reference, keyed by network."""
    if len(test) < 2 or len(samples) < 2 or len(train) < 2:
        raise MetricSkipped("the copying tests need at least 2 training, held-out and sampled points")
    train_nearest = nearest_other_distance(train, rows)
    d_samples, index = nearest_training(samples, train, rows)
    d_test, test_index = nearest_training(test, train, rows)
    u = float((d_samples <= train_nearest[index]).double().mean())  # ``unauthentic``, distances kept
    b = float((d_test <= train_nearest[test_index]).double().mean())
    f, f_se = copied_fraction(u, len(samples), b, len(test)) if b < 1 else (0.0, 0.0)
    ct = ct_statistic(train, test, samples, settings, rows)
    median_test = float(d_test.median())
    s = net
    out = {f"ct_{s}": ct.value, f"ct_{s}_cells": float(ct.cells_used),
           f"authenticity_{s}": 1 - u, f"authenticity_{s}_se": float(np.sqrt(u * (1 - u) / len(samples))),
           f"authenticity_test_{s}": 1 - b, f"nn_train_{s}": float(d_samples.median())}
    if b < 1:  # else every held-out point is unauthentic and no fraction of copies can be told apart
        out |= {f"copied_{s}": f, f"copied_{s}_se": f_se}
    if median_test > 0:  # else most held-out images are training images: no distance to compare with
        out[f"nn_ratio_{s}"] = float(d_samples.median()) / median_test
    return out


# ---- on images: the features of the sample-quality metrics' network -----------------------------

@dataclass(frozen=True)
class CopyingData:
    """What the tests compare: training images (a seeded random subset), held-out reference images
    (the sample-quality metrics' own), and where their features are cached."""

    dataset: object
    n_train: int
    split: str
    n_reference: int | None
    cache: Path
    device: torch.device | str = "cpu"
    seed: int = 0


def _features(data: CopyingData, net, fake: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(training images, training features, held-out features, sample features)."""
    from genbench.metrics.sample_quality import extract_features, reference_features, reference_images

    if data.split == "train":
        raise MetricSkipped("the copying tests compare samples with held-out images: the reference split "
                            "must not be train")
    name = data.dataset.name
    train_images = reference_images(data.dataset, "train", data.n_train, data.seed)
    train, _ = reference_features(train_images, net, data.cache, f"{name}-train-{len(train_images)}",
                                  data.device)
    test_images = reference_images(data.dataset, data.split, data.n_reference, data.seed)
    test, _ = reference_features(test_images, net, data.cache, f"{name}-{data.split}-{len(test_images)}",
                                 data.device)
    samples = extract_features(fake, net, data.device)
    return train_images, train[net.layer_fid], test[net.layer_fid], samples[net.layer_fid]


def copying_scores(fake: Tensor, data: CopyingData, net,
                   settings: CopyingSettings = CopyingSettings()) -> dict[str, float]:
    """The copying tests of uint8 images ``fake`` in ``net``'s features (module docstring)."""
    _, train, test, samples = _features(data, net, fake)
    return copying_tests(train, test, samples, net.name, settings)


def nearest_training_images(fake: Tensor, data: CopyingData, net, count: int = 16
                            ) -> tuple[Tensor, Tensor, Tensor]:
    """(the first ``count`` samples, the training image nearest each in feature space, the distances):
    what the nearest-neighbour figure shows."""
    fake = fake[:count]
    train_images, train, _, samples = _features(data, net, fake)
    distance, index = nearest_training(samples, train)
    return fake, train_images[index], distance


def copying_applies(model, ctx) -> bool:
    """An image data set with a training split, samples and training points asked for."""
    s = ctx.settings
    return (ctx.dataset is not None and "train" in getattr(ctx.dataset, "splits", {})
            and s.quality_samples > 0 and s.memorization_train > 0)


def copying_data(dataset, settings, device: torch.device | str = "cpu") -> CopyingData:
    """The tests' data under evaluation settings (an ``EvalSettings``)."""
    from genbench.metrics.features import cache_dir

    s = settings
    return CopyingData(dataset, s.memorization_train, s.quality_split, s.quality_reference,
                       cache_dir(s.cache_root), device, s.points_seed)


def copying_metrics(model, ctx) -> dict[str, float]:
    """The registry's compute: the copying tests of ``quality_samples`` model samples (the same draws
    as the sample-quality metrics': same seed) against ``memorization_train`` training images."""
    from genbench.metrics.features import resolve_feature_net

    s = ctx.settings
    net = resolve_feature_net(s.features, ctx.dataset, s.cache_root)
    fake = ctx.samples.draw(model, s.quality_samples, s.seed)
    return copying_scores(fake, copying_data(ctx.dataset, s, ctx.data.device), net)


# ---- the likelihood models' own overfitting signal ----------------------------------------------

def nll_gap_applies(model, ctx) -> bool:
    """Gap points asked for, and the training split at hand (in memory or readable from the data set)."""
    return ctx.settings.nll_gap_points > 0 and (ctx.train is not None or hasattr(ctx.dataset, "train_batch"))


def nll_gap(model, ctx) -> dict[str, float]:
    """Train-minus-test NLL on equal-size seeded random subsets (``nll_gap_points`` of each, at the
    budget's k): below 0 where the model gives its training points more probability than new ones.
    The s.e. adds the two means' independent s.e.s in quadrature."""
    from genbench.metrics.likelihood import nll_and_se
    from genbench.metrics.subsets import representative

    s = ctx.settings
    n = min(s.nll_gap_points, len(ctx.data))
    train = ctx.training_points(n).to(ctx.data.device)
    n = min(n, len(train))
    test = representative(ctx.data, n, s.points_seed)
    train_nll, train_se = nll_and_se(model, train[:n], k=s.k)
    test_nll, test_se = nll_and_se(model, test, k=s.k)
    return {"nll_gap": train_nll - test_nll, "nll_gap_se": float(np.hypot(train_se, test_se)),
            "nll_gap_train": train_nll, "nll_gap_test": test_nll, "nll_gap_points": float(n)}
