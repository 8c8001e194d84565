"""AIS and BDMC against closed forms: probabilistic PCA and linear-Gaussian decoders, whose log p(x) is
a Gaussian's; the zoo's decoders against their own IWAE bounds; the metric and the CLI end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from genbench import metrics
from genbench.cli import main
from genbench.core.protocols import (
    DecoderModel,
    DeterministicDecoder,
    JointPrior,
    LatentSimulator,
    LatentVariableModel,
    decoder_prior,
)
from genbench.data.toy import make_toy
from genbench.metrics import EvalSettings, ais, bdmc, evaluate
from genbench.metrics.ais import (
    OBSERVATION_STDS,
    GaussianObservation,
    choose_observation_std,
    chunks,
    dequantize,
    make_schedule,
    sigmoid_schedule,
)
from genbench.metrics.subsets import representative
from genbench.suites import BUDGET_DEFAULTS
from genbench.train.checkpoint import save_checkpoint
from tests.helpers import fitted_ppca, low_rank_data
from zoo import MODELS
from zoo.layers import diagonal_normal, rsample_gaussian

TOY = (1, 8, 8)


class LinearGaussian(nn.Module):
    """p(z) = N(0, I), p(x | z) = N(W z + b, diag(s^2)) on D dims: p(x) = N(b, W W^T + diag(s^2)), and the
    posterior is Gaussian, so with it as q every importance weight equals p(x)."""

    def __init__(self, dims: int = 6, latent: int = 2, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dims, latent, generator=gen, dtype=torch.float64)
        self.b = torch.randn(dims, generator=gen, dtype=torch.float64)
        self.s = 0.3 + torch.rand(dims, generator=gen, dtype=torch.float64)  # unequal noise per dimension

    def prior(self):
        zeros = torch.zeros(self.w.shape[1], dtype=torch.float64)
        return diagonal_normal(zeros, zeros)

    def log_likelihood(self, x, z):
        return torch.distributions.Normal(z @ self.w.T + self.b, self.s).log_prob(x.flatten(1)).sum(-1)

    def sample_given_z(self, z):
        mean = z @ self.w.T + self.b
        return mean + self.s * torch.randn_like(mean)

    def log_prob(self, x):
        cov = self.w @ self.w.T + torch.diag(self.s**2)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.flatten(1))

    def posterior(self, x):
        eye = torch.eye(self.w.shape[1], dtype=torch.float64)
        precision = eye + self.w.T @ (self.w / self.s[:, None] ** 2)
        cov = torch.linalg.inv(precision)
        mean = (x.flatten(1) - self.b) / self.s**2 @ self.w @ cov
        return torch.distributions.MultivariateNormal(mean, cov)

    # the exact posterior as q: a LatentVariableModel for genbench's one IWAE estimator
    def encode(self, x):
        return self.posterior(x)

    def log_importance_weights(self, x, k):
        q = self.posterior(x)
        z = q.sample((k,))
        return self.log_likelihood(x, z) + self.prior().log_prob(z) - q.log_prob(z)

    def data(self, n: int, seed: int = 1):
        torch.manual_seed(seed)
        return self.sample_given_z(self.prior().sample((n,)))


class LinearGenerator(nn.Module):
    """A DeterministicDecoder g(z) = W z + b: under N(x; g(z), std^2 I), p(x) = N(b, W W^T + std^2 I)."""

    def __init__(self, dims: int = 5, latent: int = 2):
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.lin = nn.Linear(latent, dims).double()
        with torch.no_grad():
            self.lin.weight.copy_(0.2 * torch.randn(dims, latent, generator=gen, dtype=torch.float64))
            self.lin.bias.copy_(0.5 + 0.1 * torch.randn(dims, generator=gen, dtype=torch.float64))

    def latent_prior(self):
        zeros = torch.zeros(self.lin.in_features, dtype=torch.float64)
        return diagonal_normal(zeros, zeros)

    def generate(self, z):
        return self.lin(z)

    def log_prob(self, x, std):
        w = self.lin.weight.detach()
        cov = w @ w.T + std**2 * torch.eye(w.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.lin.bias.detach(), cov).log_prob(x.flatten(1))


# --- schedules and bookkeeping ------------------------------------------------------------------------
def test_sigmoid_schedule_runs_from_zero_to_one_densest_at_the_ends():
    betas = sigmoid_schedule(100)
    assert betas[0] == 0.0 and betas[-1] == 1.0 and len(betas) == 101
    gaps = torch.tensor(betas).diff()
    assert (gaps > 0).all() and gaps[0] < gaps[50] / 10 and gaps[-1] < gaps[50] / 10
    assert math.isclose(betas[50], 0.5, abs_tol=1e-12)
    with pytest.raises(ValueError):
        make_schedule([0.0, 0.7, 0.5, 1.0], 3)


def test_chunks_cover_every_point_and_chain_within_the_row_limit():
    for n, chains, rows in ((10, 4, 9), (7, 16, 5), (3, 2, 1000)):
        seen = torch.zeros(chains, n)
        for points, parts in chunks(n, chains, rows):
            for part in parts:
                width = part.stop - part.start
                assert (points.stop - points.start) * width <= max(rows, width)
                seen[part, points] += 1
        assert (seen == 1).all()


# --- closed forms ----------------------------------------------------------------------------------------
def test_one_step_is_importance_sampling_from_the_prior():
    model = LinearGaussian()
    x = model.data(5)
    result = ais(model, x, steps=1, chains=3, seed=4)
    with torch.random.fork_rng():
        torch.manual_seed(4)
        z = model.prior().sample((1, 5))  # the pilot's chain ...
        z = model.prior().sample((3, 5))  # ... then the estimating chains
    torch.testing.assert_close(result.log_weights, model.log_likelihood(x, z))


def test_exact_posterior_as_q_makes_iwae_equal_log_p():
    model = LinearGaussian()
    x = model.data(40)
    for k in (1, 7):
        torch.testing.assert_close(metrics.iwae_bound(model, x, k), model.log_prob(x), rtol=0, atol=1e-9)


def test_ais_converges_to_log_p_and_rises_with_steps_on_a_linear_gaussian_decoder():
    model = LinearGaussian()
    x = model.data(200)
    exact = model.log_prob(x)
    bound = {steps: ais(model, x, steps, chains=4, seed=steps).log_p for steps in (2, 10, 100)}
    for fewer, more in ((2, 10), (10, 100)):  # paired over the points: it rises with steps, beyond noise
        rise = bound[more] - bound[fewer]  # seeds 0-3: 2 -> 10 by 3.1-3.9 nats, 10 -> 100 by 0.24-0.48
        assert rise.mean() > 2.5 * rise.std() / math.sqrt(200), (fewer, more)
    diff = bound[100] - exact  # seeds 0-3: -0.10 to -0.03, 3 s.e. 0.08
    assert -0.2 < diff.mean() < 3 * diff.std() / math.sqrt(200)  # a lower bound converged to log p(x)


def test_ais_and_bdmc_on_ppca_bracket_the_exact_log_likelihood():
    data = low_rank_data(n=1000, noise=1.0)
    model = fitted_ppca(data)
    x = data[:30]
    result = ais(model, x, 100, chains=4, seed=0)
    diff = result.log_p - model.log_prob(x)
    assert -0.3 < diff.mean() < 3 * diff.std() / math.sqrt(30)  # seeds 0-3 gave -0.09 to -0.14
    sandwich = bdmc(model, 30, 100, chains=4, seed=0)
    exact = model.log_prob(sandwich.x).mean()
    assert sandwich.lower.mean() <= exact + 0.05 and sandwich.upper.mean() >= exact - 0.05
    assert 0 <= sandwich.gap.mean() < 0.6  # seeds 0-3 gave 0.21 to 0.34 at 100 steps


def test_reverse_ais_is_an_upper_bound_in_expectation_and_the_gap_shrinks_with_steps():
    model = LinearGaussian(dims=8, latent=3, seed=2)
    short, long = bdmc(model, 80, 3, chains=2, seed=1), bdmc(model, 80, 60, chains=2, seed=1)
    for run in (short, long):
        exact = model.log_prob(run.x)
        upper, lower = run.upper - exact, run.lower - exact
        assert upper.mean() > -2 * upper.std() / math.sqrt(80)
        assert lower.mean() < 2 * lower.std() / math.sqrt(80)
    assert short.gap.mean() > 2 and long.gap.mean() < short.gap.mean() / 4


def test_a_generator_under_its_gaussian_observation_model_has_the_closed_form_likelihood():
    generator = LinearGenerator()
    assert isinstance(generator, DeterministicDecoder) and not isinstance(generator, DecoderModel)
    decoder = GaussianObservation(generator, 0.1)
    assert isinstance(decoder, DecoderModel) and isinstance(decoder, LatentSimulator)
    torch.manual_seed(0)
    y = decoder.sample_given_z(generator.latent_prior().sample((40,)))
    z = torch.randn(3, 40, 2, dtype=torch.float64)
    expected = torch.distributions.Normal(generator.generate(z), 0.1).log_prob(y).sum(-1)
    torch.testing.assert_close(decoder.log_likelihood(y, z), expected)
    result = ais(decoder, y, 150, chains=4, seed=2)
    diff = result.log_p - generator.log_prob(y, 0.1)
    assert -0.15 < diff.mean() < 3 * diff.std() / math.sqrt(40)


def test_the_observation_std_curve_of_one_tempered_run_is_the_closed_form_curve():
    generator = LinearGenerator()
    torch.manual_seed(1)
    y = GaussianObservation(generator, 0.12).sample_given_z(generator.latent_prior().sample((60,)))
    stds = (0.04, 0.06, 0.09, 0.12, 0.18, 0.27, 0.4)
    choice = choose_observation_std(generator, y, 100, 4, stds, seed=0)
    exact = {s: generator.log_prob(y, s).mean().item() for s in stds}
    for s in stds:
        assert exact[s] - 0.45 < choice.scores[s] < exact[s] + 0.1, (s, choice.scores[s], exact[s])
    assert choice.std == max(exact, key=exact.get) == 0.12


def test_dequantization_keeps_each_level_in_its_bin():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (50, 1, 4, 4)) / 255.0
    y = dequantize(x, 256)
    assert torch.equal(torch.floor(y * 256), torch.round(x * 255))


# --- reproducibility and memory ------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_numbers_and_leaves_the_callers_rng_alone():
    model = LinearGaussian()
    x = model.data(10)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = ais(model, x, 10, chains=3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = ais(model, x, 10, chains=3, generator=torch.Generator().manual_seed(5))
    c = ais(model, x, 10, chains=3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.log_weights, ais(model, x, 10, chains=3, seed=7).log_weights)
    assert torch.equal(b.log_weights, c.log_weights) and not torch.equal(a.log_weights, b.log_weights)
    s1, s2 = bdmc(model, 6, 5, chains=2, seed=3), bdmc(model, 6, 5, chains=2, seed=3)
    assert torch.equal(s1.lower, s2.lower) and torch.equal(s1.upper, s2.upper)


class RowCounter(LinearGaussian):
    def __init__(self):
        super().__init__()
        self.rows = []

    def log_likelihood(self, x, z):
        self.rows.append(z.shape[0] * z.shape[1])
        return super().log_likelihood(x, z)


def test_memory_is_bounded_by_max_rows_and_every_point_gets_all_its_chains():
    model = RowCounter()
    x = model.data(9)
    result = ais(model, x, 4, chains=6, seed=0, max_rows=12)
    assert max(model.rows) <= 12 and result.log_weights.shape == (6, 9)
    assert torch.isfinite(result.log_weights).all() and torch.isfinite(result.se).all()


# --- the zoo's decoders ---------------------------------------------------------------------------------
def _hierarchical_weights_by_hand(model, x, k):
    """z ~ q drawn as the model's ``variational_terms`` draws it (same RNG order), with log q(z | x): z is
    cat(z1, z2), lowest first."""
    h = x.flatten(1)
    if hasattr(model, "encoders"):  # vae/iwae: q(z1 | x) q(z2 | z1)
        mean, log_std = model.encoders[0](h)
        z1, lq1 = rsample_gaussian(mean.expand(k, *mean.shape), log_std.expand(k, *log_std.shape))
        z2, lq2 = rsample_gaussian(*model.encoders[1](z1))
    else:  # hvae: q(z2 | x) q(z1 | x, z2)
        mean, log_std = model.q_top(h)
        z2, lq2 = rsample_gaussian(mean.expand(k, *mean.shape), log_std.expand(k, *log_std.shape))
        z1, lq1 = rsample_gaussian(*model.q_z1_head(model.q_z1(h, z2)))
    return torch.cat([z1, z2], dim=-1), lq1 + lq2


@pytest.mark.parametrize("name, config", [
    ("vae", {"layers": 2}),
    ("hvae", {"layers": 2, "prior": "vamp", "components": 4, "hidden": 24, "latent": 4}),
])
def test_hierarchical_joint_priors_and_likelihoods_are_the_importance_weights_terms(name, config):
    """log w = log p(x | z) + log p(z1, z2) - log q(z | x) at the same z, with the joint prior over both
    layers; and AIS over both layers is at least the IWAE bound through the encoder (both are bounds)."""
    torch.manual_seed(0)
    model = MODELS[name].build(config, TOY).eval()
    assert isinstance(model, DecoderModel) and isinstance(model, JointPrior)
    with pytest.raises(NotImplementedError):
        model.prior()  # LatentVariableModel's meaning is kept: p(z1) is a learned marginal
    x = make_toy(n_train=10, n_test=8).eval_tensor("test")
    with torch.no_grad():
        torch.manual_seed(5)
        log_w = model.log_importance_weights(x, 3)
        torch.manual_seed(5)
        z, log_q = _hierarchical_weights_by_hand(model, x, 3)
        prior = decoder_prior(model)
        torch.testing.assert_close(model.log_likelihood(x, z) + prior.log_prob(z) - log_q, log_w,
                                   rtol=1e-5, atol=1e-3)
        assert torch.isfinite(prior.log_prob(prior.sample((3, 8)))).all()
        assert model.sample_given_z(z[0]).shape == (8, *TOY)
    iwae = metrics.iwae_bound(model, x, 500).mean().item()
    annealed = ais(model, x, 60, chains=4, seed=0).log_p.mean().item()
    assert annealed > iwae - 0.5, (annealed, iwae)


@pytest.mark.parametrize("name, config, shape", [
    ("vae", {"layers": 1}, TOY),
    ("betavae", {"latent": 3}, (1, 64, 64)),
    ("pixelvae", {"latent": 3, "decoder_channels": 4, "condition_channels": 2, "encoder_hidden": 8,
                  "decoder_layers": 1}, TOY),
])
def test_single_layer_decoders_give_the_likelihood_of_their_variational_terms(name, config, shape):
    """log p(x) = log w - log p(z) + log q(z | x) at the same z: the decoder's likelihood is the one the
    importance weights use."""
    torch.manual_seed(0)
    model = MODELS[name].build(config, shape).eval()
    assert isinstance(model, DecoderModel) and isinstance(model, LatentVariableModel)
    x = torch.rand(2, *shape).round()
    q = model.encode(x)
    torch.manual_seed(5)
    log_w = model.log_importance_weights(x, 3)
    torch.manual_seed(5)
    z = q.rsample((3,))
    expected = log_w - model.prior().log_prob(z) + q.log_prob(z)
    torch.testing.assert_close(model.log_likelihood(x, z), expected, rtol=1e-5, atol=1e-3)
    assert model.sample_given_z(z[0]).shape == (2, *shape)


def test_gan_generators_are_deterministic_decoders_with_a_standard_normal_prior():
    for name in ("gan", "bigan"):
        model = MODELS[name].build({"latent": 5, "base_channels": 4}, TOY).eval()
        assert isinstance(model, DeterministicDecoder) and not isinstance(model, DecoderModel)
        assert model.latent_prior().event_shape == (5,) and not hasattr(model, "prior")
        decoder = GaussianObservation(model, 0.2)
        y = torch.rand(4, *TOY)
        ll = decoder.log_likelihood(y, torch.randn(3, 4, 5))
        assert ll.shape == (3, 4) and torch.isfinite(ll).all()


# --- the registry metric and the CLI ---------------------------------------------------------------------
AIS_SETTINGS = EvalSettings(k=10, n_test=40, ais_steps=8, ais_chains=2, ais_points=12, ais_sigma_points=6,
                            ais_bdmc_points=6)


def test_the_metric_writes_its_declared_columns_for_a_vae_a_gan_and_ppca():
    toy = make_toy(n_train=300, n_test=60)
    test = toy.eval_tensor("test")
    vae = MODELS["vae"].build({"layers": 1}, TOY)
    gan = MODELS["gan"].build({"latent": 4, "base_channels": 4}, TOY)
    ppca = fitted_ppca(toy.eval_tensor("train"), latent=3)
    common = {"ais_chain_se", "ais_acceptance", "bdmc_gap", "bdmc_gap_se", "bdmc_lower", "bdmc_upper"}
    discrete = {"ais_nll", "ais_nll_se", "ais_bits_per_dim", "ais_bits_per_dim_se"}
    values = {}
    paired = {"ais_minus_iwae", "ais_minus_iwae_se"}  # latent models: AIS against L_k on the same points
    # PPCA's is a density on binary pixels: kept out of ais_nll, no bits/dim
    expected = {"vae": common | discrete | paired, "gan": common | discrete | {"ais_observation_std"},
                "ppca": common | paired | {"ais_density_nll", "ais_density_nll_se"}}
    for name, model in (("vae", vae), ("gan", gan), ("ppca", ppca)):
        values[name] = evaluate(model, test, AIS_SETTINGS, only=["ais"], dataset=toy)
        assert set(values[name]) == expected[name], name
    # the generator's NLL is discrete: a Gaussian density on dequantised binary pixels (2 levels) + D ln 2
    assert values["gan"]["ais_nll"] > 0 and values["gan"]["ais_observation_std"] in OBSERVATION_STDS
    # a lower bound on log p(x): PPCA's AIS NLL is above its exact NLL on the same points (beyond noise)
    points = representative(representative(test, 40, 0), 12, 0)
    exact = -ppca.log_prob(points).mean().item()
    assert values["ppca"]["ais_density_nll"] > exact - 2 * values["ppca"]["ais_density_nll_se"]
    # PPCA's encoder is its exact posterior, so L_k is log p(x) for any k: the paired column is exactly
    # AIS's log p against the closed form on the same points
    ais_nll = values["ppca"]["ais_density_nll"]
    assert values["ppca"]["ais_minus_iwae"] == pytest.approx(exact - ais_nll, abs=1e-3)
    again = evaluate(vae, test, AIS_SETTINGS, only=["ais"], dataset=toy)
    assert again == values["vae"]  # seeded by the evaluation seed


def test_ais_is_off_in_the_built_in_budgets_and_described_where_on():
    for budget in BUDGET_DEFAULTS.values():
        assert budget.eval.ais_steps == 0 and "AIS" not in budget.describe()
    toy = make_toy(n_train=50, n_test=20)
    assert not {k for k in evaluate(MODELS["vae"].build({"layers": 1}, TOY), toy.eval_tensor("test"),
                                    EvalSettings(k=5), dataset=toy) if "ais" in k or "bdmc" in k}
    text = metrics.METRICS["ais"].budget_text(AIS_SETTINGS)
    assert "8 annealing steps" in text and "2 HMC chains" in text and "BDMC gap" in text


def _checkpoint(tmp_path, name: str, config: dict) -> str:
    torch.manual_seed(0)
    model = MODELS[name].build(config, TOY)
    meta = {"model": name, "config": config, "dataset": "toy", "data_shape": list(TOY), "seed": 0}
    return str(save_checkpoint(tmp_path / name, model, meta))


@pytest.mark.parametrize("name, config", [("vae", {"layers": 1}), ("gan", {"latent": 4, "base_channels": 4})])
def test_score_with_bdmc_from_the_command_line(tmp_path, capsys, name, config):
    path = _checkpoint(tmp_path, name, config)
    code = main(["score", path, "--json", "--k", "5", "--n-test", "20", "--ais-steps", "6",
                 "--ais-chains", "2", "--ais-points", "8", "--bdmc", "4"])
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert code == 0 and report["settings"]["ais_bdmc_points"] == 4
    assert {"ais_nll", "bdmc_gap", "bdmc_lower", "bdmc_upper"} <= set(report["metrics"])
    assert report["metrics"]["bdmc_upper"] > report["metrics"]["bdmc_lower"] - 5


def test_bdmc_without_ais_steps_is_one_line(tmp_path, capsys):
    path = _checkpoint(tmp_path, "vae", {"layers": 1})
    code = main(["score", path, "--bdmc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ais-steps" in err[0]
