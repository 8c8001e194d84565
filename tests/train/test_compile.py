"""torch.compile where it pays: the compiled estimator equals the eager one, a failed compilation
falls back to eager, and the switch (``--no-compile``) and the break-even keep it off."""

from __future__ import annotations

import pytest
import torch

from genbench.core import compile as compilation
from genbench.metrics.importance import importance_bounds
from genbench.train.loop import TrainConfig, train
from zoo import MODELS


@pytest.fixture
def vae(toy):
    torch.manual_seed(0)
    model = MODELS["vae"].build({"layers": 1, "k": 1}, toy.shape).eval()
    model.init_from_data(toy.eval_tensor("train"))
    return model


def _bounds(model, x):
    torch.manual_seed(3)
    return importance_bounds(model, x, k=40, max_rows=400)  # 10 points per call, 2 calls


def test_the_compiled_estimator_equals_the_eager_one(vae, toy, monkeypatch):
    x = toy.eval_tensor("test")[:20]
    monkeypatch.setenv(compilation.SWITCH, "1")
    eager = _bounds(vae, x)
    monkeypatch.delenv(compilation.SWITCH)
    monkeypatch.setitem(compilation.MIN_CALLS, "estimator", 2)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    fast = _bounds(vae, x)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs >= 1  # it did compile
    _bounds(vae, x)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # and reuses its compilation
    # fallback_random: the same noise as eager; fused ops round differently (float32, 784 pixels)
    torch.testing.assert_close(fast.iwae, eager.iwae, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(fast.elbo, eager.elbo, rtol=1e-5, atol=1e-4)


def test_a_failed_compilation_runs_eagerly_and_says_so(vae, toy, monkeypatch):
    said = []
    monkeypatch.setattr(compilation, "log", said.append)
    monkeypatch.setitem(compilation.MIN_CALLS, "estimator", 1)

    def broken(fn, **_):
        def call(*args, **kwargs):
            raise RuntimeError("inductor: no C compiler\nmore detail")
        return call
    monkeypatch.setattr(torch, "compile", broken)
    x = toy.eval_tensor("test")[:20]
    got = _bounds(vae, x)
    monkeypatch.setenv(compilation.SWITCH, "1")
    torch.testing.assert_close(got.iwae, _bounds(vae, x).iwae, rtol=0, atol=0)
    assert said == ["warning: torch.compile of the estimator failed (RuntimeError: inductor: no C compiler); "
                    "running it eagerly"]


def test_compiling_stays_off_below_the_break_even_and_when_switched_off(monkeypatch):
    def fn():
        return 1
    monkeypatch.delenv(compilation.SWITCH, raising=False)
    assert compilation.compiled(fn, compilation.MIN_CALLS["estimator"] - 1, "estimator") is fn
    assert compilation.compiled(fn, compilation.MIN_CALLS["estimator"], "estimator") is not fn
    monkeypatch.setattr(compilation.os, "environ", dict(compilation.os.environ))  # disable() writes it
    compilation.disable()
    assert compilation.compiled(fn, 10**9, "estimator") is fn


def test_no_compile_flag_switches_it_off_for_the_process_and_its_children(monkeypatch, capsys):
    from genbench.cli import main

    monkeypatch.delenv(compilation.SWITCH, raising=False)
    monkeypatch.setattr(compilation.os, "environ", dict(compilation.os.environ))
    main(["score", "/nonexistent-run", "--no-compile"])
    assert not compilation.enabled() and compilation.os.environ[compilation.SWITCH] == "1"
    assert capsys.readouterr().err.startswith("genbench: ")


def _trained(toy, run_dir, max_steps=None):
    torch.manual_seed(0)
    model = MODELS["vae"].build({"layers": 1, "k": 1}, toy.shape)
    train(model, toy, TrainConfig(epochs=10, seed=0), run_dir, {"name": "vae"}, max_steps=max_steps,
          progress=False)
    return [p.detach().clone() for p in model.parameters()]


def test_a_compiled_training_run_equals_the_eager_one_and_resumes_bit_identically(toy, tmp_path, monkeypatch):
    """Past the break-even ``train()`` compiles the step's losses: once (the epoch and KL weight,
    which change every step, are traced as symbols, not recompiled for), within float rounding of
    the eager run, and a run killed and resumed in a fresh compilation ends bit-identical."""
    eager = _trained(toy, tmp_path / "eager")  # 200 steps: far below the break-even, eager
    monkeypatch.setitem(compilation.MIN_CALLS, "train step", 1)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    fast = _trained(toy, tmp_path / "compiled")
    assert 1 <= torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2
    for a, b in zip(fast, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(fast, eager, strict=True))  # it did run compiled
    _trained(toy, tmp_path / "killed", max_steps=70)  # of 200 (10 epochs of 20 steps)
    torch._dynamo.reset()  # the resumed process compiles afresh
    # the break-even is judged on the whole run (200 steps), not on the 130 left after the kill
    monkeypatch.setitem(compilation.MIN_CALLS, "train step", 150)
    torch._dynamo.utils.counters.clear()
    resumed = _trained(toy, tmp_path / "killed")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it compiled again
    assert all(torch.equal(a, b) for a, b in zip(resumed, fast, strict=True))
