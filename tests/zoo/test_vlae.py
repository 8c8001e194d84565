"""The VLAE (zoo/vlae.py) and its masked building blocks (zoo/autoregressive.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genbench.core.errors import GenbenchError
from genbench.core.protocols import (
    DataInitialized,
    LatentVariableModel,
    ProgressAware,
    Reconstructor,
    Sampler,
    Trainable,
)
from tests.helpers import noisy_prototypes, seeded_loss, single_optimizer_steps
from zoo import MODELS
from zoo.autoregressive import MADE, MaskedConv2d, causal_reach
from zoo.vlae import VLAE, AffineAutoregressiveStep, AutoregressiveFlow, FlowPrior, VLAEConfig

MNIST = (1, 28, 28)
#: a small VLAE that still has the default 6-layer, 3 x 3 decoder
SMALL = {"latent": 4, "flow_hidden": 16, "decoder_channels": 6, "encoder_hidden": 32}


def _small(data_shape=(1, 12, 12), **overrides) -> VLAE:
    return VLAE(VLAEConfig(**{**SMALL, **overrides}), data_shape)


def _randomize(module: nn.Module, std: float = 0.3) -> None:
    """Random weights everywhere (zero-initialised flow heads would make every check trivial)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)


def _input_gradient(f, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """|d f(x)[..., i, j] / dx| summed over batch and channels: ``[H, W]``."""
    x = x.clone().requires_grad_(True)
    f(x)[..., i, j].sum().backward()
    return x.grad.abs().sum((0, 1))


def _expected_field(height: int, width: int, i: int, j: int, layers: int) -> torch.Tensor:
    """Inputs that reach output (i, j) through ``layers`` 3 x 3 masked convolutions ('A', then 'B').

    Row i: the ``layers`` pixels to the left. Row i - d (1 <= d <= layers): columns j - layers
    .. j + d, since a step to the right costs a step up (PixelCNN's blind spot).
    """
    field = torch.zeros(height, width, dtype=torch.bool)
    field[i, max(0, j - layers) : j] = True
    for d in range(1, min(layers, i) + 1):
        field[i - d, max(0, j - layers) : j + d + 1] = True
    return field


# --- masked convolutions ------------------------------------------------------------------
def test_masked_convolution_stack_sees_exactly_its_causal_window():
    torch.manual_seed(0)
    layers = 3
    stack = nn.Sequential(MaskedConv2d(1, 5, 3, "A"),
                          *[MaskedConv2d(5, 5, 3, "B") for _ in range(layers - 1)])
    _randomize(stack, std=1.0)  # linear layers: a gradient is zero only where the mask cuts the path
    x = torch.rand(2, 1, 12, 12)
    for i, j in [(0, 0), (0, 5), (6, 6), (11, 1), (11, 11), (4, 10)]:
        reached = _input_gradient(stack, x, i, j) > 0
        assert torch.equal(reached, _expected_field(12, 12, i, j, layers)), (i, j)
    assert causal_reach(layers, 3) == layers


def test_mask_b_sees_the_current_pixel_and_mask_a_does_not():
    x = torch.rand(1, 1, 5, 5)
    for mask_type, sees_centre in (("A", False), ("B", True)):
        conv = MaskedConv2d(1, 1, 3, mask_type)
        _randomize(conv, std=1.0)
        grad = _input_gradient(conv, x, 2, 2)
        assert (grad[2, 2] > 0) == sees_centre
        assert grad[2, 1] > 0 and grad[1, 3] > 0  # left neighbour, upper right
        assert grad[2, 3] == 0 and grad[3].sum() == 0  # right neighbour, the row below


def test_the_decoder_is_autoregressive_and_local_given_z():
    """d logit(i, j) / dx is zero for every pixel at or after (i, j) and outside the window."""
    torch.manual_seed(1)
    model = _small(data_shape=(1, 16, 16))
    _randomize(model.decoder)
    z = torch.randn(16, 4)  # many images, so that some path through the ReLUs is always open
    reach = model.decoder.reach
    assert reach == 6  # the paper's 6 layers of 3 x 3 masked convolutions
    for i, j in [(6, 4), (10, 8), (15, 15)]:
        reached = _input_gradient(lambda x: model.decoder.logits(x, z), torch.rand(16, 1, 16, 16), i, j) > 0
        allowed = _expected_field(16, 16, i, j, reach)
        assert not (reached & ~allowed).any(), (i, j)
        assert reached[i, j - 1] and reached[i - 1, j] and reached[i - reach].any()  # it does see its window


# --- MADE and the AF prior -----------------------------------------------------------------
def _jacobian(f, z: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(f, z)


def test_made_output_d_depends_on_inputs_before_d_only():
    torch.manual_seed(2)
    made = MADE(5, [16, 16], outputs_per_dim=2)
    _randomize(made, std=1.0)
    jacobian = _jacobian(made, torch.randn(5))  # [2, 5 outputs, 5 inputs]
    for jac in jacobian:
        assert torch.equal(jac.triu(), torch.zeros(5, 5))
        assert (jac.tril(-1)[1:].abs().sum(1) > 0).all()  # output d > 0 does use its inputs


def test_an_af_step_has_a_triangular_jacobian_and_the_log_det_it_reports():
    torch.manual_seed(3)
    step = AffineAutoregressiveStep(4, hidden=12)
    _randomize(step)
    z = torch.randn(4, dtype=torch.float64)
    step.double()
    jac = _jacobian(lambda v: step.inverse(v)[0], z)
    _, scale = step.shift_and_scale(z)
    assert torch.equal(jac.triu(1), torch.zeros(4, 4, dtype=torch.float64))
    torch.testing.assert_close(jac.diagonal(), 1 / scale)
    torch.testing.assert_close(step.inverse(z)[1], torch.linalg.slogdet(jac).logabsdet)


def test_flow_log_prob_is_base_density_plus_brute_force_log_det():
    torch.manual_seed(4)
    flow = AutoregressiveFlow(3, steps=3, hidden=12).double()
    _randomize(flow)
    for z in torch.randn(5, 3, dtype=torch.float64):
        u, _ = flow.inverse(z)
        jac = _jacobian(lambda v: flow.inverse(v)[0], z)
        base = torch.distributions.Normal(0.0, 1.0).log_prob(u).sum()
        expected = base + torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(flow.log_prob(z), expected)


def test_flow_forward_and_inverse_round_trip():
    torch.manual_seed(5)
    flow = AutoregressiveFlow(6, steps=2, hidden=24).double()
    _randomize(flow)
    prior = FlowPrior(flow)
    z = prior.sample((50,))
    assert z.shape == (50, 6) and prior.event_shape == (6,)
    u, _ = flow.inverse(z)
    torch.testing.assert_close(flow(u), z)
    u = torch.randn(50, 6, dtype=torch.float64)
    torch.testing.assert_close(flow.inverse(flow(u))[0], u)


def test_a_2d_prior_integrates_to_one_and_its_samples_follow_its_density():
    torch.manual_seed(6)
    flow = AutoregressiveFlow(2, steps=2, hidden=8).double()
    _randomize(flow, std=0.4)
    prior = FlowPrior(flow)
    step = 0.04
    axis = torch.arange(-9, 9, step, dtype=torch.float64) + step / 2
    grid = torch.cartesian_prod(axis, axis)
    density = prior.log_prob(grid).exp().detach()
    assert (density * step**2).sum().item() == pytest.approx(1.0, abs=2e-3)
    mean_by_density = (grid * density[:, None]).sum(0) * step**2
    samples = prior.sample((20000,))
    tolerance = 4 * samples.std(0) / math.sqrt(len(samples))
    assert ((samples.mean(0) - mean_by_density).abs() < tolerance).all()
    assert mean_by_density.abs().max() > 3 * tolerance.max()  # the check has something to detect


# --- the model ------------------------------------------------------------------------------
def test_log_importance_weights_match_an_independent_computation():
    """log p(x|z) + log p(z) - log q(z|x), from torch.distributions, on the model's own z."""
    torch.manual_seed(7)
    model = _small()
    _randomize(model, std=0.1)
    x = torch.rand(3, 1, 12, 12).round()
    k = 5
    torch.manual_seed(8)
    log_w = model.log_importance_weights(x, k)
    assert log_w.shape == (k, 3)
    torch.manual_seed(8)
    q = model.encode(x)
    z = q.mean + q.stddev * torch.randn(k, 3, 4)
    logits = model.decoder.logits(x.repeat(k, 1, 1, 1), z.reshape(k * 3, 4)).view(k, 3, -1)
    log_px = torch.distributions.Bernoulli(logits=logits).log_prob(x.flatten(1)).sum(-1)
    expected = log_px + model.prior().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(log_w, expected, rtol=1e-5, atol=1e-3)


def test_decoder_log_prob_is_the_same_in_chunks():
    torch.manual_seed(9)
    model = _small()
    x = torch.rand(3, 1, 12, 12).round()
    z = torch.randn(7, 3, 4)
    whole = model.decoder.log_prob(x, z)
    model.decoder.max_rows = 6  # two samples (of 3 images) per pass
    torch.testing.assert_close(model.decoder.log_prob(x, z), whole)


@pytest.mark.parametrize("data_shape", [(1, 12, 12), (2, 6, 10)])
def test_each_sampled_pixel_is_a_draw_from_its_conditional(data_shape):
    """x_i = [u_i < sigmoid(logit_i(x_<i, z))], re-checked by one teacher-forced pass on the result."""
    torch.manual_seed(10)
    model = _small(data_shape)
    _randomize(model.decoder)
    z = torch.randn(3, 4)
    u = torch.rand(3, *data_shape)
    x = model.decoder.sample(z, u)
    assert ((x == 0) | (x == 1)).all() and 0 < x.mean() < 1
    assert torch.equal(x, (u < torch.sigmoid(model.decoder.logits(x, z))).float())


def test_training_lowers_the_loss_on_toy_images():
    torch.manual_seed(11)
    prototypes = torch.rand(4, 1, 8, 8).round()
    model = VLAE(VLAEConfig(latent=4, flow_hidden=16, decoder_layers=2, decoder_channels=8,
                            encoder_hidden=32), (1, 8, 8))
    model.init_from_data(noisy_prototypes(prototypes, 256))
    held_out = noisy_prototypes(prototypes, 64)
    before = seeded_loss(model, held_out)
    single_optimizer_steps(model, (noisy_prototypes(prototypes, 32) for _ in range(60)), lr=2e-2)
    assert seeded_loss(model, held_out) < 0.9 * before  # z learns which prototype; the decoder draws it


def test_samples_and_reconstructions_are_binary_images():
    torch.manual_seed(12)
    model = _small()
    samples = model.sample(3)
    assert samples.shape == (3, 1, 12, 12) and ((samples == 0) | (samples == 1)).all()
    recon = model.reconstruct(torch.rand(2, 1, 12, 12).round())
    assert recon.shape == (2, 1, 12, 12) and ((recon == 0) | (recon == 1)).all()


def test_output_bias_starts_at_the_logit_of_the_training_mean():
    model = _small(data_shape=(1, 2, 2))
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    model.init_from_data(x)
    expected = torch.logit(torch.tensor([[[0.5, 1e-4], [1 - 1e-4, 1 - 1e-4]]]))
    torch.testing.assert_close(model.decoder.pixel_bias.data, expected)


def test_vlae_is_registered_with_the_papers_mnist_defaults():
    model = MODELS["vlae"].build({}, MNIST)
    for capability in (LatentVariableModel, Sampler, Trainable, Reconstructor, DataInitialized,
                       ProgressAware):
        assert isinstance(model, capability)
    assert model.config.latent == 32 and model.config.decoder_layers == 6 and model.config.kernel_size == 3
    prior = model.prior()
    assert isinstance(prior, torch.distributions.Distribution) and prior.event_shape == (32,)
    q = model.encode(torch.rand(2, *MNIST).round())
    assert q.batch_shape == (2,) and q.event_shape == (32,)
    assert prior.log_prob(q.sample((3,))).shape == (3, 2)
    assert prior.log_prob(torch.zeros(5, 32, dtype=torch.float64)).shape == (5,)  # as ELBO surgery calls it
    with pytest.raises(GenbenchError, match="kernel_size"):
        MODELS["vlae"].make_config({"kernel_size": 4})
