"""The copying tests (C_T, authenticity, nearest-neighbour distances) and the NLL gap, against known answers.

Features are drawn from a mixture of Gaussians: training, held-out and "sampled" sets of it, so
which samples are copies is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from genbench.metrics.memorization import (
    CopyingSettings,
    _mann_whitney_z,
    copied_fraction,
    copying_tests,
    nearest_other_distance,
    nearest_training,
    unauthentic,
)
from genbench.metrics.registry import EvalSettings, evaluate

D, CLUSTERS = 16, 10


@pytest.fixture(scope="module")
def world():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(CLUSTERS, D, generator=g) * 4

    def draw(n):
        return centres[torch.randint(CLUSTERS, (n,), generator=g)] + torch.randn(n, D, generator=g)

    train, test = draw(2000), draw(1000)
    return {"train": train, "test": test, "draw": draw, "g": g}


def _copies(world, n):
    return world["train"][torch.randperm(len(world["train"]), generator=world["g"])[:n]]


def test_blocked_nearest_neighbours_equal_brute_force_whatever_the_block():
    g = torch.Generator().manual_seed(1)
    train, queries = torch.randn(50, 5, generator=g), torch.randn(23, 5, generator=g)
    full = torch.cdist(queries.double(), train.double())
    for rows in (1, 7, 23, None):
        distance, index = nearest_training(queries, train, rows)
        assert torch.equal(index, full.argmin(1))
        torch.testing.assert_close(distance, full.min(1).values)
    own = torch.cdist(train.double(), train.double()).fill_diagonal_(math.inf).min(1).values
    torch.testing.assert_close(nearest_other_distance(train, rows=3), own)


def test_authenticity_is_alaa_et_al_s_rule_on_a_line():
    train = torch.tensor([[0.0], [1.0], [3.0], [3.0]])  # nearest-other distances 1, 1, 0, 0
    radii = nearest_other_distance(train)
    assert radii.tolist() == [1.0, 1.0, 0.0, 0.0]
    queries = torch.tensor([[0.5], [-2.0], [3.0], [3.5], [1.0]])
    # 0.5 from 0 (radius 1): unauthentic; 2 from 0: authentic; a copy of a duplicated point: unauthentic;
    # 0.5 from 3 (radius 0): authentic; a copy of 1: unauthentic
    assert unauthentic(queries, train, radii).tolist() == [True, False, True, False, True]


def test_the_u_z_score_is_meehan_et_al_s_with_its_continuity_correction():
    m, n = 4, 6
    below = _mann_whitney_z(np.zeros(m), np.ones(n))  # every sample closer: U = 0
    assert below == pytest.approx((0 - (m * n / 2 - 0.5)) / math.sqrt(m * n * (m + n + 1) / 12))
    above = _mann_whitney_z(np.full(m, 2.0), np.ones(n))  # every sample farther: U = m n
    assert above == pytest.approx((m * n - (m * n / 2 - 0.5)) / math.sqrt(m * n * (m + n + 1) / 12))


def test_the_copied_fraction_inverts_the_mixture_and_its_se_is_the_delta_method():
    b, f = 0.34, 0.3
    u = f + (1 - f) * b
    value, se = copied_fraction(u, 1000, b, 2000)
    assert value == pytest.approx(f)
    expected = math.sqrt(u * (1 - u) / 1000 + ((1 - u) / (1 - b)) ** 2 * b * (1 - b) / 2000) / (1 - b)
    assert se == pytest.approx(expected)


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_exact_and_lightly_perturbed_copies_of_training_points_are_flagged(world, noise):
    samples = _copies(world, 1000)
    samples = samples + noise * torch.randn(samples.shape, generator=world["g"])
    out = copying_tests(world["train"], world["test"], samples, "x")
    assert out["ct_x"] < -5                      # far closer to the training set than new data are
    assert out["copied_x"] > 0.95 and out["authenticity_x"] < 0.05
    assert out["nn_ratio_x"] < 0.1


def test_held_out_points_and_an_honest_model_s_samples_are_not_flagged(world):
    from sklearn.mixture import GaussianMixture

    fresh = world["draw"](1000)
    model = GaussianMixture(CLUSTERS, random_state=0).fit(world["train"].numpy())
    honest = torch.from_numpy(model.sample(1000)[0])
    for samples in (fresh, honest):
        out = copying_tests(world["train"], world["test"], samples, "x")
        assert abs(out["ct_x"]) < 3
        assert out["copied_x"] < 3 * out["copied_x_se"]
        assert 0.85 < out["nn_ratio_x"] < 1.2


def test_a_known_copied_fraction_is_estimated_within_its_interval(world):
    samples = torch.cat([_copies(world, 300), world["draw"](700)])
    out = copying_tests(world["train"], world["test"], samples, "x")
    assert abs(out["copied_x"] - 0.3) < 3 * out["copied_x_se"]
    assert out["copied_x_se"] < 0.05
    assert out["ct_x"] < -1  # C_T too leans towards copying, though it was not built to estimate f


def test_ct_uses_cells_with_enough_samples_only(world):
    settings = CopyingSettings(cells=50, min_cell_samples=20)
    out = copying_tests(world["train"], world["test"], world["draw"](200), "x", settings)
    assert 1 <= out["ct_x_cells"] <= 200 // 40


class _Bernoulli(nn.Module):
    """An exact-likelihood model of binary vectors: a mixture of product Bernoullis with given means."""

    def __init__(self, means: torch.Tensor):
        super().__init__()
        self.register_buffer("means", means.clamp(0.02, 0.98))

    def log_prob(self, x):
        x = x.flatten(1).double()
        log_p = x @ self.means.double().log().T + (1 - x) @ (1 - self.means.double()).log().T
        return torch.logsumexp(log_p, 1) - math.log(len(self.means))


def test_the_nll_gap_shows_a_memorizing_model_and_not_a_fitted_one():
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(5, 64, generator=g) < 0.5).double()

    def draw(n):
        flips = (torch.rand(n, 64, generator=g) < 0.2).double()
        return (protos[torch.randint(5, (n,), generator=g)] - flips).abs().view(n, 1, 8, 8)

    train, test = draw(400), draw(400)
    settings = EvalSettings(nll_gap_points=300)
    memorizer = _Bernoulli(train.flatten(1))          # one component per training point
    fitted = _Bernoulli(protos * 0.8 + (1 - protos) * 0.2)  # the true distribution
    gap = evaluate(memorizer, test, settings, only=["nll_gap"], train=train)
    assert gap["nll_gap"] < -10 * gap["nll_gap_se"] and gap["nll_gap_points"] == 300
    assert gap["nll_gap"] == pytest.approx(gap["nll_gap_train"] - gap["nll_gap_test"])
    honest = evaluate(fitted, test, settings, only=["nll_gap"], train=train)
    assert abs(honest["nll_gap"]) < 3 * honest["nll_gap_se"]
