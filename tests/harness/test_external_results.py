"""``genbench score ... --db --name``: a model genbench did not train, on the leaderboard beside the
zoo's runs and in the paper tables' external sections; and the user's code failing mid-evaluation."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pytest

from genbench.core.errors import GenbenchError
from genbench.metrics import features as feats
from genbench.results import db as dbmod
from genbench.results.db import ResultsDB, check_database_file
from genbench.results.external import run_key
from genbench.results.leaderboard import render_leaderboard
from genbench.results.paper_tables import render_paper_table
from genbench.suites import SUITES
from genbench.train.identity import RunIdentity
from tests.harness.test_cli import assert_one_line_error, run_cli
from tests.harness.test_user_models import ARGS, FOREIGN_VAE, foreign  # noqa: F401 (a fixture)
from tests.results.test_results import _fill

#: raises only on batches bigger than the contract check's, so the check passes and the evaluation fails
BIG_BATCH_FAILS = '''

class BigBatchFails(ForeignVAE):
    def log_importance_weights(self, x, k):
        if len(x) > 2:
            raise RuntimeError("ran out of memory on a big batch")
        return super().log_importance_weights(x, k)
'''


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record(capsys, weights, code, db, name="my-vae", *extra):
    return run_cli(capsys, "score", str(weights), "--model-code", f"{code}:ForeignVAE", *ARGS,
                   "--db", str(db), "--name", name, *map(str, extra))


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def row_of(markdown: str, name: str) -> dict[str, str]:
    """The leaderboard row of run ``name``, by column header: its cells of every table it is in."""
    lines = markdown.splitlines()
    out: dict[str, str] = {}
    header = None
    for line in lines:
        if line.startswith("| run "):
            header = cells(line)
        elif header and line.startswith(f"| {name} "):
            out |= dict(zip(header, cells(line), strict=True))
        elif not line.startswith("|"):
            header = None
    return out


def test_a_user_model_on_a_suite_leaderboard_once(foreign, capsys, tmp_path):
    code, weights, _ = foreign
    db_path, lb = tmp_path / "db.sqlite", tmp_path / "lb"
    rc, out, err = record(capsys, weights, code, db_path, "my-vae", "--suite", "smoke", "--leaderboards", lb)
    assert rc == 0, err
    report = json.loads(out)
    assert report["recorded"]["suite"] == "smoke" and "recorded as my-vae (external)" in err
    db = ResultsDB(db_path)
    md, _ = render_leaderboard(db, SUITES["smoke"], tmp_path / "again")  # as genbench run re-renders it
    assert md.read_text() == (lb / "smoke.md").read_text()
    text = md.read_text()
    row = row_of(text, "my-vae (external)")
    assert row["model"] == f"{code}:ForeignVAE" and row["budget"] == "external"
    assert row["NLL (nats) ↓"] == f"{report['metrics']['nll']:.2f}"  # one run: the value, no ±
    assert row["epochs"] == row["train (s)"] == "" and row["NLL k / test pts"] == "4 / 40"
    assert "scored by `genbench score`" in text and "not trained by genbench" in text
    assert f"sha256 {sha256_of(weights)[:12]}" in text and f"(sha256 {sha256_of(code)[:12]})" in text
    [run] = db.runs(suite="smoke")
    assert run["external"]["weights_sha256"] == sha256_of(weights) and run["status"] == "done"
    assert run["metrics"]["nll"] == report["metrics"]["nll"] and run["versions"]["genbench"]
    assert run["eval"]["k"] == 4 and "Sampler.sample" in run["external"]["not_applicable"]["sample_quality"]
    rc, _, err = record(capsys, weights, code, db_path, "my-vae", "--suite", "smoke", "--leaderboards", lb)
    assert_one_line_error(rc, err, "'my-vae' is recorded already for suite smoke on toy")
    assert [r["name"] for r in ResultsDB(db_path).runs(status=None)] == ["my-vae"]
    check_database_file(db_path)


def test_the_database_refuses_a_second_result_of_a_key_even_past_the_cli_check(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    run = _external_identity("x", "smoke", "toy")
    db.record_external(run_key("smoke", "toy", "x"), run, _provenance(), {"nll": 1.0}, {}, "cpu", 1.0)
    with pytest.raises(GenbenchError, match="recorded already"):
        db.record_external(run_key("smoke", "toy", "x"), run, _provenance(), {"nll": 2.0}, {}, "cpu", 1.0)
    assert [r["metrics"] for r in db.runs()] == [{"nll": 1.0}]


def test_a_sample_set_shows_its_fid_columns(capsys, tmp_path, monkeypatch, tiny_torchscript):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    samples = tmp_path / "samples.npz"
    np.savez(samples, samples=np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8))
    rc, out, err = run_cli(capsys, "score", str(samples), "--dataset", "toy",
                           "--features", str(tiny_torchscript),
                           "--n-reference", "60", "--data-root", str(tmp_path / "data"), "--json",
                           "--db", str(tmp_path / "db.sqlite"), "--name", "my-samples", "--suite", "smoke",
                           "--leaderboards", str(tmp_path / "lb"))
    assert rc == 0, err
    fid = json.loads(out)["metrics"]["fid_ts_tiny"]
    text = (tmp_path / "lb" / "smoke.md").read_text()
    row = row_of(text, "my-samples (external)")
    assert row["model"] == "samples samples.npz" and row["IS/FID samples"] == "30"
    assert row["FID-ts_tiny ↓"] == f"{fid:.2f}" and row["feature net"] == "ts_tiny"
    assert "NLL k / test pts" not in row  # no likelihood: the row is not in that table
    assert f"sha256 {sha256_of(samples)[:12]}" in text


def _external_identity(name: str, suite: str, dataset: str, model: str = "ForeignVAE") -> RunIdentity:
    return RunIdentity(suite, name, model, {}, dataset, (1, 28, 28), "external", {"seed": 0},
                       {"k": 5000, "n_test": None})


def _provenance() -> dict:
    return {"code": "mine.py:ForeignVAE", "weights": "w.pt", "weights_sha256": "ab" * 32, "init": []}


def test_paper_tables_list_external_runs_after_the_table_not_in_its_cells(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    _fill(db)
    plain = render_paper_table("iwae", db)
    assert "External models" not in plain
    for suite, name in (("external", "mine"), ("mnist", "attached")):  # model "vae": never a zoo cell
        db.record_external(run_key(suite, "mnist", name), _external_identity(name, suite, "mnist", "vae"),
                           _provenance(), {"nll": 85.0, "nll_se": 0.5, "active_units": 30.0}, {}, "cpu", 1.0)
    table = render_paper_table("iwae", db)
    assert table.split("\nExternal models")[0].rstrip() == plain.split("\nMeasured with")[0].rstrip()
    assert "External models on mnist (scored by `genbench score`, not trained by genbench" in table
    assert "- `mine (external)` (mine.py:ForeignVAE, suite external): NLL (nats) 85.00; " \
           "active units 30" in table
    assert "`attached (external)`" in table and "External models on omniglot" not in table


def test_leaderboards_without_external_rows_are_unchanged(tmp_path):
    db = ResultsDB(tmp_path / "db.sqlite")
    _fill(db)
    before = render_leaderboard(db, SUITES["mnist"], tmp_path / "a")[0].read_text()
    db.record_external(run_key("external", "mnist", "x"), _external_identity("x", "external", "mnist"),
                       _provenance(), {"nll": 80.0}, {}, "cpu", 1.0)
    assert render_leaderboard(db, SUITES["mnist"], tmp_path / "b")[0].read_text() == before
    assert "external" not in before


def test_an_older_database_gains_the_external_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(dbmod.SCHEMA.replace(",\n    external TEXT", ""))
    check_database_file(path)
    db = ResultsDB(path)
    db.record_external(run_key("external", "mnist", "x"), _external_identity("x", "external", "mnist"),
                       _provenance(), {"nll": 80.0}, {}, "cpu", 1.0)
    assert db.runs()[0]["external"]["code"] == "mine.py:ForeignVAE"
    check_database_file(path)


def test_bad_recording_requests_are_one_line_and_write_nothing(foreign, capsys, tmp_path):
    code, weights, _ = foreign
    db = tmp_path / "db.sqlite"
    score = ("score", str(weights), "--model-code", f"{code}:ForeignVAE", *ARGS)
    rc, _, err = run_cli(capsys, *score, "--name", "x")
    assert_one_line_error(rc, err, "--name records the result", "give --db PATH too")
    rc, _, err = run_cli(capsys, *score, "--db", str(db))
    assert_one_line_error(rc, err, "give --name NAME too")
    rc, _, err = record(capsys, weights, code, db, "x", "--suite", "nope")
    assert_one_line_error(rc, err, "unknown suite 'nope'; valid:", "smoke")
    rc, _, err = record(capsys, weights, code, db, "x", "--suite", "mnist")
    assert_one_line_error(rc, err, "suite mnist is on", "not toy")
    rc, _, err = record(capsys, weights, code, db, "ppca", "--suite", "smoke")
    assert_one_line_error(rc, err, "suite smoke has a run named 'ppca'")
    rc, _, err = record(capsys, weights, code, db, "a | b")
    assert_one_line_error(rc, err, "--name 'a | b'")
    rc, _, err = record(capsys, weights, code, tmp_path)
    assert_one_line_error(rc, err, "a directory, not a genbench results database")
    rc, _, err = run_cli(capsys, "score", str(weights), "--model-code", f"{code}:Transposed", *ARGS,
                         "--db", str(db), "--name", "x")
    assert_one_line_error(rc, err, "Transposed.log_importance_weights")
    assert not db.exists()


def test_user_code_raising_in_the_evaluation_is_one_line_naming_its_file_and_line(foreign, capsys, tmp_path):
    code, weights, _ = foreign
    code.write_text(FOREIGN_VAE + BIG_BATCH_FAILS)
    line = code.read_text().splitlines().index('            raise RuntimeError("ran out of memory on a big '
                                               'batch")') + 1
    rc, _, err = run_cli(capsys, "score", str(weights), "--model-code", f"{code}:BigBatchFails", *ARGS,
                         "--db", str(tmp_path / "db.sqlite"), "--name", "x")
    assert_one_line_error(rc, err, "BigBatchFails raised RuntimeError: ran out of memory on a big batch",
                          f"at {code}:{line}", "contract check")
    assert not (tmp_path / "db.sqlite").exists()


def test_recording_is_the_harness_s_and_takes_typed_values(capsys, tmp_path, monkeypatch, tiny_torchscript):
    """``genbench.recording`` checks a request before anything is evaluated, from typed values (no
    command line), and ``genbench.scorer.score`` returns the typed report ``--json`` prints."""
    from pathlib import Path

    from genbench.recording import RecordRequest, Subject, prepare_recording
    from genbench.scorer import ScoreRequest, score
    from genbench.scoring import SettingsRequest

    subject = Subject(Path("w.pt"), None, (), "toy")
    assert prepare_recording(RecordRequest(None, None, None, tmp_path), subject) is None
    with pytest.raises(GenbenchError, match="give --db PATH too"):
        prepare_recording(RecordRequest("x", None, None, tmp_path), subject)
    with pytest.raises(GenbenchError, match="suite smoke has a run named 'ppca'"):
        prepare_recording(RecordRequest("ppca", str(tmp_path / "db.sqlite"), "smoke", tmp_path), subject)
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    samples = tmp_path / "samples.npz"
    np.savez(samples, samples=np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8))
    flags = {"features": str(tiny_torchscript), "quality_reference": 60, "quality_split": "test"}
    report = score(ScoreRequest(samples, "toy", SettingsRequest(None, flags),
                                RecordRequest("mine", str(tmp_path / "db.sqlite"), "smoke", tmp_path / "lb")))
    assert report.kind == "samples" and report.recorded["run_key"] == run_key("smoke", "toy", "mine")
    [run] = ResultsDB(tmp_path / "db.sqlite").runs()
    assert run["external"]["code"] == "samples samples.npz" and run["metrics"] == report.metrics
    rc, out, err = run_cli(capsys, "score", str(samples), "--dataset", "toy", "--features",
                           str(tiny_torchscript), "--n-reference", "60", "--json")
    assert rc == 0, err
    assert json.loads(out) == {k: v for k, v in report.as_json().items() if k != "recorded"}
