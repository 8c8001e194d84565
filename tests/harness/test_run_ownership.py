"""Runs owned by one process at a time, and a suite that survives any one run.

Several ``genbench run`` of one suite share its runs (each trained by exactly one process); an
interrupt of one never touches another's finished runs; a dead owner's run is taken over and
resumes its checkpoint; any failure of a run fails that run only; files are replaced atomically
under concurrent writers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import torch

import genbench.results.db as dbmod
import genbench.runner as runner
from genbench.cli import main
from genbench.context import RunContext, SuiteRequest
from genbench.core.weights import atomic_write
from genbench.data import load_dataset
from genbench.results.db import ResultsDB
from genbench.runner import run_identity, run_suite
from genbench.suites import SUITES
from genbench.train.loop import TrainConfig
from genbench.train.loop import train as real_train
from tests.results.test_results import spec
from zoo import MODELS

SMOKE = SUITES["smoke"]
CPU = torch.device("cpu")
#: a pid no process can have (above Linux's largest pid_max, 2**22)
DEAD_PID = 2**22 + 1

# ---------------------------------------------------------------------------------------------
# several processes on one suite (real subprocesses of the CLI)

#: the CLI's main, after a barrier (so the processes start their sweeps together) and with each
#: run's training delayed by $SLOW seconds (so they overlap); with $TOGETHER = N, a process's first
#: run waits until N processes hold a run each, so that every process gets work whatever the load
#: (no process can take every run before another has started); SIGINT raises KeyboardInterrupt
#: even where the test runner was started with SIGINT ignored
LAUNCH = """
import os, signal, sqlite3, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import genbench.runner as runner
from genbench.cli import main
real = runner.train
waited = False
def owners():
    with sqlite3.connect("file:" + os.environ["DB"] + "?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(DISTINCT owner) FROM runs").fetchone()[0]
def slow(*args, **kwargs):
    global waited
    while not waited and owners() < int(os.environ.get("TOGETHER", "0")):
        time.sleep(0.01)
    waited = True
    time.sleep(float(os.environ["SLOW"]))
    return real(*args, **kwargs)
runner.train = slow
while not os.path.exists(os.environ["GO"]):
    time.sleep(0.01)
sys.exit(main(sys.argv[1:]))
"""


def _launch(base, go, slow: float, *models_and_seeds: str, together: int = 0) -> subprocess.Popen:
    argv = ["run", "--suite", "smoke", "--budget", "smoke", "--no-progress", "--db", str(base / "db.sqlite"),
            "--runs-dir", str(base / "runs"), "--leaderboards", str(base / "lb"), *models_and_seeds]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SLOW": str(slow), "GO": str(go),
           "DB": str(base / "db.sqlite"), "TOGETHER": str(together)}
    return subprocess.Popen([sys.executable, "-c", LAUNCH, *argv], cwd=base, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _rows(base) -> list[dict]:
    """The database's rows, read only (none before a process has made it)."""
    if not (base / "db.sqlite").exists():
        return []
    with sqlite3.connect(f"file:{base / 'db.sqlite'}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]
        except sqlite3.OperationalError:  # made, its tables not yet
            return []


def _pid_of(row: dict) -> int:
    return int(row["owner"].split(":")[1])


def _lines(text: str, status: str) -> set[str]:
    """The runs (``name seed N``) a process's log reported with ``status``."""
    return {line.split("] ", 1)[1].split(":", 1)[0] for line in text.splitlines()
            if line.startswith(f"[{status}] ")}


@pytest.mark.slow
def test_two_processes_on_one_suite_train_every_run_exactly_once(tmp_path):
    go = tmp_path / "go"
    procs = [_launch(tmp_path, go, 0.5, "--models", "ppca", "vae-L1-k1", "--seeds", "2", together=2)
             for _ in range(2)]
    go.touch()
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    rows = _rows(tmp_path)
    names = {f"{r['name']} seed {r['seed']}" for r in rows}
    assert len(rows) == len(names) == 4 and {r["status"] for r in rows} == {"done"}
    trained = [_lines(out, "done") for out, _ in outputs]
    assert trained[0].isdisjoint(trained[1]) and trained[0] | trained[1] == names
    assert all(trained), f"the work was not shared: {trained}"
    for proc, mine in zip(procs, trained, strict=True):  # the database agrees on who trained what
        assert {f"{r['name']} seed {r['seed']}" for r in rows if _pid_of(r) == proc.pid} == mine
    for out, err in outputs:  # every process accounts for every run
        assert _lines(out, "done") | _lines(out, "cached") | _lines(err, "busy") == names


@pytest.mark.slow
def test_an_interrupt_of_one_process_leaves_the_others_done_runs_done(tmp_path):
    # ppca's seeds train one by one (a seed ensemble is claimed whole by one process). The slow process
    # starts first and the fast one only once the slow one holds a run: started together, the fast one
    # could claim all four before the slow one claimed any (seen under load)
    go_slow, go_fast = tmp_path / "go-slow", tmp_path / "go-fast"
    slow = _launch(tmp_path, go_slow, 60.0, "--models", "ppca", "--seeds", "4")
    fast = _launch(tmp_path, go_fast, 0.2, "--models", "ppca", "--seeds", "4")
    go_slow.touch()
    deadline = time.time() + 120
    while not any(r["status"] == "running" and _pid_of(r) == slow.pid for r in _rows(tmp_path)):
        assert slow.poll() is None and time.time() < deadline, slow.communicate()
        time.sleep(0.05)
    go_fast.touch()
    fast_out, fast_err = fast.communicate(timeout=120)
    assert fast.returncode == 0, fast_err
    done_before = {r["id"]: r for r in _rows(tmp_path) if r["status"] == "done"}
    assert len(done_before) == 3 and {_pid_of(r) for r in done_before.values()} == {fast.pid}
    assert "[busy] ppca seed" in fast_err and "1 run(s) left to other processes" in fast_err

    slow.send_signal(signal.SIGINT)
    _, slow_err = slow.communicate(timeout=60)
    assert slow.returncode == 130 and "interrupted" in slow_err
    rows = {r["id"]: r for r in _rows(tmp_path)}
    assert all(rows[i] == r for i, r in done_before.items())  # untouched, to the finishing time
    [interrupted] = [r for r in rows.values() if r["id"] not in done_before]
    assert interrupted["status"] == "failed" and interrupted["error"] == "KeyboardInterrupt"
    assert _pid_of(interrupted) == slow.pid


# ---------------------------------------------------------------------------------------------
# the database: claims, conditional status, heartbeat, old databases


def test_only_the_owner_finishes_or_fails_a_run_and_a_done_run_stays_done(tmp_path):
    mine, theirs = ResultsDB(tmp_path / "db.sqlite", owner="a"), ResultsDB(tmp_path / "db.sqlite", owner="b")
    run_id = mine.start_run(spec("x"), "/tmp/x", "cpu")
    assert theirs.claim_run(spec("x"), "/tmp/x", "cpu").status == "busy"
    assert not theirs.fail_run(run_id, "KeyboardInterrupt")
    assert not theirs.finish_run(run_id, {"nll": 2.0}, 1.0, 1.0)
    assert mine.finish_run(run_id, {"nll": 1.0}, 1.0, 1.0)
    assert not theirs.fail_run(run_id, "KeyboardInterrupt") and not mine.fail_run(run_id, "late")
    assert not mine.finish_run(run_id, {"nll": 3.0}, 1.0, 1.0)
    [row] = mine.runs(status=None)
    assert (row["status"], row["error"], row["owner"], row["metrics"]) == ("done", None, "a", {"nll": 1.0})
    assert theirs.claim_run(spec("x"), "/tmp/x", "cpu").status == "done"


def test_the_heartbeat_beats_while_held_and_notices_a_takeover(tmp_path, monkeypatch):
    monkeypatch.setattr(dbmod, "HEARTBEAT_EVERY", 0.02)
    mine, theirs = ResultsDB(tmp_path / "db.sqlite", owner="a"), ResultsDB(tmp_path / "db.sqlite", owner="b")
    run_id = mine.start_run(spec("x"), "/tmp/x", "cpu")
    first = mine.runs(status=None)[0]["heartbeat"]
    with mine.holding(run_id):
        _wait_for(lambda: mine.runs(status=None)[0]["heartbeat"] > first)
    # the owner hangs (no beats) until its heartbeat is stale, and another process takes over
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute("UPDATE runs SET heartbeat = heartbeat - ?", (2 * dbmod.STALE_AFTER,))
    claim = theirs.claim_run(spec("x"), "/tmp/x", "cpu")
    assert (claim.status, claim.run_id, claim.holder, claim.taken_over) == ("claimed", run_id, "a", True)
    with mine.holding(run_id) as lease:  # the hung owner wakes up: its next beat finds the run gone
        _wait_for(lease.lost.is_set)
    assert not mine.fail_run(run_id, "KeyboardInterrupt")
    assert mine.runs(status=None)[0]["owner"] == "b"


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_an_old_database_gains_the_ownership_columns_and_its_running_rows_are_taken_over(tmp_path):
    path = tmp_path / "old.sqlite"
    old_schema = dbmod.SCHEMA.replace(",\n    owner TEXT,\n    heartbeat REAL", "")
    assert "owner" not in old_schema
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
        for status in ("done", "running"):
            run = spec(status)
            conn.execute("INSERT INTO runs (run_key, suite, name, model, dataset, config, seed, budget, "
                         "train, eval, status, started_at, versions) VALUES (?, 's', 'n', 'vae', 'mnist', "
                         "'{}', 0, 'short', '{\"epochs\": 1}', '{}', ?, 'then', '{}')", (run.key, status))
        conn.execute("INSERT INTO metrics (run_id, name, value) SELECT id, 'nll', 90.0 FROM runs "
                     "WHERE status = 'done'")  # a done row has its numbers
    db = ResultsDB(path)
    assert {r["status"] for r in db.runs(status=None)} == {"done", "running"}
    claim = db.claim_run(spec("running"), "/tmp/x", "cpu")
    assert claim.status == "claimed" and claim.taken_over and claim.holder is None
    assert "without run ownership" in claim.describe_holder()
    assert db.claim_run(spec("done"), "/tmp/x", "cpu").status == "done"
    ResultsDB(path)  # opening it again changes nothing


# ---------------------------------------------------------------------------------------------
# the runner: skipping a held run, taking over a dead owner's


@pytest.fixture
def toy_vae(tmp_path):
    """(db path, identity, run directory, data set) of the smoke suite's vae-L1-k1 on toy data."""
    dataset = load_dataset("toy", None, CPU)
    [entry] = SMOKE.select(["vae-L1-k1"])
    run = run_identity(SMOKE, entry, 0, SMOKE.budget("smoke"), dataset.shape)
    return tmp_path / "db.sqlite", run, run.run_dir(tmp_path / "runs"), dataset


def _train_spy(monkeypatch) -> list:
    """Every TrainResult of the runner's training, in order."""
    results = []

    def spy(*args, **kwargs):
        results.append(real_train(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(runner, "train", spy)
    return results


def _sweep(db: ResultsDB, tmp_path, messages: list | None = None):
    [outcome] = run_suite(SuiteRequest(SMOKE, SMOKE.budget("smoke"), ["vae-L1-k1"]),
                          RunContext(db, tmp_path / "runs", CPU, progress=False, log=lambda *_: None,
                                     warn=(messages.append if messages is not None else lambda *_: None)))
    return outcome


def _claim_elsewhere(path, run, run_dir, owner: str, age: float) -> int:
    """Claim ``run`` as ``owner`` would have, its last heartbeat ``age`` seconds ago."""
    run_id = ResultsDB(path, owner=owner).claim_run(run, run_dir, "cpu").run_id
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - age, run_id))
    return run_id


def test_a_run_held_by_a_live_owner_is_skipped(tmp_path, monkeypatch, toy_vae):
    path, run, run_dir, _ = toy_vae
    _claim_elsewhere(path, run, run_dir, "elsewhere:1:abcd", age=5)
    trained, messages = _train_spy(monkeypatch), []
    outcome = _sweep(ResultsDB(path), tmp_path, messages)
    assert outcome.status == "busy" and not trained
    assert messages == ["[busy] vae-L1-k1 seed 0: being trained by elsewhere:1:abcd (heartbeat 5 s ago); "
                        "skipped"]
    [row] = ResultsDB(path).runs(status=None)
    assert row["status"] == "running" and row["owner"] == "elsewhere:1:abcd"


@pytest.mark.parametrize("owner, age", [("elsewhere:1:abcd", dbmod.STALE_AFTER + 1),  # stale heartbeat
                                        (f"{socket.gethostname()}:{DEAD_PID}:abcd", 1.0)],  # its pid is gone
                         ids=["stale-heartbeat", "dead-pid-on-this-host"])
def test_a_dead_owners_run_is_taken_over_and_resumes_its_checkpoint(tmp_path, monkeypatch, toy_vae, owner,
                                                                    age):
    path, run, run_dir, dataset = toy_vae
    run_id = _claim_elsewhere(path, run, run_dir, owner, age)
    torch.manual_seed(0)
    model = MODELS["vae"].build(run.config, dataset.shape)
    real_train(model, dataset, TrainConfig(**run.train), run_dir, run.checkpoint_meta(), max_steps=50,
               progress=False)  # the dead owner's last checkpoint, half way
    trained, messages = _train_spy(monkeypatch), []
    db = ResultsDB(path)
    outcome = _sweep(db, tmp_path, messages)
    assert outcome.status == "done" and [r.resumed_from for r in trained] == [50]
    [message] = messages  # the heartbeat's age is as old as the training above took, at least ``age``
    said = re.fullmatch(rf"\[takeover\] vae-L1-k1 seed 0: its owner {re.escape(owner)} "
                        r"\(heartbeat (\d+) s ago\) is gone; resuming its checkpoint", message)
    assert said and int(said.group(1)) >= round(age), message
    [row] = db.runs()
    assert (row["id"], row["owner"], row["status"]) == (run_id, db.owner, "done")


# ---------------------------------------------------------------------------------------------
# a suite survives any one run


def _cli_run(tmp_path, *models: str) -> list[str]:
    return ["run", "--suite", "smoke", "--budget", "smoke", "--no-progress", "--models", *models,
            "--db", str(tmp_path / "db.sqlite"), "--runs-dir", str(tmp_path / "runs"),
            "--leaderboards", str(tmp_path / "lb")]


def _raising_for(name: str, exc: BaseException):
    """The runner's training, raising ``exc`` for the run called ``name``."""

    def train(model, dataset, config, run_dir, meta, **kwargs):
        if meta["name"] == name:
            raise exc
        return real_train(model, dataset, config, run_dir, meta, **kwargs)

    return train


def test_a_run_raising_any_exception_fails_and_the_suite_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "train", _raising_for("ppca", RuntimeError("boom")))
    code = main(_cli_run(tmp_path, "ppca", "vae-L1-k1"))
    out, err = capsys.readouterr()
    assert code == 1
    assert "[failed] ppca seed 0: RuntimeError: boom (at test_run_ownership.py:" in out
    assert "[done] vae-L1-k1 seed 0" in out
    assert "1 run(s) failed: ppca seed 0\n  ppca seed 0: RuntimeError: boom" in err
    assert "Traceback" in err  # an unexpected exception shows where it came from
    assert "| vae-L1-k1" in (tmp_path / "lb" / "smoke.md").read_text()
    rows = ResultsDB(tmp_path / "db.sqlite").runs(status=None)
    status = {r["name"]: (r["status"], r["error"]) for r in rows}
    assert status["vae-L1-k1"] == ("done", None) and status["ppca"][0] == "failed"
    assert status["ppca"][1].startswith("RuntimeError: boom (at test_run_ownership.py:")


def test_an_interrupt_fails_its_run_and_stops_the_suite(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "train", _raising_for("ppca", KeyboardInterrupt()))
    assert main(_cli_run(tmp_path, "ppca", "vae-L1-k1")) == 130
    [row] = ResultsDB(tmp_path / "db.sqlite").runs(status=None)  # vae-L1-k1 never started
    assert (row["name"], row["status"], row["error"]) == ("ppca", "failed", "KeyboardInterrupt")


def _poison_weights(model, *args, **kwargs):
    result = real_train(model, *args, **kwargs)
    with torch.no_grad():
        model.components[0, 0] = float("inf")  # as if the last step had overflowed
    return result


@pytest.mark.parametrize("metrics, error", [
    (None, "parameter components has 1 non-finite value(s) after training"),
    ({"nll": float("inf"), "nll_se": 0.1}, "metric nll is inf"),
    ({"nll": 1.0, "nll_se": float("nan")}, None),  # an uncertainty may be NaN (one point, one seed)
], ids=["weights", "metric", "uncertainty"])
def test_weights_or_metrics_that_are_not_finite_fail_the_run(tmp_path, monkeypatch, metrics, error):
    if metrics is None:
        monkeypatch.setattr(runner, "train", _poison_weights)
    else:
        monkeypatch.setattr(runner, "evaluate", lambda *a, **k: dict(metrics))
    db = ResultsDB(tmp_path / "db.sqlite")
    [outcome] = run_suite(SuiteRequest(SMOKE, SMOKE.budget("smoke"), ["ppca"]),
                          RunContext(db, tmp_path / "runs", CPU, progress=False, log=lambda *_: None))
    [row] = db.runs(status=None)
    if error is None:
        assert outcome.status == row["status"] == "done"
    else:
        assert outcome.status == row["status"] == "failed"
        assert error in row["error"] and row["error"] == outcome.error


@pytest.mark.parametrize("flag, where", [("--runs-dir", "file"), ("--leaderboards", "file"),
                                         ("--runs-dir", "file/below")])
def test_an_output_folder_that_is_a_file_is_one_clear_error_before_training(tmp_path, monkeypatch, capsys,
                                                                            flag, where):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("trained"))
    argv = _cli_run(tmp_path, "ppca")
    argv[argv.index(flag) + 1] = str(tmp_path / where)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"genbench: {flag} {tmp_path / where}")
    assert ("is a file, not a folder" if where == "file" else "cannot create the folder") in err
    assert not (tmp_path / "db.sqlite").exists()


# ---------------------------------------------------------------------------------------------
# atomic writes


def test_concurrent_atomic_writes_to_one_path_never_collide_and_leave_no_temporary_files(tmp_path):
    target, errors = tmp_path / "checkpoint.json", []

    def write(tmp, text: str) -> None:
        with open(tmp, "w") as f:
            f.write(text[:10])
            time.sleep(0.0005)  # both halves: another writer's temporary file could be in between
            f.write(text[10:])

    def writer(worker: int) -> None:
        try:
            for i in range(40):
                atomic_write(target, lambda tmp, text=f"{worker:03d}-{i:03d}-" + "x" * 50: write(tmp, text))
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]
    assert target.read_text().endswith("-" + "x" * 50) and len(target.read_text()) == 58
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # as a plain open() would have made it

    def failing(tmp) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"] and target.read_text()[-1] == "x"


def test_an_owner_is_alive_while_its_heartbeat_is_fresh_and_its_process_exists():
    at = time.time()
    assert dbmod.owner_alive("elsewhere:1:x", at - dbmod.STALE_AFTER + 1, at)
    assert not dbmod.owner_alive("elsewhere:1:x", at - dbmod.STALE_AFTER - 1, at)
    assert not dbmod.owner_alive(f"{socket.gethostname()}:{DEAD_PID}:x", at, at)
    assert dbmod.owner_alive(dbmod.new_owner(), at, at)  # this very process
    assert not dbmod.owner_alive(None, at, at)  # a row of a genbench before ownership
