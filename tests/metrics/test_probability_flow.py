"""The diffusion likelihoods against closed forms: the probability-flow ODE equals the exact Gaussian
log-density (exactly with the exact divergence, within its s.e. with Hutchinson's), the variational
bounds never fall below the exact NLL and close in as their grid refines, and a model uniform on its
data interval scores 8 bits/dim on 8-bit data through the realnvp convention."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.core.errors import GenbenchError
from genbench.metrics import (
    EvalSettings,
    diffusion_bound,
    evaluate,
    probability_flow_discrete_nll,
    probability_flow_nll,
)
from genbench.metrics.likelihood import bits_per_dim
from tests.metrics.diffusion_closed_forms import GaussianDiffusion, UniformDiffusion, random_gaussian


def gaussian_points(model: GaussianDiffusion, n: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, len(model.mu), generator=gen, dtype=torch.float64)
    return model.mu + noise @ torch.linalg.cholesky(model.cov).T


def test_ode_nll_equals_the_exact_gaussian_log_density_with_the_exact_divergence():
    model = GaussianDiffusion(*random_gaussian(3))
    x = gaussian_points(model, 16)
    result = probability_flow_nll(model, x, rtol=1e-7, atol=1e-7)
    exact = -model.marginal(0.0).log_prob(x)
    assert result.divergence == "exact" and result.probes == 1
    assert torch.allclose(result.nll, exact, atol=1e-4), (result.nll - exact).abs().max()
    assert bool((result.nll_se == 0).all())
    assert result.nfe > 10 and result.rtol == 1e-7 and result.method == "dopri5"
    # looser tolerances: fewer evaluations, and still close
    loose = probability_flow_nll(model, x, rtol=1e-4, atol=1e-4)
    assert loose.nfe < result.nfe
    assert torch.allclose(loose.nll, exact, atol=1e-2)


def test_ode_nll_with_hutchinson_probes_is_within_its_standard_error():
    model = GaussianDiffusion(*random_gaussian(20, seed=3))
    x = gaussian_points(model, 8)
    result = probability_flow_nll(model, x, probes=16, rtol=1e-5, atol=1e-5,
                                  generator=torch.Generator().manual_seed(0))
    exact = -model.marginal(0.0).log_prob(x)
    assert result.divergence == "hutchinson" and result.probes == 16
    assert bool((result.nll_se > 0).all())
    z = (result.nll - exact) / result.nll_se
    assert bool((z.abs() < 4.5).all()), z
    mean_z = (result.nll - exact).mean() / (result.nll_se.square().sum().sqrt() / len(x))
    assert abs(float(mean_z)) < 4
    one = probability_flow_nll(model, x[:2], probes=1, generator=torch.Generator().manual_seed(0))
    assert bool(one.nll_se.isnan().all())  # unknown with one probe, never a fake 0


def paired_gap(values: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """Mean of values - exact over the points and its s.e."""
    gap = values - exact
    return float(gap.mean()), float(gap.std() / math.sqrt(len(gap)))


def test_bounds_are_bounds_and_close_in_as_the_grid_refines():
    model = GaussianDiffusion(*random_gaussian(2, seed=5), log_snr_0=6.0, log_snr_1=-10.0)
    x = gaussian_points(model, 4000, seed=2)
    exact = -model.data_log_prob(x)
    grids = (2, 8, 64, 512, None)
    gaps = {}
    for steps in grids:
        gen = torch.Generator().manual_seed(1)
        bound = diffusion_bound(model, x, steps=steps, time_samples=8, generator=gen)
        gaps[steps] = paired_gap(bound.total, exact)
        assert gaps[steps][0] > -3 * gaps[steps][1], (steps, gaps[steps])  # never below the exact NLL
    means = [gaps[s][0] for s in grids]
    assert means == sorted(means, reverse=True), gaps
    assert means[0] > 10 and means[2] > 0.2  # coarse grids: far from tight
    assert abs(means[-1]) < 4 * gaps[None][1]  # continuous time, exact predictor and posterior: tight


def test_every_step_of_a_grid_enters_once_when_the_samples_cover_it():
    model = GaussianDiffusion(*random_gaussian(2, seed=5))
    x = gaussian_points(model, 3000, seed=4)
    gen = torch.Generator().manual_seed(0)
    exhaustive = diffusion_bound(model, x, steps=4, time_samples=4, generator=gen).diffusion
    sampled = diffusion_bound(model, x, steps=4, time_samples=1, generator=gen).diffusion
    difference = sampled - exhaustive  # both unbiased for the same sum over steps
    assert abs(float(difference.mean())) < 4 * float(difference.std()) / math.sqrt(len(x))
    assert float(sampled.var()) > float(exhaustive.var())  # drawing the step adds variance


def test_a_uniform_data_density_is_8_bits_per_dim_on_8_bit_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 1, 2, 2), generator=gen).double() / 255
    for interval in ((-1.0, 1.0), (0.0, 1.0)):
        model = UniformDiffusion(interval)
        result = probability_flow_discrete_nll(model, x, generator=gen, rtol=1e-6, atol=1e-6)
        bpd = bits_per_dim(result.nll, 4)
        assert abs(float(bpd.mean()) - 8) < 5e-3, (interval, float(bpd.mean()))


def test_a_schedule_not_differentiable_in_t_is_one_line():
    class Lookup(UniformDiffusion):
        def noise_schedule(self, t):
            table = torch.linspace(0.999, 0.01, 11, dtype=t.dtype)
            alpha = table[(t * 10).long()]
            return alpha, (1 - alpha**2).sqrt()

    with pytest.raises(GenbenchError, match="differentiable in t"):
        probability_flow_nll(Lookup(), torch.zeros(2, 3, dtype=torch.float64))


class UniformWithDecoder(UniformDiffusion):
    """The uniform model with a decoder uniform over the 256 levels: its bound's decoder term is D ln 256."""

    def decoder_log_prob(self, x, z_0):
        return torch.full((len(x),), -x[0].numel() * math.log(256), dtype=x.dtype)


def test_evaluate_scores_diffusion_models_by_capability():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 1, 2, 2), generator=gen).double() / 255
    settings = EvalSettings(ode_points=8, ode_tolerance=1e-6)
    plain = evaluate(UniformDiffusion(), x, settings)
    assert abs(plain["ode_bits_per_dim"] - 8) < 5e-3 and plain["ode_nfe"] > 0
    assert not any(key.startswith("bound_") for key in plain)  # no decoder, no bound
    with_decoder = evaluate(UniformWithDecoder(), x, settings)
    assert with_decoder["bound_steps"] == 0  # no time_steps: continuous time
    assert with_decoder["bound_reconstruction"] == pytest.approx(4 * math.log(256))
    assert with_decoder["bound_bits_per_dim"] >= 8  # a bound: never below the model's own 8 bits/dim
    assert "ode_nll" not in evaluate(UniformDiffusion(), x, EvalSettings(ode_points=0))
