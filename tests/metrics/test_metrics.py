"""Every estimator against a closed form or a known value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from genbench import metrics
from genbench.core.protocols import ExactLikelihood, LatentVariableModel
from genbench.metrics import EvalSettings, evaluate
from tests.helpers import (
    LinearEncoder,
    MisfitPosteriorPPCA,
    TableModel,
    UniformModel,
    fitted_ppca,
    low_rank_data,
)
from zoo.ppca import PPCAConfig


def test_ppca_log_prob_matches_the_gaussian_closed_form():
    data = low_rank_data()
    model = fitted_ppca(data)
    x = data[:50]
    cov = model.loading @ model.loading.T + model.noise_variance * torch.eye(10, dtype=torch.float64)
    expected = multivariate_normal(model.mean.numpy(), cov.numpy()).logpdf(x.flatten(1).double().numpy())
    np.testing.assert_allclose(model.log_prob(x).numpy(), expected, rtol=1e-10, atol=1e-9)


def test_ppca_is_the_maximum_likelihood_fit():
    """The closed form beats perturbed parameters on the training data."""
    data = low_rank_data()
    model = fitted_ppca(data)
    best = model.log_prob(data).mean()
    with torch.no_grad():
        model.noise_variance.mul_(1.2)
    assert model.log_prob(data).mean() < best


def test_exact_posterior_makes_every_bound_equal_log_p():
    data = low_rank_data()
    model = fitted_ppca(data)
    x = data[:100]
    log_p = model.log_prob(x)
    for k in (1, 5):
        torch.testing.assert_close(metrics.iwae_bound(model, x, k), log_p, rtol=0, atol=1e-8)


def test_iwae_bounds_climb_to_log_p_within_monte_carlo_error():
    data = low_rank_data()
    model = MisfitPosteriorPPCA(PPCAConfig(latent=3), tuple(data.shape[1:]))
    model.init_from_data(data)
    x = data[:200]
    log_p = model.log_prob(x).mean().item()
    bounds = {k: metrics.iwae_bound(model, x, k).mean().item() for k in (1, 5, 50, 5000)}
    assert bounds[1] < bounds[5] < bounds[50] < log_p
    assert abs(bounds[5000] - log_p) < 0.01
    # The ELBO gap is KL(q || p(z|x)), here in closed form.
    elbo = metrics.elbo(model, x, k=2000).mean().item()
    expected = log_p - model.kl_to_exact_posterior(x).mean().item()
    assert elbo == pytest.approx(expected, abs=0.02)
    assert model.kl_to_exact_posterior(x).mean() > 0.1  # the test is not trivial


@pytest.mark.parametrize("max_rows", [10_000, 64, 7, 1])
def test_chunking_combines_exactly_the_k_samples(max_rows):
    gen = torch.Generator().manual_seed(0)
    k, n = 50, 9
    table = torch.randn(k, n, generator=gen, dtype=torch.float64) * 20
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1)
    model = TableModel(table)
    bounds = metrics.importance_bounds(model, x, k, max_rows=max_rows)
    torch.testing.assert_close(bounds.iwae, torch.logsumexp(table, 0) - math.log(k))
    torch.testing.assert_close(bounds.elbo, table.mean(0))
    # each call stays within the memory budget; points share calls when k fits
    assert all(points * kc <= max(max_rows, 1) for points, kc in model.calls)
    if max_rows >= k:
        assert all(kc == k for _, kc in model.calls)  # every x encoded once


def test_nll_uses_exact_likelihood_when_the_model_has_it():
    data = low_rank_data()
    model = fitted_ppca(data)
    assert isinstance(model, ExactLikelihood) and isinstance(model, LatentVariableModel)
    assert metrics.nll(model, data[:64], k=3) == pytest.approx(-model.log_prob(data[:64]).mean().item())


def test_uniform_model_scores_exactly_8_bits_per_dim():
    x = torch.randint(0, 256, (32, 3, 4, 4)).float() / 255
    dims = x[0].numel()
    assert metrics.bits_per_dim(metrics.nll(UniformModel(), x), dims) == pytest.approx(8.0, abs=1e-12)
    # a uniform density on [0, 1]^D (density 1, NLL 0) is 8 bits/dim once discretized
    assert metrics.bits_per_dim(metrics.discrete_nll_from_density(0.0, dims), dims) == pytest.approx(8.0)
    values = evaluate(UniformModel(), x, EvalSettings())
    assert values["bits_per_dim"] == pytest.approx(8.0, abs=1e-12)
    assert "elbo" not in values and "active_units" not in values  # capabilities decide


def test_active_units_count_units_above_the_threshold():
    variances = [1.0, 0.05, 0.02, 0.004, 0.0, 0.3]
    model = LinearEncoder(variances)
    x = torch.randn(200_000, 8, generator=torch.Generator().manual_seed(0))
    measured = metrics.latent.posterior_mean_variances(model, x, batch_size=50_000)[0]
    np.testing.assert_allclose(measured.numpy(), variances, atol=3e-3)
    assert metrics.active_units(model, x) == 4
    assert metrics.active_units(model, x, threshold=0.1) == 2


def test_active_units_bootstrap_std_equals_a_loop_over_resamples_and_vanishes_far_from_the_threshold():
    from genbench.metrics.latent import active_units_bootstrap_std

    gen = torch.Generator().manual_seed(3)
    means = [torch.randn(300, 5, generator=gen, dtype=torch.float64) * torch.tensor(
        [1.0, 0.1, 0.1, 0.01, 3.0], dtype=torch.float64)]
    std = active_units_bootstrap_std(means, threshold=0.01, resamples=50,
                                     generator=torch.Generator().manual_seed(9))
    index = torch.randint(300, (50, 300), generator=torch.Generator().manual_seed(9))
    counts = [float((means[0][rows].var(0, unbiased=False) > 0.01).sum()) for rows in index]
    assert std == pytest.approx(float(np.std(counts, ddof=1)), rel=1e-12)
    assert std > 0  # units 1 and 2 (variance 0.01) sit on the threshold
    assert active_units_bootstrap_std(means, threshold=1e-6, resamples=50) == 0.0  # every unit far above


def test_active_units_per_layer_for_a_hierarchical_model(toy):
    from zoo import MODELS

    model = MODELS["iwae"].build({"layers": 2}, toy.shape)
    x = toy.eval_tensor("test")
    per_layer = metrics.active_units_per_layer(model, x, threshold=0.0)
    assert per_layer == [100, 50]  # every unit varies at threshold 0
    assert metrics.active_units_per_layer(model, x, threshold=1e9) == [0, 0]


def test_metric_and_column_declarations_take_keywords_only():
    """A declaration names each field, so a reader never counts positions."""
    from genbench.metrics.columns import Column
    from genbench.metrics.registry import METRICS, MetricSpec

    with pytest.raises(TypeError):
        Column("nll", "NLL (nats)", "nats", 2, "lower")
    spec = METRICS["nll"]
    with pytest.raises(TypeError):
        MetricSpec(spec.name, spec.summary, spec.requires, spec.compute, spec.columns)
