"""The zoo's diffusion family: ddpm, vdm and flow-matching each train briefly on toy 8-bit images and
improve their likelihood (the bound where they have a decoder, the ODE's for flow matching), sample
inside the data range, and declare exactly the capabilities their metrics need; the discretised
decoders are probabilities of the 256 levels; DDPM's schedule is the paper's on its steps."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.core.models import MODELS
from genbench.core.protocols import DiffusionDecoder, DiffusionModel, Sampler, Trainable, VelocityField
from genbench.metrics import diffusion_bound, probability_flow_discrete_nll
from zoo.diffusion_parts import LEVELS, discretized_gaussian_log_prob, factorized_decoder_log_prob

SHAPE = (1, 4, 4)
TINY = {"width": 8, "channel_mults": "1,2"}


def toy_images(n: int, seed: int) -> torch.Tensor:
    """8-bit images near one of two fixed patterns (a left-right and a top-bottom ramp)."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.1, 0.9, 4)
    patterns = torch.stack([ramp.expand(4, 4), ramp[:, None].expand(4, 4)])[:, None]
    which = torch.randint(0, 2, (n,), generator=gen)
    noisy = patterns[which] + 0.03 * torch.randn(n, *SHAPE, generator=gen)
    return (noisy.clamp(0, 1) * 255).round() / 255


def likelihood_bits(model, x: torch.Tensor) -> float:
    """Mean bits/dim: the model's bound where it has a decoder, else the probability-flow ODE's."""
    with torch.no_grad():
        if isinstance(model, DiffusionDecoder):
            gen = torch.Generator().manual_seed(0)
            nats = diffusion_bound(model, 2 * x - 1, steps=getattr(model, "time_steps", None), time_samples=8,
                                   generator=gen).total
        else:
            nats = probability_flow_discrete_nll(model, x, generator=torch.Generator().manual_seed(0),
                                                 exact_divergence=False, rtol=1e-3, atol=1e-3).nll
    return float(nats.mean()) / (x[0].numel() * math.log(2))


def train(model, x: torch.Tensor, steps: int, lr: float = 3e-3) -> None:
    optimizer = model.configure_optimizers(lr)["model"]
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (64,), generator=gen)]
        for _, loss in model.training_losses(batch):
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


@pytest.fixture
def one_thread():
    """One thread: these small networks run slower on two threads of a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name, extra", [("ddpm", {"timesteps": 100, "sample_steps": 20}),
                                         ("vdm", {"sample_steps": 20}),
                                         ("flow-matching", {"sample_steps": 20})])
def test_each_trains_improves_its_likelihood_and_samples_in_range(name, extra, one_thread):
    torch.manual_seed(0)
    model = MODELS[name].build({**TINY, **extra}, SHAPE)
    assert isinstance(model, DiffusionModel) and isinstance(model, Sampler) and isinstance(model, Trainable)
    held_out = toy_images(128, seed=2)
    before = likelihood_bits(model, held_out)
    train(model, toy_images(2048, seed=3), steps=150)
    after = likelihood_bits(model, held_out)
    assert after < before - 0.5, (name, before, after)
    samples = model.sample(16)
    assert samples.shape == (16, *SHAPE)
    assert bool(((samples >= 0) & (samples <= 1)).all())
    assert torch.equal(samples, (samples * 255).round() / 255)  # on the 8-bit levels


def test_capabilities_decide_which_likelihoods_apply():
    ddpm, vdm, fm = (MODELS[name].build(TINY, SHAPE) for name in ("ddpm", "vdm", "flow-matching"))
    assert isinstance(ddpm, DiffusionDecoder) and isinstance(vdm, DiffusionDecoder)
    assert not isinstance(fm, DiffusionDecoder)  # no bound: its likelihood is the ODE's
    assert isinstance(fm, VelocityField) and not isinstance(ddpm, VelocityField)
    assert ddpm.time_steps == 999 and not hasattr(vdm, "time_steps")


def test_ddpm_schedule_is_the_papers_on_its_steps():
    model = MODELS["ddpm"].build(TINY, SHAPE)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    steps = torch.tensor([1, 2, 500, 1000])
    alpha, sigma = model.noise_schedule(((steps - 1) / 999).double())
    assert torch.allclose(alpha.square(), alpha_bar[steps - 1], rtol=1e-7)
    alpha_32, _ = model.noise_schedule(((steps - 1) / 999).float())  # float32 times: still the paper's
    assert torch.allclose(alpha_32.double().square(), alpha_bar[steps - 1], rtol=1e-5)
    assert torch.allclose(alpha.square() + sigma.square(), torch.ones(4, dtype=torch.float64))


def test_flow_matching_noise_prediction_inverts_the_path():
    model = MODELS["flow-matching"].build(TINY, SHAPE).double()
    gen = torch.Generator().manual_seed(0)
    y, eps = torch.rand(3, *SHAPE, generator=gen, dtype=torch.float64), torch.randn(3, *SHAPE, generator=gen,
                                                                                      dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    alpha, sigma = (v[:, None, None, None] for v in model.noise_schedule(t))
    x_t = alpha * y + sigma * eps
    with torch.no_grad():  # a network giving the path's own velocity recovers eps exactly
        model.velocity = lambda x_t, t: (1 - model.sigma_min) * eps - y
        assert torch.allclose(model.predict_noise(x_t, t), eps)


@pytest.mark.parametrize("decoder", ["gaussian", "factorized"])
def test_discretised_decoders_sum_to_one_over_the_256_levels(decoder):
    levels = torch.linspace(-1, 1, LEVELS, dtype=torch.float64)[:, None, None, None]  # one pixel each
    for centre in (-1.0, -0.3, 0.0, 0.51, 1.0, 1.2):
        z = torch.full_like(levels, centre)
        if decoder == "gaussian":
            log_p = discretized_gaussian_log_prob(levels, z, 0.01)
        else:
            log_p = factorized_decoder_log_prob(levels, z, torch.tensor(0.999, dtype=torch.float64),
                                                torch.tensor(0.01, dtype=torch.float64))
        assert abs(float(torch.logsumexp(log_p, 0))) < 1e-9, (decoder, centre)
