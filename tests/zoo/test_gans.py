"""The GAN family: networks, objectives, alternating updates, and GAN runs through the training loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genbench.core.errors import GenbenchError, TrainingDiverged
from genbench.core.protocols import LatentVariableModel, Representation, Sampler, Trainable, capabilities
from genbench.train import checkpoint as ckpt
from genbench.train.loop import TrainConfig, train
from genbench.train.schedule import iwae
from tests.train.test_train import diverging_at
from zoo import MODELS
from zoo.gan_layers import stages
from zoo.gan_objectives import (
    OBJECTIVES,
    NonSaturating,
    WassersteinClip,
    WassersteinGP,
    gradient_penalty,
    wasserstein_critic_loss,
)

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)
GANS = ("gan", "wgan", "wgan-gp", "bigan")
SMALL = {"base_channels": 8, "latent": 8}


def _first_linear(module: nn.Module) -> nn.Linear:
    return next(m for m in module.modules() if isinstance(m, nn.Linear))


# --- networks ------------------------------------------------------------------------------
def test_size_rule_halves_mnist_twice_cifar_three_times_toy_once():
    assert stages(28) == (2, 7) and stages(32) == (3, 4) and stages(8) == (1, 4) and stages(64) == (4, 4)
    with pytest.raises(ValueError):
        stages(6)


@pytest.mark.parametrize("shape", [MNIST, CIFAR])
@pytest.mark.parametrize("name", GANS)
def test_networks_fit_mnist_and_cifar_shapes(name, shape):
    model = MODELS[name].build({"base_channels": 16}, shape)
    x = torch.rand(3, *shape)
    samples = model.sample(5)
    assert samples.shape == (5, *shape) and samples.min() >= 0 and samples.max() <= 1
    if name == "bigan":
        assert model.discriminator(2 * x - 1, model.represent(x)).shape == (3,)
    else:
        assert model.discriminator(2 * x - 1).shape == (3,)
    # the projection of z starts at the smallest map: 2*16 x 7x7 for MNIST, 4*16 x 4x4 for CIFAR
    assert _first_linear(model.generator).out_features == {MNIST: 32 * 49, CIFAR: 64 * 16}[shape]


def test_default_widths_are_dcgans_and_bad_shapes_are_refused():
    gan = MODELS["gan"].build({}, CIFAR)
    convs = [m for m in gan.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256]
    assert gan.config.latent == 100 and MODELS["bigan"].build({}, MNIST).config.latent == 50
    for bad in ((784,), (1, 28, 30), (1, 6, 6)):
        with pytest.raises(GenbenchError):
            MODELS["gan"].build({}, bad)
    with pytest.raises(GenbenchError, match="batch norm"):
        MODELS["wgan-gp"].make_config({"critic_norm": "batch"})
    critic = MODELS["wgan-gp"].build(SMALL, (1, 8, 8)).discriminator
    assert not any(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in critic.modules())


def test_each_gan_trains_with_its_objective_object_chosen_by_config():
    assert list(OBJECTIVES) == ["nonsaturating", "wasserstein-clip", "wasserstein-gp"]
    assert not set(OBJECTIVES) & set(MODELS)  # objectives are named for what they are, not for models
    expected = {"gan": NonSaturating, "wgan": WassersteinClip, "wgan-gp": WassersteinGP}
    for name, cls in expected.items():
        model = MODELS[name].build(SMALL, (1, 8, 8))
        assert type(model.objective) is cls and model.config.objective in OBJECTIVES
    assert MODELS["wgan"].build({"clip": 0.05, **SMALL}, (1, 8, 8)).objective.clip == 0.05
    assert MODELS["wgan-gp"].build({"gp_weight": 3.0, **SMALL}, (1, 8, 8)).objective.weight == 3.0
    assert [cls.needs_per_sample_critic for cls in expected.values()] == [False, False, True]
    with pytest.raises(GenbenchError, match=r"^unknown GAN objective 'wgan'; valid: nonsaturating, "
                                            r"wasserstein-clip, wasserstein-gp$"):
        MODELS["gan"].make_config({"objective": "wgan"})
    with pytest.raises(GenbenchError, match="optimizer must be one of adam, rmsprop"):
        MODELS["gan"].make_config({"optimizer": "sgd"})
    assert isinstance(MODELS["wgan"].build(SMALL, (1, 8, 8)).configure_optimizers(1e-3)["generator"],
                      torch.optim.RMSprop)


def test_gans_sample_and_train_but_have_no_likelihood_and_write_no_files():
    for name in GANS:
        model = MODELS[name].build(SMALL, (1, 8, 8))
        assert isinstance(model, Sampler) and isinstance(model, Trainable)
        assert not isinstance(model, LatentVariableModel) and "LatentVariableModel" not in capabilities(model)
        assert not hasattr(model, "log_importance_weights")
        assert not hasattr(model, "on_epoch_end") and not hasattr(model, "record")
        if name != "bigan":  # the alternation's counters stay: a resumed run needs them
            assert {"critic_steps", "generator_steps"} <= dict(model.named_buffers()).keys()


# --- objectives ----------------------------------------------------------------------------
def test_nonsaturating_generator_loss_is_minus_log_d_of_g_of_z():
    model = MODELS["gan"].build(SMALL, (1, 8, 8)).eval()  # eval: batch norm is a fixed function
    torch.manual_seed(3)
    loss = model.generator_loss(6)
    torch.manual_seed(3)
    d_of_fake = torch.sigmoid(model.discriminator(model.generator(torch.randn(6, 8))))
    torch.testing.assert_close(loss, -torch.log(d_of_fake).mean())
    assert loss.item() == pytest.approx(F.softplus(-torch.logit(d_of_fake)).mean().item(), rel=1e-4)


def test_wgan_clips_the_critic_after_each_critic_step():
    model = MODELS["wgan"].build(SMALL, (1, 8, 8))
    critic = list(model.discriminator.parameters())
    assert max(p.abs().max().item() for p in critic) <= 0.01  # clipped before its first use
    opt = model.configure_optimizers(1.0)["discriminator"]  # a huge rate throws weights out of the box
    losses = model.training_losses(torch.rand(16, 1, 8, 8))
    name, loss = next(losses)
    assert name == "discriminator"
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert max(p.abs().max().item() for p in critic) > 0.5
    assert next(losses, None) is None  # resumed: clips, no generator step due yet
    assert max(p.abs().max().item() for p in critic) == pytest.approx(0.01)


def test_gradient_penalty_is_lambda_times_squared_gradient_norm_gap():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 1), nn.Flatten(0))
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    torch.manual_seed(7)
    penalty = gradient_penalty(critic, real, fake, 10.0)
    torch.manual_seed(7)
    e = torch.rand(4, 1, 1, 1)
    expected = []
    for i in range(4):  # one sample at a time
        point = (e[i] * real[i] + (1 - e[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(point).sum(), point)
        expected.append(10.0 * (grad.norm() - 1) ** 2)
    torch.testing.assert_close(penalty, torch.stack(expected).mean())
    assert penalty.item() > 0.1
    penalty.backward()  # differentiable in the critic's parameters
    assert critic[1].weight.grad.abs().sum() > 0


def test_wasserstein_gp_critic_loss_is_the_wasserstein_loss_plus_the_penalty():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 1), nn.Flatten(0))
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    torch.manual_seed(7)
    loss = WassersteinGP(2.5).critic_loss(critic, real, fake)
    torch.manual_seed(7)
    expected = wasserstein_critic_loss(critic(real), critic(fake)) + gradient_penalty(critic, real, fake, 2.5)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    clipped = nn.Linear(3, 3)
    with torch.no_grad():
        clipped.weight.fill_(2.0)
    for objective in (NonSaturating(), WassersteinGP(10.0)):  # no constraint to restore
        objective.prepare(clipped)
        objective.after_critic_step(clipped)
    assert clipped.weight.max().item() == 2.0
    WassersteinClip(0.1).after_critic_step(clipped)
    assert clipped.weight.abs().max().item() == pytest.approx(0.1)


def test_gradient_penalty_vanishes_for_a_critic_with_unit_gradient():
    unit = nn.Linear(12, 1)
    with torch.no_grad():
        unit.weight.copy_(torch.randn(1, 12))
        unit.weight /= unit.weight.norm()
    critic = nn.Sequential(nn.Flatten(), unit, nn.Flatten(0))
    penalty = gradient_penalty(critic, torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2), 10.0)
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)


def _names_over_batches(model, batches: int) -> list[str]:
    names = []
    for _ in range(batches):
        names += [name for name, _ in model.training_losses(torch.rand(4, 1, 8, 8))]
    return names


def test_wgan_gp_takes_n_critic_critic_steps_per_generator_step():
    model = MODELS["wgan-gp"].build(SMALL, (1, 8, 8))
    names = _names_over_batches(model, 12)
    assert names.count("discriminator") == 12 and names.count("generator") == 2
    assert names.index("generator") == 5 and names[5:7] == ["generator", "discriminator"]
    gan = MODELS["gan"].build(SMALL, (1, 8, 8))
    assert _names_over_batches(gan, 3) == ["discriminator", "generator"] * 3


def test_wgan_critic_is_warmed_up_with_more_steps_early_and_periodically():
    model = MODELS["wgan"].build({**SMALL, "warm_critic_steps": 7}, (1, 8, 8))
    names = _names_over_batches(model, 15)
    assert names.index("generator") == 7 and names.count("generator") == 2
    _load_step_counts(model, critic=0, generator=30)  # past the first 25: the usual 5
    assert _names_over_batches(model, 5)[-1] == "generator"
    _load_step_counts(model, critic=0, generator=500)
    assert model.critic_steps_due() == 7


def _load_step_counts(model, critic: int, generator: int) -> None:
    """Set the step counters as a checkpoint does (the model keeps Python mirrors of them)."""
    model.load_state_dict({**model.state_dict(), "critic_steps": torch.tensor(critic),
                           "generator_steps": torch.tensor(generator)})


# --- runs through the training loop ---------------------------------------------------------
META = {"name": "g", "dataset": "toy", "data_shape": [1, 8, 8]}


def _run(name: str, toy, **config):
    torch.manual_seed(0)
    config = {**SMALL, **config}
    return MODELS[name].build(config, toy.shape), {**META, "model": name, "config": config}


@pytest.mark.parametrize("name", ["gan", "wgan-gp"])
def test_gan_run_resumes_bit_exactly_and_writes_grids_and_curve(name, toy, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=50, lr=2e-4, schedule="constant", checkpoint_every=3)
    straight, meta = _run(name, toy)
    curve = train(straight, toy, cfg, tmp_path / "a", meta, progress=False).curve
    interrupted, _ = _run(name, toy)
    train(interrupted, toy, cfg, tmp_path / "b", meta, max_steps=11, progress=False)  # mid epoch 2
    resumed, _ = _run(name, toy)
    result = train(resumed, toy, cfg, tmp_path / "b", meta, progress=False)
    assert result.resumed_from == 11
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    for run in ("a", "b"):
        assert (tmp_path / run / "samples_epoch1.png").stat().st_size > 0
        assert (tmp_path / run / "samples_epoch2.png").exists()
    # the trainer's curve, resumed from the checkpoint's callback state, equals the straight run's
    assert [row["epoch"] for row in curve] == [1, 2] and result.curve == curve
    assert set(curve[0]) >= {"discriminator", "generator"}
    steps_of_generator = 16 // resumed.config.n_critic
    assert int(resumed.generator_steps) == steps_of_generator == curve[-1]["generator_steps"]


def test_a_fractional_run_writes_its_grid_at_the_end(toy, tmp_path):
    model, meta = _run("bigan", toy)
    cfg = TrainConfig(epochs=0.5, batch_size=50, lr=2e-4)
    result = train(model, toy, cfg, tmp_path, meta, progress=False)
    assert (tmp_path / "samples_epoch0.5.png").exists() and [row["epoch"] for row in result.curve] == [0.5]


def test_critic_rate_is_a_multiple_of_the_scheduled_rate(toy, tmp_path):
    model, meta = _run("gan", toy, critic_lr_scale=3.0)
    captured = {}
    configure = model.configure_optimizers
    model.configure_optimizers = lambda lr: captured.update(configure(lr)) or captured
    cfg = TrainConfig(epochs=1.5, batch_size=100, lr=1e-3, schedule="iwae")
    train(model, toy, cfg, tmp_path, meta, progress=False)
    last_epoch = 5 / 4  # the last step (5 of 4 per epoch) ran in epoch 1: second stage of the schedule
    assert captured["generator"].param_groups[0]["lr"] == pytest.approx(1e-3 * iwae(last_epoch))
    assert captured["discriminator"].param_groups[0]["lr"] == pytest.approx(3e-3 * iwae(last_epoch))
    assert iwae(last_epoch) < 1


def test_nan_loss_stops_a_gan_run(toy, tmp_path):
    model, meta = _run("gan", toy)
    with pytest.raises(TrainingDiverged, match="nan at step 1"):
        train(diverging_at(model, 3), toy, TrainConfig(epochs=1, batch_size=50), tmp_path, meta,
              progress=False)
    assert not (tmp_path / ckpt.FILENAME).exists()


# --- BiGAN's encoder -----------------------------------------------------------------------
def test_bigan_represents_by_its_encoder_and_reconstructs_through_the_generator():
    model = MODELS["bigan"].build({"base_channels": 16}, MNIST).eval()
    x = torch.rand(6, *MNIST)
    assert model.represent(x).shape == (6, 50)
    torch.testing.assert_close(model.represent(x), model.encoder(2 * x - 1))
    assert isinstance(model, Representation) and model.reconstruct(x).shape == x.shape
    torch.testing.assert_close(model.reconstruct(x), model.generate(model.represent(x)))
    assert not hasattr(model, "encode") and not hasattr(model, "prior")  # no posterior: not a latent model


def test_bigan_generator_step_trains_generator_and_encoder_not_discriminator():
    model = MODELS["bigan"].build(SMALL, (1, 8, 8))
    (_, d_loss), (_, g_loss) = list(model.training_losses(torch.rand(4, 1, 8, 8)))
    model.zero_grad()
    d_loss.backward()
    assert model.encoder[-1].weight.grad is None and model.generator[0].weight.grad is None
    g_loss.backward()
    assert model.encoder[-1].weight.grad.abs().sum() > 0 and model.generator[0].weight.grad.abs().sum() > 0


GAN_SUITE = """
name = "gans"
dataset = "toy"
[train]
batch_size = 50
lr = 2e-4
schedule = "constant"
[budgets.smoke]
epochs = 2
k = 2
quality_samples = 100
[[runs]]
name = "gan"
model = "gan"
config = { base_channels = 8, latent = 8 }
"""


def test_a_gan_run_records_fid_over_training_in_its_curve_without_changing_the_training(
        tmp_path, monkeypatch, tiny_torchscript, toy):
    from genbench.context import RunContext, SuiteRequest
    from genbench.data import load_dataset
    from genbench.metrics import features, sample_quality
    from genbench.results.db import ResultsDB
    from genbench.runner import run_suite
    from genbench.scoring import load_for_scoring
    from genbench.suites import parse_suite

    net = features.resolve_feature_net(str(tiny_torchscript), toy)
    monkeypatch.setattr(sample_quality, "resolve_feature_net", lambda *a, **k: net)
    suite = parse_suite(GAN_SUITE, "test")
    db = ResultsDB(tmp_path / "db.sqlite")
    [outcome] = run_suite(SuiteRequest(suite, suite.budget("smoke")),
                          RunContext(db, tmp_path / "runs", torch.device("cpu"), progress=False,
                                     log=lambda *_: None))
    assert outcome.status == "done" and outcome.metrics["fid_ts_tiny"] > 0
    [run] = db.runs()
    curve = db.curve(run["id"])
    fids = [row["fid_ts_tiny@2000"] for row in curve]
    assert [row["epoch"] for row in curve] == [1, 2] and min(fids) > 0
    assert not (outcome.run_dir / "learning_curve.csv").exists()  # the curve goes to the database only

    unmonitored, meta = _run("gan", toy)  # the same run without the monitor ends with the same weights
    cfg = suite.train_config(suite.budget("smoke"), 0, suite.runs[0])
    train(unmonitored, load_dataset("toy"), cfg, tmp_path / "plain", {**meta, "config": run["config"]},
          progress=False)
    monitored = load_for_scoring(outcome.run_dir, None, {}, None).model
    for key, value in unmonitored.state_dict().items():
        torch.testing.assert_close(monitored.state_dict()[key], value, rtol=0, atol=0)
