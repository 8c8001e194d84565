"""`genbench score GEN.pt --generator`: a TorchScript generator z -> x scored for IS/FID/KID/PR."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from genbench.cli import main
from genbench.data import load_dataset
from genbench.generators import load_generator
from genbench.metrics import features as feats
from genbench.metrics.sample_quality import model_samples, score_images

LATENT = 4


class Generator(nn.Module):
    """z [B, 4] -> images [B, 1, side, side]: a Linear and ``squash`` (sigmoid: [0, 1], tanh: [-1, 1])."""

    def __init__(self, squash: str = "sigmoid", side: int = 8, scale: float = 1.0):
        super().__init__()
        self.linear, self.squash, self.side, self.scale = nn.Linear(LATENT, side * side), squash, side, scale

    def forward(self, z):
        x = self.linear(z) * self.scale
        x = torch.sigmoid(x) if self.squash == "sigmoid" else torch.tanh(x) if self.squash == "tanh" else x
        return x.view(-1, 1, self.side, self.side)


class SavingGenerator(nn.Module):
    """A generator whose forward writes a file (aten::save): refused before it is called."""

    def __init__(self, target: str):
        super().__init__()
        self.linear, self.target = nn.Linear(LATENT, 64), target

    def forward(self, z):
        torch.save(z, self.target)
        return torch.sigmoid(self.linear(z)).view(-1, 1, 8, 8)


def _script(module: nn.Module, path):
    torch.manual_seed(1)
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


@pytest.fixture
def scoring(tmp_path, monkeypatch, tiny_torchscript):
    """Flags scoring a generator on toy against 60 real images with the tiny feature net."""
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    return ["--generator", "--dataset", "toy", "--features", str(tiny_torchscript), "--n-reference", "60",
            "--quality-samples", "40", "--data-root", str(tmp_path / "data")]


def _score(capsys, path, *args):
    code = main(["score", str(path), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_generator_is_scored_from_the_cli_the_same_on_the_same_seed_as_by_the_python_api(
        tmp_path, capsys, scoring, tiny_torchscript):
    path = _script(Generator(), tmp_path / "gen.pt")
    code, out, _ = _score(capsys, path, *scoring, "--latent-dim", LATENT, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["n_samples"] == 40 and report["n_reference"] == 60 and report["seed"] == 0
    assert set(report["metrics"]) >= {f"{m}_ts_tiny" for m in ("is", "fid", "kid", "precision", "recall",
                                                                "density", "coverage")}
    again = json.loads(_score(capsys, path, *scoring, "--latent-dim", LATENT, "--json")[1])
    assert again["metrics"] == report["metrics"]

    toy = load_dataset("toy", str(tmp_path / "data"))
    generator = load_generator(path, "toy", LATENT)
    images = model_samples(generator, 40, seed=0)
    net = feats.resolve_feature_net(str(tiny_torchscript), toy)
    assert score_images(images, toy, net, "test", 60, tmp_path / "cache") == report["metrics"]


def test_a_tanh_generator_declared_minus_one_to_one_is_mapped_to_unit_range(tmp_path, capsys, scoring):
    path = _script(Generator("tanh"), tmp_path / "tanh.pt")
    code, out, err = _score(capsys, path, *scoring, "--latent-dim", LATENT, "--output-range=-1,1",
                            "--latent-dist", "uniform", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["output_range"] == "-1,1" and report["latent_dist"] == "uniform"
    assert report["metrics"]["fid_ts_tiny"] >= 0


@pytest.mark.parametrize("make, flags, message", [
    (lambda d: _script(Generator(side=7), d / "g.pt"), ["--latent-dim", LATENT],
     "genbench: samples are 1x7x7 images, data set toy has 1x8x8"),
    (lambda d: _script(Generator("none", scale=50.0), d / "g.pt"), ["--latent-dim", LATENT],
     "outside the declared --output-range 0,1"),
    (lambda d: _script(Generator("tanh"), d / "g.pt"), ["--latent-dim", LATENT],
     "outside the declared --output-range 0,1"),
    (lambda d: _script(Generator(), d / "g.pt"), [],
     "genbench: a generator needs --latent-dim D"),
    (lambda d: _script(Generator(), d / "g.pt"), ["--latent-dim", 3],
     "cannot map latents [2, 3] to images"),
    (lambda d: _script(SavingGenerator(str(d / "written")), d / "g.pt"), ["--latent-dim", LATENT],
     "refused, its forward calls aten::save (a TorchScript generator may call only aten and prim"),
])
def test_an_unusable_generator_is_one_line_exit_2(tmp_path, capsys, scoring, make, flags, message):
    code, out, err = _score(capsys, make(tmp_path), *scoring, *flags)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert message in err
    assert not (tmp_path / "written").exists()


def test_a_torch_export_program_is_refused_unloaded_because_its_loader_unpickles(tmp_path, capsys, scoring,
                                                                               monkeypatch):
    path = tmp_path / "gen.pt2"
    torch.export.save(torch.export.export(Generator().eval(), (torch.zeros(2, LATENT),)), str(path))
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: pytest.fail("torch.export.load was called"))
    code, _, err = _score(capsys, path, *scoring, "--latent-dim", LATENT)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "refused, a torch.export program: torch.export.load unpickles" in err


def test_generator_flags_without_generator_are_one_line(tmp_path, capsys):
    code, _, err = _score(capsys, tmp_path / "x.npz", "--latent-dim", LATENT, "--dataset", "toy")
    assert code == 2 and "apply only with --generator" in err
