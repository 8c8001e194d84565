"""The training loop: reproducible, resumable, NaN-safe."""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_a_resumed_run_reports_the_training_time_of_every_process_that_trained_it(toy, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=20, checkpoint_every=7)
    first = train(_model(toy), toy, cfg, tmp_path, META, max_steps=14, progress=False)
    saved, _, _ = ckpt.read_checkpoint(tmp_path)
    earlier = saved["callbacks"]["training_clock"]["seconds"]
    assert first.seconds >= earlier > 0
    resumed = train(_model(toy), toy, cfg, tmp_path, META, progress=False)
    assert resumed.resumed_from == 14 and resumed.seconds > earlier
    finished = ckpt.read_checkpoint(tmp_path)[0]["callbacks"]["training_clock"]["seconds"]
    again = train(_model(toy), toy, cfg, tmp_path, META, progress=False)  # nothing left to train
    assert again.resumed_from == again.steps and again.seconds >= finished


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
    from genbench.train import cadence

    reads = []
    original = cadence.LossWindow.check

    def counting(self):
        reads.append(len(self.losses))
        return original(self)

    monkeypatch.setattr(cadence.LossWindow, "check", counting)
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


class _Recorder:
    """A ``Steps`` that records which hook the cadence calls at which step."""

    def __init__(self, stop_epoch_at: int | None = None, fail_at: int | None = None):
        self.events, self.done = [], 0
        self.stop_epoch_at, self.fail_at = stop_epoch_at, fail_at

    def take(self, step):
        if step == self.fail_at:
            raise RuntimeError("step failed")
        self.done = step + 1

    def check(self):
        self.events.append(("check", self.done))
        return True

    def diverged_before(self):
        self.events.append(("diverged_before", self.done))

    def end_epoch(self):
        self.events.append(("end_epoch", self.done))
        return self.done != self.stop_epoch_at

    def save(self, step):
        self.events.append(("save", step))


def test_the_cadence_checks_ends_epochs_and_checkpoints_on_its_steps():
    from genbench.train.cadence import Cadence

    # 4 steps an epoch, 10 in all (the last epoch ends mid-way), checkpoints every 3, checks every 5
    steps = _Recorder()
    Cadence(steps_per_epoch=4, total_steps=10, end_step=10, checkpoint_every=3, check_every=5).run(steps, 0)
    assert steps.events == [
        ("check", 3), ("save", 3), ("check", 4), ("end_epoch", 4), ("check", 5), ("check", 6), ("save", 6),
        ("check", 8), ("end_epoch", 8), ("check", 9), ("save", 9), ("check", 10), ("end_epoch", 10),
        ("check", 10),  # the last read, after the loop
    ]
    # resumed at 5 and cut at 9: the epoch ends where the uninterrupted run's did; no checkpoint at
    # the cut (the run's end writes its own), its losses read once, after the loop
    steps = _Recorder()
    Cadence(steps_per_epoch=4, total_steps=10, end_step=9, checkpoint_every=3, check_every=5).run(steps, 5)
    assert steps.events == [("check", 6), ("save", 6), ("check", 8), ("end_epoch", 8), ("check", 9)]


def test_the_cadence_stops_where_an_epoch_end_says_so_and_blames_an_earlier_nan():
    from genbench.train.cadence import Cadence

    cadence = Cadence(steps_per_epoch=4, total_steps=12, end_step=12, checkpoint_every=100, check_every=100)
    steps = _Recorder(stop_epoch_at=8)  # early stopping after the second epoch
    cadence.run(steps, 0)
    assert steps.events == [("check", 4), ("end_epoch", 4), ("check", 8), ("end_epoch", 8), ("check", 8)]
    steps = _Recorder(fail_at=6)
    with pytest.raises(RuntimeError, match="step failed"):
        cadence.run(steps, 0)
    assert steps.events[-1] == ("diverged_before", 6)  # asked first whether a loss went non-finite


def test_one_cadence_drives_the_single_run_and_the_ensemble(toy, tmp_path, monkeypatch):
    from genbench.train.cadence import Cadence
    from genbench.train.ensemble import train_ensemble

    seen, run = [], Cadence.run

    def recording(self, steps, start):
        events = []
        seen.append(events)
        for hook in ("check", "end_epoch", "save"):
            original = getattr(steps, hook)

            def spy(*args, _hook=hook, _original=original):
                events.append((_hook, *args))
                return _original(*args)

            setattr(steps, hook, spy)
        return run(self, steps, start)

    monkeypatch.setattr(Cadence, "run", recording)
    meta = {**META, "model": "vae", "config": {"layers": 1, "k": 1}}
    configs = [TrainConfig(epochs=1.5, batch_size=20, checkpoint_every=7, check_every=4, seed=seed)
               for seed in (0, 1)]
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(MODELS["vae"].build({"layers": 1, "k": 1}, toy.shape))
    train(models[0], toy, configs[0], tmp_path / "alone", meta, max_steps=25, progress=False)
    train_ensemble(models, toy, configs, [tmp_path / "e0", tmp_path / "e1"], [meta, meta], max_steps=25,
                   progress=False)
    alone, ensemble = seen
    assert alone == ensemble
    assert [e for e in alone if e[0] != "check"] == [("save", 7), ("save", 14), ("end_epoch",), ("save", 21)]


def test_scheduled_rates_scale_each_groups_own_rate_and_write_only_at_stage_changes():
    from genbench.train.schedule import ScheduledRates, iwae

    weights = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.Adam([{"params": [weights[0]], "lr": 1e-3}, {"params": [weights[1]], "lr": 5e-3}])
    rates = ScheduledRates([g["lr"] for g in opt.param_groups], iwae)
    rates.apply(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 5e-3]
    opt.param_groups[0]["lr"] = 0.0  # not rewritten while the stage lasts
    rates.apply(opt, 0.9)
    assert opt.param_groups[0]["lr"] == 0.0
    rebuilt = torch.optim.Adam([{"params": [weights[0]], "lr": 9.0}, {"params": [weights[1]], "lr": 9.0}])
    rates.apply(rebuilt, 1.0)  # the next stage, on whatever optimizer now holds the parameters
    assert [g["lr"] for g in rebuilt.param_groups] == [1e-3 * iwae(1.0), 5e-3 * iwae(1.0)]


def _private_names_imported(source: str) -> list[str]:
    """``module.name`` of every private name a module's code takes from another genbench module:
    imported by name, or read off an imported module (``ckpt._x``)."""
    tree = ast.parse(source)
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom | ast.Import)]
    ours = [(node, alias) for node in imports for alias in node.names
            if (getattr(node, "module", None) or alias.name).startswith("genbench")]
    modules = {alias.asname or alias.name for _, alias in ours}
    found = [f"{node.module}.{alias.name}" for node, alias in ours
             if isinstance(node, ast.ImportFrom) and alias.name.startswith("_")]
    return found + [f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
                    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")]


def test_no_training_module_imports_a_private_name_of_another():
    import genbench.train

    assert _private_names_imported("from genbench.train.callbacks import _step_seed\n"
                                   "from genbench.train import checkpoint as ckpt\nckpt._x\n") == [
        "genbench.train.callbacks._step_seed", "ckpt._x"]
    package = Path(genbench.train.__file__).parent
    found = {path.name: _private_names_imported(path.read_text()) for path in sorted(package.glob("*.py"))}
    assert {name: names for name, names in found.items() if names} == {}
