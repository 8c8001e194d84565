"""The examples of docs/scoring.md ("Score your own model") run as written: each model file trained
a few steps by examples/score_your_own/make_weights.py on the toy set, saved as that script saves it,
and scored through the CLI with the command docs/scoring.md gives (small settings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from genbench.cli import main
from genbench.metrics import features as feats

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "score_your_own"


@pytest.fixture
def make_weights(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import make_weights

    yield make_weights
    for name in ("make_weights", "my_vae", "my_flow", "my_generator"):
        sys.modules.pop(name, None)


def _score(capsys, *args) -> dict:
    code = main(["score", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_the_vae_example_is_scored_from_a_saved_training_dict(toy, tmp_path, capsys, make_weights):
    vae = make_weights.train_vae(toy.eval_tensor("train"), steps=30)
    torch.save({"state_dict": vae.state_dict(), "epoch": 1}, tmp_path / "vae.pt")
    report = _score(capsys, tmp_path / "vae.pt", "--model-code", f"{EXAMPLES / 'my_vae.py'}:MyVAE",
                    "--init", "pixels=64", "--dataset", "toy", "--k", "5", "--n-test", "20")
    assert {"nll", "elbo", "active_units", "bits_per_dim"} <= set(report["metrics"])
    assert report["metrics"]["nll"] <= -report["metrics"]["elbo"] + 1.0  # -L_5 is below the ELBO's nats


def test_the_flow_example_has_an_exact_likelihood_and_samples(toy, tmp_path, capsys, make_weights,
                                                              monkeypatch, tiny_torchscript):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    flow = make_weights.train_flow(toy.eval_tensor("train"), steps=20)
    save_file(flow.state_dict(), str(tmp_path / "flow.safetensors"))
    report = _score(capsys, tmp_path / "flow.safetensors", "--model-code",
                    f"{EXAMPLES / 'my_flow.py'}:MyFlow", "--init", "pixels=64", "--dataset", "toy",
                    "--n-test", "20", "--features", tiny_torchscript, "--quality-samples", "40",
                    "--n-reference", "60")
    metrics = report["metrics"]
    assert metrics["bits_per_dim"] > 0 and "fid_ts_tiny" in metrics and "elbo" not in metrics
    assert "LatentVariableModel.encode" in report["not_applicable"]["elbo"]


def test_the_generator_example_is_scored_as_torchscript(toy, tmp_path, capsys, make_weights, monkeypatch,
                                                        tiny_torchscript):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    generator = make_weights.train_gan(toy.eval_tensor("train"), steps=20)
    torch.jit.script(generator.eval()).save(str(tmp_path / "generator.pt"))
    report = _score(capsys, tmp_path / "generator.pt", "--generator", "--latent-dim", "16", "--dataset",
                    "toy", "--features", tiny_torchscript, "--quality-samples", "40", "--n-reference", "60")
    assert {"fid_ts_tiny", "recall_ts_tiny"} <= set(report["metrics"])
