"""``genbench score WEIGHTS --model-code FILE.py:NAME``: a model genbench never saw, scored by its
capabilities, with its contract checked on a tiny batch and every bad input one line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics.registry import evaluate
from genbench.suites import BUDGET_DEFAULTS
from genbench.user_models import build_user_model, import_user_code, load_user_weights
from tests.harness.test_cli import assert_one_line_error, run_cli

#: a VAE written elsewhere: its own key names (fc1..fc4), ELU activations, no genbench import
FOREIGN_VAE = '''
import torch
from torch import nn
from torch.nn.functional import elu
from torch.distributions import Bernoulli, Independent, Normal


class Plain(nn.Module):
    def __init__(self, hidden=16, latent=4):
        super().__init__()
        self.latent = latent
        self.fc1, self.fc2 = nn.Linear(64, hidden), nn.Linear(hidden, 2 * latent)
        self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, 64)


class ForeignVAE(Plain):
    def encode(self, x):
        mean, log_std = self.fc2(elu(self.fc1(x.flatten(1)))).chunk(2, dim=-1)
        return Independent(Normal(mean, log_std.exp()), 1)

    def prior(self):
        zero = torch.zeros(self.latent, device=self.fc1.weight.device)
        return Independent(Normal(zero, torch.ones_like(zero)), 1)

    def log_importance_weights(self, x, k):
        q = self.encode(x)
        z = q.rsample((k,))
        logits = self.fc4(elu(self.fc3(z)))
        log_px = Bernoulli(logits=logits).log_prob(x.flatten(1).expand(k, -1, -1)).sum(-1)
        return log_px + self.prior().log_prob(z) - q.log_prob(z)


class Transposed(ForeignVAE):
    def log_importance_weights(self, x, k):
        return super().log_importance_weights(x, k).T


class NaNWeights(ForeignVAE):
    def log_importance_weights(self, x, k):
        return super().log_importance_weights(x, k) * float("nan")


class BadLogProb(ForeignVAE):
    def log_prob(self, x):
        return torch.zeros(len(x), 1)


class WrongSamples(ForeignVAE):
    def sample(self, n):
        return torch.rand(n, 64)


class BrightSamples(ForeignVAE):
    def sample(self, n):
        return torch.full((n, 1, 8, 8), 2.0)


def broken(**kwargs):
    raise ValueError("no such configuration")
'''

ARGS = ("--dataset", "toy", "--k", "4", "--n-test", "40", "--json")


class _Evil:
    """A pickle that would call a function when loaded: weights_only refuses it."""

    def __reduce__(self):
        return (print, ("this ran",))


@pytest.fixture
def foreign(tmp_path):
    """(model file, weights .pt) of a foreign VAE: saved as {'state_dict': ..., 'epoch': 3}."""
    code = tmp_path / "foreign_vae.py"
    code.write_text(FOREIGN_VAE)
    torch.manual_seed(1)
    model = build_user_model(import_user_code(str(code)), str(code), "ForeignVAE", {})
    weights = tmp_path / "vae.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, weights)
    return code, weights, model.state_dict()


def score(capsys, weights, code, name="ForeignVAE", *extra):
    code_, out, err = run_cli(capsys, "score", str(weights), "--model-code", f"{code}:{name}", *ARGS, *extra)
    return code_, (json.loads(out) if code_ == 0 else None), err


def test_foreign_vae_scores_like_the_python_api(foreign, capsys):
    code, weights, _ = foreign
    rc, report, err = score(capsys, weights, code)
    assert rc == 0, err
    model = build_user_model(import_user_code(str(code)), str(code), "ForeignVAE", {})
    load_user_weights(model, weights, None)
    settings = replace(BUDGET_DEFAULTS["short"].eval, k=4, n_test=40)
    dataset = load_dataset("toy", None, torch.device("cpu"))
    torch.manual_seed(settings.seed)
    expected = evaluate(model, dataset.eval_tensor("test"), settings, dataset=dataset)
    assert report["metrics"]["nll"] == expected["nll"]  # exactly: the same seeded RNG, the same points
    assert {"nll", "bits_per_dim", "elbo", "active_units"} <= set(report["metrics"])
    assert "Sampler.sample" in report["not_applicable"]["sample_quality"]
    assert "ground-truth" in report["not_applicable"]["mig"]


def test_data_parallel_prefix_and_a_named_state_key(foreign, capsys, tmp_path):
    code, weights, state = foreign
    _, reference, _ = score(capsys, weights, code)
    prefixed = tmp_path / "dp.pt"
    torch.save({"net": {f"module.{k}": v for k, v in state.items()}, "optimizer": {"lr": 1e-3}}, prefixed)
    rc, report, err = score(capsys, prefixed, code)
    assert rc == 0, err
    assert report["metrics"]["nll"] == reference["metrics"]["nll"]
    two = tmp_path / "two.pt"
    torch.save({"ema": state, "online": state}, two)
    rc, _, err = score(capsys, two, code)
    assert_one_line_error(rc, err, "several dicts of tensors", "--state-key")
    rc, report, err = score(capsys, two, code, "ForeignVAE", "--state-key", "ema")
    assert rc == 0 and report["metrics"]["nll"] == reference["metrics"]["nll"], err


def test_an_installed_module_by_name(foreign, capsys, monkeypatch):
    code, weights, _ = foreign
    monkeypatch.syspath_prepend(str(code.parent))
    rc, out, err = run_cli(capsys, "score", str(weights), "--model-code", "foreign_vae:ForeignVAE",
                           "--init", "hidden=16", "latent=4", *ARGS)
    assert rc == 0, err
    report = json.loads(out)
    assert report["config"] == {"hidden": 16, "latent": 4} and report["metrics"]["nll"] > 0


@pytest.mark.parametrize("name, fragments", [
    ("Transposed", ["Transposed.log_importance_weights(x, k=3) on 2 points gave shape [2, 3]",
                    "expected [k, B] = [3, 2]"]),
    ("NaNWeights", ["NaNWeights.log_importance_weights", "NaN or infinite"]),
    ("BadLogProb", ["BadLogProb.log_prob(x) on 2 points gave shape [2, 1]", "expected [B] = [2]"]),
    ("WrongSamples", ["WrongSamples.sample(2) gave shape [2, 64]", "[2, 1, 8, 8]"]),
    ("BrightSamples", ["BrightSamples.sample(2) gave values in [2, 2], outside [0, 1]"]),
    ("Plain", ["Plain implements none of genbench's capabilities", "log_importance_weights()",
               "log_prob() (ExactLikelihood)", "sample() (Sampler)"]),
    ("Missing", ["no 'Missing' in it", "ForeignVAE"]),
    ("broken", ["broken() raised ValueError: no such configuration"]),
])
def test_a_broken_contract_is_one_line_before_the_evaluation(foreign, capsys, name, fragments):
    code, weights, _ = foreign
    rc, _, err = score(capsys, weights, code, name)
    assert_one_line_error(rc, err, *fragments)


def test_bad_inputs_are_one_line(foreign, capsys, tmp_path):
    code, weights, state = foreign
    not_python = tmp_path / "notes.py"
    not_python.write_text("def model(:\n")
    rc, _, err = score(capsys, weights, not_python)
    assert_one_line_error(rc, err, "not Python (syntax error at line 1")
    rc, _, err = score(capsys, weights, weights)  # the weights given as the code
    assert_one_line_error(rc, err, "--model-code", "not Python")
    rc, _, err = score(capsys, weights, "no_such_module_of_genbench")
    assert_one_line_error(rc, err, "importing it raised ModuleNotFoundError")
    rc, _, err = score(capsys, weights, code, "ForeignVAE", "--init", "latent=four")
    assert_one_line_error(rc, err, "--init latent='four' is not a Python literal")
    rc, _, err = score(capsys, weights, code, "ForeignVAE", "--init", "latent=3")
    assert_one_line_error(rc, err, "key 'fc2.weight' has shape [8, 16]", "expects [6, 16]")
    rc, _, err = run_cli(capsys, "score", str(weights), "--model-code", f"{code}:ForeignVAE")
    assert_one_line_error(rc, err, "--model-code needs --dataset NAME")
    rc, _, err = run_cli(capsys, "score", str(weights), "--model", "vae", "--init", "latent=3")
    assert_one_line_error(rc, err, "--init and --state-key apply only with --model-code")
    rc, _, err = score(capsys, weights, code, "ForeignVAE", "--model", "vae")
    assert_one_line_error(rc, err, "--model and --set do not apply")
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": state, "hook": _Evil()}, evil)
    rc, _, err = score(capsys, evil, code)
    assert_one_line_error(rc, err, "refused, not a weights-only state dict", "never unpickles code")
    extra = tmp_path / "extra.pt"
    torch.save({**state, "fc5.weight": torch.zeros(1)}, extra)
    rc, _, err = score(capsys, extra, code)
    assert_one_line_error(rc, err, "unexpected key 'fc5.weight' for ForeignVAE")


def test_help_says_the_code_runs(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "score", "--help")
    assert "RUNS THAT CODE" in capsys.readouterr().out
    assert "--model-code" in Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
