"""The archive of result records (``genbench.results.archive``, ``genbench archive``): a done run's
record without machine-specific fields, written once under the name its identity gives, read back
only where it is strict, bounded and consistent, refused in one line otherwise."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.core.errors import GenbenchError
from genbench.results import archive
from genbench.results.archive import archive_results, read_archive, read_record, record_path
from genbench.results.db import FinishedRun
from genbench.results.rundir import write_result
from genbench.train.identity import RunIdentity

ROOT = Path(__file__).resolve().parents[2]


def identity(seed: int = 0, name: str = "vae-L1-k1", budget: str = "smoke") -> RunIdentity:
    return RunIdentity("smoke", name, "vae", {"layers": 1, "k": 1}, "toy", (1, 4, 4), budget,
                       {"seed": seed, "epochs": 1, "lr": 0.001},
                       {"k": 20, "n_test": 200, "seed": seed, "cache_root": "/home/someone/data"})


def outcome(run_dir: Path, status: str = "done", nll: float = 90.5) -> FinishedRun:
    return FinishedRun(status=status, run_dir=str(run_dir.absolute()), device="cpu",
                       producer="job 4242 on node12", metrics={"nll": nll, "nll_se": math.nan},
                       curve=[{"epoch": 1.0, "model": 101.5, "val_elbo": math.nan}], train_seconds=1.5,
                       eval_seconds=0.5, versions={"genbench": "0.1.0"},
                       finished_at="2026-01-02T03:04:05+00:00",
                       error=None if status == "done" else "nan loss")


def results(tmp_path: Path, *runs: tuple[RunIdentity, str]) -> Path:
    """A runs folder holding a result.json for each (identity, status)."""
    runs_dir = tmp_path / "runs"
    for run, status in runs:
        folder = run.run_dir(runs_dir)
        write_result(folder, run, outcome(folder, status), suite_source=str(tmp_path / "my-suite.toml"))
    return runs_dir


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_done_run_is_archived_under_its_run_folders_name_without_machine_specific_fields(tmp_path):
    runs_dir = results(tmp_path, (identity(0), "done"), (identity(1), "failed"))
    store = tmp_path / "archive"
    report = archive_results(runs_dir, store)
    run = identity(0)
    assert report.added == [store / "smoke" / "smoke" / f"vae-L1-k1-seed0-{run.key[:8]}.json"]
    assert report.left == 1  # the failed run: no numbers to publish
    text = report.added[0].read_text()
    for machine in (str(tmp_path), "node12", "/home/someone", "my-suite.toml"):
        assert machine not in text
    record = json.loads(text)  # strict JSON: the NaN uncertainty and curve point are left out
    assert record["metrics"] == {"nll": 90.5} and record["curve"] == [{"epoch": 1.0, "model": 101.5}]
    assert record["key"] == run.key and record["run"]["eval"]["cache_root"] is None
    back = read_archive(store, tmp_path / "elsewhere")
    assert [(r.run.key, r.finished.metrics, r.finished.finished_at) for r in back] == [
        (run.key, {"nll": 90.5}, "2026-01-02T03:04:05+00:00")]
    assert back[0].finished.run_dir == str(run.run_dir(tmp_path / "elsewhere"))  # the reader's own runs


def test_archiving_twice_adds_nothing_and_leaves_the_bytes(tmp_path):
    runs_dir = results(tmp_path, (identity(0), "done"), (identity(1), "done"))
    store = tmp_path / "archive"
    assert len(archive_results(runs_dir, store).added) == 2
    before = tree(store)
    again = archive_results(runs_dir, store)
    assert (again.added, again.known) == ([], 2) and tree(store) == before


def test_a_different_record_under_a_runs_name_is_refused_and_nothing_is_written(tmp_path):
    store = tmp_path / "archive"
    archive_results(results(tmp_path / "a", (identity(0), "done")), store)
    before = tree(store)
    runs_dir = results(tmp_path / "b", (identity(0), "done"), (identity(1), "done"))
    folder = identity(0).run_dir(runs_dir)  # the same run, other numbers
    write_result(folder, identity(0), outcome(folder, nll=91.0))
    with pytest.raises(GenbenchError, match="a different record under this name; not replaced"):
        archive_results(runs_dir, store)
    assert tree(store) == before  # seed 1 was not written either


def test_suite_and_budget_choose_what_is_archived(tmp_path):
    runs_dir = results(tmp_path, (identity(0), "done"), (identity(0, budget="short"), "done"))
    report = archive_results(runs_dir, tmp_path / "archive", budget="short")
    assert len(report.added) == 1 and report.left == 1 and "/short/" in str(report.added[0])


def _archived(tmp_path: Path) -> tuple[Path, Path]:
    store = tmp_path / "archive"
    return store, archive_results(results(tmp_path, (identity(0), "done")), store).added[0]


def _edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("damage, said", [
    (lambda p: p.write_text("{not json"), "not strict JSON"),
    (lambda p: p.write_text(p.read_text().replace('"nll": 90.5', '"nll": NaN')), "not strict JSON"),
    (lambda p: p.write_text(p.read_text().replace('"nll": 90.5', '"nll": 1e999')), "does not fit a float"),
    (lambda p: p.write_text("[1, 2]"), "not a JSON object"),
    (lambda p: p.write_bytes(b" " * (archive.MAX_ARCHIVED_BYTES + 1)), "over the limit"),
    (lambda p: _edit(p, lambda r: r["metrics"].update(nll="90")), "not a number"),
    (lambda p: _edit(p, lambda r: r.update(metrics={})), "no metric values"),
    (lambda p: _edit(p, lambda r: r.update(run_dir="/work/runs/x")), "unknown fields run_dir"),
    (lambda p: _edit(p, lambda r: r.pop("finished_at")), "missing finished_at"),
    (lambda p: _edit(p, lambda r: r.update(status="failed")), "done runs only"),
    (lambda p: _edit(p, lambda r: r["run"]["config"].update(k=5)), "hashes to"),
    (lambda p: _edit(p, lambda r: r["run"]["eval"].update(cache_root="/data")), "a folder of the machine"),
    (lambda p: p.rename(p.with_name("vae-L1-k1-seed0-00000000.json")), "belongs at"),
])
def test_a_bad_record_is_refused_in_one_line(tmp_path, damage, said):
    store, path = _archived(tmp_path)
    damage(path)
    with pytest.raises(GenbenchError, match=said) as caught:
        read_archive(store, tmp_path / "runs")
    assert "\n" not in str(caught.value)


def test_a_link_is_not_read_as_a_record(tmp_path):
    store, path = _archived(tmp_path)
    target = tmp_path / "elsewhere.json"
    path.rename(target)
    os.symlink(target, path)
    with pytest.raises(GenbenchError, match="not a regular file"):
        read_record(path, store, tmp_path / "runs")


def test_a_writers_temporary_file_is_not_a_record(tmp_path):
    store, path = _archived(tmp_path)
    (path.parent / f".{path.name}.abc.tmp").write_text("{half")
    assert len(read_archive(store, tmp_path / "runs")) == 1


def test_a_name_that_would_leave_the_archive_is_refused(tmp_path):
    with pytest.raises(GenbenchError, match="not inside"):
        record_path(tmp_path / "archive", replace(identity(), budget="../../x"))


def test_genbench_archive_says_what_it_did_and_a_bad_runs_folder_is_one_line(tmp_path, capsys):
    runs_dir = results(tmp_path, (identity(0), "done"))
    published = tmp_path / "leaderboards"
    assert main(["archive", str(runs_dir), "--published", str(published)]) == 0
    out = capsys.readouterr().out
    assert "archived 1 new record(s)" in out and len(list((published / "archive").rglob("*.json"))) == 1
    assert main(["archive", str(tmp_path / "absent"), "--published", str(published)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genbench: ") and "not a folder" in err[0]


def test_the_committed_archive_holds_valid_records_of_the_long_budget():
    runs = read_archive(ROOT / "leaderboards" / "archive", ROOT / "runs")
    assert len(runs) >= 4
    assert all(r.finished.status == "done" and r.finished.metrics for r in runs)
    long = {(r.run.name, r.run.seed) for r in runs if r.run.budget == "long"}
    assert {("vae-L1-k5", 0), ("vae-L1-k5", 1), ("iwae-L1-k5", 0), ("iwae-L1-k5", 1)} <= long
