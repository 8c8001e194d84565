"""Hostile databases and records: no bad row takes the tables down, nothing without numbers is
recorded as done, a new database's WAL switch cannot race, and ``genbench collect`` skips and names
a bad ``result.json`` (never hanging on a FIFO).

Classes, not a corpus: every column of a runs row set to every kind of wrong value, every kind of
bad metric, every kind of bad result field; each through the code path a user reaches (the CLI
where a command reads the database).
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbench.cli import main
from genbench.core.errors import GenbenchError
from genbench.launch.collect import collect
from genbench.results import db as dbmod
from genbench.results.db import FinishedRun, ResultsDB
from genbench.results.leaderboard import render_leaderboard
from genbench.results.paper_tables import render_paper_table
from genbench.results.rundir import RESULT_FILE, finished_run, read_result, write_result
from genbench.suites import SUITES
from tests.harness.test_hostile_inputs import Case, problems, run_driver
from tests.results.test_results import spec


# --- the WAL switch of a new database -------------------------------------------------------------
def test_a_new_database_opened_by_many_threads_at_once_never_fails():
    """The root cause (the module docstring of genbench.results.db): two openers of a new database
    both read it and both upgrade to the write lock the journal-mode switch needs; SQLite fails one
    at once. Before the fix 6 to 13 of the 600 opens failed in each of 4 runs on 2 cores with a
    test run beside it (none on cores kept busy by two spinning processes: the openers then rarely
    run at the same instant, so the next test makes the race deterministic); now none may."""
    import tempfile

    threads, paths = 4, 150
    failures: list[str] = []
    for _ in range(paths):
        folder = Path(tempfile.mkdtemp(prefix="genbench-wal-"))
        start = threading.Barrier(threads)

        def open_it(path=folder / "db.sqlite", start=start):
            start.wait()
            try:
                ResultsDB(path)
            except Exception as exc:  # noqa: BLE001 (each failure is the finding)
                failures.append(f"{type(exc).__name__}: {exc}")

        workers = [threading.Thread(target=open_it) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        with sqlite3.connect(folder / "db.sqlite") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not failures, f"{len(failures)} of {threads * paths} opens failed: {sorted(set(failures))}"


def test_an_opener_meeting_another_mid_switch_waits_for_it_instead_of_failing(tmp_path):
    """The race made deterministic: another opener is in the middle of its switch to WAL (it holds
    the write lock of the new file, still in rollback mode, and the folder lock every opener holds
    while it switches). Before the fix the opener failed at once with "database is locked" (its
    upgrade from the pragma's read lock is not retried by SQLite's busy handler); now it waits for
    the switch to end and opens. The join's timeout only bounds how long the old failure is given
    to show: the fixed opener succeeds whatever the timing."""
    import contextlib

    path = tmp_path / "db.sqlite"
    other = sqlite3.connect(path, isolation_level=None)
    folder_lock = getattr(dbmod, "_folder_lock", None)  # before the fix: none
    outcome: list[str] = []

    def open_it():
        try:
            ResultsDB(path)
            outcome.append("opened")
        except Exception as exc:  # noqa: BLE001 (the failure is the finding)
            outcome.append(f"{type(exc).__name__}: {exc}")

    opener = threading.Thread(target=open_it)
    with folder_lock(tmp_path) if folder_lock else contextlib.nullcontext():
        other.execute("BEGIN IMMEDIATE")
        opener.start()
        opener.join(timeout=2)
        other.execute("COMMIT")
    opener.join()
    other.close()
    assert outcome == ["opened"]


# --- writing: nothing without numbers is done -----------------------------------------------------
BAD_METRICS = [({}, "no metric values"), ({"nll": math.nan}, "metric nll of the"),
               ({"nll": math.inf}, "metric nll of the"), ({"nll": 1.0, "elbo": None}, "metric elbo"),
               ({"nll": "1.5"}, "metric nll of the"), ({"nll": True}, "metric nll of the")]


@pytest.mark.parametrize("metrics, fragment", BAD_METRICS)
def test_finish_run_refuses_a_run_without_finite_numbers(tmp_path, metrics, fragment):
    db = ResultsDB(tmp_path / "db.sqlite")
    run_id = db.start_run(spec("a"), "/tmp/x", "cpu")
    with pytest.raises(GenbenchError, match=fragment):
        db.finish_run(run_id, metrics, 1.0, 1.0)
    [row] = db.runs(status=None)
    assert row["status"] == "running" and row["metrics"] == {}


def test_a_nan_uncertainty_is_recorded_and_rendered_without_it(tmp_path):
    """One seed on one test point has no standard error: NaN is allowed there, and stored as NULL."""
    db = ResultsDB(tmp_path / "db.sqlite")
    db.finish_run(db.start_run(spec("a"), "/tmp/x", "cpu"), {"nll": 90.0, "nll_se": math.nan}, 1.0, 1.0)
    [row] = db.runs()
    assert row["metrics"] == {"nll": 90.0}


@pytest.mark.parametrize("metrics, fragment", BAD_METRICS)
def test_record_external_refuses_a_result_without_finite_numbers(tmp_path, metrics, fragment):
    db = ResultsDB(tmp_path / "db.sqlite")
    run = spec("ext", budget="external")
    with pytest.raises(GenbenchError, match=fragment):
        db.record_external("external-key", run, _provenance(), metrics, {}, "cpu", 1.0)
    assert db.runs(status=None) == []


def _provenance() -> dict:
    return {"code": "zoo:vae", "weights": "/tmp/w.safetensors", "weights_sha256": "0" * 64}


def _finished(**changes) -> FinishedRun:
    values = {"status": "done", "run_dir": "/tmp/x", "device": "cpu", "producer": "job 1",
              "metrics": {"nll": 90.0}, "curve": [{"epoch": 1.0, "loss": 3.0}], "train_seconds": 1.0}
    return FinishedRun(**{**values, **changes})


BAD_FINISHED = [({"metrics": {"nll": "abc"}}, "metric nll of the"), ({"metrics": {}}, "no metric values"),
                ({"metrics": {"nll": math.nan}}, "metric nll of the"),
                ({"curve": [{"loss": 3.0}]}, "row 0 of its learning curve has no finite epoch"),
                ({"curve": [{"epoch": 1, "loss": "x"}]}, "'loss' at epoch 1"),
                ({"curve": [{"epoch": 1}, {"epoch": 1}]}, "epoch 1 twice"),
                ({"skipped": {"fid": 5}}, "skipped metrics"),
                ({"train_seconds": "fast"}, "its train_seconds is 'fast'"),
                ({"world_size": 1.5}, "its world_size is 1.5"), ({"versions": ["1"]}, "its versions")]


@pytest.mark.parametrize("changes, fragment", BAD_FINISHED)
def test_ingest_refuses_a_result_it_could_not_render(tmp_path, changes, fragment):
    db = ResultsDB(tmp_path / "db.sqlite")
    with pytest.raises(GenbenchError, match=fragment):
        db.ingest(spec("a"), _finished(**changes))
    assert db.runs(status=None) == []


@pytest.mark.parametrize("train, fragment", [({"epochs": 2}, "training seed is None"),
                                             ({"epochs": 2, "seed": "0"}, "training seed is '0'"),
                                             ({"seed": 0}, "training epochs are None")])
def test_ingest_refuses_an_identity_without_a_seed_or_epochs(tmp_path, train, fragment):
    db = ResultsDB(tmp_path / "db.sqlite")
    with pytest.raises(GenbenchError, match=fragment):
        db.ingest(replace(spec("a"), train=train), _finished())
    assert db.runs(status=None) == []


# --- reading: a bad row is named once and left out; the rest renders -------------------------------
#: a value of every kind a hand-edited or foreign row may hold where genbench wrote something else
WRONG_VALUES = [None, "x", "", 5, -1.5, "[1, 2]", "{", '"text"', "null", b"\x00\x01"]
#: the columns of a runs row a renderer reads
COLUMNS = ["suite", "name", "model", "dataset", "config", "seed", "budget", "train", "eval", "status",
           "finished_at", "train_seconds", "eval_seconds", "versions", "run_key", "external", "device",
           "run_dir", "started_at", "world_size"]
#: what a hostile metric row can be: its name and value
BAD_METRIC_ROWS = [("nll", None), ("nll", "abc"), ("nll", b"\x00"), ("nll", math.inf), (5, 1.0)]


def _hostile_database(path: Path) -> tuple[ResultsDB, list[int]]:
    """Two good runs of the mnist suite, then one run per (column, wrong value) and per bad metric row,
    each changed by hand as another program could; the ids of the changed rows."""
    db = ResultsDB(path)
    for seed in (0, 1):
        run_id = db.start_run(spec(f"good{seed}", seed=seed), "/tmp/x", "cpu")
        db.finish_run(run_id, {"nll": 95.0 + seed, "active_units": 12.0}, 10.0, 1.0)
    changed = []
    edits = ([f"UPDATE OR IGNORE runs SET {column} = ? WHERE id = ?", value]
             for column in COLUMNS for value in WRONG_VALUES)
    metric_edits = (["UPDATE OR IGNORE metrics SET name = ?, value = ? WHERE run_id = ?", name, value]
                    for name, value in BAD_METRIC_ROWS)
    extra = [["DELETE FROM metrics WHERE run_id = ?"],
             ["UPDATE runs SET external = ? WHERE id = ?", json.dumps({"code": 5})],
             ["UPDATE runs SET versions = ? WHERE id = ?", json.dumps(["torch", "2"])],
             ["UPDATE runs SET eval = ? WHERE id = ?", json.dumps({"k": [1, 2], "n_test": {}})],
             ["UPDATE runs SET train = ? WHERE id = ?", json.dumps({"seed": 0})],
             ["INSERT INTO skipped (metric, reason, run_id) VALUES ('fid', ?, ?)", b"\x00"],
             ["UPDATE runs SET dataset = ? WHERE id = ?", "not-a-dataset"]]
    for i, (statement, *values) in enumerate([*edits, *metric_edits, *extra]):
        bad = spec(f"bad{i}", name="vae-L2-k1", config={"layers": 2, "k": 1, "objective": "vae"})
        run_id = db.start_run(bad, "/tmp/x", "cpu")
        db.finish_run(run_id, {"nll": 90.0 + i}, 10.0, 1.0)
        with sqlite3.connect(path) as conn:
            conn.execute(statement, [*values, run_id])
        changed.append(run_id)
    return db, changed


def test_every_renderer_survives_every_kind_of_bad_row_naming_each_once(tmp_path, capsys):
    path = tmp_path / "db.sqlite"
    _, changed = _hostile_database(path)
    for argv in (["report", "--db", str(path), "--out", str(tmp_path / "report")],
                 ["tables", "--paper", "iwae", "--db", str(path), "--out", str(tmp_path / "iwae.md")]):
        assert main(argv) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        named = [line for line in err.splitlines() if "left out of the tables" in line]
        assert len(named) == len({line.split(" (")[0] for line in named})  # each bad row once
        assert "Traceback" not in err
    db = ResultsDB(path)
    md, _ = render_leaderboard(db, SUITES["mnist"], tmp_path / "lb")
    assert "95.50 (seeds 95.00, 96.00)" in md.read_text()  # the two good seeds, whatever else the db holds
    capsys.readouterr()
    db = ResultsDB(path)
    shown = {run["id"] for run in db.runs()}
    err = capsys.readouterr().err
    named = {int(m) for m in re.findall(r" run (\d+) \(.*left out of the tables", err)}
    assert shown | named == set(range(1, len(changed) + 3)) and not shown & named  # each row one or other
    for fragment in ("its metric nll is NULL", "its config is not JSON",
                     "its versions is a JSON list, not an object", "done without metric values",
                     "its seed is 'x', not an integer", "its training config has no number of epochs",
                     "its evaluation settings are not plain", "its external provenance lacks",
                     "a skipped metric's reason is not text"):
        assert fragment in err, fragment
    assert "95.50" in render_paper_table("iwae", db)


def test_a_done_run_with_null_metrics_no_longer_takes_report_and_tables_down(tmp_path, capsys):
    """The critical break: a scored model's NaN metrics recorded as NULL (by an older genbench) made
    `genbench report` and every leaderboard die with a TypeError in results/aggregate.py."""
    path = tmp_path / "db.sqlite"
    db = ResultsDB(path)
    db.finish_run(db.start_run(spec("good"), "/tmp/x", "cpu"), {"nll": 95.0}, 10.0, 1.0)
    bad = db.start_run(spec("nan"), "/tmp/x", "cpu")
    db.finish_run(bad, {"nll": 1.0}, 10.0, 1.0)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE metrics SET value = NULL WHERE run_id = ?", (bad,))
    assert main(["report", "--db", str(path), "--out", str(tmp_path / "report")]) == 0
    err = capsys.readouterr().err
    assert f"run {bad} ('vae-L1-k1') left out of the tables: its metric nll is NULL" in err
    assert err.count("left out") == 1
    md, _ = render_leaderboard(ResultsDB(path), SUITES["mnist"], tmp_path / "lb")
    assert "95.00" in md.read_text()


# --- the database file itself: one line each -----------------------------------------------------
def _done_database(path: Path, runs: int = 40) -> Path:
    db = ResultsDB(path)
    for i in range(runs):
        db.finish_run(db.start_run(spec(f"r{i}", seed=i), "/tmp/x", "cpu"), {"nll": 90.0 + i}, 1.0, 1.0)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def database_file_cases(d: Path) -> list[Case]:
    """Databases corrupt after their first page, and a writable database in a read-only folder."""
    d.mkdir(parents=True, exist_ok=True)
    corrupt = _done_database(d / "corrupt.sqlite")
    data = bytearray(corrupt.read_bytes())
    data[4096:] = bytes(len(data) - 4096)  # every page but the first zeroed
    corrupt.write_bytes(bytes(data))
    truncated = _done_database(d / "truncated.sqlite")
    truncated.write_bytes(truncated.read_bytes()[:4096 + 100])
    (d / "locked_folder").mkdir()
    _done_database(d / "locked_folder" / "db.sqlite")
    (d / "locked_folder").chmod(0o555)
    cases = [("db_zeroed_after_page_1", corrupt, "a corrupt database"),
             ("db_truncated_after_page_1", truncated, "corrupt"),
             ("db_in_a_read_only_folder", d / "locked_folder" / "db.sqlite", "is not writable, and SQLite")]
    return ([Case(name, ["tables", "--paper", "iwae", "--db", str(path)], fragment)
             for name, path, fragment in cases]
            + [Case(f"report_{name}", ["report", "--db", str(path), "--out", str(d / "out")], fragment)
               for name, path, fragment in cases])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_corrupt_database_or_one_in_a_read_only_folder_is_one_line(tmp_path):
    cases = database_file_cases(tmp_path / "files")
    try:
        results = run_driver(cases, tmp_path)
    finally:
        (tmp_path / "files" / "locked_folder").chmod(0o755)
    failures = {case.name: [*problems(case, result), result["stderr"].strip()[-400:]]
                for case, result in zip(cases, results, strict=True) if problems(case, result)}
    assert not failures, json.dumps(failures, indent=1)


@pytest.mark.slow
def test_a_corrupt_database_is_one_line_through_the_cli_as_root_too(tmp_path):
    """The corrupt cases alone (the read-only folder needs a user that is not root)."""
    cases = [c for c in database_file_cases(tmp_path / "files") if "read_only" not in c.name]
    (tmp_path / "files" / "locked_folder").chmod(0o755)
    failures = {case.name: [*problems(case, result), result["stderr"].strip()[-400:]]
                for case, result in zip(cases, run_driver(cases, tmp_path), strict=True)
                if problems(case, result)}
    assert not failures, json.dumps(failures, indent=1)


def test_a_locked_database_says_it_waits_then_gives_one_line(tmp_path, monkeypatch, capsys):
    """Another process holds the write lock: `genbench collect` says it waits, then gives up in one
    line (the wait shortened from 60 s; the lock held by a connection the test keeps open)."""
    path = _done_database(tmp_path / "db.sqlite", runs=1)
    run_dir = tmp_path / "runs" / "a"
    write_result(run_dir, spec("new"), _finished())
    monkeypatch.setattr(dbmod, "LOCK_WAIT", 0.6)
    monkeypatch.setattr(dbmod, "SAY_WAITING_AFTER", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code = main(["collect", str(tmp_path / "runs"), "--db", str(path), "--leaderboards",
                     str(tmp_path / "lb")])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 2, lines
    assert lines[0] == f"waiting for the results database {path}, locked by another process (up to 1 s)"
    assert lines[1].startswith(f"genbench: results database {path}: locked by another process for over 1 s")


# --- collect: a bad record is skipped and named ---------------------------------------------------
def _result_record(run_dir: Path) -> dict:
    write_result(run_dir, spec("rec"), _finished())
    return json.loads((run_dir / RESULT_FILE).read_text())


RECORD_EDITS = {
    "string_metric": (lambda r: r["metrics"].update(nll="abc"), "metric nll of the"),
    "no_seed": (lambda r: r["run"]["train"].pop("seed"), "training seed is None"),
    "curve_row_without_epoch": (lambda r: r["curve"].append({"loss": 1.0}), "has no finite epoch"),
    "null_metric": (lambda r: r["metrics"].update(nll=None), "metric nll of the"),
    "no_metrics": (lambda r: r.update(metrics={}), "no metric values"),
    "metrics_a_list": (lambda r: r.update(metrics=[1]), "no metric values"),
    "name_a_number": (lambda r: r["run"].update(name=5), "its name is 5"),
    "config_a_list": (lambda r: r["run"].update(config=[1]), "its config is not a JSON object"),
    "data_shape_text": (lambda r: r["run"].update(data_shape="abc"), "data shape"),
    "versions_a_list": (lambda r: r.update(versions=["torch"]), "its versions"),
}


def test_collect_skips_and_names_each_bad_record_and_never_opens_a_fifo(tmp_path, capsys):
    runs = tmp_path / "runs"
    good = _result_record(runs / "good")
    for name, (edit, _) in RECORD_EDITS.items():
        record = json.loads(json.dumps(good))
        edit(record)
        (runs / name).mkdir(parents=True)
        (runs / name / RESULT_FILE).write_text(json.dumps(record))
    (runs / "fifo").mkdir()
    os.mkfifo(runs / "fifo" / RESULT_FILE)
    (runs / "link").mkdir()
    (runs / "link" / RESULT_FILE).symlink_to(runs / "good" / RESULT_FILE)
    (runs / "huge").mkdir()
    with open(runs / "huge" / RESULT_FILE, "wb") as f:
        f.truncate(64 << 20)  # sparse: no disk, but over the limit
    warnings: list[str] = []
    report = collect(runs, ResultsDB(tmp_path / "db.sqlite"), warn=warnings.append)
    assert len(report.added) == 1 and report.added[0][1]["key"] == good["key"]
    for name, (_, fragment) in RECORD_EDITS.items():
        [line] = [w for w in warnings if f"/{name}/" in w]
        assert fragment in line and line.endswith("skipped"), line
    for name, fragment in (("fifo", "not a regular file"), ("link", "not a regular file"),
                           ("huge", "over the limit of 16,777,216 bytes")):
        [line] = [w for w in warnings if f"/{name}/" in w]
        assert fragment in line, line
    assert len(warnings) == len(RECORD_EDITS) + 3
    [row] = ResultsDB(tmp_path / "db.sqlite").runs(status=None)
    assert row["metrics"] == {"nll": 90.0}


def test_read_result_refuses_a_fifo_without_blocking(tmp_path):
    """A FIFO with no writer: opening it for reading would block forever."""
    (tmp_path / "r").mkdir()
    os.mkfifo(tmp_path / "r" / RESULT_FILE)
    with pytest.raises(GenbenchError, match="not a regular file"):
        read_result(tmp_path / "r")


def test_a_good_record_round_trips_through_collect(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    finished = finished_run("done", run_dir, "cpu", "job 1", (1, "none"), metrics={"nll": 90.0},
                            curve=[{"epoch": 1.0, "loss": 2.0}])
    write_result(run_dir, spec("a"), finished)
    run, read, _ = read_result(run_dir)
    assert run == spec("a") and asdict(read) == asdict(finished)


# --- property: random interleavings of open, claim, finish, fail, collect and render ---------------
#: the runs the actors contend for
CONTENDED = 3
OPERATIONS = st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("claim"), st.integers(0, CONTENDED - 1)),
    st.tuples(st.just("finish"), st.integers(0, CONTENDED - 1), st.integers(0, 99)),
    st.tuples(st.just("fail"), st.integers(0, CONTENDED - 1)),
    st.tuples(st.just("collect"), st.integers(0, CONTENDED - 1), st.integers(0, 99)),
    st.tuples(st.just("render")),
    st.tuples(st.just("scribble")),
)


def _contended(i: int):
    return spec(f"contended{i}")


def act(path: str, runs_dir: str, script: list[tuple]) -> list[tuple]:
    """One actor (a process or a thread, its own owner): ``script`` on the database at ``path``; what
    it did: ("done", key, value) for each run it recorded as done (a finish or a collected result
    that the database took), ("seen", {key: value}) for each render (whose tables it also drew).
    ``scribble`` is another program writing a done row without numbers by hand: no render may show
    it, or fail on it."""
    from genbench.results.leaderboard import leaderboard_markdown

    db = ResultsDB(path)
    held: dict[int, int] = {}
    events: list[tuple] = []
    for op, *args in script:
        if op == "open":
            db = ResultsDB(path, owner=db.owner)
        elif op == "claim":
            claim = db.claim_run(_contended(args[0]), Path(runs_dir) / str(args[0]), "cpu")
            if claim.status == "claimed":
                held[args[0]] = claim.run_id
        elif op == "finish" and args[0] in held:
            if db.finish_run(held.pop(args[0]), {"nll": float(args[1])}, 1.0, 1.0):
                events.append(("done", _contended(args[0]).key, float(args[1])))
        elif op == "fail" and args[0] in held:
            db.fail_run(held.pop(args[0]), "failed on purpose")
        elif op == "collect":
            folder = Path(runs_dir) / f"results-{args[0]}-{args[1]}"
            write_result(folder, _contended(args[0]), _finished(metrics={"nll": float(args[1])}))
            for _, record in collect(folder, db, warn=lambda line: None).added:
                events.append(("done", record["key"], record["metrics"]["nll"]))
        elif op == "scribble":
            run_id = db.start_run(spec(f"scribbled-{os.getpid()}-{len(events)}-{threading.get_ident()}"),
                                  runs_dir, "cpu")
            with sqlite3.connect(path, timeout=60) as conn:
                conn.execute("UPDATE runs SET status = 'done' WHERE id = ?", (run_id,))
                conn.execute("INSERT INTO metrics (run_id, name, value) VALUES (?, 'nll', NULL)", (run_id,))
            events.append(("scribbled",))
        elif op == "render":
            leaderboard_markdown(db, SUITES["mnist"], Path(runs_dir) / "lb", with_figures=False)
            render_paper_table("iwae", db)
            events.append(("seen", {r["run_key"]: r["metrics"]["nll"] for r in db.runs()}))
    return events


@pytest.fixture(scope="module")
def processes():
    """Two worker processes (spawned once for the module) that run actors' scripts."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        yield pool


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@pytest.mark.slow
@given(scripts=st.lists(st.lists(OPERATIONS, min_size=1, max_size=8), min_size=3, max_size=3))
def test_interleaved_writers_and_readers_lose_nothing_undo_nothing_and_always_render(tmp_path_factory,
                                                                                    processes, scripts):
    """Three actors at once on a new database (two processes and a thread of this one): every run
    recorded as done stays done with its numbers (one done row per run, the value its recorder
    recorded), every render succeeds, and no reader ever sees a done run change or vanish."""
    folder = tmp_path_factory.mktemp("interleaved")
    path = str(folder / "db.sqlite")
    pending = [processes.apply_async(act, (path, str(folder / f"actor{i}"), script))
               for i, script in enumerate(scripts[:2])]
    here = act(path, str(folder / "actor2"), scripts[2])
    histories = [p.get(timeout=120) for p in pending] + [here]
    recorded = [tuple(event[1:]) for events in histories for event in events if event[0] == "done"]
    keys = [key for key, _ in recorded]
    assert len(keys) == len(set(keys)), recorded  # a run is recorded as done once
    final = {r["run_key"]: r["metrics"]["nll"] for r in ResultsDB(path).runs()}
    assert final == dict(recorded)  # nothing lost, nothing more
    for events in histories:
        seen = [state for kind, *state in events if kind == "seen" for state in state]
        for before, after in zip(seen, seen[1:], strict=False):
            assert before.items() <= after.items()  # nothing undone, as a reader sees it
        assert all(state.items() <= final.items() for state in seen)


def test_status_reads_hostile_run_records_without_hanging_or_a_traceback(tmp_path):
    """`genbench status` over a sweep whose run directories hold a FIFO named result.json and
    owner.json (before: it hung forever), an owner.json whose heartbeat is text (before: a
    TypeError), and a result with a text metric: each run's state, its record's problem as its error.
    A subprocess, so that the old hang fails the test instead of stopping it."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    dirs = {name: runs / name for name in ("fifo", "hostile", "bad")}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    os.mkfifo(dirs["fifo"] / RESULT_FILE)
    os.mkfifo(dirs["fifo"] / "owner.json")
    (dirs["hostile"] / "owner.json").write_text(json.dumps({"job_id": "7", "heartbeat": "abc"}))
    record = _result_record(dirs["bad"])
    record["metrics"]["nll"] = "abc"
    (dirs["bad"] / RESULT_FILE).write_text(json.dumps(record))
    manifest = {"id": "s1", "launcher": "local", "suite": "mnist", "budget": "short", "host": "elsewhere",
                "created_at": 0, "jobs": [],
                "runs": [{"name": name, "seed": 0, "run_dir": str(folder), "key": record["key"],
                          "planned": "queued"} for name, folder in dirs.items()]}
    (runs / "sweeps" / "s1").mkdir(parents=True)
    (runs / "sweeps" / "s1" / "sweep.json").write_text(json.dumps(manifest))
    done = subprocess.run([sys.executable, "-m", "genbench.cli", "status", "--runs-dir", str(runs), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["runs"]}
    assert "not a regular file" in rows["fifo"]["error"]
    assert rows["hostile"]["state"] == "unknown" and rows["hostile"]["job_id"] is None
    assert "metric nll of the" in rows["bad"]["error"]
