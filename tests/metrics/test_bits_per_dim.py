"""bits/dim conventions across the three likelihood families, through the harness's one NLL metric.

A uniform model on 8-bit data scores exactly 8 bits/dim whether it is a discrete model
(``log_prob`` a probability mass), a continuous density on dequantized data (the D ln 256 term
added once, by ``discrete_nll_from_density``) or a latent-variable model (the importance
estimator); and a density that is constant on each level's bin gives the same discrete NLL by
both paths.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from genbench.metrics import EvalSettings, evaluate
from genbench.metrics.likelihood import bits_per_dim, discrete_nll_from_density
from genbench.metrics.registry import seeded
from zoo import MODELS

SHAPE = (3, 4, 4)
D = math.prod(SHAPE)


def _levels(n: int = 50, seed: int = 0) -> Tensor:
    """8-bit images as the models see them: level / 255."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), generator=gen).float() / 255


class UniformMass(nn.Module):
    """Discrete: P(x) = 256^-D for every 8-bit image."""

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.full(x.shape[:1], -D * math.log(256))


class UniformLatent(nn.Module):
    """A latent model whose p(x | z) is uniform over the levels and whose q(z | x) = p(z)."""

    def encode(self, x: Tensor):
        return Independent(Normal(torch.zeros(len(x), 2), torch.ones(len(x), 2)), 1)

    def prior(self):
        return Independent(Normal(torch.zeros(2), torch.ones(2)), 1)

    def log_importance_weights(self, x: Tensor, k: int) -> Tensor:
        z = self.encode(x).sample((k,))
        return -D * math.log(256) + self.prior().log_prob(z) - self.encode(x).log_prob(z)


@pytest.mark.parametrize("model", [UniformMass(), UniformLatent()], ids=["discrete", "latent"])
def test_a_uniform_model_scores_exactly_8_bits_per_dim_in_every_family(model):
    values = evaluate(model, _levels(), EvalSettings(k=7), only=["nll"])
    assert values["bits_per_dim"] == pytest.approx(8.0, abs=1e-6)  # float32 log-probabilities


def test_a_uniform_density_on_dequantized_data_scores_8_bits_per_dim_once_the_levels_are_counted():
    density_nll = 0.0  # p(x) = 1 on [0, 1]^D
    assert bits_per_dim(discrete_nll_from_density(density_nll, D), D) == pytest.approx(8.0, abs=1e-12)


def test_a_binwise_constant_density_gives_the_discrete_nll_by_both_paths():
    """p(x) = 256 P(k) on [k/256, (k+1)/256): -log P(pixels) = -log p(x) + D ln 256 for every u."""
    gen = torch.Generator().manual_seed(1)
    log_mass = torch.log_softmax(torch.randn(D, 256, generator=gen, dtype=torch.float64), -1)  # per dim
    levels = (_levels(20) * 255).round().long().flatten(1)
    discrete = -log_mass.gather(1, levels.T).T.sum(1)
    x = (levels + torch.rand(levels.shape, generator=gen, dtype=torch.float64)) / 256  # dequantized
    bins = (x * 256).floor().long()
    density = -(log_mass.gather(1, bins.T).T + math.log(256)).sum(1)
    torch.testing.assert_close(discrete_nll_from_density(density, D), discrete, rtol=0, atol=1e-9)


def test_zoo_models_with_silenced_outputs_are_uniform_through_the_harness():
    """PixelCNN (exact) and PixelVAE (-L_k, with q = p) at 8 bits/dim on 8-bit color data."""
    torch.manual_seed(0)
    pixelcnn = MODELS["pixelcnn"].build({"output": "softmax256", "channels": 4, "layers": 2}, SHAPE)
    pixelvae = MODELS["pixelvae"].build({"output": "softmax256", "latent": 2, "decoder_channels": 4,
                                         "condition_channels": 2, "encoder_hidden": 8}, SHAPE)
    with torch.no_grad():
        for layer in (pixelcnn.network.head[-1], pixelvae.decoder.head[-1], pixelvae.encoder.mean,
                      pixelvae.encoder.log_std):
            layer.weight.zero_()
            layer.bias.zero_()
    for model in (pixelcnn, pixelvae):
        values = evaluate(model, _levels(8), EvalSettings(k=3), only=["nll"])
        assert values["bits_per_dim"] == pytest.approx(8.0, abs=1e-5), type(model).__name__


def test_realnvp_counts_the_level_term_once():
    """realnvp's log_prob is its density at the dequantized point minus D ln 256: the harness
    reports -log_prob / (D ln 2) and adds nothing."""
    torch.manual_seed(0)
    model = MODELS["realnvp"].build({"scales": 1, "width": 4, "blocks": 1}, SHAPE).eval()
    x = _levels(6)
    torch.manual_seed(3)
    log_prob = model.log_prob(x)
    torch.manual_seed(3)
    density = model.log_density(model.dequantize(x))
    torch.testing.assert_close(log_prob, density - D * math.log(256))
    settings = EvalSettings(k=1)
    with seeded(settings.seed, "nll", x.device):  # the dequantization noise evaluate draws
        log_prob = model.log_prob(x)
    reported = evaluate(model, x, settings, only=["nll"])["bits_per_dim"]
    assert reported == pytest.approx(float(-log_prob.mean()) / (D * math.log(2)), rel=1e-6)
