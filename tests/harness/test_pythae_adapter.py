"""pythae's VAEs scored by genbench: ``wrap``'s NLL is pythae's own ``get_nll`` within Monte Carlo
error, a folder ``model.save`` wrote scores through ``genbench score --from pythae`` exactly as through
the Python API, and a folder genbench cannot read safely, or that does not fit the data, is one line."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from genbench.core.errors import GenbenchError
from genbench.data import load_dataset
from genbench.metrics.likelihood import nll_per_example
from genbench.metrics.registry import evaluate
from genbench.suites import BUDGET_DEFAULTS
from genbench.user_models import check_contract
from tests.conftest import REAL_DATA, has_real_mnist
from tests.harness.test_cli import assert_one_line_error, run_cli

pythae_models = pytest.importorskip("pythae.models")
from genbench.adapters.pythae import SUPPORTED, load_pythae_folder, wrap  # noqa: E402  (needs pythae)

#: the toy data set's shape: pythae's default MLPs take any input_dim
TOY = (1, 8, 8)
#: importance samples, test points and repeats of the agreement check
K, POINTS, REPEATS = 200, 20, 5


class _Evil:
    """A pickle that would call a function when loaded: torch's weights-only reader refuses it."""

    def __reduce__(self):
        return (print, ("this ran",))


@pytest.fixture(scope="module")
def toy_data():
    return load_dataset("toy", None, torch.device("cpu"))


def trained(loss: str, data, shape=TOY, steps: int = 100):
    """A pythae VAE trained a few steps with pythae's own loss, so q(z|x) and r(z) are not their init."""
    torch.manual_seed(0)
    config = pythae_models.VAEConfig(input_dim=shape, latent_dim=4, reconstruction_loss=loss)
    model = pythae_models.VAE(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = data.eval_tensor("train")
    for _ in range(steps):
        loss_value = model({"data": train[torch.randint(len(train), (64,))]}).loss
        optimizer.zero_grad()
        loss_value.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_nll_agrees_with_pythae_get_nll(loss, toy_data):
    model = trained(loss, toy_data)
    x = toy_data.eval_tensor("test")[:POINTS]
    ours = torch.stack([nll_per_example(wrap(model), x, k=K) for _ in range(REPEATS)])
    # get_nll returns the mean log-likelihood; with batch_size >= n_samples it draws batch_size samples
    theirs = -model.get_nll(x, n_samples=K, batch_size=K)
    # two independent estimates of the same mean of -L_K: the s.e. of their difference, from ours
    se = math.sqrt(2 * ours.var(0).sum().item()) / POINTS
    assert abs(ours[0].mean().item() - theirs) < 4 * se + 1e-3, (ours[0].mean().item(), theirs, se)


def test_a_gaussian_likelihood_is_a_density_without_bits_per_dim(toy_data):
    settings = replace(BUDGET_DEFAULTS["short"].eval, k=4, n_test=20)
    test = toy_data.eval_tensor("test")
    bce, mse = (wrap(trained(loss, toy_data, steps=1)) for loss in ("bce", "mse"))
    assert not bce.log_prob_is_density and mse.log_prob_is_density
    assert "bits_per_dim" in evaluate(bce, test, settings, only=["nll"])
    assert set(evaluate(mse, test, settings, only=["nll"])) == {"density_nll", "density_nll_se"}


@pytest.mark.parametrize("name", SUPPORTED)
def test_every_supported_model_keeps_the_contract(name, toy_data):
    config = getattr(pythae_models, f"{name}Config")(input_dim=TOY, latent_dim=3, reconstruction_loss="bce")
    model = wrap(getattr(pythae_models, name)(config))
    check_contract(model, toy_data.eval_tensor("test"), name)
    assert set(model.state_dict()) == set(getattr(pythae_models, name)(config).state_dict())  # pythae's keys


def test_a_model_of_another_likelihood_is_refused():
    model = pythae_models.AE(pythae_models.AEConfig(input_dim=TOY, latent_dim=2))
    with pytest.raises(GenbenchError, match="pythae model AE is not supported.*VAE, BetaVAE, IWAE"):
        wrap(model)


@pytest.fixture
def saved(tmp_path, toy_data):
    """(folder model.save wrote, the model) of a VAE trained a few steps on the toy data."""
    model = trained("bce", toy_data, steps=20)
    folder = tmp_path / "pythae_vae"
    model.save(str(folder))
    return folder, model


def score(capsys, folder, *extra):
    rc, out, err = run_cli(capsys, "score", str(folder), "--from", "pythae", *extra)
    return rc, (json.loads(out) if rc == 0 else None), err


ARGS = ("--dataset", "toy", "--k", "5", "--n-test", "20", "--json")


def test_a_saved_folder_scores_like_the_python_api(saved, capsys, toy_data):
    folder, model = saved
    rc, report, err = score(capsys, folder, *ARGS)
    assert rc == 0, err
    assert report["model"] == "pythae.VAE" and report["config"]["latent_dim"] == 4
    settings = replace(BUDGET_DEFAULTS["short"].eval, k=5, n_test=20)
    torch.manual_seed(settings.seed)
    expected = evaluate(wrap(model), toy_data.eval_tensor("test"), settings, dataset=toy_data)
    assert report["metrics"]["nll"] == expected["nll"]  # exactly: the same weights, seeded RNG and points
    assert {"nll", "bits_per_dim", "elbo", "active_units"} <= set(report["metrics"])
    loaded = load_pythae_folder(folder, "toy")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.model.state_dict().items())


@pytest.mark.real_data
@pytest.mark.skipif(not (has_real_mnist() and (REAL_DATA / "binarized_mnist").exists()),
                    reason="GENBENCH_DATA has no binarized MNIST")
def test_a_binarized_mnist_model_through_the_cli(tmp_path, capsys):
    torch.manual_seed(0)
    model = pythae_models.VAE(pythae_models.VAEConfig(input_dim=(1, 28, 28), latent_dim=4,
                                                      reconstruction_loss="bce"))
    model.save(str(tmp_path / "vae"))
    rc, report, err = score(capsys, tmp_path / "vae", "--dataset", "binarized_mnist", "--k", "5",
                            "--n-test", "20", "--json", "--data-root", str(REAL_DATA))
    assert rc == 0, err
    assert report["dataset"] == "binarized_mnist" and report["metrics"]["nll"] > 0


def test_pickled_custom_networks_are_refused_unread(saved, capsys):
    folder, _ = saved
    import cloudpickle

    (folder / "encoder.pkl").write_bytes(cloudpickle.dumps(nn.Linear(2, 2)))
    rc, _, err = score(capsys, folder, *ARGS)
    assert_one_line_error(rc, err, "refused, it holds encoder.pkl", "never unpickles", "--model-code")


def test_a_model_pt_carrying_code_is_refused(saved, capsys):
    folder, model = saved
    torch.save({"model_state_dict": model.state_dict(), "hook": _Evil()}, folder / "model.pt")
    rc, _, err = score(capsys, folder, *ARGS)
    assert_one_line_error(rc, err, "refused, not a weights-only state dict", "never unpickles code")
    assert "this ran" not in err


def edit_config(folder, **changes):
    path = folder / "model_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("changes, fragments", [
    ({"name": "VAMPConfig"}, ["name is 'VAMPConfig', not a supported pythae model config", "VAEConfig",
                              "the models VAE, BetaVAE, IWAE"]),
    ({"latent_dim": 10**9}, ["latent_dim is 1000000000, expected an integer in [1, 4096]"]),
    ({"latent_dim": 5}, ["key 'decoder.layers.0.0.weight' has shape [512, 4]", "expects [512, 5]"]),
    ({"reconstruction_loss": "msssim"}, ["reconstruction_loss is 'msssim'; supported: bce, mse"]),
    ({"uses_default_decoder": False}, ["uses a custom decoder", "--model-code"]),
    ({"beta": 2.0}, ["unknown field 'beta' for pythae's VAEConfig", "latent_dim"]),
    ({"name": "BetaVAEConfig", "beta": "high"}, ["not a valid pythae BetaVAEConfig", "beta"]),
])
def test_a_bad_model_config_is_one_line(saved, capsys, changes, fragments):
    folder, _ = saved
    edit_config(folder, **changes)
    rc, _, err = score(capsys, folder, *ARGS)
    assert_one_line_error(rc, err, *fragments)


def test_bad_inputs_are_one_line(saved, capsys):
    folder, model = saved
    rc, _, err = score(capsys, folder, "--dataset", "mnist")  # checked before any data is read
    assert_one_line_error(rc, err, "input_dim is [1, 8, 8], but data set mnist has shape [1, 28, 28]")
    rc, _, err = score(capsys, folder)
    assert_one_line_error(rc, err, "--from pythae needs --dataset NAME")
    rc, _, err = score(capsys, folder, *ARGS, "--model", "vae")
    assert_one_line_error(rc, err, "--from pythae builds the model from its folder", "do not apply")
    rc, _, err = score(capsys, folder / "model.pt", *ARGS)
    assert_one_line_error(rc, err, "expects the folder pythae's model.save wrote")
    state = model.state_dict()
    torch.save({"model_state_dict": {k: v for k, v in state.items() if k != "encoder.log_var.bias"}},
               folder / "model.pt")
    rc, _, err = score(capsys, folder, *ARGS)
    assert_one_line_error(rc, err, "missing key 'encoder.log_var.bias' for pythae VAE")
    (folder / "model_config.json").write_text("{not json")
    rc, _, err = score(capsys, folder, *ARGS)
    assert_one_line_error(rc, err, "model_config.json: not JSON")
