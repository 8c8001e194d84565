"""ELBO surgery against closed forms, a brute-force quadrature and its own invariants."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.metrics.elbo_surgery import elbo_surgery, encode_gaussian, kl_decomposition
from tests.helpers import fitted_ppca, low_rank_data
from zoo.layers import diagonal_normal


def standard_normal(d: int):
    return diagonal_normal(torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64))


def gaussian_kl_to_standard_normal(mean, std):
    return 0.5 * (std.square() + mean.square() - 1 - 2 * std.log()).sum(-1)


class PriorEncoder(torch.nn.Module):
    """q(z|x) = p(z) = N(0, I) for every x: the code carries no information."""

    def encode(self, x):
        zeros = torch.zeros(x.shape[0], 4, dtype=torch.float64)
        return diagonal_normal(zeros, zeros)

    def prior(self):
        return standard_normal(4)

    def log_importance_weights(self, x, k):
        return torch.zeros(k, x.shape[0], dtype=torch.float64)


@pytest.fixture(scope="module")
def ppca_case():
    data = low_rank_data(n=600, dims=8, latent=3, noise=0.5)
    return fitted_ppca(data), data


def test_the_three_terms_add_up_and_the_information_is_bounded(ppca_case):
    model, data = ppca_case
    terms = elbo_surgery(model, data, samples=2).terms
    assert terms.avg_kl == pytest.approx(terms.mutual_info + terms.marginal_kl, rel=1e-6)
    assert 0.5 < terms.mutual_info <= math.log(len(data))  # informative codes, below log N
    assert terms.marginal_kl >= -3 * terms.marginal_kl_stderr


def test_avg_kl_matches_the_closed_form_gaussian_kl(ppca_case):
    model, data = ppca_case
    terms = elbo_surgery(model, data, samples=4).terms
    mean, std = encode_gaussian(model, data)
    exact = gaussian_kl_to_standard_normal(mean, std).mean().item()
    assert abs(terms.avg_kl - exact) < 4 * terms.avg_kl_stderr
    assert terms.avg_kl_stderr < 0.05  # the tolerance is tight enough to mean something


def test_train_elbo_of_the_exact_posterior_is_log_p(ppca_case):
    model, data = ppca_case
    surgery = elbo_surgery(model, data, n_points=100)
    carried = data[surgery.terms.points]
    assert len(carried) == 100
    assert surgery.elbo == pytest.approx(model.log_prob(carried).mean().item(), abs=1e-8)


def test_a_posterior_equal_to_the_prior_has_no_information_and_no_marginal_kl():
    x = torch.zeros(300, 1, 5)
    terms = elbo_surgery(PriorEncoder(), x, samples=3).terms
    assert terms.mutual_info == pytest.approx(0.0, abs=1e-10)
    assert terms.marginal_kl == pytest.approx(0.0, abs=1e-10)
    assert terms.avg_kl == pytest.approx(0.0, abs=1e-10)


def test_mixture_terms_match_a_brute_force_quadrature_on_tiny_n():
    """Independent check: MI and KL(q(z) || p(z)) by integrating on a 2-D grid, N = 5."""
    mean = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-1.2, 0.4], [0.3, 1.5], [2.0, 1.0]], dtype=torch.float64)
    std = torch.tensor([[0.5, 0.8], [0.6, 0.6], [0.4, 0.9], [0.7, 0.5], [0.5, 0.5]], dtype=torch.float64)
    prior = standard_normal(2)
    terms = kl_decomposition(mean, std, prior, samples=40_000)
    axis = torch.linspace(-7, 7, 701, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    cell = (axis[1] - axis[0]) ** 2
    log_q_n = diagonal_normal(mean, std.log()).log_prob(grid.unsqueeze(1))  # [G, N]
    log_q = torch.logsumexp(log_q_n, 1) - math.log(5)
    q_n = log_q_n.exp()
    mutual_info = ((q_n * (log_q_n - log_q.unsqueeze(1))).sum() * cell / 5).item()
    marginal_kl = ((log_q.exp() * (log_q - prior.log_prob(grid))).sum() * cell).item()
    assert abs(terms.mutual_info - mutual_info) < 4 * terms.mutual_info_stderr
    assert abs(terms.marginal_kl - marginal_kl) < 4 * terms.marginal_kl_stderr
    assert terms.mutual_info_stderr < 0.01 and mutual_info > 0.3  # a non-trivial, tight check


def test_chunking_changes_nothing(ppca_case):
    model, data = ppca_case
    mean, std = encode_gaussian(model, data)
    prior = model.prior()
    whole = kl_decomposition(mean, std, prior, samples=2, memory_bytes=1 << 30)
    chunked = kl_decomposition(mean, std, prior, samples=2, memory_bytes=24 * 37 * 256)  # 37 columns
    for key in ("avg_kl", "mutual_info", "marginal_kl"):
        assert getattr(chunked, key) == pytest.approx(getattr(whole, key), rel=1e-12, abs=1e-12)


def test_component_subsample_overestimates_information_less_as_it_grows(ppca_case):
    """Same samples, smaller mixtures: log q(z) is biased low (Jensen), so the mutual information
    comes out high by an amount that shrinks with the subsample; avg_kl does not move."""
    model, data = ppca_case
    mean, std = encode_gaussian(model, data)
    prior = model.prior()
    full = kl_decomposition(mean, std, prior, seed=3)
    gaps = []
    for m in (20, 150, len(data) - 1):
        sub = kl_decomposition(mean, std, prior, n_components=m, seed=3)
        assert sub.n_components == m and sub.avg_kl == full.avg_kl
        assert sub.avg_kl == pytest.approx(sub.mutual_info + sub.marginal_kl, rel=1e-9)
        assert sub.mutual_info <= math.log(len(data))
        gaps.append(sub.mutual_info - full.mutual_info)
    assert gaps[0] > gaps[1] > 0.1 and abs(gaps[2]) < 0.01
    assert gaps[0] > 10 * full.mutual_info_stderr  # a bias, not noise


def test_separated_posteriors_reach_log_n_even_with_few_components():
    """Posteriors far apart: MI = log N. The own component's 1/N weight keeps that with 5 of 50
    components; a 1/M weight would cap the estimate at log 5, a missing one would overshoot."""
    n = 50
    mean = torch.zeros(n, 2, dtype=torch.float64)
    mean[:, 0] = torch.arange(n, dtype=torch.float64) * 10
    std = torch.full((n, 2), 0.1, dtype=torch.float64)
    sub = kl_decomposition(mean, std, standard_normal(2), samples=4, n_components=5)
    assert sub.mutual_info == pytest.approx(math.log(n), abs=1e-6)
    assert sub.mutual_info <= math.log(n) + 1e-12


def test_subsampling_points_uses_the_same_components(ppca_case):
    model, data = ppca_case
    mean, std = encode_gaussian(model, data)
    part = kl_decomposition(mean, std, model.prior(), samples=8, n_points=200, seed=1)
    whole = kl_decomposition(mean, std, model.prior(), samples=2, seed=1)
    assert len(part.points) == 200 and part.n_components == len(data)
    assert abs(part.mutual_info - whole.mutual_info) < 4 * math.hypot(part.mutual_info_stderr,
                                                                      whole.mutual_info_stderr)


def test_a_hierarchical_prior_is_refused():
    from zoo import MODELS

    model = MODELS["iwae"].build({"layers": 2}, (1, 8, 8))
    with pytest.raises(NotImplementedError):
        elbo_surgery(model, torch.zeros(4, 1, 8, 8))


def test_the_registry_runs_surgery_on_a_seeded_subset_of_the_training_split(toy):
    from genbench.metrics import EvalSettings, evaluate
    from genbench.metrics.subsets import subset_index

    model = fitted_ppca(toy.eval_tensor("train"), latent=4)
    settings = EvalSettings(k=5, surgery_points=150, surgery_samples=2, seed=4, points_seed=4)
    from_dataset = evaluate(model, toy.eval_tensor("test"), settings, dataset=toy)
    from_tensor = evaluate(model, toy.eval_tensor("test"), settings, train=toy.eval_tensor("train"))
    assert from_dataset == pytest.approx(from_tensor, rel=1e-12)
    keys = ("surgery_avg_kl", "surgery_mutual_info", "surgery_marginal_kl", "surgery_train_elbo")
    avg_kl, mi, marginal, elbo = (from_dataset[k] for k in keys)
    assert avg_kl == pytest.approx(mi + marginal, rel=1e-9) and 0 < mi <= math.log(150)
    x = toy.eval_tensor("train")[subset_index(toy.size("train"), 150, seed=4)]
    assert elbo == pytest.approx(model.log_prob(x).mean().item(), abs=1e-6)  # exact posterior
    terms = elbo_surgery(model, x, samples=2, seed=4).terms
    for key, se in (("avg_kl", terms.avg_kl_stderr), ("mutual_info", terms.mutual_info_stderr),
                    ("marginal_kl", terms.marginal_kl_stderr)):
        assert from_dataset[f"surgery_{key}_se"] == pytest.approx(se, rel=1e-9) and se > 0, key
    assert "surgery_avg_kl" not in evaluate(model, toy.eval_tensor("test"), settings)  # no train data


def test_the_registry_skips_surgery_without_a_fixed_prior(toy):
    from genbench.metrics import EvalSettings, evaluate
    from zoo import MODELS

    model = MODELS["iwae"].build({"layers": 2}, toy.shape)
    values = evaluate(model, toy.eval_tensor("test"), EvalSettings(k=2, surgery_points=50), dataset=toy)
    assert "elbo" in values and not any(key.startswith("surgery") for key in values)
    one_layer = MODELS["iwae"].build({"layers": 1}, toy.shape)
    values = evaluate(one_layer, toy.eval_tensor("test"), EvalSettings(k=2, surgery_points=50), dataset=toy)
    assert values["surgery_avg_kl"] > 0
