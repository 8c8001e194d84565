"""diffusers' DDPM/DDIM models scored by genbench: the adapter's schedule is the scheduler's own on every
step, its noise prediction the UNet at diffusers' timestep, a folder save_pretrained wrote scores
through ``genbench score --from diffusers`` exactly as the same network wrapped in the zoo's ddpm
(bound and ODE bits/dim), and a folder genbench cannot read safely or does not score is one line."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from genbench.data import load_dataset
from genbench.metrics.diffusion_bound import diffusion_bound
from genbench.metrics.probability_flow import probability_flow_discrete_nll
from genbench.metrics.registry import evaluate
from genbench.suites import BUDGET_DEFAULTS
from tests.conftest import REAL_DATA, has_real_mnist
from tests.harness.test_cli import assert_one_line_error, run_cli
from zoo.ddpm import DDPM, DDPMConfig

diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed (pip install "
                                "'genbench[diffusers]')")
from genbench.adapters.diffusers import (  # noqa: E402  (needs diffusers)
    BETA_SCHEDULES,
    MAX_CONFIG_BYTES,
    DiffusersDDPM,
    SchedulerSpec,
    load_diffusers_folder,
)

#: the scheduler's steps in the scored folders: few, so the contract check's sampling stays fast
STEPS = 100


def tiny_unet(size: int) -> nn.Module:
    """A random UNet2DModel of 1 x size x size images (about 40k parameters). Its time embedding keeps only
    the slow sinusoids of the timestep: a random network passes the fastest (1 radian per step) straight
    through, a velocity field that oscillates hundreds of times in t and needs 1000+ ODE evaluations, where a
    trained one is smooth in t."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4, add_attention=False,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))
    half = unet.config.block_out_channels[0] // 2
    with torch.no_grad():  # [cos | sin] of frequencies 1, 0.1, 0.01, 0.001 per step: drop 1 and 0.1
        unet.time_embedding.linear_1.weight[:, [0, 1, half, half + 1]] = 0
    return unet.eval()


def save_pipeline(folder, size: int = 8, scheduler: str = "DDPMScheduler", **scheduler_config):
    """A pipeline folder as a user's save_pretrained writes it (safetensors weights); the UNet."""
    unet = tiny_unet(size)
    make = getattr(diffusers, scheduler)(num_train_timesteps=STEPS, **scheduler_config)
    pipeline = diffusers.DDPMPipeline if scheduler == "DDPMScheduler" else diffusers.DDIMPipeline
    pipeline(unet=unet, scheduler=make).save_pretrained(str(folder), safe_serialization=True)
    return unet


class UNetAtTimesteps(nn.Module):
    """The diffusers UNet as the zoo ddpm's network: net(x_t, t) is the UNet at timestep t (T - 1)."""

    def __init__(self, unet: nn.Module, steps: int):
        super().__init__()
        self.unet, self.steps = unet, steps

    def forward(self, x_t, t):
        return self.unet(x_t, t * (self.steps - 1)).sample


def zoo_ddpm(unet: nn.Module, size: int) -> DDPM:
    """genbench's own ddpm (T = STEPS, diffusers' default betas) with the diffusers UNet as its network."""
    model = DDPM(DDPMConfig(timesteps=STEPS, beta_start=1e-4, beta_end=0.02, width=4), (1, size, size))
    model.net = UNetAtTimesteps(unet, STEPS)
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions on one thread: on a busy machine a second one only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "ddpm"
    return path, save_pipeline(path)


# --- the conventions, against diffusers' own scheduler and UNet ---------------------------------------------

@pytest.mark.parametrize("schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
def test_the_schedule_is_the_schedulers_on_every_step(schedule, scheduler):
    theirs = getattr(diffusers, scheduler)(beta_schedule=schedule, beta_start=1e-4, beta_end=0.02)
    spec = SchedulerSpec.of(scheduler, {"beta_schedule": schedule, "beta_start": 1e-4, "beta_end": 0.02})
    assert torch.allclose(torch.from_numpy(spec.betas).float(), theirs.betas, rtol=1e-5, atol=1e-9)
    model = DiffusersDDPM(nn.Identity(), spec, lambda: None, (1, 8, 8))
    steps = torch.arange(1000, dtype=torch.float64)
    alpha, sigma = model.noise_schedule(steps / 999)
    alpha_bar = theirs.alphas_cumprod.double()
    assert torch.allclose(alpha.square(), alpha_bar, rtol=2e-6)  # diffusers' own cumprod is float32
    assert torch.allclose(sigma.square(), 1 - alpha_bar, atol=2e-7)  # 1 - float32's alpha-bar: its eps
    assert math.isclose(sigma[0].item() ** 2, spec.betas[0], rel_tol=1e-12)  # sigma_0^2 = beta_1 exactly
    # smooth between steps: within its neighbours, and differentiable in t for the ODE
    t = ((steps[:-1] + 0.5) / 999).requires_grad_(True)
    alpha_mid, _ = model.noise_schedule(t)
    assert bool(((alpha_mid <= alpha[:-1]) & (alpha_mid >= alpha[1:])).all())
    (slope,) = torch.autograd.grad(alpha_mid.sum(), t)
    assert bool((slope < 0).all())


def test_predict_noise_is_the_unet_at_diffusers_timestep():
    unet = tiny_unet(8)
    spec = SchedulerSpec.of("DDPMScheduler", {"num_train_timesteps": STEPS})
    model = DiffusersDDPM(unet, spec, lambda: None, (1, 8, 8))
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        for step in (0, 37, STEPS - 1):
            ours = model.predict_noise(x, torch.full((3,), step / (STEPS - 1)))
            assert torch.allclose(ours, unet(x, step).sample, atol=1e-5)


def test_the_decoder_is_ho_et_als_with_std_sqrt_beta_1():
    """The one discretised decoder (genbench.core.discretized, the zoo ddpm's too) at z_0's mean."""
    import numpy as np

    from genbench.core.discretized import discretized_gaussian_log_prob

    model = DiffusersDDPM(tiny_unet(8), SchedulerSpec("ddpm", np.linspace(1e-4, 0.02, STEPS), STEPS),
                          lambda: None, (1, 8, 8))
    torch.manual_seed(1)
    x = torch.randint(0, 256, (4, 1, 8, 8)).float() * 2 / 255 - 1
    z_0 = x + 0.03 * torch.randn_like(x)
    alpha_0, sigma_0 = (v.view(-1, 1, 1, 1) for v in model.noise_schedule(torch.zeros(4)))
    with torch.no_grad():
        mean = (z_0 - sigma_0 * model.predict_noise(z_0, torch.zeros(4))) / alpha_0
    expected = discretized_gaussian_log_prob(x, mean, 1e-4 ** 0.5)
    with torch.no_grad():
        assert torch.allclose(model.decoder_log_prob(x, z_0), expected, rtol=1e-5)


def test_bound_and_ode_agree_with_the_zoo_ddpm_on_the_same_weights(folder):
    path, unet = folder
    ours, theirs = load_diffusers_folder(path, "toy").model, zoo_ddpm(unet, 8)
    torch.manual_seed(2)
    x = torch.randint(0, 256, (3, 1, 8, 8)).float() / 255
    y = 2 * x - 1
    bounds = [diffusion_bound(m, y, steps=m.time_steps, time_samples=STEPS,
                              generator=torch.Generator().manual_seed(3)) for m in (ours, theirs)]
    assert ours.time_steps == theirs.time_steps == STEPS - 1
    for part in ("prior", "diffusion", "reconstruction"):
        assert torch.allclose(getattr(bounds[0], part), getattr(bounds[1], part), rtol=1e-4), part
    odes = []
    for m in (ours, theirs):
        torch.manual_seed(4)
        odes.append(probability_flow_discrete_nll(m, x, levels=256))
    assert torch.allclose(odes[0].nll, odes[1].nll, rtol=1e-4)  # nats of 64 dims: solver tolerance 1e-5
    assert 0 < odes[0].nfe < 500


# --- the command line ---------------------------------------------------------------------------------------

def score(capsys, path, *extra):
    rc, out, err = run_cli(capsys, "score", str(path), "--from", "diffusers", *extra)
    return rc, (json.loads(out) if rc == 0 else None), err


def zoo_scores(unet, size, dataset, n_test):
    """The zoo ddpm around the same UNet, scored by the Python API with the CLI's seeds and points."""
    settings = replace(BUDGET_DEFAULTS["short"].eval, n_test=n_test)
    torch.manual_seed(settings.seed)
    return evaluate(zoo_ddpm(unet, size), dataset.eval_tensor("test"), settings, dataset=dataset,
                    only=["diffusion_ode", "diffusion_bound"])


def assert_same_scores(report, expected):
    metrics = report["metrics"]
    for key in ("ode_bits_per_dim", "bound_bits_per_dim", "bound_steps"):
        assert math.isclose(metrics[key], expected[key], rel_tol=1e-4), (key, metrics[key], expected[key])
    assert metrics["sample_steps"] == STEPS and metrics["ode_nfe"] > 0


def test_a_saved_folder_scores_as_the_zoo_ddpm_from_the_cli(folder, capsys):
    path, unet = folder
    rc, report, err = score(capsys, path, "--dataset", "toy", "--n-test", "4", "--json")
    assert rc == 0, err
    assert report["model"] == "diffusers.DDPMScheduler" and report["config"]["num_train_timesteps"] == STEPS
    assert_same_scores(report, zoo_scores(unet, 8, load_dataset("toy", None, torch.device("cpu")), 4))


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.skipif(not has_real_mnist(), reason="GENBENCH_DATA has no MNIST")
def test_an_mnist8_model_through_the_cli(tmp_path, capsys):
    unet = save_pipeline(tmp_path / "ddpm28", size=28)
    rc, report, err = score(capsys, tmp_path / "ddpm28", "--dataset", "mnist8", "--n-test", "2", "--json",
                            "--data-root", str(REAL_DATA))
    assert rc == 0, err
    assert report["dataset"] == "mnist8"
    mnist8 = load_dataset("mnist8", str(REAL_DATA), torch.device("cpu"))
    assert_same_scores(report, zoo_scores(unet, 28, mnist8, 2))


def test_a_ddim_folder_samples_with_its_pipelines_steps(tmp_path):
    save_pipeline(tmp_path / "ddim", scheduler="DDIMScheduler")
    model = load_diffusers_folder(tmp_path / "ddim", "toy").model
    assert model.sample_steps == 50
    samples = model.sample(2)
    assert samples.shape == (2, 1, 8, 8) and bool(((samples >= 0) & (samples <= 1)).all())
    assert torch.equal(samples, (samples * 255).round() / 255)  # 8-bit levels


# --- refusals: one line, exit 2 -----------------------------------------------------------------------------

def edit(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_pickled_weights_are_refused_unread(folder, capsys):
    path, unet = folder
    torch.save(unet.state_dict(), path / "unet" / "diffusion_pytorch_model.bin")
    rc, _, err = score(capsys, path, "--dataset", "toy")
    assert_one_line_error(rc, err, "diffusion_pytorch_model.bin: refused, a pickle", "never unpickles",
                          "safe_serialization=True")


@pytest.mark.parametrize("where, changes, fragments", [
    ("unet/config.json", {"_class_name": "UNet2DConditionModel"},
     ["_class_name is \"UNet2DConditionModel\"; genbench reads UNet2DModel"]),
    ("unet/config.json", {"down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"]},
     ["down_block_types is", "expected a list of 1 to 8 values, each one of \"DownBlock2D\""]),
    ("unet/config.json", {"block_out_channels": [8, 10**6]}, ["an integer in [1, 4096]"]),
    ("unet/config.json", {"time_embedding_type": "fourier"}, ["only a positional time embedding"]),
    ("unet/config.json", {"sample_size": 16},
     ["takes images [1, 16, 16], but data set toy has shape [1, 8, 8]"]),
    ("unet/config.json", {"pretrained_model_name_or_path": "/etc"},
     ["unknown field \"pretrained_model_name_or_"]),
    ("unet/config.json", {"norm_num_groups": 3}, ["UNet2DModel rejects this config"]),
    ("scheduler/scheduler_config.json", {"prediction_type": "v_prediction"},
     ["prediction_type is \"v_prediction\"", "eps-prediction"]),
    ("scheduler/scheduler_config.json", {"_class_name": "EulerDiscreteScheduler"},
     ["genbench reads DDPMScheduler, DDIMScheduler"]),
    ("scheduler/scheduler_config.json", {"beta_schedule": "sigmoid"}, ["noise schedule of linear"]),
    ("scheduler/scheduler_config.json", {"variance_type": "learned_range"},
     ["variance_type is \"learned_range\""]),
    ("scheduler/scheduler_config.json", {"rescale_betas_zero_snr": True}, ["zero terminal SNR"]),
    ("model_index.json", {"unet": ["my_module", "MyUNet"]}, ["components", "genbench reads a DDPMPipeline"]),
])
def test_a_config_genbench_does_not_score_is_one_line(folder, capsys, where, changes, fragments):
    path, _ = folder
    edit(path / where, **changes)
    rc, _, err = score(capsys, path, "--dataset", "toy")
    assert_one_line_error(rc, err, *fragments)


@pytest.mark.parametrize("text, fragment", [
    (" " * (MAX_CONFIG_BYTES + 1) + "{}", "over the limit of 65,536 for a config"),
    ('{"_class_name": "UNet2DModel", "dropout": NaN}', "not strict JSON (NaN is not JSON)"),
    ('{"in_channels": 1, "in_channels": 3}', "key 'in_channels' appears twice"),
    ("[" * 30000 + "]" * 30000, "not strict JSON"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_malformed_config_is_one_line(folder, capsys, text, fragment):
    path, _ = folder
    (path / "unet" / "config.json").write_text(text)
    rc, _, err = score(capsys, path, "--dataset", "toy")
    assert_one_line_error(rc, err, "unet/config.json", fragment)


def test_bad_inputs_are_one_line(folder, capsys):
    path, unet = folder
    rc, _, err = score(capsys, path)
    assert_one_line_error(rc, err, "--from diffusers needs --dataset NAME")
    rc, _, err = score(capsys, path / "unet" / "config.json", "--dataset", "toy")
    assert_one_line_error(rc, err, "expects the folder a pipeline's save_pretrained wrote")
    from safetensors.torch import save_file

    state = {k: v for k, v in unet.state_dict().items() if k != "conv_out.bias"}
    save_file(state, str(path / "unet" / "diffusion_pytorch_model.safetensors"))
    rc, _, err = score(capsys, path, "--dataset", "toy")
    assert_one_line_error(rc, err, "missing key 'conv_out.bias' for diffusers UNet2DModel")
    (path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    rc, _, err = score(capsys, path, "--dataset", "toy")
    assert_one_line_error(rc, err, "diffusion_pytorch_model.safetensors: missing", "safe_serialization=True")
