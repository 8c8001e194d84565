"""RealNVP (zoo/realnvp.py): exact log-determinants, inversion, the bits/dim convention, training."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.core.errors import GenbenchError
from genbench.core.protocols import DataInitialized, ExactLikelihood, LatentVariableModel, Sampler, Trainable
from genbench.metrics.likelihood import bits_per_dim, nll
from genbench.metrics.registry import EvalSettings, evaluate, seeded
from tests.helpers import single_optimizer_steps
from zoo import MODELS
from zoo.realnvp import ActNorm, BatchNormStep, RealNVP, RealNVPConfig, Squeeze

TINY = {"width": 6, "blocks": 1}
LOG_2PI = math.log(2 * math.pi)


def _tiny(shape=(1, 4, 4), **overrides) -> RealNVP:
    return RealNVP(RealNVPConfig(**{**TINY, **overrides}), shape)


def _images(n: int, shape, seed: int = 0) -> torch.Tensor:
    """8-bit images (pixel / 255): two noisy prototypes, so a flow has something to learn."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(2, *shape, generator=gen) * 200
    noise = torch.randint(0, 56, (n, *shape), generator=gen)
    return (prototypes[torch.randint(0, 2, (n,), generator=gen)] + noise).floor() / 255


def _train(model: RealNVP, data: torch.Tensor, steps: int, lr: float = 1e-2) -> list[float]:
    model.init_from_data(data)
    return single_optimizer_steps(model, (data[(step * 8) % len(data):][:16] for step in range(steps)), lr)


def _randomize(model: RealNVP, std: float = 0.2) -> None:
    """Random weights everywhere (zero-initialised output layers would make the flow trivial)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_(0.0, 0.5)


def _brute_force_log_det(model: RealNVP, x_c: torch.Tensor) -> torch.Tensor:
    """log |det dz/dx_c| of one image (logit transform and flow) by autograd and slogdet."""
    def f(v):
        y, _ = model.logit_transform(v.view(1, *model.data_shape))
        return model.flow_forward(y)[0][0]

    jacobian = torch.autograd.functional.jacobian(f, x_c.flatten(), vectorize=True)
    assert jacobian.shape == (model.dims, model.dims)
    return torch.linalg.slogdet(jacobian).logabsdet


# --- the pieces ------------------------------------------------------------------------------------
def test_squeeze_is_a_permutation_whose_channel_halves_are_the_checkerboard_colours():
    x = torch.randn(2, 3, 4, 6)
    squeeze = Squeeze()
    y, log_det = squeeze(x)
    assert y.shape == (2, 12, 2, 3) and torch.equal(log_det, torch.zeros(2))
    assert torch.equal(squeeze.inverse(y), x)
    assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)
    i, j = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    colour, _ = squeeze(((i + j) % 2).float().expand(1, 3, 4, 6))
    assert colour[:, :6].sum() == 0 and (colour[:, 6:] == 1).all()


def test_paper_batch_norm_uses_lagged_batch_statistics_in_training_and_running_averages_in_eval():
    config = RealNVPConfig(batchnorm_momentum=0.25, batchnorm_lag=0.5)
    norm = BatchNormStep(2, config).double()
    norm.running_mean.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
    x = torch.randn(8, 2, 3, 3, dtype=torch.float64) * 3 + 2
    batch_mean, batch_var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    mean = 0.5 * batch_mean + 0.5 * torch.tensor([1.0, -1.0], dtype=torch.float64)
    var = 0.5 * batch_var + 0.5
    y, log_det = norm(x)  # training mode
    torch.testing.assert_close(y, (x - mean.view(1, 2, 1, 1)) / (var.view(1, 2, 1, 1) + 1e-4).sqrt())
    torch.testing.assert_close(log_det, (-0.5 * 9 * (var + 1e-4).log().sum()).expand(8))
    torch.testing.assert_close(norm.running_var.flatten(), 0.75 + 0.25 * batch_var)
    norm.eval()
    y, log_det = norm(x)
    torch.testing.assert_close(norm.inverse(y), x)
    torch.testing.assert_close(log_det, (-4.5 * (norm.running_var + 1e-4).log().sum()).expand(8))


def test_act_norm_init_normalises_each_channel_and_leaves_a_constant_one_unscaled():
    """A constant channel (what a coupling on a 1 x 1 image feeds its network) must not get scale 1/0."""
    norm = ActNorm(2)
    x = torch.stack([torch.randn(16, 3, 3) * 4 + 1, torch.full((16, 3, 3), 2.5)], dim=1)
    norm.pending_init = True
    y = norm(x)
    torch.testing.assert_close(y[:, 0].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, 0].std(), torch.tensor(1.0))
    assert torch.equal(y[:, 1], torch.zeros(16, 3, 3)) and norm.log_scale[0, 1].item() == 0.0
    assert not norm.pending_init and torch.equal(norm(x), y)  # initialised once


# --- the flow's log-determinant and inverse ---------------------------------------------------------
@pytest.mark.parametrize("norm", ["actnorm", "batchnorm"])
@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 4, 4)])
def test_log_density_is_the_gaussian_plus_a_brute_force_log_det(shape, norm):
    """For random weights and after a few training steps (norm statistics and scales non-trivial)."""
    torch.manual_seed(1)
    randomized = _tiny(shape, norm=norm, scales=3).double()
    _randomize(randomized)
    trained = _tiny(shape, norm=norm, scales=2).double()
    _train(trained, _images(32, shape).double(), steps=4)
    for model in (randomized, trained):
        model.eval()
        x_c = torch.rand(2, *shape, dtype=torch.float64)
        y, logit_log_det = model.logit_transform(x_c)
        z, flow_log_det = model.flow_forward(y)
        for b in range(2):
            expected = _brute_force_log_det(model, x_c[b])
            torch.testing.assert_close(flow_log_det[b] + logit_log_det[b], expected)
        gaussian = -0.5 * (z.square() + LOG_2PI).sum(1)
        torch.testing.assert_close(model.log_density(x_c), gaussian + flow_log_det + logit_log_det)
    assert flow_log_det.abs().min() > 0.1  # the trained flow is not volume preserving


@pytest.mark.parametrize("norm", ["actnorm", "batchnorm"])
def test_inverse_and_forward_round_trip(norm):
    torch.manual_seed(2)
    model = _tiny((3, 4, 4), norm=norm, scales=3)
    _train(model, _images(32, (3, 4, 4)), steps=5)
    model.eval()
    z = torch.randn(16, model.dims)
    torch.testing.assert_close(model.flow_forward(model.flow_inverse(z))[0], z, atol=1e-5, rtol=1e-5)
    y = model.logit_transform(model.dequantize(_images(16, (3, 4, 4), seed=1)))[0]
    torch.testing.assert_close(model.flow_inverse(model.flow_forward(y)[0]), y, atol=1e-5, rtol=1e-5)


def test_samples_are_the_inverse_flow_quantised_to_8_bit_levels():
    torch.manual_seed(3)
    model = _tiny((1, 4, 4))
    _train(model, _images(32, (1, 4, 4)), steps=5)
    model.eval()
    torch.manual_seed(4)
    samples = model.sample(64)
    torch.manual_seed(4)
    x_c = model.inverse_logit_transform(model.flow_inverse(torch.randn(64, model.dims)))
    assert samples.shape == (64, 1, 4, 4)
    torch.testing.assert_close(samples, (x_c * 256).floor().clamp(0, 255) / 255, atol=0, rtol=0)
    levels = samples * 255
    assert torch.equal(levels, levels.round()) and samples.min() >= 0 and samples.max() <= 1
    assert len(levels.unique()) > 10  # not collapsed onto a few levels
    assert torch.isfinite(model.log_prob(samples)).all()


# --- units: log_prob, log_density and bits/dim -------------------------------------------------------
def test_an_identity_flow_gives_the_closed_form_of_a_gaussian_on_the_logit():
    """A fresh model (zero output layers, act-norm not yet initialised) is the identity up to
    the squeeze's permutation, so log_prob is hand-computable."""
    model = _tiny((3, 4, 4), scales=3).double()
    x = torch.randint(0, 256, (5, 3, 4, 4)).double() / 255
    torch.manual_seed(5)
    log_prob = model.log_prob(x)
    torch.manual_seed(5)
    x_c = ((x * 255).round() + torch.rand(x.shape, dtype=torch.float64)) / 256
    alpha, dims = 0.05, 48
    p = alpha + (1 - 2 * alpha) * x_c
    y = torch.log(p / (1 - p))
    logit_jacobian = (math.log(1 - 2 * alpha) - torch.log(p * (1 - p))).sum((1, 2, 3))
    gaussian = (-0.5 * y.square() - 0.5 * LOG_2PI).sum((1, 2, 3))
    torch.testing.assert_close(log_prob, gaussian + logit_jacobian - dims * math.log(256))
    torch.testing.assert_close(model.log_density(x_c), gaussian + logit_jacobian)
    z, _ = model.flow_forward(y)
    torch.testing.assert_close(z.sort(1).values, y.flatten(1).sort(1).values)


def test_nll_metric_reports_minus_log_prob_and_bits_per_dim_divides_by_d_ln_2():
    torch.manual_seed(6)
    model = _tiny((1, 4, 4))
    data = _images(64, (1, 4, 4))
    _train(model, data, steps=5)
    model.eval()
    torch.manual_seed(7)
    log_prob = model.log_prob(data).double()
    torch.manual_seed(7)
    assert nll(model, data) == pytest.approx(-log_prob.mean().item(), rel=1e-6)
    with seeded(EvalSettings().seed, "nll", data.device):  # evaluate's own seed for this metric
        evaluated = model.log_prob(data).double()
    values = evaluate(model, data, EvalSettings(), only=["nll"])
    assert values["nll"] == pytest.approx(-evaluated.mean().item(), rel=1e-6)
    assert values["bits_per_dim"] == pytest.approx(-evaluated.mean().item() / (16 * math.log(2)), rel=1e-6)
    assert values["bits_per_dim"] == pytest.approx(bits_per_dim(values["nll"], 16))
    torch.manual_seed(7)
    [(_, loss)] = list(model.training_losses(data))  # the training loss is the same number
    assert loss.item() == pytest.approx(-log_prob.mean().item() / (16 * math.log(2)), rel=1e-5)
    torch.manual_seed(7)
    x_c = model.dequantize(data)
    torch.testing.assert_close(log_prob.float(), model.log_density(x_c) - 16 * math.log(256))


# --- training, init, optimiser, registry -------------------------------------------------------------
@pytest.mark.parametrize("norm", ["actnorm", "batchnorm"])
def test_training_lowers_the_held_out_nll_and_the_state_dict_round_trips(norm):
    torch.manual_seed(8)
    shape = (1, 4, 4)
    model = _tiny(shape, norm=norm, scales=2)
    held_out = _images(128, shape, seed=0)

    def held_out_bits() -> float:
        model.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            return next(model.training_losses(held_out))[1].item()

    before = held_out_bits()
    losses = _train(model, _images(256, shape, seed=0), steps=20)
    after = held_out_bits()
    assert all(math.isfinite(v) for v in losses)
    assert after < before - 0.5, (before, after)  # bits/dim
    copy = _tiny(shape, norm=norm, scales=2)
    copy.load_state_dict(model.state_dict())
    copy.eval()
    x_c = torch.rand(4, *shape)
    torch.testing.assert_close(copy.log_density(x_c), model.log_density(x_c), atol=0, rtol=0)


@pytest.mark.parametrize("norm", ["actnorm", "batchnorm"])
def test_data_init_gives_the_first_norm_step_zero_mean_unit_variance_outputs(norm):
    """Act-norm sets itself from the data; batch norm takes the data's statistics as its running averages."""
    shape = (1, 4, 4)
    model = _tiny(shape, norm=norm, init_points=64)
    seen = {}
    model.scales[0].steps[1].register_forward_hook(lambda mod, args, out: seen.update(x=args[0], y=out[0]))
    dark = _images(64, shape) * 0.5
    model.init_from_data(dark)
    torch.testing.assert_close(seen["y"].mean((0, 2, 3)), torch.zeros(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(seen["y"].std((0, 2, 3), unbiased=False), torch.ones(1), atol=1e-3, rtol=0)
    assert seen["x"].mean() < -0.5  # the logit of dark images: far from zero mean
    assert model.training  # a fresh module trains; init leaves the mode as it found it
    model.eval()
    seen.clear()
    model.init_from_data(dark)
    assert not model.training and seen["y"].std() == pytest.approx(1.0, abs=1e-3)


def test_weight_decay_applies_to_convolution_weights_only():
    model = _tiny((1, 4, 4), weight_decay=3e-5)
    [opt] = model.configure_optimizers(1e-3).values()
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 3e-5 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 4 for p in decayed["params"])
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_realnvp_is_registered_and_its_scales_respect_the_image_size():
    model = MODELS["realnvp"].build({"width": 4, "blocks": 1, "scales": 3}, (1, 28, 28))
    for capability in (ExactLikelihood, Sampler, Trainable, DataInitialized):
        assert isinstance(model, capability)
    assert not isinstance(model, LatentVariableModel)
    assert model.latent_shapes == [(2, 14, 14), (4, 7, 7), (4, 7, 7)]  # 28 -> 14 -> 7
    assert sum(math.prod(s) for s in model.latent_shapes) == 784
    default = MODELS["realnvp"].make_config({})
    assert (default.scales, default.width, default.blocks) == (2, 64, 8)  # the paper's CIFAR-10 model
    assert (default.norm, default.alpha, default.weight_decay) == ("actnorm", 0.05, 5e-5)
    with pytest.raises(GenbenchError, match="at most 3 scales"):
        MODELS["realnvp"].build({"scales": 4}, (1, 28, 28))
    with pytest.raises(GenbenchError, match="norm"):
        MODELS["realnvp"].make_config({"norm": "layernorm"})
    with pytest.raises(GenbenchError, match="images"):
        MODELS["realnvp"].build({}, (784,))
