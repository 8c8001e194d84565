"""Sweeps through submitit: jobs that never open the database, results collected exactly once.

The jobs are real subprocesses (submitit's LocalExecutor starts them as Slurm would start array
tasks): a sweep of the smoke suite, a job preempted mid-run and requeued, two sweeps at once into
one database. Slurm itself is not here: its job parameters are checked as sbatch would get them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from genbench.cli import main
from genbench.context import LaunchOptions, RunContext, SuiteRequest, parse_time
from genbench.launch.executors import local_threads, slurm_parameters
from genbench.launch.sweep import run_sweep
from genbench.results.db import ResultsDB
from genbench.results.rundir import read_owner
from genbench.runner import load_suite, run_suite
from genbench.suites import SUITES
from genbench.train.checkpoint import read_checkpoint


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Jobs of one torch thread each (their environment is this one's): fast on a busy machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _run(tmp_path, *extra: str, db: str = "db.sqlite") -> list[str]:
    return ["run", "--suite", "smoke", "--budget", "smoke", "--no-progress", "--db", str(tmp_path / db),
            "--runs-dir", str(tmp_path / "runs"), "--leaderboards", str(tmp_path / "lb"), *extra]


@pytest.mark.slow
def test_a_local_sweep_of_the_smoke_suite_completes_and_is_collected_once(tmp_path, capsys):
    assert main(_run(tmp_path, "--launcher", "local", "--workers", "2")) == 0
    out, err = capsys.readouterr()
    rows = ResultsDB(tmp_path / "db.sqlite").runs(status=None)
    names = sorted(r.name for r in SUITES["smoke"].runs)
    assert sorted(r["name"] for r in rows) == names and {r["status"] for r in rows} == {"done"}
    assert all(r["owner"].startswith("job ") and r["world_size"] == 1 for r in rows)  # trained by jobs
    assert all(f"[done] {name} seed 0" in out for name in names), out
    assert "smoke" in (tmp_path / "lb" / "smoke.md").read_text()

    assert main(["collect", str(tmp_path / "runs"), "--db", str(tmp_path / "db.sqlite"), "--leaderboards",
                 str(tmp_path / "lb")]) == 0
    assert "collected 0 new result(s)" in capsys.readouterr().out  # the launcher collected them already
    for expected in (3, 0):  # a new database: each result once, then nothing
        assert main(["collect", str(tmp_path / "runs"), "--db", str(tmp_path / "fresh.sqlite"),
                     "--leaderboards", str(tmp_path / "lb2")]) == 0
        assert f"collected {expected} new result(s)" in capsys.readouterr().out
    fresh = ResultsDB(tmp_path / "fresh.sqlite").runs(status=None)
    assert {r["run_key"]: r["metrics"] for r in fresh} == {r["run_key"]: r["metrics"] for r in rows}

    assert main(["status", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["launcher"] == "local" and [r["state"] for r in status["runs"]] == ["done"] * 3
    assert all(r["job_id"] and Path(r["log"]).is_file() for r in status["runs"])
    assert main(_run(tmp_path, "--launcher", "local")) == 0  # planned again: every run cached, no job
    assert capsys.readouterr().out.count("[cached]") == 3


LONG_VAE = """
name = "preempt"
dataset = "toy"
[train]
batch_size = 20
checkpoint_every = 50
[budgets.smoke]
epochs = 3
n_test = 100
k = 5
[[runs]]
name = "vae"
model = "vae"
config = { layers = 1, k = 1 }
"""


def _preempt_when_checkpointed(run_dirs: Path, done: threading.Event, sent: list) -> None:
    """Send the job's process the signal Slurm sends a preempted job, once its run has a checkpoint."""
    deadline = time.time() + 120
    while not done.is_set() and time.time() < deadline:
        for run_dir in run_dirs.glob("*/*/vae-*"):
            owner = read_owner(run_dir) if (run_dir / "owner.json").exists() else None
            if owner and (run_dir / "checkpoint.safetensors").exists():
                os.kill(owner["pid"], signal.SIGUSR2)
                sent.append(owner["pid"])
                return
        time.sleep(0.02)


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    suite_file = tmp_path / "preempt.toml"
    suite_file.write_text(LONG_VAE)
    suite = load_suite(str(suite_file))
    done, sent = threading.Event(), []
    watcher = threading.Thread(target=_preempt_when_checkpointed, args=(tmp_path / "runs", done, sent))
    watcher.start()
    try:
        db = ResultsDB(tmp_path / "db.sqlite")
        local = LaunchOptions("local", device="cpu")
        [outcome], sweep_id = run_sweep(SuiteRequest(suite, suite.budget("smoke"), source=str(suite_file)),
                                        RunContext(db, tmp_path / "runs", log=lambda *_: None,
                                                   warn=lambda *_: None, launch=local), poll=0.2)
    finally:
        done.set()
        watcher.join()
    assert sent and outcome.status == "done", outcome
    result = json.loads((outcome.run_dir / "result.json").read_text())
    assert 0 < result["resumed_from"] < result["steps"] == 300  # resumed from genbench's checkpoint
    [log] = (tmp_path / "runs" / "sweeps" / sweep_id / "jobs").glob("*_log.out")
    assert "preempted" in log.read_text() and "requeued" in log.read_text()

    torch.set_num_threads(local_threads(1, 1))  # the job's threads: the same float operations
    [alone] = run_suite(SuiteRequest(suite, suite.budget("smoke")),
                        RunContext(ResultsDB(tmp_path / "alone.sqlite"), tmp_path / "alone",
                                   torch.device("cpu"), progress=False, log=lambda *_: None))
    _, resumed, _ = read_checkpoint(outcome.run_dir / "checkpoint.safetensors")
    _, uninterrupted, _ = read_checkpoint(alone.run_dir / "checkpoint.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    [row] = db.runs(status=None)
    assert row["metrics"] == ResultsDB(tmp_path / "alone.sqlite").runs()[0]["metrics"]


def test_two_sweeps_into_one_database_at_once_lose_nothing_and_train_each_run_once(tmp_path):
    suite, db_path = SUITES["smoke"], tmp_path / "db.sqlite"
    outcomes: dict[int, list] = {}

    def sweep(seeds: int) -> None:
        outcomes[seeds], _ = run_sweep(SuiteRequest(suite, suite.budget("smoke"), ["ppca"], seeds),
                                       RunContext(ResultsDB(db_path), tmp_path / "runs", log=lambda *_: None,
                                                  warn=lambda *_: None,
                                                  launch=LaunchOptions("local", device="cpu")), poll=0.2)

    threads = [threading.Thread(target=sweep, args=(n,)) for n in (2, 3)]  # seeds 0-1 and 0-2
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = ResultsDB(db_path).runs(status=None)
    assert sorted(r["seed"] for r in rows) == [0, 1, 2] and {r["status"] for r in rows} == {"done"}
    for seeds, mine in outcomes.items():  # each launcher accounts for each of its runs
        assert len(mine) == seeds and {o.status for o in mine} <= {"done", "cached", "busy"}, mine
    logs = "".join(log.read_text() for log in (tmp_path / "runs" / "sweeps").glob("*/jobs/*_log.out"))
    for seed in (0, 1, 2):  # trained by exactly one job of the two sweeps; the other found it done or held
        assert logs.count(f"[done] ppca seed {seed} ") == 1, logs


def test_slurm_jobs_get_one_array_task_per_run_with_the_sweeps_resources(tmp_path, monkeypatch, capsys):
    submitit = pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string

    import genbench.context

    assert main(_run(tmp_path, "--launcher", "slurm")) == 2  # this machine has no Slurm: one line
    assert "--launcher slurm: sbatch/srun not found here" in capsys.readouterr().err
    monkeypatch.setattr(genbench.context.shutil, "which", lambda name: f"/usr/bin/{name}")  # a login node
    options = LaunchOptions("slurm", partition="gpu", gpus_per_run=2, time="1-12:00:00", array_parallelism=4)
    params = slurm_parameters(options, "genbench-mnist")
    script = _make_sbatch_string(command="python -m submitit.core._submit X", folder=tmp_path, map_count=12,
                                 **params)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --time=2160",
                 "#SBATCH --array=0-11%4", "#SBATCH --signal=USR2@120", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --job-name=genbench-mnist"):
        assert line in script, script
    assert submitit.__version__
    assert [parse_time(t) for t in ("90", "1:30", "02:00:00", "1-0", "1-2:30")] == [90, 2, 120, 1440, 1590]


@pytest.mark.parametrize("flags, message", [
    (["--workers", "2"], "--workers applies to a sweep: give --launcher local or slurm"),
    (["--launcher", "local", "--partition", "gpu"], "--partition applies to --launcher slurm, not local"),
    (["--launcher", "slurm", "--workers", "2"], "--workers applies to --launcher local, not slurm"),
    (["--launcher", "local", "--time", "soon"], "--time 'soon': not a Slurm time limit"),
])
def test_sweep_flags_are_checked_before_anything_runs(tmp_path, capsys, flags, message):
    assert main(_run(tmp_path, *flags)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs" / "sweeps").exists()
