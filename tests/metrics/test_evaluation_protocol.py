"""The evaluation protocol: representative subsets, every number's uncertainty, and the sample
metrics' conformance (what must not change a value, and what must swap or vanish)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from genbench.data.base import ImageDataset
from genbench.metrics import EvalSettings, evaluate
from genbench.metrics import sample_quality as sq
from genbench.metrics.fd_infinity import fid_stderr
from genbench.metrics.subsets import describe, representative, subset_index

CLASSES, PER_CLASS = 10, 100


def class_sorted(n_per_class: int = PER_CLASS) -> torch.Tensor:
    """Images sorted by class, as the static binarized MNIST test file: class c has its first c
    pixels on (so a model can read the class off the image)."""
    images = torch.zeros(CLASSES * n_per_class, 1, 4, 4)
    for c in range(CLASSES):
        images[c * n_per_class:(c + 1) * n_per_class].view(n_per_class, -1)[:, :c] = 1
    return images


class ClassCost(nn.Module):
    """An exact-likelihood 'model' whose NLL of an image is its class: the mean NLL of a subset
    is the mean class in it (4.5 over all classes)."""

    def log_prob(self, x):
        return -x.flatten(1).sum(1)


def test_fewer_test_points_are_a_seeded_random_subset_of_every_class_not_a_prefix():
    data = class_sorted()
    values = evaluate(ClassCost(), data, EvalSettings(n_test=200, points_seed=3), only=["nll"])
    chosen = data[subset_index(len(data), 200, 3)].flatten(1).sum(1)
    assert values["nll"] == pytest.approx(chosen.double().mean().item())
    assert 3.5 < values["nll"] < 5.5  # a prefix of 200 would be classes 0 and 1: 0.5
    assert len(torch.unique(chosen)) == CLASSES
    # its standard error is the one over these points
    assert values["nll_se"] == pytest.approx(chosen.double().std().item() / 200 ** 0.5)


def test_every_seed_of_a_run_is_scored_on_the_same_points():
    """Paired evaluation: the run seed sets the Monte Carlo noise, never which points are scored."""
    data = class_sorted()
    by_seed = [evaluate(ClassCost(), data, EvalSettings(n_test=200, seed=seed), only=["nll"])["nll"]
               for seed in range(4)]
    assert len(set(by_seed)) == 1
    other_points = evaluate(ClassCost(), data, EvalSettings(n_test=200, points_seed=1), only=["nll"])["nll"]
    assert other_points != by_seed[0]


def test_the_runner_gives_every_seed_of_a_row_one_points_seed():
    from genbench.runner import run_identity
    from genbench.suites import SUITES

    suite = SUITES["mnist"]
    entry = suite.runs[1]
    evals = [run_identity(suite, entry, seed, suite.budget("short"), (1, 28, 28)).eval for seed in range(3)]
    assert [e["seed"] for e in evals] == [0, 1, 2]  # the noise follows the run seed
    assert len({(e["points_seed"], e["n_test"]) for e in evals}) == 1


def test_every_model_gets_the_same_points_and_larger_subsets_contain_smaller_ones():
    small, large = subset_index(1000, 100, seed=7), subset_index(1000, 400, seed=7)
    assert torch.equal(small, subset_index(1000, 100, seed=7))  # the same for every model
    assert set(small.tolist()) <= set(large.tolist())
    assert torch.equal(small, small.sort().values) and len(set(small.tolist())) == 100
    assert not torch.equal(small, subset_index(1000, 100, seed=8))
    assert torch.equal(subset_index(50, None, 0), torch.arange(50))
    assert len(representative(torch.ones(5), 9, 0)) == 5
    assert describe(100, 1000, 7) == "a random 100 of 1000 (seed 7)" and describe(None, 1000, 7) == "all 1000"


def test_fid_reference_images_are_a_random_subset_of_a_class_sorted_split():
    data = class_sorted()
    dataset = ImageDataset("sorted", "binary", {"train": data.bool(), "test": data.bool()})
    reference = sq.reference_images(dataset, "test", 300, seed=1)
    classes = reference.flatten(1).sum(1) // 255
    assert len(reference) == 300 and len(torch.unique(classes)) == CLASSES


def test_the_delta_method_standard_error_of_fid_covers_its_scatter_over_draws():
    """Over 40 draws of fakes from a shifted Gaussian against fixed real statistics, the standard
    deviation of FID agrees with the mean standard error within 25%."""
    rng = np.random.default_rng(0)
    dims, n = 8, 2000
    real = rng.normal(size=(20000, dims))
    mu, sigma = real.mean(0), np.cov(real, rowvar=False)
    fids, errors = [], []
    for _ in range(40):
        fake = rng.normal(loc=0.3, scale=1.2, size=(n, dims))
        stats = {"features": torch.from_numpy(fake)}
        values = sq.fidelity_metrics(stats, {"features": torch.from_numpy(real)}, _net(), which=("fid",))
        fids.append(values["fid_t"])
        errors.append(values["fid_t_se"])
        assert values["fid_t_se"] == pytest.approx(fid_stderr(fake, mu, sigma), rel=1e-9)
    assert np.std(fids, ddof=1) == pytest.approx(np.mean(errors), rel=0.25)


def test_precision_recall_density_errors_cover_their_scatter_over_draws_of_the_scored_set():
    """Precision and density average over the fakes (reals fixed), recall over the reals (fakes
    fixed): over 40 fresh draws of the scored set, each value's standard deviation agrees with
    its mean standard error within 30%."""
    fixed_real, fixed_fake = _features(20, n=600), _features(21, n=600, shift=0.7)
    scatter: dict[str, list[float]] = {}
    for draw in range(40):
        fresh_fake, fresh_real = _features(100 + draw, n=600, shift=0.7), _features(200 + draw, n=600)
        values = sq.fidelity_metrics(fresh_fake, fixed_real, _net(), which=("prc", "dc"))
        swapped = sq.fidelity_metrics(fixed_fake, fresh_real, _net(), which=("prc",))
        values |= {k: v for k, v in swapped.items() if k.startswith("recall")}
        for key in ("precision_t", "density_t", "recall_t"):
            scatter.setdefault(key, []).append(values[key])
            scatter.setdefault(key + "_se", []).append(values[key + "_se"])
    for key in ("precision_t", "density_t", "recall_t"):
        assert 0.05 < np.mean(scatter[key]) < 0.95 or key == "density_t"
        assert np.std(scatter[key], ddof=1) == pytest.approx(np.mean(scatter[key + "_se"]), rel=0.3), key


def _net(name="t", isc=None) -> sq.FeatureNet:
    return sq.FeatureNet(name, name, "unused", sq.Path("unused"), "features", isc, name)


def _features(seed: int, n: int = 400, shift: float = 0.0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"features": torch.randn(n, 6, generator=gen, dtype=torch.float64) + shift,
            "logits": torch.randn(n, 10, generator=gen, dtype=torch.float64) * 3}


def test_sample_metrics_do_not_depend_on_the_order_of_the_samples():
    """FID, density/coverage and precision/recall not at all; FD-infinity fits FIDs of seeded random
    subsets, which another order changes: only within its standard error."""
    fake, real = _features(1), _features(2, shift=0.5)
    order = torch.randperm(400, generator=torch.Generator().manual_seed(3))
    shuffled = {k: v[order] for k, v in fake.items()}
    which = ("fid", "fdinf", "dc", "prc")
    a, b = (sq.fidelity_metrics(f, real, _net(), which=which) for f in (fake, shuffled))
    assert abs(a.pop("fdinf_t") - b.pop("fdinf_t")) < a.pop("fdinf_t_se") + b.pop("fdinf_t_se")
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_features_and_fid_do_not_depend_on_the_feature_batch_size(tiny_torchscript):
    from genbench.metrics.features import resolve_feature_net

    images = (torch.rand(130, 1, 8, 8) * 255).to(torch.uint8)
    dataset = ImageDataset("t", "gray8", {"train": images[:2], "test": images[:2]})
    net = resolve_feature_net(str(tiny_torchscript), dataset)
    small = sq.extract_features(images, net, batch_size=7)
    large = sq.extract_features(images, net, batch_size=500)
    for layer in small:
        torch.testing.assert_close(small[layer], large[layer], rtol=1e-5, atol=1e-6)
    real = sq.extract_features(images.flip(0)[:90], net)
    assert sq.fidelity_metrics(small, real, net, which=("fid",))["fid_ts_tiny"] == pytest.approx(
        sq.fidelity_metrics(large, real, net, which=("fid",))["fid_ts_tiny"], rel=1e-4)


def test_swapping_real_and_fake_swaps_precision_and_recall():
    a, b = _features(4), _features(5, n=300, shift=0.8)
    ab = sq.fidelity_metrics(a, b, _net(), which=("prc",))
    ba = sq.fidelity_metrics(b, a, _net(), which=("prc",))
    assert ab["precision_t"] == pytest.approx(ba["recall_t"])
    assert ab["recall_t"] == pytest.approx(ba["precision_t"])
    assert ab["precision_t"] != pytest.approx(ab["recall_t"])
    assert ab["precision_t_se"] == pytest.approx(ba["recall_t_se"])


def test_a_set_against_itself_scores_fid_zero_and_full_coverage_and_two_draws_kid_zero():
    f = _features(6, n=600)
    values = sq.fidelity_metrics(f, f, _net(), which=("fid", "dc"))
    assert values["fid_t"] == pytest.approx(0, abs=1e-8)
    assert values["coverage_t"] == 1 and values["density_t"] == pytest.approx(1)
    # KID is unbiased: two draws of one distribution score 0 within its interval (the very same set
    # does not: torch-fidelity then pairs each point with itself in the cross term)
    kid = sq.fidelity_metrics(_features(9, n=1500), _features(10, n=1500), _net(), which=("kid",))
    assert abs(kid["kid_t"]) <= 3 * kid["kid_t_std"]


def test_fd_infinity_is_below_the_biased_fid_for_samples_of_the_real_distribution():
    real, fake = _features(7, n=20000), _features(8, n=3000)
    values = sq.fidelity_metrics(fake, real, _net(), which=("fid", "fdinf"))
    assert abs(values["fdinf_t"]) < values["fid_t"] and abs(values["fdinf_t"]) < 3 * values["fdinf_t_se"]
