"""Disentanglement scores on a tiny synthetic ground-truth data set with known answers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from genbench.data.ground_truth import GroundTruthData
from genbench.metrics.disentanglement import (
    DisentanglementSettings,
    beta_vae_pairs,
    beta_vae_score,
    binomial_se,
    discrete_entropy,
    discrete_mutual_info,
    factor_vae_score,
    histogram_bins,
    mig,
)

SETTINGS = DisentanglementSettings(group_size=16, n_train=600, n_eval=600, n_variance=2000,
                                   n_mig=4000, batch_size=1000)


class Stripes:
    """Four factors (3, 4, 5, 6 values); factor f sets the gray level of row f of a 4x4 image."""

    factor_names = ("a", "b", "c", "d")
    factor_sizes = (3, 4, 5, 6)

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(size, size=n) for size in self.factor_sizes], axis=1)

    def sample_observations_from_factors(self, factors, rng):
        levels = torch.as_tensor(factors / (np.array(self.factor_sizes) - 1), dtype=torch.float32)
        return levels.view(-1, 1, 4, 1).expand(-1, 1, 4, 4).clone()


def true_factors(x):
    return x[:, 0, :, 0] * torch.tensor([2.0, 3.0, 4.0, 5.0])


class Noise:
    """A representation that ignores the image."""

    def __init__(self, seed=0):
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, x):
        return torch.randn(x.shape[0], 4, generator=self.gen)


def rotated_factors(seed=0):
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(seed)))
    return lambda x: ((true_factors(x) - 2.5) / 1.5) @ q


def rng(seed=0):
    return np.random.default_rng(seed)


def test_the_synthetic_data_is_ground_truth_data():
    assert isinstance(Stripes(), GroundTruthData)


def test_beta_vae_pairs_share_exactly_the_labelled_factor():
    labels, first, second = beta_vae_pairs(Stripes(), 200, 8, rng())
    fixed = np.repeat(labels, 8)
    rows = np.arange(len(first))
    assert (first[rows, fixed] == second[rows, fixed]).all()
    assert (first != second).mean() > 0.5  # the other factors are drawn independently
    assert set(labels) == {0, 1, 2, 3}


def test_true_factors_score_100_percent_and_noise_scores_chance():
    data = Stripes()
    exact = beta_vae_score(data, true_factors, rng(), SETTINGS)
    assert exact["train_accuracy"] == 1.0 and exact["eval_accuracy"] == 1.0
    noise = beta_vae_score(data, Noise(), rng(), replace(SETTINGS, n_eval=2000))
    assert noise["eval_accuracy"] == pytest.approx(1 / 4, abs=0.05)


def test_factor_vae_score_of_true_factors_and_of_noise():
    data = Stripes()
    exact = factor_vae_score(data, true_factors, rng(), SETTINGS)
    assert exact == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "eval_accuracy_se": 0.0, "active_dims": 4.0}
    noise = factor_vae_score(data, Noise(), rng(), replace(SETTINGS, n_eval=2000))
    assert noise["eval_accuracy"] == pytest.approx(1 / 4, abs=0.05)


def test_factor_vae_drops_collapsed_latents():
    def with_a_dead_latent(x):
        return torch.cat([true_factors(x), torch.zeros(x.shape[0], 1)], dim=1)

    assert factor_vae_score(Stripes(), with_a_dead_latent, rng(), SETTINGS)["active_dims"] == 4.0
    assert factor_vae_score(Stripes(), lambda x: torch.zeros(len(x), 3), rng(), SETTINGS) == {
        "train_accuracy": 0.0, "eval_accuracy": 0.0, "eval_accuracy_se": 0.0, "active_dims": 0.0}


def test_mig_is_one_for_true_factors_lower_when_rotated_and_zero_for_noise():
    data = Stripes()
    exact = mig(data, true_factors, rng(), SETTINGS)["mig"]
    rotated = mig(data, rotated_factors(), rng(), SETTINGS)["mig"]
    noise = mig(data, Noise(), rng(), SETTINGS)["mig"]
    assert exact == pytest.approx(1.0, abs=0.01)
    assert rotated < exact - 0.3
    assert noise < 0.02


def test_classifier_scores_carry_the_binomial_standard_error_of_their_eval_accuracy():
    assert binomial_se(0.9, 100) == pytest.approx(0.03)
    settings = replace(SETTINGS, n_eval=2000)
    for score in (beta_vae_score, factor_vae_score):
        noise = score(Stripes(), Noise(), rng(), settings)
        p = noise["eval_accuracy"]
        assert noise["eval_accuracy_se"] == pytest.approx((p * (1 - p) / 2000) ** 0.5), score.__name__


def test_mig_bootstrap_std_is_zero_for_true_factors_and_near_the_spread_over_fresh_draws():
    data = Stripes()
    assert mig(data, true_factors, rng(), SETTINGS)["mig_std"] < 1e-3
    small = replace(SETTINGS, n_mig=500)
    draws = [mig(data, rotated_factors(), rng(seed), small) for seed in range(12)]
    spread = np.std([d["mig"] for d in draws], ddof=1)
    bootstrap = np.mean([d["mig_std"] for d in draws])
    assert 0.5 * spread < bootstrap < 2.0 * spread  # the bootstrap estimates the sampling spread


def test_same_seed_same_numbers_whatever_the_batch_size():
    data = Stripes()
    for score in (beta_vae_score, factor_vae_score, mig):
        a = score(data, rotated_factors(), rng(7), SETTINGS)
        b = score(data, rotated_factors(), rng(7), replace(SETTINGS, batch_size=97))
        assert a == b, score.__name__
        assert score(data, rotated_factors(), rng(8), SETTINGS) != a, score.__name__


def test_discrete_information_matches_sklearn():
    from sklearn.metrics import mutual_info_score

    r = rng(1)
    a = r.integers(5, size=(3000, 2))
    b = np.stack([a[:, 0] // 2, r.integers(3, size=3000)], axis=1)
    info = discrete_mutual_info(a, b)
    for i in range(2):
        for j in range(2):
            assert info[i, j] == pytest.approx(mutual_info_score(a[:, i], b[:, j]), abs=1e-12)
    assert discrete_entropy(a) == pytest.approx([mutual_info_score(c, c) for c in a.T], abs=1e-12)


def test_histogram_bins_are_equal_width_over_the_range():
    codes = rng(2).normal(size=(1000, 3))
    bins = histogram_bins(codes, 20)
    for j in range(3):  # disentanglement_lib's numpy construction of the same bins
        edges = np.histogram(codes[:, j], 20)[1]
        np.testing.assert_array_equal(bins[:, j], np.digitize(codes[:, j], edges[:-1]) - 1)
    assert (histogram_bins(np.ones((5, 1)), 20) == 0).all()  # a constant latent is one bin


class FactorEncoder(torch.nn.Module):
    """A latent-variable model whose posterior mean is the true factors."""

    def encode(self, x):
        mean = true_factors(x).double()
        return torch.distributions.Independent(torch.distributions.Normal(mean, 1.0), 1)

    def prior(self):
        raise NotImplementedError

    def log_importance_weights(self, x, k):
        return torch.zeros(k, x.shape[0], dtype=torch.float64)


class RotatedRepresentation(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rotate = rotated_factors()

    def represent(self, x):
        return self.rotate(x)


def test_the_registry_scores_models_on_ground_truth_data_only():
    from genbench.core.protocols import Representation
    from genbench.metrics import EvalSettings, evaluate

    settings = EvalSettings(k=2, disentanglement_group_size=16, disentanglement_train=2000,
                            disentanglement_eval=300)
    test = Stripes().sample_observations_from_factors(Stripes().sample_factors(20, rng()), rng())
    only = ["beta_vae_score", "factor_vae_score", "mig"]
    exact = evaluate(FactorEncoder(), test, settings, only=only, dataset=Stripes())
    assert exact["beta_vae_score"] == 1.0 and exact["factor_vae_score"] == 1.0
    assert exact["mig"] == pytest.approx(1.0, abs=0.01)
    assert {"beta_vae_score_train_accuracy", "factor_vae_score_active_dims", "beta_vae_score_se",
            "factor_vae_score_se", "mig_std"} <= set(exact)
    model = RotatedRepresentation()
    assert isinstance(model, Representation)
    rotated = evaluate(model, test, settings, only=only, dataset=Stripes())
    assert rotated["mig"] < exact["mig"] - 0.3
    assert rotated == evaluate(model, test, settings, only=only, dataset=Stripes())  # seeded
    assert evaluate(FactorEncoder(), test, settings, only=only) == {}  # no ground-truth data set
