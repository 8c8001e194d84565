"""Seeds trained as one vectorised ensemble equal the same runs trained alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genbench.core.errors import TrainingDiverged
from genbench.train import checkpoint as ckpt
from genbench.train.ensemble import ensemble_applies, train_ensemble
from genbench.train.loop import TrainConfig, train
from zoo import MODELS

SEEDS = (0, 1, 2)
#: vmap's batched matmuls (bmm) round differently from mm at inner sizes >= 200 (1 ulp per
#: matmul); after 40 steps members are within 2e-7 of their single runs (measured). A wrong
#: noise, batch or optimizer state moves them by > 1e-3.
TOL = {"rtol": 1e-5, "atol": 1e-5}
MODEL_CASES = {"vae": {"layers": 1, "k": 1}, "iwae": {"layers": 1, "k": 2}}


def _meta(name):
    return {"name": "t", "model": name, "config": MODEL_CASES[name], "dataset": "toy",
            "data_shape": [1, 8, 8]}


def _build(name, toy, seed):
    torch.manual_seed(seed)  # each seed its own initial weights, as a run builds them
    return MODELS[name].build(MODEL_CASES[name], toy.shape)


def _configs(**kw):
    return [TrainConfig(epochs=2, batch_size=20, seed=s, **kw) for s in SEEDS]


def _alone(name, toy, configs, root, **kw):
    out = []
    for config in configs:
        model = _build(name, toy, config.seed)
        out.append((model, train(model, toy, config, root / f"alone{config.seed}", _meta(name),
                                 progress=False, **kw)))
    return out


def _ensemble(name, toy, configs, root, **kw):
    models = [_build(name, toy, c.seed) for c in configs]
    dirs = [root / f"ens{c.seed}" for c in configs]
    return models, train_ensemble(models, toy, configs, dirs, [_meta(name)] * len(configs),
                                  progress=False, **kw)


def _assert_close_models(a, b, **tol):
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, **(tol or TOL))


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_ensemble_equals_runs_alone(name, toy, tmp_path):
    configs = _configs(checkpoint_every=7)
    alone = _alone(name, toy, configs, tmp_path)
    models, results = _ensemble(name, toy, configs, tmp_path)
    for (single, r_single), model, r_ens in zip(alone, models, results, strict=True):
        assert r_ens.steps == r_single.steps == 40 and r_ens.resumed_from == 0
        _assert_close_models(single, model)
        assert r_ens.final_loss == pytest.approx(r_single.final_loss, rel=1e-5)
        assert [row["epoch"] for row in r_ens.curve] == [1.0, 2.0]
        for a, b in zip(r_single.curve, r_ens.curve, strict=True):
            assert b == pytest.approx(a, rel=1e-5)
    # the seeds really differ (far more than the tolerance): each member has its own stream
    diff = (models[0].pixel_decoder[0][0].weight - models[1].pixel_decoder[0][0].weight).abs().max()
    assert diff > 1e-2
    # each member's checkpoint is the single-run format: same metadata, tensors and optimizer layout
    for seed in SEEDS:
        m_a, t_a, o_a = ckpt.read_checkpoint(tmp_path / f"alone{seed}")
        m_e, t_e, o_e = ckpt.read_checkpoint(tmp_path / f"ens{seed}")
        assert o_a == o_e and set(t_a) == set(t_e)
        m_a.pop("callbacks"), m_e.pop("callbacks")  # the curve's sums: float rounding (compared above)
        m_a.pop("git_commit"), m_e.pop("git_commit")  # HEAD when written: a commit in between moves it
        assert m_a == m_e
        for key, value in t_a.items():
            torch.testing.assert_close(t_e[key], value, **TOL)


def test_interrupted_ensemble_resumes_and_members_resume_alone(toy, tmp_path):
    configs = _configs(checkpoint_every=7)
    straight, _ = _ensemble("vae", toy, configs, tmp_path / "straight")
    root = tmp_path / "cut"
    _, cut = _ensemble("vae", toy, configs, root, max_steps=23)
    assert all(r.steps == 23 for r in cut)
    assert all(ckpt.read_checkpoint(root / f"ens{s}")[0]["step"] == 23 for s in SEEDS)
    # a member resumes alone with train(): it reaches its single run's weights
    alone = _alone("vae", toy, configs[:1], tmp_path / "single")[0][0]
    member = _build("vae", toy, 0)
    assert train(member, toy, configs[0], root / "ens0", _meta("vae"), progress=False).resumed_from == 23
    _assert_close_models(alone, member)
    # the others resume as an ensemble (fresh modules: the state comes from the checkpoints):
    # the same kernels as the uninterrupted ensemble, so bit for bit its weights
    models = [_build("vae", toy, s) for s in SEEDS[1:]]
    results = train_ensemble(models, toy, configs[1:], [root / f"ens{s}" for s in SEEDS[1:]],
                             [_meta("vae")] * 2, progress=False)
    assert [r.resumed_from for r in results] == [23, 23]
    for a, b in zip(straight[1:], models, strict=True):
        _assert_close_models(a, b, rtol=0, atol=0)


def test_members_at_different_steps_are_levelled(toy, tmp_path):
    configs = _configs(checkpoint_every=7)
    alone = _alone("vae", toy, configs, tmp_path / "alone")
    root = tmp_path / "mixed"
    _ensemble("vae", toy, configs, root, max_steps=14)
    train(_build("vae", toy, 2), toy, configs[2], root / "ens2", _meta("vae"), max_steps=30, progress=False)
    models, results = _ensemble("vae", toy, configs, root)
    assert [r.resumed_from for r in results] == [30, 30, 30]
    for (single, _), model in zip(alone, models, strict=True):
        _assert_close_models(single, model)


def test_nan_fails_that_member_only(toy, tmp_path):
    """Choice: a member whose loss is not finite fails alone, with the error its single run
    raises; the others train on and still equal their single runs."""
    configs = _configs(check_every=5, checkpoint_every=100)
    models = [_build("vae", toy, c.seed) for c in configs]
    with torch.no_grad():
        models[1].encoders[0].body[0].weight[0, 0] = float("nan")
    poisoned = _build("vae", toy, 1)
    poisoned.load_state_dict(models[1].state_dict())
    with pytest.raises(TrainingDiverged) as single_error:
        train(poisoned, toy, configs[1], tmp_path / "alone-nan", _meta("vae"), progress=False)
    dirs = [tmp_path / f"ens{s}" for s in SEEDS]
    results = train_ensemble(models, toy, configs, dirs, [_meta("vae")] * 3, progress=False)
    assert isinstance(results[1], TrainingDiverged)
    assert str(results[1]) == str(single_error.value) and "nan at step 0" in str(results[1])
    assert not (dirs[1] / ckpt.FILENAME).exists()  # nothing written after the NaN
    alone = _alone("vae", toy, [configs[0], configs[2]], tmp_path)
    for (single, _), model, result in zip(alone, [models[0], models[2]], [results[0], results[2]],
                                                   strict=True):
        assert result.steps == 40
        _assert_close_models(single, model)


class _Branchy(nn.Module):
    """A loss with data-dependent Python control flow (vmap cannot trace it)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(64))

    def configure_optimizers(self, lr):
        return {"model": torch.optim.Adam(self.parameters(), lr=lr)}

    def training_losses(self, x):
        loss = (x.flatten(1) @ self.w).mean()
        yield "model", loss if loss > 0 else -loss


def test_ensemble_applies_says_why_not(toy):
    vaes = [_build("vae", toy, s) for s in SEEDS]
    assert ensemble_applies(vaes, toy, _configs())
    cases = {
        "more than the seed": (vaes, [TrainConfig(seed=0), TrainConfig(seed=1, lr=2e-3),
                                      TrainConfig(seed=2)]),
        "callbacks": (vaes, _configs(early_stopping_epochs=2)),
        "hyperparameters": ([vaes[0], _build("iwae", toy, 1)], _configs()[:2]),
        "2 optimizers": ([MODELS["gan"].build({}, toy.shape) for _ in range(2)], _configs()[:2]),
        "does not vectorise": ([_Branchy(), _Branchy()], _configs()[:2]),
    }
    for reason, (models, configs) in cases.items():
        verdict = ensemble_applies(models, toy, configs)
        assert not verdict and reason in verdict.reason, (reason, verdict)
