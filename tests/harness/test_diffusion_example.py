"""A user's own diffusion model (examples/diffusion/) scored end to end as docs/diffusion.md shows:
trained a few steps by its make_weights.py, saved as safetensors, scored by ``genbench score
--model-code`` with the ODE bits/dim, the bound bits/dim (it declares a decoder) and its sampler's
steps; a broken contract is one line, found on two points before the evaluation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from genbench.cli import main
from tests.harness.test_cli import assert_one_line_error, run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "diffusion"
#: the toy data set's 8 x 8 images
INIT = ("--init", "image_size=8", "hidden=8", "sample_steps=5")


@pytest.fixture
def make_weights(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import make_weights

    yield make_weights
    for name in ("make_weights", "my_diffusion"):
        sys.modules.pop(name, None)


@pytest.fixture
def weights(toy, tmp_path, make_weights) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = make_weights.train_diffusion(toy.eval_tensor("train"), steps=20, image_size=8, hidden=8)
    torch.set_num_threads(threads)
    path = tmp_path / "diffusion.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def test_the_diffusion_example_is_scored_by_its_capabilities(weights, capsys):
    code = main(["score", str(weights), "--model-code", f"{EXAMPLE / 'my_diffusion.py'}:Net", *INIT,
                 "--dataset", "toy", "--n-test", "6", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    for key in ("ode_bits_per_dim", "bound_bits_per_dim"):
        assert 0 < metrics[key] < 30, (key, metrics[key])
    assert metrics["ode_nfe"] > 0 and metrics["sample_steps"] == 5
    assert metrics["bound_steps"] == 0  # no time_steps: the continuous-time bound


BROKEN = '''
import torch
from my_diffusion import Net


class Transposed(Net):
    def predict_noise(self, x_t, t):
        return super().predict_noise(x_t, t).transpose(2, 3)[:, :, :, :-1]


class NoNoiseAtTheEnd(Net):
    def noise_schedule(self, t):
        alpha, sigma = super().noise_schedule(t)
        return alpha, sigma * (t < 1)
'''


@pytest.mark.parametrize("name, fragment", [("Transposed", "predict_noise(x_t, t = 0) gave shape"),
                                            ("NoNoiseAtTheEnd", "sigma_t must be > 0")])
def test_a_broken_diffusion_contract_is_one_line(weights, tmp_path, capsys, make_weights, name, fragment):
    code_file = tmp_path / "broken.py"
    code_file.write_text(BROKEN)
    code, _, err = run_cli(capsys, "score", str(weights), "--model-code", f"{code_file}:{name}", *INIT,
                           "--dataset", "toy", "--n-test", "6")
    assert_one_line_error(code, err, fragment)


def test_the_ode_flags_set_its_points_and_tolerance(weights, capsys):
    args = ["score", str(weights), "--model-code", f"{EXAMPLE / 'my_diffusion.py'}:Net", *INIT,
            "--dataset", "toy", "--n-test", "6", "--json"]
    results = {}
    for tolerance in ("1e-2", "1e-5"):
        code = main([*args, "--ode-points", "2", "--ode-tolerance", tolerance])
        out, err = capsys.readouterr()
        assert code == 0, err
        results[tolerance] = json.loads(out)
    for tolerance, result in results.items():
        assert result["settings"]["ode_points"] == 2
        assert result["settings"]["ode_tolerance"] == float(tolerance)
    # a tighter solve takes more network evaluations
    assert results["1e-5"]["metrics"]["ode_nfe"] > results["1e-2"]["metrics"]["ode_nfe"]
    code, _, err = run_cli(capsys, "score", str(weights), "--ode-tolerance", "2")
    assert_one_line_error(code, err, "--ode-tolerance")
