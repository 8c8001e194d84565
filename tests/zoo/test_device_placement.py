"""GPU-ready without a GPU: every model keeps its tensors on the data's device.

Each model of every suite is moved to PyTorch's ``meta`` device (tensors with shapes and no
storage) and its training step, sampler, likelihood and the importance-sampling estimator run
there. A tensor created on the CPU by mistake (``torch.zeros(n)`` without ``device=``) meets a
meta tensor and fails, exactly where it would fail, later and slower, on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from genbench.core.protocols import (
    DataInitialized,
    ExactLikelihood,
    LatentVariableModel,
    ProgressAware,
    Representation,
    Sampler,
    Trainable,
)
from genbench.data import DATASETS
from genbench.metrics.importance import importance_bounds
from genbench.suites import SUITES
from zoo import MODELS
from zoo.pixelcnn import GatedPixelCNN


def _entries():
    """(model name, config, data shape) of every distinct model of every suite, a sampler that iterates
    (a diffusion model's) cut to 2 steps: its loop is the same at any count, and on meta tensors each
    step of a paper-sized network costs seconds of Python."""
    seen = {}
    for suite in SUITES.in_order():
        for entry in suite.runs:
            shape = DATASETS[suite.dataset_of(entry)].shape
            config = dict(entry.config)
            if hasattr(MODELS[entry.model].make_config(config), "sample_steps"):
                config["sample_steps"] = 2
            seen.setdefault(entry.model, (entry.model, config, shape))
    return sorted(seen.values(), key=lambda e: e[0])


ENTRIES = _entries()


def _meta_model(name, config, shape):
    """The model on the meta device; one fitted in closed form is fitted first, on random CPU data."""
    torch.manual_seed(0)
    model = MODELS[name].build(config, shape)
    if isinstance(model, DataInitialized):
        model.init_from_data(torch.rand(64, *shape).bernoulli())
    return model.to("meta")


def _meta_batch(shape, n=4):
    return torch.empty(n, *shape, device="meta").bernoulli_(0.5)


def test_every_model_family_is_covered():
    assert {name for name, _, _ in ENTRIES} >= {"vae", "iwae", "hvae", "vlae", "pixelcnn", "pixelvae",
                                                 "gan", "wgan", "bigan", "realnvp", "betavae"}


@pytest.mark.slow
@pytest.mark.parametrize("name, config, shape", ENTRIES, ids=[e[0] for e in ENTRIES])
def test_the_training_step_stays_on_the_data_device(name, config, shape):
    model = _meta_model(name, config, shape)
    if not isinstance(model, Trainable):
        pytest.skip(f"{name} is not trained by gradient steps")
    model.configure_optimizers(1e-3)
    if isinstance(model, ProgressAware):
        model.set_training_progress(0.5, 0.5)
    model.train()
    x = _meta_batch(shape)
    for _, loss in model.training_losses(x):
        assert loss.device.type == "meta"
        loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.device.type == "meta" for g in grads)


@pytest.mark.slow
@pytest.mark.parametrize("name, config, shape", ENTRIES, ids=[e[0] for e in ENTRIES])
def test_sampling_likelihood_and_the_estimator_stay_on_the_data_device(name, config, shape):
    model = _meta_model(name, config, shape).eval()
    x = _meta_batch(shape, 3)
    ran = []
    with torch.no_grad():
        if isinstance(model, Sampler) and not _samples_pixel_by_pixel(model):
            assert model.sample(2).device.type == "meta"
            ran.append("sample")
        if isinstance(model, ExactLikelihood):
            assert model.log_prob(x).device.type == "meta"
            ran.append("log_prob")
        if isinstance(model, Representation):
            assert model.represent(x).device.type == "meta"
            ran.append("represent")
        if isinstance(model, LatentVariableModel):
            bounds = importance_bounds(model, x, k=3)
            assert all(t.device.type == "meta" for t in vars(bounds).values() if isinstance(t, torch.Tensor))
            ran.append("estimator")
    assert ran, f"{name} has none of the capabilities checked here"


def _samples_pixel_by_pixel(model) -> bool:
    """A PixelCNN sampler runs its network once per pixel (minutes even on meta tensors); its forward
    pass is checked through log_prob and the estimator instead."""
    return any(isinstance(m, GatedPixelCNN) for m in model.modules())
