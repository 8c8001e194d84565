"""PixelVAE (zoo/pixelvae.py): the shared objective's weights and bounds, training and sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genbench.core.protocols import (
    ExactLikelihood,
    LatentVariableModel,
    ProgressAware,
    Reconstructor,
    Sampler,
    Trainable,
)
from genbench.metrics.importance import importance_bounds
from tests.helpers import noisy_prototypes, seeded_loss, single_optimizer_steps
from zoo import MODELS
from zoo.pixelvae import PixelVAE, PixelVAEConfig

SMALL = {"latent": 3, "decoder_layers": 2, "decoder_channels": 6, "condition_channels": 4,
         "encoder_hidden": 16, "first_kernel_size": 3}


def _small(data_shape, output="bernoulli", std=None, **overrides) -> PixelVAE:
    model = PixelVAE(PixelVAEConfig(output=output, **{**SMALL, **overrides}), data_shape)
    if std is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, std)
    return model


def _binary(n, data_shape, seed=0) -> torch.Tensor:
    return torch.randint(0, 2, (n, *data_shape), generator=torch.Generator().manual_seed(seed)).float()


def test_log_importance_weights_match_an_independent_computation():
    """log p(x | z) + log p(z) - log q(z | x) from torch.distributions, on the model's own z."""
    torch.manual_seed(0)
    model = _small((1, 6, 6), std=0.2)
    x = _binary(3, (1, 6, 6))
    k = 4
    torch.manual_seed(1)
    log_w = model.log_importance_weights(x, k)
    assert log_w.shape == (k, 3)
    torch.manual_seed(1)
    q = model.encode(x)
    z = q.mean + q.stddev * torch.randn(k, 3, 3)
    logits = model.decoder.logits(x.repeat(k, 1, 1, 1), model.condition_map(z.reshape(k * 3, 3)))
    bernoulli = torch.distributions.Bernoulli(logits=logits[:, 0].reshape(k, 3, -1))
    log_px = bernoulli.log_prob(x.flatten(1)).sum(-1)
    expected = log_px + model.prior().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(log_w, expected, rtol=1e-5, atol=1e-4)


def test_decoder_passes_do_not_change_the_likelihood():
    torch.manual_seed(2)
    model = _small((1, 5, 5))
    x, z = _binary(3, (1, 5, 5)), torch.randn(7, 3, 3)
    with torch.no_grad():
        whole = model.log_likelihood(x, z)
        model.max_rows = 6  # two samples (of 3 images) per pass
        torch.testing.assert_close(model.log_likelihood(x, z), whole)


def test_bounds_climb_from_the_elbo_to_the_marginal_likelihood_by_quadrature():
    """Latent 1 on 1 x 2 x 2 binary images: p(x) = int N(z) p(x | z) dz on a grid is the known value.

    It sums to one over the 16 images (the decoder is normalised for every z); the ELBO lies
    below it, L_50 between the two, and L_4000 within Monte Carlo error of log p(x).
    """
    torch.manual_seed(3)
    model = _small((1, 2, 2), latent=1).double()  # q near the prior: well-behaved weights
    with torch.no_grad():
        for p in [*model.decoder.parameters(), *model.condition.parameters()]:
            p.normal_(0.0, 0.5)
    model.max_rows = 4096  # 2 x 2 images: large passes are cheap
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64).view(16, 1, 2, 2)
    step = 0.005
    grid = (torch.arange(-9, 9, step, dtype=torch.float64) + step / 2).view(-1, 1, 1).expand(-1, 16, 1)
    with torch.no_grad():
        log_joint = model.log_likelihood(x, grid) + model.prior().log_prob(grid)
    log_px = torch.logsumexp(log_joint, 0) + math.log(step)
    assert torch.logsumexp(log_px, 0).item() == pytest.approx(0.0, abs=1e-6)

    torch.manual_seed(4)
    many = importance_bounds(model, x, 4000)
    few = importance_bounds(model, x, 50)
    torch.testing.assert_close(many.iwae, log_px, atol=0.03, rtol=0)
    assert (many.elbo < log_px - 0.01).all()  # the ELBO (a 4000-sample average) with its gap
    assert many.elbo.mean() + 0.05 < few.iwae.mean() < log_px.mean() + 0.03


def test_training_lowers_the_loss_on_toy_images():
    torch.manual_seed(5)
    prototypes = _binary(4, (1, 6, 6), seed=1)
    model = _small((1, 6, 6))
    held_out = noisy_prototypes(prototypes, 64)
    before = seeded_loss(model, held_out)
    single_optimizer_steps(model, (noisy_prototypes(prototypes, 32) for _ in range(30)), lr=1e-2)
    assert seeded_loss(model, held_out) < 0.9 * before  # from 25 nats (36 ln 2 at the start)


@pytest.mark.parametrize("data_shape, output", [((1, 6, 6), "bernoulli"), ((3, 5, 5), "softmax256")])
def test_samples_are_the_decoders_draws_given_a_prior_code(data_shape, output):
    """sample(n) = decoder.sample(n, s(z)), z ~ N(0, I): the PixelCNN's own sampler, shared."""
    torch.manual_seed(6)
    model = _small(data_shape, output, std=0.3)
    torch.manual_seed(7)
    x = model.sample(4)
    torch.manual_seed(7)
    z = torch.randn(4, 3)
    assert torch.equal(x, model.decoder.sample(4, model.condition_map(z)))
    assert x.shape == (4, *data_shape)
    if output == "bernoulli":
        assert ((x == 0) | (x == 1)).all()
    else:
        assert torch.equal(x, (x * 255).round() / 255.0) and x.unique().numel() > 20
    recon = model.reconstruct(x)
    assert recon.shape == x.shape


def test_the_code_changes_the_decoder():
    torch.manual_seed(8)
    model = _small((1, 5, 5), std=0.3)
    x = _binary(2, (1, 5, 5))
    z = torch.randn(2, 2, 3)
    with torch.no_grad():
        log_px = model.log_likelihood(x, z)
    assert (log_px[0] - log_px[1]).abs().min() > 1e-3


def test_pixelvae_is_registered_as_a_latent_variable_model():
    model = MODELS["pixelvae"].build({}, (1, 28, 28))
    for capability in (LatentVariableModel, Sampler, Trainable, Reconstructor, ProgressAware):
        assert isinstance(model, capability)
    assert not isinstance(model, ExactLikelihood)
    assert model.config.latent == 16 and model.config.decoder_layers == 3
    prior = model.prior()
    q = model.encode(_binary(2, (1, 28, 28)))
    assert q.batch_shape == (2,) and q.event_shape == (16,) and prior.event_shape == (16,)
    assert prior.log_prob(q.sample((3,))).shape == (3, 2)
    colour = MODELS["pixelvae"].build({"output": "softmax256", "decoder_channels": 6}, (3, 8, 8))
    assert colour.log_importance_weights(torch.rand(2, 3, 8, 8), 5).shape == (5, 2)
