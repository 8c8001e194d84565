"""The command line end to end, and every bad input giving one clear line and exit 2."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from genbench.cli import main
from genbench.results.db import ResultsDB
from zoo import MODELS


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke-suite run shared by the tests that read its outputs."""
    base = tmp_path_factory.mktemp("smoke")
    argv = ["run", "--suite", "smoke", "--budget", "smoke", "--db", str(base / "db.sqlite"),
            "--runs-dir", str(base / "runs"), "--leaderboards", str(base / "lb"), "--no-progress"]
    assert main(argv) == 0
    return base, argv


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genbench: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_smoke_suite_end_to_end(smoke_run, capsys):
    base, argv = smoke_run
    db = ResultsDB(base / "db.sqlite")
    runs = db.runs(suite="smoke")
    assert {r["name"] for r in runs} == {"ppca", "vae-L1-k1", "iwae-L2-k5"}
    by_name = {r["name"]: r for r in runs}
    assert {"nll", "bits_per_dim", "elbo", "active_units"} <= set(by_name["vae-L1-k1"]["metrics"])
    assert {"active_units_l1", "active_units_l2"} <= set(by_name["iwae-L2-k5"]["metrics"])
    board = (base / "lb" / "smoke.md").read_text()
    assert "vae-L1-k1" in board and "smoke: 1 epochs" in board
    assert (base / "lb" / "smoke.csv").exists()
    for run in runs:
        assert (base / "runs" / "smoke" / "smoke").exists()
        assert os.path.exists(os.path.join(run["run_dir"], "checkpoint.safetensors"))
        assert os.path.exists(os.path.join(run["run_dir"], "samples.png"))
        assert os.path.exists(os.path.join(run["run_dir"], "reconstructions.png"))
    # running again finds every run done and repeats nothing
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and out.count("[cached]") == 3 and len(db.runs(suite="smoke")) == 3


def test_score_a_checkpoint_prints_the_metrics_that_apply(smoke_run, capsys):
    base, _ = smoke_run
    run_dir = {r["name"]: r["run_dir"] for r in ResultsDB(base / "db.sqlite").runs()}["vae-L1-k1"]
    code, out, _ = run_cli(capsys, "score", run_dir, "--json", "--k", "10", "--n-test", "50")
    report = json.loads(out)
    assert code == 0 and report["model"] == "vae" and report["k"] == 10 and report["n_test"] == 50
    surgery = {"surgery_avg_kl", "surgery_mutual_info", "surgery_marginal_kl", "surgery_train_elbo"}
    errors = {"nll_se", "bits_per_dim_se", "elbo_se", "active_units_std", "surgery_avg_kl_se",
              "surgery_mutual_info_se", "surgery_marginal_kl_se"}
    assert set(report["metrics"]) == {"nll", "bits_per_dim", "elbo", "active_units", *surgery, *errors}
    code, out, _ = run_cli(capsys, "score", os.path.join(run_dir, "checkpoint.safetensors"),
                           "--budget", "smoke")
    assert code == 0 and "nll" in out and "k=10" in out


def test_score_of_a_run_directory_reproduces_its_leaderboard_row(smoke_run, capsys):
    """Without flags, score evaluates with the settings the run recorded: the same numbers."""
    base, _ = smoke_run
    for run in ResultsDB(base / "db.sqlite").runs():
        code, out, _ = run_cli(capsys, "score", run["run_dir"], "--json")
        report = json.loads(out)
        assert code == 0 and report["settings_from"] == "the run's"
        assert report["metrics"] == pytest.approx(run["metrics"], rel=1e-12, nan_ok=True), run["name"]


def test_tables_show_paper_numbers_and_the_budget(smoke_run, capsys):
    base, _ = smoke_run
    code, out, _ = run_cli(capsys, "tables", "--paper", "iwae", "--db", str(base / "db.sqlite"))
    assert code == 0 and "86.76" in out and "82.9" in out and "arXiv:1509.00519" in out
    assert "No measured cells yet" in out  # the smoke suite runs on toy data, not MNIST


def test_list_names_everything(capsys):
    code, out, _ = run_cli(capsys, "list")
    for name in ("mnist", "smoke", "ppca", "vae", "iwae", "binarized_mnist", "nll",
                 "active_units", "paper: 3280 epochs", "iwae"):
        assert name in out


def test_help_on_every_command(capsys):
    for command in ("run", "score", "tables", "archive", "list"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: genbench" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragments", [
    (["run", "--suite", "nope"],
     ["unknown suite 'nope'", "valid: cifar10, diffusion, dsprites, fashion, mnist, omniglot, smoke"]),
    (["run", "--suite", "smoke", "--budget", "huge"], ["unknown budget 'huge'", "valid: smoke"]),
    (["run", "--suite", "smoke", "--models", "gan"], ["no run or model 'gan'", "valid:"]),
    (["run", "--suite", "smoke", "--device", "tpu9"], ["unknown device"]),
    (["tables", "--paper", "nope"],
     ["unknown paper 'nope'",
      "valid: betavae, diffusion, elbo-surgery, iwae, pixelvae, vampprior, vlae, vlae-cifar"]),
    (["score", "missing.safetensors"], ["no file or directory at missing.safetensors"]),
])
def test_bad_names_give_one_clear_line(argv, fragments, capsys, tmp_path):
    argv = [*argv, "--db", str(tmp_path / "db.sqlite")] if argv[0] in ("run", "tables") else argv
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_corrupt_checkpoint_is_refused(tmp_path, capsys):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x00garbage" * 100)
    code, _, err = run_cli(capsys, "score", str(path))
    assert_one_line_error(code, err, "not a readable safetensors checkpoint")


def test_safetensors_without_genbench_metadata_is_refused_as_foreign(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(2)}, str(path))
    code, _, err = run_cli(capsys, "score", str(path))
    assert_one_line_error(code, err, "without genbench metadata", "--model")


class Exploit:
    """Unpickling this would create a file: the weights-only loader must refuse it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path, capsys):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": Exploit(str(target))}, path)
    code, _, err = run_cli(capsys, "score", str(path), "--model", "vae")
    assert_one_line_error(code, err, "refused, not a weights-only state dict")
    assert not target.exists()


def test_foreign_pt_without_model_is_refused(tmp_path, capsys):
    path = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1)}, path)
    code, _, err = run_cli(capsys, "score", str(path))
    assert_one_line_error(code, err, "needs --model NAME")


def _foreign_state(tmp_path, mutate=None):
    model = MODELS["vae"].build({"layers": 1}, (1, 8, 8))
    state = model.state_dict()
    if mutate:
        mutate(state)
    path = tmp_path / "foreign.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("mutate, fragments", [
    (lambda s: s.pop("encoders.0.mean.bias"), ["missing key 'encoders.0.mean.bias'"]),
    (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), ["unexpected key 'extra.weight'"]),
    (lambda s: s.__setitem__("encoders.0.mean.bias", torch.zeros(3)),
     ["key 'encoders.0.mean.bias' has shape [3]", "expects [50]"]),
])
def test_foreign_state_dict_mismatches_name_the_key(tmp_path, capsys, mutate, fragments):
    path = _foreign_state(tmp_path, mutate)
    code, _, err = run_cli(capsys, "score", str(path), "--model", "vae", "--dataset", "toy")
    assert_one_line_error(code, err, *fragments)


def test_foreign_state_dict_scores_with_model_and_hyperparameters(tmp_path, capsys):
    path = _foreign_state(tmp_path)
    code, out, _ = run_cli(capsys, "score", str(path), "--model", "vae", "--set", "layers=1",
                           "--dataset", "toy", "--k", "5", "--json")
    assert code == 0 and json.loads(out)["metrics"]["nll"] > 0


@pytest.mark.parametrize("sets, fragments", [
    (["depth=3"], ["no hyperparameter 'depth'", "valid: beta, capacity", "k, layers, objective"]),
    (["layers=two"], ["layers='two' is not a int"]),
    (["layers=3"], ["hyperparameter layers=3 is outside [1, 2]"]),
    (["layers"], ["--set expects KEY=VALUE"]),
])
def test_bad_hyperparameters_give_one_clear_line(tmp_path, capsys, sets, fragments):
    path = _foreign_state(tmp_path)
    code, _, err = run_cli(capsys, "score", str(path), "--model", "vae", "--dataset", "toy",
                           "--set", *sets)
    assert_one_line_error(code, err, *fragments)


def test_a_model_for_other_data_is_refused_before_loading_data(smoke_run, capsys):
    base, _ = smoke_run
    run_dir = {r["name"]: r["run_dir"] for r in ResultsDB(base / "db.sqlite").runs()}["vae-L1-k1"]
    code, _, err = run_cli(capsys, "score", run_dir, "--dataset", "mnist", "--data-root", "/nonexistent")
    assert_one_line_error(code, err, "data set 'mnist' has shape [1, 28, 28]", "expects [1, 8, 8]")


def test_unknown_model_lists_the_valid_ones(tmp_path, capsys):
    path = _foreign_state(tmp_path)
    code, _, err = run_cli(capsys, "score", str(path), "--model", "nosuchmodel")
    assert_one_line_error(code, err, "unknown model 'nosuchmodel'",
                          "valid: betavae, bigan, ddpm, flow-matching, gan, hvae, iwae, pixelcnn, pixelvae, "
                          "ppca")


def test_main_gives_back_the_callers_sigpipe_handler(capsys):
    """main() sets SIGPIPE to default for `genbench list | head`; an in-process caller (this
    test run, whose loopback HTTP tests write to closed sockets) must get its handler back."""
    import signal

    before = signal.getsignal(signal.SIGPIPE)
    run_cli(capsys, "list")
    assert signal.getsignal(signal.SIGPIPE) == before


def test_compare_pairs_two_runs_on_the_same_test_points(smoke_run, capsys):
    base, _ = smoke_run
    runs = {r["name"]: r for r in ResultsDB(base / "db.sqlite").runs()}
    vae, iwae = runs["vae-L1-k1"], runs["iwae-L2-k5"]
    code, out, _ = run_cli(capsys, "compare", vae["run_dir"], iwae["run_dir"], "--json")
    report = json.loads(out)
    assert code == 0 and report["settings_from"] == "the run's"
    r = report["nll"]
    assert r["a"] == pytest.approx(vae["metrics"]["nll"]) and r["b"] == pytest.approx(iwae["metrics"]["nll"])
    assert r["difference"] == pytest.approx(r["a"] - r["b"]) and r["low"] < r["difference"] < r["high"]
    assert 0 <= r["p_value"] <= 1 and r["n"] == 200
    # a model against itself: no difference, whatever the noise
    code, out, _ = run_cli(capsys, "compare", vae["run_dir"], vae["run_dir"])
    assert code == 0 and "no difference beyond noise" in out


def test_paired_differences_are_tighter_than_either_model_and_have_their_coverage():
    """Two models whose per-point NLLs share the points' difficulty: the paired interval of their
    difference covers the true difference in about 95% of 400 repetitions and is far narrower
    than the models' own standard errors."""
    from genbench.metrics.compare import independent_difference, paired_difference

    gen = torch.Generator().manual_seed(0)
    covered, ratios = 0, []
    for _ in range(400):
        difficulty = 90 + 10 * torch.randn(300, generator=gen, dtype=torch.float64)
        a = difficulty + 0.2 + 0.5 * torch.randn(300, generator=gen, dtype=torch.float64)
        b = difficulty + 0.5 * torch.randn(300, generator=gen, dtype=torch.float64)
        r = paired_difference(a, b)
        covered += r["low"] <= 0.2 <= r["high"]
        ratios.append(r["se"] / (a.std().item() / 300 ** 0.5))
    assert 0.92 <= covered / 400 <= 0.98 and max(ratios) < 0.1
    same = independent_difference(10.0, 1.0, 10.0, 1.0)
    assert same["difference"] == 0 and same["p_value"] == pytest.approx(1)
    assert independent_difference(20.0, 1.0, 10.0, 1.0)["p_value"] < 1e-10


def test_compare_is_the_harness_s_and_the_cli_prints_it(smoke_run, capsys):
    """``genbench compare --json`` prints what ``genbench.comparison.compare`` measures, nothing more."""
    from pathlib import Path

    from genbench.comparison import CompareRequest, compare
    from genbench.scoring import SettingsRequest

    base, _ = smoke_run
    runs = {r["name"]: r for r in ResultsDB(base / "db.sqlite").runs()}
    a, b = Path(runs["vae-L1-k1"]["run_dir"]), Path(runs["iwae-L2-k5"]["run_dir"])
    code, out, _ = run_cli(capsys, "compare", str(a), str(b), "--k", "3", "--json")
    measured = compare(CompareRequest(a, b, SettingsRequest(None, {"k": 3}), None, "cpu"))
    assert code == 0 and json.loads(out) == measured.as_json() and measured.k == 3


#: the flags more than one command has: each declared once, in genbench.cli.flags
SHARED_FLAGS = ("--data-root", "--db", "--device", "--json", "--runs-dir", "--leaderboards", "--published")


def test_the_command_line_is_a_package_of_small_modules_declaring_each_shared_flag_once():
    from pathlib import Path

    from genbench.cli import build_parser
    from genbench.results.db import DEFAULT_DB

    root = Path(__file__).resolve().parents[2] / "genbench"
    modules = sorted((root / "cli").glob("*.py"))
    assert (root / "cli" / "__init__.py") in modules and (root / "cli" / "__main__.py") in modules
    lines = {m.name: len(m.read_text().splitlines()) for m in modules}
    assert {name: n for name, n in lines.items() if n > 250} == {}
    source = "\n".join(m.read_text() for m in modules)
    declared = {flag: source.count(f'add_argument("{flag}"') for flag in SHARED_FLAGS}
    assert declared == dict.fromkeys(SHARED_FLAGS, 1)
    assert [p.name for p in root.rglob("*.py") if str(DEFAULT_DB) in p.read_text()] == ["db.py"]
    for argv in (["run"], ["collect", "runs"], ["report"]):
        assert build_parser().parse_args(argv).db == str(DEFAULT_DB)
    assert build_parser().parse_args(["tables", "--paper", "iwae"]).db is None  # the archive, not a database


def test_a_command_reads_its_arguments_and_never_changes_them(monkeypatch, capsys, tmp_path,
                                                              tiny_torchscript):
    """The parsed arguments are what the command gets and what it leaves: no carrier of the stdout,
    the recording or the device (a --json score recorded under --name, the case that used all three)."""
    import numpy as np

    from genbench import cli
    from genbench.metrics import features as feats

    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    samples = tmp_path / "samples.npz"
    np.savez(samples, samples=np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8))
    argv = ["score", str(samples), "--dataset", "toy", "--features", str(tiny_torchscript), "--n-reference",
            "60", "--json", "--db", str(tmp_path / "db.sqlite"), "--name", "mine"]
    seen = []

    def spy(args):
        seen.append(dict(vars(args)))
        code = real(args)
        seen.append(dict(vars(args)))
        return code

    real = cli.COMMANDS["score"]
    monkeypatch.setitem(cli.COMMANDS, "score", spy)
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["recorded"]["name"] == "mine"
    assert seen == [vars(cli.build_parser().parse_args(argv))] * 2
