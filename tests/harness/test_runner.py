"""Suites and the runner: failures are recorded, not hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genbench.context import RunContext, SuiteRequest
from genbench.core.errors import GenbenchError
from genbench.core.models import ModelEntry
from genbench.results.db import ResultsDB
from genbench.results.rows import RunRecord, UnreadableRun
from genbench.runner import run_suite
from genbench.suites import SUITES, parse_suite
from zoo import IWAE, MODELS


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
    outcomes = run_suite(SuiteRequest(suite, suite.budget("smoke")),
                         RunContext(db, tmp_path / "runs", torch.device("cpu"), progress=False,
                                    log=lambda *_: None))
    assert [o.status for o in outcomes] == ["failed", "done"]
    [failed] = db.runs(status="failed")
    assert failed["name"] == "bad" and "loss became inf at step 0" in failed["error"]


def test_builtin_suites_parse_and_name_registered_models():
    for name, suite in SUITES.items():
        for entry in suite.runs:
            MODELS[entry.model].make_config(entry.config)  # validates names and values
        assert {"smoke", "short", "paper"} <= set(suite.budgets), name
    mnist = SUITES["mnist"]
    assert len([r for r in mnist.runs if r.model in ("vae", "iwae")]) == 12
    assert mnist.budget("paper").epochs == 3280
    assert mnist.budget("paper").eval.k == 5000 and mnist.budget("paper").eval.n_test is None
    vamp = next(r for r in mnist.runs if r.name == "hvae-vamp")
    assert mnist.dataset_of(vamp) == "binarized_mnist"
    paper = mnist.train_config(mnist.budget("paper"), 0, vamp)
    assert (paper.epochs, paper.batch_size, paper.lr, paper.kl_warmup_epochs) == (2000, 100, 5e-4, 100)
    short = mnist.train_config(mnist.budget("short"), 0, vamp)
    assert short.epochs == 5 and short.kl_warmup_epochs == 1  # the short budget caps warm-up


RUN_OVERRIDES = """
name = "x"
dataset = "binarized_mnist"
[train]
batch_size = 20
[[runs]]
name = "a"
model = "hvae"
dataset = "mnist"
train = { batch_size = 100 }
budgets = { short = { epochs = 7, k = 10 } }
[[runs]]
name = "b"
model = "vae"
"""


def test_a_run_may_override_data_set_training_and_budget():
    suite = parse_suite(RUN_OVERRIDES, "x.toml")
    a, b = suite.runs
    assert suite.dataset_of(a) == "mnist" and suite.dataset_of(b) == "binarized_mnist"
    assert suite.train_config(suite.budget("short"), 0, a).batch_size == 100
    assert suite.train_config(suite.budget("short"), 0, a).epochs == 7
    assert suite.budget_for(a, suite.budget("short")).eval.k == 10
    assert suite.train_config(suite.budget("short"), 0, b).epochs == suite.budget("short").epochs
    with pytest.raises(GenbenchError, match="run 'a' .* is for mnist"):
        suite.with_dataset("dsprites_rendered")
    moved = suite.with_dataset("omniglot")
    assert [moved.dataset_of(r) for r in moved.runs] == ["omniglot", "omniglot"]


@pytest.mark.parametrize("text, message", [
    ('name = "x"\n[[runs]]\nname = "a"\nmodel = "vae"', "missing field 'dataset'"),
    ('name = "x"\ndataset = "toy"\nruns = []\n[budgets.short]\nepoch = 3', "unknown field 'epoch'"),
    ('name = "x"\ndataset = "toy"\nruns = []\n[train]\nbatch = 3', "unknown field 'batch'"),
    ("name = ", "invalid TOML"),
    ('name = "x"\ndataset = "toy"\n[[runs]]\nname = "a"\nmodel = "vae"\ntrain = { lr_max = 1 }',
     "run 'a' has unknown field 'lr_max'"),
    ('name = "x"\ndataset = "toy"\n[[runs]]\nname = "a"\nmodel = "vae"\nbudgets = { short = { eval_k = 1 } }',
     "run 'a' budget 'short' has unknown field 'eval_k'; valid: epochs, max_kl_warmup_epochs, k, n_test"),
    ('name = "x"\ndataset = "toy"\nruns = []\nseed = 3', "bad.toml has unknown field 'seed'; valid: name,"),
    ('name = "x"\ndataset = "toy"\n[[runs]]\nname = "a"\nmodel = "vae"\nlatent = 3',
     "run 'a' has unknown field 'latent'; valid: name, model, config"),
    ('name = "../x"\ndataset = "toy"\nruns = []', "bad.toml: name '../x': a name is letters"),
    ('name = "x"\ndataset = "toy"\nseeds = "2"\nruns = []', "seeds must be an integer >= 1, got '2'"),
    ('name = "x"\ndataset = "toy"\nruns = []\n[budgets.short]\nk = 0',
     "budget 'short': k must be an integer >= 1, got 0"),
    ('name = "x"\ndataset = "toy"\n[[runs]]\nname = "a"\nmodel = "vea"', "run 'a': unknown model 'vea'"),
    ('name = "x"\ndataset = "toy"\n[[runs]]\nname = "a"\nmodel = "vae"\nconfig = { layers = 0 }',
     "run 'a': model 'vae': hyperparameter layers=0 is outside"),
])
def test_bad_suite_files_give_one_clear_error(text, message):
    with pytest.raises(GenbenchError, match=message):
        parse_suite(text, "bad.toml")


QUALITY_SUITE = """
name = "quality"
dataset = "toy"
[budgets.smoke]
epochs = 0.05
k = 2
n_test = 50
[[runs]]
name = "vae"
model = "vae"
[[runs]]
name = "ppca"
model = "ppca"
config = { latent = 2 }
"""


def test_asking_for_samples_later_adds_sample_quality_to_finished_runs_without_retraining(
        tmp_path, monkeypatch, tiny_torchscript, toy):
    """quality_samples is not part of a run's identity: a finished run gets the metric from its
    checkpoint, and a model whose samples are not images (PPCA's Gaussian) gets a recorded reason."""
    from genbench.metrics import features, sample_quality

    suite = parse_suite(QUALITY_SUITE, "test")
    db = ResultsDB(tmp_path / "db.sqlite")
    quiet = RunContext(db, tmp_path / "runs", torch.device("cpu"), progress=False, log=lambda *_: None)
    first = run_suite(SuiteRequest(suite, suite.budget("smoke")), quiet)
    assert [o.status for o in first] == ["done", "done"]
    assert not any("fid_ts_tiny" in o.metrics for o in first)

    net = features.resolve_feature_net(str(tiny_torchscript), toy)
    monkeypatch.setattr(sample_quality, "resolve_feature_net", lambda *a, **k: net)
    monkeypatch.setattr("genbench.runner.train", lambda *a, **k: pytest.fail("a finished run was retrained"))
    asking = suite.budget("smoke").override({"quality_samples": 60})
    with pytest.warns(UserWarning, match="sample_quality skipped: PPCA samples must lie in"):
        again = run_suite(SuiteRequest(suite, asking), quiet)
    assert [o.status for o in again] == ["cached", "cached"]
    vae, ppca = (next(r for r in db.runs() if r["name"] == n) for n in ("vae", "ppca"))
    assert vae["metrics"]["fid_ts_tiny"] > 0 and vae["metrics"]["nll"] == first[0].metrics["nll"]
    assert vae["eval"]["quality_samples"] == 60 and vae["skipped"] == {}
    assert "fid_ts_tiny" not in ppca["metrics"] and "must lie in [0, 1]" in ppca["skipped"]["sample_quality"]
    monkeypatch.setattr(sample_quality, "score_images", lambda *a, **k: pytest.fail("scored twice"))
    run_suite(SuiteRequest(suite, asking), quiet)


def test_a_runs_own_sample_count_is_not_part_of_its_key_but_its_epochs_are():
    from dataclasses import replace

    from genbench.runner import run_identity

    suite = parse_suite(QUALITY_SUITE, "test")
    entry, budget = suite.runs[0], suite.budget("smoke")
    plain = run_identity(suite, entry, 0, budget, (1, 8, 8))
    sampled = replace(entry, budgets={"smoke": {"quality_samples": 500}})
    asking = budget.override({"quality_samples": 500})
    assert run_identity(suite, sampled, 0, asking, (1, 8, 8)).key == plain.key
    costlier = replace(entry, budgets={"smoke": {"k": 7}})
    assert run_identity(suite, costlier, 0, budget, (1, 8, 8)).key != plain.key
    longer = replace(entry, budgets={"smoke": {"epochs": 2}})
    assert run_identity(suite, longer, 0, budget, (1, 8, 8)).key != plain.key
    assert run_identity(suite, entry, 1, budget, (1, 8, 8)).key != plain.key


def test_seeds_of_a_run_train_as_one_ensemble_equal_to_their_single_runs(tmp_path):
    """``--seeds N --ensemble on`` trains a run's seeds together where the ensemble applies, says so,
    records one done row per seed, and each equals the seed trained alone (tolerance:
    tests/train/test_ensemble.py's, widened through the evaluation's own sums); PPCA is not trained by
    gradient: one by one."""
    suite = SUITES["smoke"]
    budget = suite.budget("smoke")
    cpu = torch.device("cpu")
    said = []
    together = run_suite(SuiteRequest(suite, budget, ["vae-L1-k1", "ppca"], seeds=2),
                         RunContext(ResultsDB(tmp_path / "together.sqlite"), tmp_path / "together", cpu,
                                    progress=False, log=said.append, ensemble="on"))
    assert [(o.name, o.seed, o.status) for o in together] == [
        ("ppca", 0, "done"), ("ppca", 1, "done"), ("vae-L1-k1", 0, "done"), ("vae-L1-k1", 1, "done")]
    assert any(line.startswith("[ensemble] vae-L1-k1 seeds 0, 1") for line in said)
    assert any(line.startswith("[one by one] ppca") and "not trained by gradient" in line for line in said)
    db = ResultsDB(tmp_path / "together.sqlite")
    rows = [r for r in db.runs(status="done") if r["name"] == "vae-L1-k1"]
    assert sorted(r["seed"] for r in rows) == [0, 1] and all(r["train_seconds"] > 0 for r in rows)

    alone = run_suite(SuiteRequest(suite, budget, ["vae-L1-k1"], seeds=1),
                      RunContext(ResultsDB(tmp_path / "alone.sqlite"), tmp_path / "alone", cpu,
                                 progress=False, log=lambda *_: None))
    assert alone[0].metrics["nll"] == pytest.approx(together[2].metrics["nll"], rel=1e-5)
    assert together[2].metrics["nll"] != pytest.approx(together[3].metrics["nll"], rel=1e-3)
    again = run_suite(SuiteRequest(suite, budget, ["vae-L1-k1"], seeds=2),
                      RunContext(db, tmp_path / "together", cpu, progress=False, log=lambda *_: None,
                                 ensemble="on"))
    assert [o.status for o in again] == ["cached", "cached"]


def test_on_a_cpu_seeds_train_one_by_one_unless_the_ensemble_is_asked_for(tmp_path, capsys):
    """``--ensemble auto`` (the default) trains no ensemble on a CPU, where it gains little or loses, and
    says so; an unknown mode is refused before anything is trained."""
    from genbench.cli import main

    said = []
    suite = SUITES["smoke"]
    outcomes = run_suite(SuiteRequest(suite, suite.budget("smoke"), ["vae-L1-k1"], seeds=2),
                         RunContext(ResultsDB(tmp_path / "db.sqlite"), tmp_path / "runs", torch.device("cpu"),
                                    progress=False, log=said.append))
    assert [o.status for o in outcomes] == ["done", "done"]
    assert not any(line.startswith("[ensemble]") for line in said)
    assert any(line.startswith("[one by one] vae-L1-k1") and "on a CPU" in line for line in said)
    assert main(["run", "--suite", "smoke", "--ensemble", "sometimes", "--db", str(tmp_path / "x.sqlite"),
                 "--runs-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genbench: unknown --ensemble 'sometimes'; valid: auto, on, off")
    assert not (tmp_path / "x").exists()


def test_a_row_has_one_shape_whether_reused_by_the_runner_or_rendered(tmp_path):
    """``done_run`` (what the runner reuses) and ``runs()`` (what renderers read) give the same typed,
    decoded record: JSON columns as objects and the metrics with it (before: ``done_run`` gave the
    raw row, its JSON as text, and the runner decoded it itself)."""
    from tests.results.test_results import spec

    db = ResultsDB(tmp_path / "db.sqlite")
    run = spec("a")
    db.finish_run(db.start_run(run, "/tmp/x", "cpu"), {"nll": 95.0}, 10.0, 1.0, {"fid": "no samples"})
    done, [listed] = db.done_run(run.key), db.runs()
    assert done == listed and isinstance(done, RunRecord)
    assert done.eval == run.eval and done.metrics == {"nll": 95.0} and done.skipped == {"fid": "no samples"}
    assert done["config"] == run.config and dict(done)["seed"] == run.seed  # a read-only mapping too
    assert db.done_run(spec("b").key) is None


def test_a_done_row_the_runner_cannot_read_fails_that_run_and_the_suite_goes_on(tmp_path):
    """A done row whose metric was made NULL by hand: reusing it fails that run with the row named
    and why, the row stays as it is, and the other seed is reused (before: reused as cached with the
    value silently gone)."""
    import sqlite3

    suite = SUITES["smoke"]
    request = SuiteRequest(suite, suite.budget("smoke"), ["ppca"], seeds=2)
    quiet = RunContext(ResultsDB(tmp_path / "db.sqlite"), tmp_path / "runs", torch.device("cpu"),
                       progress=False, log=lambda *_: None)
    assert [o.status for o in run_suite(request, quiet)] == ["done", "done"]
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute("UPDATE metrics SET value = NULL WHERE name = 'density_nll' AND run_id = 1")
    first, second = run_suite(request, quiet)
    assert (first.status, second.status) == ("failed", "cached")
    assert first.error == (f"{tmp_path / 'db.sqlite'}: run 1 ('ppca') is done but cannot be read: its metric "
                           "density_nll is NULL, not a finite number")
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        [(key, status)] = conn.execute("SELECT run_key, status FROM runs WHERE id = 1").fetchall()
    assert status == "done"  # left as it is, for a person to look at
    with pytest.raises(UnreadableRun, match=r"run 1 \('ppca'\) is done but cannot be read"):
        quiet.db.done_run(key)


ROOT = Path(__file__).resolve().parents[2]
#: the modules that carry a suite run: the runner, its context and the launchers
#: the harness: every module above the results layer (the CLI, runner, launchers, scoring, report)
HARNESS_MODULES = ("runner", "context", "scoring", "scorer", "recording", "comparison", "generators",
                   "user_models", "sample_sets")
CARRIERS = (*(f"genbench/{name}.py" for name in HARNESS_MODULES),
            *sorted(str(p.relative_to(ROOT)) for folder in ("launch", "cli", "report", "adapters")
                    for p in (ROOT / "genbench" / folder).glob("*.py")))


def test_a_suite_run_is_carried_by_its_context_not_by_threaded_parameters():
    """No function of the harness takes more than 6 parameters (before: ``run_suite`` 12,
    ``run_sweep`` 14, ``_evaluate_and_record`` 12): the database, folders, device, logging and
    ensemble mode travel in one ``RunContext``."""
    import ast

    wide = []
    for path in CARRIERS:
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                count = len([a for a in named if a.arg not in ("self", "cls")])
                if count > 6:
                    wide.append(f"{path}:{node.lineno} {node.name} takes {count}")
    assert wide == []


def test_the_ensemble_mode_is_decided_once_when_the_context_is_built(tmp_path):
    """A context decides, for its device, whether seeds may train as one ensemble; a mode that is no
    mode is refused there, before anything is opened or trained."""
    cpu = torch.device("cpu")
    assert "on a CPU" in RunContext(None, tmp_path, cpu).seeds_apart.reason
    assert RunContext(None, tmp_path, cpu, ensemble="off").seeds_apart.reason == "--ensemble off"
    assert RunContext(None, tmp_path, cpu, ensemble="on").seeds_apart is None
    assert RunContext(None, tmp_path, torch.device("meta")).seeds_apart is None  # auto, an accelerator
    with pytest.raises(GenbenchError, match="unknown --ensemble 'sometimes'; valid: auto, on, off"):
        RunContext(None, tmp_path, cpu, ensemble="sometimes")
    assert not list(tmp_path.iterdir())
