"""The gated PixelCNN (zoo/pixelcnn.py): its causal field, normalisation, uniform limit and sampler."""

from __future__ import annotations

import itertools

import pytest
import torch

from genbench.core.errors import GenbenchError
from genbench.core.protocols import ExactLikelihood, LatentVariableModel, Sampler, Trainable
from genbench.metrics.likelihood import bits_per_dim
from tests.helpers import noisy_prototypes, single_optimizer_steps
from zoo import MODELS
from zoo.pixelcnn import GatedPixelCNN, PixelCNN, PixelCNNConfig


def _network(data_shape, output="bernoulli", channels=6, layers=3, kernel_size=3, first_kernel_size=3,
             condition_channels=0, std=0.3) -> GatedPixelCNN:
    """A float64 network with random weights everywhere (zero-initialised parts would hide paths)."""
    net = GatedPixelCNN(data_shape, output, channels, layers, kernel_size, first_kernel_size,
                        condition_channels).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, std)
    return net


def _data(n, data_shape, output, seed=0) -> torch.Tensor:
    """Binary images, or 8-bit levels as ImageDataset gives them (level / 255)."""
    gen = torch.Generator().manual_seed(seed)
    if output == "bernoulli":
        return torch.randint(0, 2, (n, *data_shape), generator=gen).double()
    return torch.randint(0, 256, (n, *data_shape), generator=gen).double() / 255.0


def _input_gradient(f, x: torch.Tensor) -> torch.Tensor:
    """Which inputs f(x) (summed) depends on: ``[C, H, W]`` booleans, over the whole batch."""
    x = x.clone().requires_grad_(True)
    f(x).sum().backward()
    return x.grad.abs().sum(0) > 0


def _field(data_shape, i, j, rows_up, reach, row_i=True, channels_before=0) -> torch.Tensor:
    """Rows i - rows_up .. i - 1 at columns j - reach .. j + reach, and (if ``row_i``) row i at
    columns j - reach .. j - 1 and pixel (i, j) at channels < ``channels_before``."""
    c, height, width = data_shape
    field = torch.zeros(c, height, width, dtype=torch.bool)
    field[:, max(0, i - rows_up) : i, max(0, j - reach) : j + reach + 1] = True
    if row_i:
        field[:, i, max(0, j - reach) : j] = True
        field[:channels_before, i, j] = True
    return field


# --- the causal field -------------------------------------------------------------------------------
def test_the_vertical_stack_reaches_row_i_only_from_the_rows_above():
    """Layer l's shifted vertical output at (i, j) sees rows i - 1 - R_l .. i - 1, columns j +- R_l:
    the whole rectangle (no blind spot), nothing of row i or below."""
    torch.manual_seed(0)
    shape = (2, 9, 9)
    net = _network(shape, first_kernel_size=5)  # layer reaches 2, 1, 1
    x = _data(4, shape, "bernoulli")
    for depth, reach in enumerate([2, 3, 4]):
        for i, j in [(0, 0), (1, 8), (4, 4), (8, 2)]:
            reached = _input_gradient(lambda v, d=depth, i=i, j=j: net.above(v, None)[d][..., i, j], x)
            assert torch.equal(reached, _field(shape, i, j, reach + 1, reach, row_i=False)), (depth, i, j)


@pytest.mark.parametrize("data_shape, output", [((1, 9, 9), "bernoulli"), ((3, 7, 7), "softmax256")])
def test_logits_at_a_pixel_see_exactly_the_earlier_pixels_of_their_window(data_shape, output):
    """d logits(c, i, j) / dx is non-zero exactly on rows i - 1 - R .. i - 1 (columns j +- R), the R
    pixels left of (i, j) and the channels of (i, j) before c: causal, and no blind spot."""
    torch.manual_seed(1)
    net = _network(data_shape, output, channels=12, first_kernel_size=5)  # 4 features per colour
    reach = net.reach
    assert reach == 2 + 1 + 1
    x = _data(16, data_shape, output)  # many images, so that some path through the head's ReLUs is open
    for i, j in [(0, 0), (0, 3), (5, 4), (6, 6), (data_shape[1] - 1, 1)]:
        for c in range(data_shape[0]):
            reached = _input_gradient(lambda v, c=c, i=i, j=j: net.logits(v)[:, :, c, i, j], x)
            expected = _field(data_shape, i, j, reach + 1, reach, channels_before=c)
            assert torch.equal(reached, expected), (i, j, c)
    reached = _input_gradient(lambda v: net.logits(v)[:, :, 0, 5, 4], x)
    assert reached[:, 4, 5:].all()  # up and to the right: the original PixelCNN's blind spot


# --- log p(x) -------------------------------------------------------------------------------------
@pytest.mark.parametrize("data_shape, output", [((1, 2, 2), "bernoulli"), ((3, 1, 2), "bernoulli"),
                                                ((1, 1, 2), "softmax256"), ((2, 1, 1), "softmax256")])
def test_log_prob_sums_to_one_over_every_image(data_shape, output):
    """All 2^D binary images, or all 256^2 two-value 8-bit images (two pixels, or two channels)."""
    torch.manual_seed(2)
    net = _network(data_shape, output, std=0.5)
    values = torch.tensor([0.0, 1.0]) if output == "bernoulli" else torch.arange(256) / 255.0
    dims = data_shape[0] * data_shape[1] * data_shape[2]
    images = torch.tensor(list(itertools.product(values.tolist(), repeat=dims)), dtype=torch.float64)
    with torch.no_grad():
        log_p = net.log_prob(images.view(-1, *data_shape))
    assert log_p.shape == (len(values) ** dims,)
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-10)
    assert log_p.std() > 0.1  # not the uniform distribution


def test_softmax_log_prob_is_the_categorical_log_mass_of_the_level():
    torch.manual_seed(3)
    net = _network((3, 4, 4), "softmax256")
    levels = torch.randint(0, 256, (5, 3, 4, 4))
    x = levels.float() / 255.0  # ImageDataset's gray8 convention, float32
    logits = net.logits(x.double())
    expected = torch.distributions.Categorical(logits=logits.movedim(1, -1)).log_prob(levels).sum((1, 2, 3))
    torch.testing.assert_close(net.log_prob(x.double()), expected)


@pytest.mark.parametrize("data_shape, output, bits", [((1, 6, 6), "bernoulli", 1.0),
                                                      ((3, 5, 5), "softmax256", 8.0)])
def test_zero_output_layer_is_the_uniform_distribution(data_shape, output, bits):
    model = MODELS["pixelcnn"].build({"output": output, "channels": 6, "layers": 2}, data_shape)
    with torch.no_grad():
        model.network.head[-1].weight.zero_()
        model.network.head[-1].bias.zero_()
    x = _data(4, data_shape, output).float()
    nll = -model.log_prob(x)
    dims = data_shape[0] * data_shape[1] * data_shape[2]
    torch.testing.assert_close(bits_per_dim(nll, dims), torch.full((4,), bits), rtol=1e-6, atol=0)


# --- sampling -------------------------------------------------------------------------------------
@pytest.mark.parametrize("data_shape, output, condition_channels",
                         [((1, 6, 6), "bernoulli", 0), ((3, 5, 5), "softmax256", 0),
                          ((2, 4, 7), "bernoulli", 3)])
def test_cached_sampling_draws_the_naive_samples(data_shape, output, condition_channels):
    """The incremental sampler and full recomputation for every value draw the same images."""
    torch.manual_seed(4)
    net = _network(data_shape, output, first_kernel_size=5, condition_channels=condition_channels, std=0.5)
    condition = None
    if condition_channels:
        condition = torch.randn(5, condition_channels, *data_shape[1:], dtype=torch.float64)
    torch.manual_seed(5)
    cached = net.sample(5, condition)
    torch.manual_seed(5)
    naive = net.sample(5, condition, naive=True)
    assert torch.equal(cached, naive)
    values = cached.unique()
    if output == "bernoulli":
        assert torch.equal(values, torch.tensor([0.0, 1.0], dtype=torch.float64))
    else:
        assert torch.equal(values * 255, (values * 255).round()) and len(values) > 20


@pytest.mark.parametrize("data_shape, output", [((1, 6, 6), "bernoulli"), ((3, 4, 5), "softmax256")])
def test_each_sampled_value_is_the_draw_from_its_teacher_forced_conditional(data_shape, output):
    """x = draw(logits(x), u) everywhere: one teacher-forced pass on the sample re-derives every value."""
    torch.manual_seed(6)
    net = _network(data_shape, output, std=0.5)
    u = torch.rand(3, *data_shape, dtype=torch.float64)
    x = net.sample(3, uniforms=u)
    with torch.no_grad():
        assert torch.equal(x, net.output.draw(net.logits(x).movedim(1, -1), u))


def test_model_samples_have_the_data_shape_and_values():
    model = MODELS["pixelcnn"].build({"output": "softmax256", "channels": 6, "layers": 2}, (3, 4, 4))
    x = model.sample(3)
    assert x.shape == (3, 3, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x, (x * 255).round().float() / 255.0)  # exactly ImageDataset's level / 255


# --- the model ------------------------------------------------------------------------------------
def test_training_lowers_the_nll_on_toy_images():
    torch.manual_seed(7)
    stripes = torch.zeros(1, 1, 6, 6)
    stripes[..., ::2, :] = 1.0
    model = PixelCNN(PixelCNNConfig(channels=8, layers=2, first_kernel_size=3), (1, 6, 6))
    held_out = noisy_prototypes(stripes, 64)
    with torch.no_grad():
        before = -model.log_prob(held_out).mean().item()
    single_optimizer_steps(model, (noisy_prototypes(stripes, 32) for _ in range(40)), lr=1e-2)
    with torch.no_grad():
        after = -model.log_prob(held_out).mean().item()
    assert after < 0.5 * before  # 36 ln 2 = 25 nats at the start; the stripes are almost certain


def test_pixelcnn_is_registered_with_its_capabilities_and_checks_its_config():
    model = MODELS["pixelcnn"].build({}, (1, 28, 28))
    for capability in (ExactLikelihood, Sampler, Trainable):
        assert isinstance(model, capability)
    assert not isinstance(model, LatentVariableModel)
    assert model.config.output == "bernoulli" and model.network.reach == 3 + 4
    with pytest.raises(GenbenchError, match="output"):
        MODELS["pixelcnn"].make_config({"output": "gaussian"})
    with pytest.raises(GenbenchError, match="odd"):
        MODELS["pixelcnn"].make_config({"kernel_size": 4})
    with pytest.raises(GenbenchError, match="per image channel"):
        MODELS["pixelcnn"].build({"channels": 2}, (3, 8, 8))


def test_log_prob_is_the_same_in_passes():
    torch.manual_seed(8)
    net = _network((1, 5, 5))
    x = _data(7, (1, 5, 5), "bernoulli")
    with torch.no_grad():
        whole = net.log_prob(x)
        net.max_rows = 3
        torch.testing.assert_close(net.log_prob(x), whole)
