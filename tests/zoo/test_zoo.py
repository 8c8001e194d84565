"""The zoo's models and registry."""

from __future__ import annotations

import pytest
import torch

from genbench.core import models as registry
from genbench.core.errors import GenbenchError
from genbench.core.models import ModelEntry
from genbench.core.protocols import ExactLikelihood, LatentVariableModel, Sampler, Trainable, capabilities
from tests.helpers import fitted_ppca, low_rank_data
from zoo import ENTRIES, MODELS

MNIST = (1, 28, 28)


def _linear_shapes(module) -> list[tuple[int, int]]:
    return [tuple(m.weight.shape[::-1]) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_one_layer_architecture_is_784_200_200_50():
    model = MODELS["vae"].build({"layers": 1}, MNIST)
    assert _linear_shapes(model.encoders[0]) == [(784, 200), (200, 200), (200, 50), (200, 50)]
    assert _linear_shapes(model.pixel_decoder) == [(50, 200), (200, 200), (200, 784)]


def test_two_layer_architecture_has_latents_100_and_50():
    model = MODELS["iwae"].build({"layers": 2}, MNIST)
    assert _linear_shapes(model.encoders[1]) == [(100, 100), (100, 100), (100, 50), (100, 50)]
    assert _linear_shapes(model.latent_decoders[0]) == [(50, 100), (100, 100), (100, 100), (100, 100)]
    assert model.log_importance_weights(torch.rand(3, *MNIST).round(), 4).shape == (4, 3)
    assert model.sample(5).shape == (5, *MNIST)


def test_log_weights_match_an_independent_computation():
    """log p(x|z) + log p(z) - log q(z|x) with torch.distributions, on the model's own z."""
    model = MODELS["vae"].build({"layers": 1}, MNIST)
    x = torch.rand(4, *MNIST).round()
    torch.manual_seed(3)
    log_w = model.log_importance_weights(x, 6)
    torch.manual_seed(3)
    h = x.flatten(1)
    mean, log_std = model.encoders[0](h)
    z = mean + log_std.exp() * torch.randn(6, *mean.shape)
    normal = torch.distributions.Normal
    expected = (
        torch.distributions.Bernoulli(logits=model.pixel_decoder(z)).log_prob(h).sum(-1)
        + normal(0.0, 1.0).log_prob(z).sum(-1)
        - normal(mean, log_std.exp()).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(log_w, expected, rtol=1e-5, atol=1e-3)


def test_output_bias_starts_at_the_logit_of_the_training_mean():
    model = MODELS["vae"].build({}, (1, 2, 2))
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    model.init_from_data(x)
    expected = torch.logit(torch.tensor([0.5, 1e-4, 1 - 1e-4, 1 - 1e-4]))
    torch.testing.assert_close(model.pixel_decoder[-1].bias, expected)


def _loss(model, x, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    [(_, loss)] = list(model.training_losses(x))
    return loss


def test_iwae_objective_is_tighter_than_the_vae_objective_on_the_same_samples():
    x = torch.rand(16, *MNIST).round()
    iwae = MODELS["iwae"].build({"k": 5}, MNIST)
    vae = MODELS["vae"].build({"k": 5}, MNIST)
    vae.load_state_dict(iwae.state_dict())
    # -L_5 <= -(mean of 5 ELBO terms) for the same weights and samples (Jensen)
    assert _loss(iwae, x, seed=1) < _loss(vae, x, seed=1)
    for model in (iwae, vae):
        model.config.k = 1
    torch.testing.assert_close(_loss(iwae, x, seed=2), _loss(vae, x, seed=2))  # both the ELBO


def test_capabilities_decide_the_contract():
    assert capabilities(MODELS["vae"].build({}, MNIST)) == [
        "Sampler", "LatentVariableModel", "Trainable", "DataInitialized", "DecoderModel", "LayeredEncoder",
        "Reconstructor", "ProgressAware", "JointPrior", "LatentSimulator"]
    ppca = fitted_ppca(low_rank_data())
    assert isinstance(ppca, ExactLikelihood) and isinstance(ppca, LatentVariableModel)
    assert isinstance(ppca, Sampler) and not isinstance(ppca, Trainable)


def test_ppca_samples_have_the_model_covariance():
    data = low_rank_data(n=4000)
    model = fitted_ppca(data)
    torch.manual_seed(0)
    samples = model.sample(50_000).flatten(1).double()
    cov = model.loading @ model.loading.T + model.noise_variance * torch.eye(10, dtype=torch.float64)
    torch.testing.assert_close(torch.cov(samples.T), cov, atol=0.08, rtol=0.03)


def test_unfitted_ppca_refuses_to_score():
    model = MODELS["ppca"].build({"latent": 2}, (1, 1, 5))
    with pytest.raises(GenbenchError, match="not been fitted"):
        model.log_prob(torch.zeros(1, 1, 1, 5))


class FakeEntryPoint:
    name = "mine"

    def __init__(self, value):
        self.value = value

    def load(self):
        return self.value


def test_plugin_models_register_through_entry_points(monkeypatch):
    entry = ModelEntry("mine", type(MODELS["vae"].build({}, MNIST)), MODELS["vae"].config_cls, "plugin")
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint(entry)])
    models = registry.Registry("model", loader=registry._load_plugins)
    assert models["mine"] is entry
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint(object())])
    with pytest.raises(GenbenchError, match="must load to a genbench.core.models.ModelEntry"):
        registry.Registry("model", loader=registry._load_plugins)["x"]


def test_the_zoo_registers_through_its_entry_point_like_a_plugin(monkeypatch):
    """genbench finds the zoo's models only through the genbench.zoo entry-point group."""
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint(ENTRIES)])
    models = registry.Registry("model", loader=registry._load_plugins)
    assert list(models) == sorted(entry.name for entry in ENTRIES) == list(MODELS)
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    with pytest.raises(GenbenchError, match=r"unknown model 'vae'; valid: \(none\)"):
        registry.Registry("model", loader=registry._load_plugins)["vae"]
