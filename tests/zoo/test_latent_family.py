"""The latent-variable family: priors, the hierarchical VAE, beta-VAE, the shared objective,
and the training options (KL warm-up, free bits, controlled capacity, early stopping)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily

from genbench.core.errors import GenbenchError
from genbench.core.protocols import LatentVariableModel, LayeredEncoder, ProgressAware, Sampler, Trainable
from genbench.core.weights import read_weights
from genbench.train import checkpoint as ckpt
from genbench.train.loop import BEST_WEIGHTS, TrainConfig, fit_tensor, train
from tests.helpers import single_optimizer_steps
from zoo import MODELS
from zoo.layers import diagonal_normal
from zoo.objectives import ObjectiveConfig, VariationalTerms, training_loss
from zoo.priors import mixture_log_prob

MNIST = (1, 28, 28)


# --- priors --------------------------------------------------------------------------------
def test_mixture_log_prob_matches_torch_distributions():
    means, log_stds = torch.randn(7, 3), 0.3 * torch.randn(7, 3)
    z = 2 * torch.randn(4, 5, 3)
    reference = MixtureSameFamily(Categorical(logits=torch.zeros(7)), diagonal_normal(means, log_stds))
    torch.testing.assert_close(mixture_log_prob(z, means, log_stds), reference.log_prob(z),
                               rtol=1e-5, atol=1e-5)


def test_vamp_prior_is_the_mean_of_the_encoders_posteriors_at_the_pseudo_inputs():
    model = MODELS["hvae"].build({"layers": 1, "prior": "vamp", "components": 6}, MNIST)
    z = torch.randn(9, 40)
    pseudo = model.prior_top.pseudo_inputs()
    mean, log_std = model.q_top(pseudo)
    expected = torch.logsumexp(diagonal_normal(mean, log_std).log_prob(z[:, None, :]), dim=1) - math.log(6)
    torch.testing.assert_close(model.prior().log_prob(z), expected, rtol=1e-5, atol=1e-4)


def test_vamp_pseudo_inputs_start_near_black_as_in_the_reference_code():
    """jmtomczak/vae_vampprior, binary MNIST: weights w ~ N(0.05, 0.01^2), u = hardtanh(w, 0, 1)."""
    torch.manual_seed(0)
    model = MODELS["hvae"].build({"layers": 1, "prior": "vamp", "components": 500}, MNIST)
    weights = dict(model.named_parameters())["prior_top.pseudo_weights"]
    assert weights.shape == (500, 784) and weights.requires_grad
    assert abs(weights.mean().item() - 0.05) < 1e-3 and abs(weights.std().item() - 0.01) < 5e-4
    pseudo = model.prior_top.pseudo_inputs()
    assert torch.equal(pseudo, weights.clamp(0.0, 1.0)) and 0.0 <= pseudo.min() and pseudo.max() < 0.11
    with torch.no_grad():
        weights[0, :3] = torch.tensor([-0.5, 0.5, 1.5])
    assert model.prior_top.pseudo_inputs()[0, :3].tolist() == [0.0, 0.5, 1.0]  # hardtanh(0, 1)
    before = weights.detach().clone()
    model.init_from_data(torch.rand(600, *MNIST).round())  # no-op for the pseudo-inputs of vamp
    assert torch.equal(weights, before)


def test_vamp_data_pseudo_inputs_start_at_noisy_training_images_and_are_trained():
    torch.manual_seed(0)
    model = MODELS["hvae"].build({"layers": 1, "prior": "vamp-data", "components": 50}, MNIST)
    x = torch.rand(300, *MNIST).round()
    model.init_from_data(x)
    weights = dict(model.named_parameters())["prior_top.pseudo_weights"]
    # each weight row is one training image plus N(0, 0.01^2) noise
    distance = torch.cdist(weights.detach(), x.flatten(1))  # [50, 300]
    nearest = x.flatten(1)[distance.argmin(1)]
    noise = weights.detach() - nearest
    assert len(set(distance.argmin(1).tolist())) == 50  # K different images
    assert abs(noise.mean().item()) < 1e-3 and abs(noise.std().item() - 0.01) < 5e-4
    torch.testing.assert_close(model.prior_top.pseudo_inputs(), nearest, rtol=0, atol=0.05)
    # trained with the model, not frozen: one step moves them
    before = weights.detach().clone()
    single_optimizer_steps(model, [x[:16]], lr=1e-3)
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    assert not torch.equal(weights.detach(), before)
    with pytest.raises(GenbenchError, match="at least 50 training images"):
        model.init_from_data(x[:3])


def test_mog_prior_components_are_learned():
    model = MODELS["hvae"].build({"layers": 1, "prior": "mog", "components": 4}, MNIST)
    x = torch.rand(8, *MNIST).round()
    [(_, loss)] = list(model.training_losses(x))
    loss.backward()
    assert model.prior_top.means.grad.abs().sum() > 0 and model.prior_top.log_stds.grad.abs().sum() > 0


# --- the hierarchical VAE ------------------------------------------------------------------
def test_hvae_has_the_vampprior_papers_layout():
    model = MODELS["hvae"].build({}, MNIST)
    assert model.config.layers == 2 and model.config.latent == 40 and model.config.hidden == 300
    assert model.q_top[0][0].value.weight.shape == (300, 784)
    assert model.q_z1.joint.value.weight.shape == (300, 600)
    assert model.p_x_hidden.joint.value.weight.shape == (300, 600)
    for m in (model, MODELS["hvae"].build({"layers": 1}, MNIST)):
        assert isinstance(m, LatentVariableModel) and isinstance(m, Sampler)
        assert isinstance(m, Trainable) and isinstance(m, ProgressAware) and isinstance(m, LayeredEncoder)
    assert [q.mean.shape for q in model.encode_layers(torch.zeros(3, *MNIST))] == [(3, 40), (3, 40)]


@pytest.mark.parametrize("prior", ["standard", "vamp"])
def test_one_level_log_weights_match_an_independent_computation(prior):
    model = MODELS["hvae"].build({"layers": 1, "prior": prior, "components": 3}, MNIST)
    x = torch.rand(4, *MNIST).round()
    torch.manual_seed(5)
    log_w = model.log_importance_weights(x, 6)
    torch.manual_seed(5)
    mean, log_std = model.q_top(x.flatten(1))
    z = mean + log_std.exp() * torch.randn(6, *mean.shape)
    logits = model.p_x_logits(model.p_x_hidden(z))
    expected = (torch.distributions.Bernoulli(logits=logits).log_prob(x.flatten(1)).sum(-1)
                + model.prior().log_prob(z) - diagonal_normal(mean, log_std).log_prob(z))
    torch.testing.assert_close(log_w, expected, rtol=1e-5, atol=1e-3)


def test_two_level_terms_are_one_kl_per_level_and_sum_to_the_log_weight():
    model = MODELS["hvae"].build({"prior": "mog", "components": 3}, MNIST)
    terms = model.variational_terms(torch.rand(5, *MNIST).round(), 4)
    assert terms.log_likelihood.shape == (4, 5) and [t.shape for t in terms.kl] == [(4, 5), (4, 5)]
    torch.testing.assert_close(terms.log_weights(), terms.log_likelihood - terms.kl[0] - terms.kl[1])
    with pytest.raises(NotImplementedError):
        model.prior()


def test_hvae_config_is_validated():
    for bad in ({"prior": "flow"}, {"layers": 3}, {"objective": "iwae", "free_bits": 1.0}):
        with pytest.raises(GenbenchError):
            MODELS["hvae"].make_config(bad)


# --- the shared objective ------------------------------------------------------------------
def _terms(ll, *kl):
    return VariationalTerms(torch.tensor(ll), [torch.tensor(k) for k in kl])


def test_default_objective_is_the_negative_elbo_and_iwae_the_negative_lk():
    terms = _terms([[-10.0, -12.0], [-11.0, -9.0]], [[2.0, 1.0], [0.5, 3.0]])
    log_w = terms.log_weights()
    torch.testing.assert_close(training_loss(terms, ObjectiveConfig(), 0.0), -log_w.mean())
    iwae = ObjectiveConfig(objective="iwae", k=2)
    torch.testing.assert_close(training_loss(terms, iwae, 0.0),
                               -(torch.logsumexp(log_w, 0) - math.log(2)).mean())


def test_beta_and_warmup_weight_the_kl():
    terms = _terms([[-10.0]], [[2.0]], [[3.0]])
    assert training_loss(terms, ObjectiveConfig(beta=4.0), 0.0).item() == pytest.approx(10 + 4 * 5)
    assert training_loss(terms, ObjectiveConfig(), 0.0, kl_weight=0.2).item() == pytest.approx(10 + 1)


def test_free_bits_floor_each_groups_kl_and_stop_its_gradient():
    kl_low = torch.tensor([[0.5]], requires_grad=True)
    kl_high = torch.tensor([[3.0]], requires_grad=True)
    terms = VariationalTerms(torch.tensor([[-10.0]]), [kl_low, kl_high])
    loss = training_loss(terms, ObjectiveConfig(free_bits=1.0), 0.0)
    assert loss.item() == pytest.approx(10 + 1.0 + 3.0)
    loss.backward()
    assert kl_low.grad.item() == 0.0 and kl_high.grad.item() == 1.0


def test_controlled_capacity_targets_a_kl_that_rises_with_the_epoch():
    terms = _terms([[-10.0]], [[6.0]])
    config = ObjectiveConfig(capacity=20.0, capacity_epochs=10.0, capacity_gamma=100.0)
    assert training_loss(terms, config, epoch=0.0).item() == pytest.approx(10 + 100 * 6)
    assert training_loss(terms, config, epoch=3.0).item() == pytest.approx(10 + 0)
    assert training_loss(terms, config, epoch=50.0).item() == pytest.approx(10 + 100 * 14)


# --- beta-VAE ------------------------------------------------------------------------------
def test_betavae_learns_on_small_sprites_and_refuses_other_shapes():
    model = MODELS["betavae"].build({"beta": 1.0}, (1, 64, 64))
    assert model.config.latent == 10 and isinstance(model, LatentVariableModel)
    x = torch.zeros(16, 1, 64, 64)
    for i in range(16):  # squares at different places
        x[i, 0, 4 * i // 2 : 4 * i // 2 + 12, 8 + 2 * i : 20 + 2 * i] = 1
    model.init_from_data(x)
    losses = single_optimizer_steps(model, [x] * 15, lr=1e-3)
    assert losses[-1] < 0.9 * losses[0]
    # with beta = 1 the loss is the negative ELBO of the metrics' weights
    torch.manual_seed(1)
    [(_, loss)] = list(model.training_losses(x))
    torch.manual_seed(1)
    torch.testing.assert_close(loss, -model.log_importance_weights(x, 1).mean())
    assert model.sample(3).shape == (3, 1, 64, 64)
    with pytest.raises(GenbenchError, match="64x64"):
        MODELS["betavae"].build({}, MNIST)


def test_raw_pixels_represent_an_image_by_itself():
    model = MODELS["raw_pixels"].build({}, (1, 4, 4))
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(model.represent(x), x.flatten(1))


# --- training options in the loop -----------------------------------------------------------
META = {"name": "h", "model": "hvae", "dataset": "toy", "data_shape": [1, 8, 8]}


def _hvae(toy, **config):
    torch.manual_seed(0)
    config = {"layers": 1, "latent": 4, "hidden": 32, "components": 8, **config}
    return MODELS["hvae"].build(config, toy.shape), {**META, "config": config}


def test_kl_warmup_rises_linearly_over_its_epochs(toy, tmp_path, monkeypatch):
    model, meta = _hvae(toy)
    seen = []
    original = type(model).set_training_progress
    monkeypatch.setattr(type(model), "set_training_progress",
                        lambda self, epoch, w: (seen.append((epoch, w)), original(self, epoch, w)))
    train(model, toy, TrainConfig(epochs=2, batch_size=100, kl_warmup_epochs=1.0), tmp_path, meta,
          progress=False)
    assert [w for _, w in seen] == [min(1.0, e) for e, _ in seen]
    assert seen[0] == (0.0, 0.0) and seen[2] == (0.5, 0.5) and seen[-1][1] == 1.0


def test_early_stopping_keeps_the_best_validation_weights(toy, tmp_path):
    model, meta = _hvae(toy, prior="vamp")
    cfg = TrainConfig(epochs=30, batch_size=100, lr=3e-2, early_stopping_epochs=2)
    run_dir = tmp_path / "run"  # not created yet: the first best weights come before any checkpoint
    result = train(model, toy, cfg, run_dir, meta, progress=False)
    assert result.epochs_trained < 30  # a large learning rate overfits the 400 points quickly
    assert result.best_epoch <= result.epochs_trained - 2
    best = read_weights(run_dir / BEST_WEIGHTS)
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key])
    saved, _, _ = ckpt.read_checkpoint(run_dir)
    assert saved["callbacks"]["early_stopping"]["stopped"] is True
    assert [row["epoch"] for row in result.curve] == list(range(1, int(result.epochs_trained) + 1))
    assert max(row["valid_elbo"] for row in result.curve) == saved["callbacks"]["early_stopping"]["best"]
    again, _ = _hvae(toy, prior="vamp")
    rerun = train(again, toy, cfg, run_dir, meta, progress=False)
    assert rerun.steps == result.steps  # a finished run does not train on
    assert torch.equal(again.state_dict()["p_x_logits.weight"], best["p_x_logits.weight"])


def test_early_stopping_needs_a_validation_split(toy, tmp_path):
    del toy.splits["valid"]
    model, meta = _hvae(toy)
    with pytest.raises(GenbenchError, match="'valid' split"):
        train(model, toy, TrainConfig(epochs=1, early_stopping_epochs=2), tmp_path, meta, progress=False)


def test_fit_tensor_subsamples_large_training_splits(toy):
    assert fit_tensor(toy, seed=0).shape[0] == toy.size("train")
    part = fit_tensor(toy, seed=0, max_points=50)
    assert part.shape == (50, *toy.shape)
    assert torch.equal(part, fit_tensor(toy, seed=0, max_points=50))
