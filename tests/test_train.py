"""The training loop: reproducible, resumable, NaN-safe."""

from __future__ import annotations

import pytest
import torch

from genbench.core.errors import TrainingDiverged
from genbench.train import checkpoint as ckpt
from genbench.train.loop import TrainConfig, train
from genbench.train.schedule import iwae
from zoo import MODELS

META = {"name": "t", "model": "iwae", "config": {"layers": 1, "k": 2, "objective": "iwae"},
        "dataset": "toy", "data_shape": [1, 8, 8]}


def _model(toy):
    torch.manual_seed(0)
    return MODELS["iwae"].build({"layers": 1, "k": 2}, toy.shape)


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_interrupted_run_resumes_to_identical_parameters(toy, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=20, checkpoint_every=7)
    straight = _model(toy)
    train(straight, toy, cfg, tmp_path / "a", META, progress=False)

    interrupted = _model(toy)
    train(interrupted, toy, cfg, tmp_path / "b", META, max_steps=23, progress=False)
    saved, _, _ = ckpt.read_checkpoint(tmp_path / "b")
    assert saved["step"] == 23
    resumed = _model(toy)  # a fresh process: new weights, state comes from the checkpoint
    result = train(resumed, toy, cfg, tmp_path / "b", META, progress=False)
    assert result.resumed_from == 23
    for key, value in _params(straight).items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_same_seed_same_numbers_different_seed_different(toy, tmp_path):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = _model(toy)
        train(model, toy, TrainConfig(epochs=1, seed=seed), tmp_path / name, META, progress=False)
        runs.append(_params(model))
    key = "pixel_decoder.1.weight"
    assert torch.equal(runs[0][key], runs[1][key])
    assert not torch.equal(runs[0][key], runs[2][key])


def test_resume_refuses_a_checkpoint_of_another_run(toy, tmp_path):
    train(_model(toy), toy, TrainConfig(epochs=0.2), tmp_path, META, progress=False)
    other = {**META, "config": {**META["config"], "k": 3}}
    with pytest.raises(Exception, match="different run"):
        train(_model(toy), toy, TrainConfig(epochs=0.2), tmp_path, other, progress=False)


def diverging_at(model, step: int):
    """Make the model's loss NaN from training step ``step`` on."""
    calls = {"n": 0}
    original = model.training_losses

    def losses(x):
        for name, loss in original(x):
            calls["n"] += 1
            yield name, loss * float("nan") if calls["n"] > step else loss

    model.training_losses = losses
    return model


def test_nan_loss_stops_the_run(toy, tmp_path):
    model = diverging_at(_model(toy), 3)
    with pytest.raises(TrainingDiverged, match="nan at step 3"):
        train(model, toy, TrainConfig(epochs=1), tmp_path, META, progress=False)


def test_iwae_schedule_is_the_papers_stages():
    # stage i lasts 3^i epochs with rate 10^(-i/7): epochs [0,1), [1,4), [4,13), ... 3280
    assert iwae(0.0) == 1.0 and iwae(0.99) == 1.0
    assert iwae(1.0) == pytest.approx(10 ** (-1 / 7)) and iwae(3.99) == pytest.approx(10 ** (-1 / 7))
    assert iwae(4.0) == pytest.approx(10 ** (-2 / 7))
    assert iwae(1093.5) == pytest.approx(0.1) and iwae(3279.9) == pytest.approx(0.1)


def test_a_nan_is_named_at_its_step_though_losses_are_read_every_few_steps(toy, tmp_path):
    # read every 5 steps, checkpoint every 3: the NaN of step 7 is seen at step 10, and the
    # checkpoint of step 9 (after the NaN) is never written: the last one is step 6's
    model = diverging_at(_model(toy), 7)
    with pytest.raises(TrainingDiverged, match="nan at step 7 "):
        train(model, toy, TrainConfig(epochs=1, check_every=5, checkpoint_every=3), tmp_path, META,
              progress=False)
    saved, _, _ = ckpt.read_checkpoint(tmp_path)
    assert saved["step"] == 6


def test_losses_are_read_once_per_window_not_per_step(toy, tmp_path, monkeypatch):
    from genbench.train import loop

    reads = []
    original = loop.LossWindow.check

    def counting(self):
        reads.append(len(self.losses))
        return original(self)

    monkeypatch.setattr(loop.LossWindow, "check", counting)
    config = TrainConfig(epochs=2, batch_size=10, check_every=8)
    per_epoch = -(-toy.size("train") // 10)
    train(_model(toy), toy, config, tmp_path, META, progress=False)
    nonempty = [n for n in reads if n]
    assert sum(nonempty) == 2 * per_epoch  # every step's loss is checked once
    windows = [s for s in range(1, 2 * per_epoch + 1) if s % 8 == 0 or s % per_epoch == 0]
    assert len(nonempty) == len(windows)  # read every 8 steps and at each epoch's end only


def test_the_check_window_changes_no_number(toy, tmp_path):
    results, params = [], []
    for name, every in (("a", 1), ("b", 1000)):
        model = _model(toy)
        results.append(train(model, toy, TrainConfig(epochs=2, batch_size=10, check_every=every),
                             tmp_path / name, META, progress=False))
        params.append(_params(model))
    assert results[0].curve == results[1].curve and results[0].final_loss == results[1].final_loss
    for key, value in params[0].items():
        assert torch.equal(params[1][key], value)
