"""Suites and the runner: failures are recorded, not hidden."""

from __future__ import annotations

import pytest
import torch

from genbench.errors import GenbenchError
from genbench.results.db import ResultsDB
from genbench.runner import run_suite
from genbench.suites import SUITES, parse_suite
from zoo import IWAE, MODELS
from zoo.registry import ModelEntry


class DivergingIWAE(IWAE):
    def training_losses(self, x):
        for name, loss in super().training_losses(x):
            yield name, loss * float("inf")


SUITE = """
name = "diverge"
dataset = "toy"
[budgets.smoke]
epochs = 0.1
[[runs]]
name = "bad"
model = "diverging"
[[runs]]
name = "good"
model = "vae"
"""


def test_a_nan_run_is_marked_failed_and_the_suite_goes_on(tmp_path, monkeypatch):
    entry = ModelEntry("diverging", DivergingIWAE, MODELS["vae"].config_cls, "test only")
    monkeypatch.setitem(MODELS._entries, "diverging", entry)
    suite = parse_suite(SUITE, "test")
    db = ResultsDB(tmp_path / "db.sqlite")
    outcomes = run_suite(suite, suite.budget("smoke"), db, tmp_path / "runs",
                         torch.device("cpu"), progress=False, log=lambda *_: None)
    assert [o.status for o in outcomes] == ["failed", "done"]
    [failed] = db.runs(status="failed")
    assert failed["name"] == "bad" and "loss became inf at step 0" in failed["error"]


def test_builtin_suites_parse_and_name_registered_models():
    for name, suite in SUITES.items():
        for entry in suite.runs:
            MODELS[entry.model].make_config(entry.config)  # validates names and values
        assert {"smoke", "short", "paper"} <= set(suite.budgets), name
    mnist = SUITES["mnist"]
    assert len(mnist.runs) == 13 and mnist.budget("paper").epochs == 3280
    assert mnist.budget("paper").eval_k == 5000 and mnist.budget("paper").eval_n is None


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[[runs]]\nname = "a"\nmodel = "vae"', "missing field 'dataset'"),
    ('name = "x"\ndataset = "toy"\nruns = []\n[budgets.short]\nepoch = 3', "unknown field 'epoch'"),
    ('name = "x"\ndataset = "toy"\nruns = []\n[train]\nbatch = 3', "unknown field 'batch'"),
    ("name = ", "invalid TOML"),
])
def test_bad_suite_files_give_one_clear_error(text, message):
    with pytest.raises(GenbenchError, match=message):
        parse_suite(text, "bad.toml")
