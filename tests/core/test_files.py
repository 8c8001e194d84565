"""The files genbench writes: temporary files of killed writers removed (never a live writer's),
caches only where GENBENCH_CACHE says, and every file and folder with the permissions the user's
umask gives (teammates on a shared cluster read checkpoints and caches)."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from genbench.cli import main
from genbench.core import weights
from genbench.core.weights import atomic_write
from genbench.metrics import features as feats
from genbench.train.checkpoint import save_checkpoint

#: a writer killed mid-write: it writes part of its file, says which temporary file it is, and waits
#: (on its stdin) to be killed
KILLED_WRITER = """
import sys
from pathlib import Path
from genbench.core.weights import atomic_write

def write(tmp):
    tmp.write_bytes(b"half a checkpoint")
    print(tmp, flush=True)
    sys.stdin.read()

atomic_write(Path(sys.argv[1]), write)
"""


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_writers_temporary_file_goes_at_the_next_write_and_a_live_writers_stays(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(run_dir / "checkpoint.safetensors")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(writer.stdout.readline().strip())
        assert tmp.parent == run_dir and tmp.exists()
        atomic_write(run_dir / "owner.json", lambda t: t.write_text("{}"))  # a second writer, while it writes
        assert tmp.exists() and tmp.read_bytes() == b"half a checkpoint"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert _temporaries(run_dir) == [tmp.name]  # nothing removes it but the next start
    save_checkpoint(run_dir, nn.Linear(2, 2), {"step": 1})
    assert _temporaries(run_dir) == []
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.json", "checkpoint.safetensors",
                                                         "owner.json"]


def test_only_genbenchs_own_leftovers_are_removed_and_a_fifo_does_not_block(tmp_path):
    stale = tmp_path / ".result.json.0123456789abcdef.tmp"
    stale.write_text("left by a killed writer")
    others = [tmp_path / ".notes.tmp", tmp_path / "data.0123456789abcdef.tmp", tmp_path / "keep.tmp"]
    for path in others:
        path.write_text("not genbench's")
    os.mkfifo(tmp_path / ".pipe.fedcba9876543210.tmp")
    atomic_write(tmp_path / "result.json", lambda t: t.write_text("{}"))
    assert _temporaries(tmp_path) == sorted(p.name for p in others)


def test_a_temporary_file_swept_before_its_writer_locks_it_is_replaced_by_another(tmp_path, monkeypatch):
    """The one window of the lock: between a temporary file's creation and its lock a sweeper finds it
    unlocked and removes it; the writer sees that and takes another name."""
    writer_locks, lock = [], weights._lock

    def swept_first(fd, how):
        if how == fcntl.LOCK_EX:  # the writer's (a sweeper's never waits: LOCK_NB)
            writer_locks.append(fd)
            if len(writer_locks) == 1:  # another process sweeps, in the window
                assert len(weights.remove_stale_temporaries(tmp_path)) == 1
        return lock(fd, how)

    monkeypatch.setattr(weights, "_lock", swept_first)
    atomic_write(tmp_path / "cache.json", lambda t: t.write_text("features"))
    assert (tmp_path / "cache.json").read_text() == "features" and len(writer_locks) == 2
    assert _temporaries(tmp_path) == []


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _score_with_a_torchscript_net(tmp_path, net: Path, data_root: Path) -> None:
    """``genbench score`` of 30 random 8x8 images against toy data: reference features cached."""
    images = np.random.default_rng(0).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", samples=images)
    assert main(["score", str(tmp_path / "s.npz"), "--dataset", "toy", "--features", str(net),
                 "--n-reference", "60", "--data-root", str(data_root)]) == 0


def test_feature_caches_go_where_genbench_cache_says_and_never_into_the_data_root(tmp_path, monkeypatch,
                                                                                  tiny_torchscript):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    data_root = tmp_path / "data"
    data_root.mkdir()
    _score_with_a_torchscript_net(tmp_path, tiny_torchscript, data_root)
    assert list(data_root.iterdir()) == []
    assert list((tmp_path / "cache" / feats.CACHE_FOLDER).glob("reference-*.safetensors"))


def _modes(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (itself included) with its permission bits."""
    paths = [folder, *folder.rglob("*")]
    return {str(p.relative_to(folder.parent)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths}


def test_every_file_genbench_writes_has_the_users_umask_permissions(tmp_path, monkeypatch, capsys, umask_022,
                                                                     tiny_torchscript):
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    runs, lb, db = tmp_path / "runs", tmp_path / "lb", tmp_path / "db"
    assert main(["run", "--suite", "smoke", "--budget", "smoke", "--models", "ppca", "--no-progress",
                 "--db", str(db / "results.sqlite"), "--runs-dir", str(runs), "--leaderboards", str(lb)]) == 0
    _score_with_a_torchscript_net(tmp_path, tiny_torchscript, tmp_path / "data")
    written = {}
    for folder in (runs, lb, db, tmp_path / "cache", tmp_path / "data"):  # the cache, wherever it went
        if folder.exists():
            written.update(_modes(folder))
    names = {Path(p).name for p in written}
    assert {"checkpoint.safetensors", "checkpoint.json", "evaluation.json", "result.json", "smoke.md",
            "smoke.csv", "results.sqlite"} <= names
    assert any(name.startswith("reference-") for name in names)  # a feature cache
    wrong = {path: mode for path, mode in written.items()
             if mode != (oct(0o755) if (tmp_path / path).is_dir() else oct(0o644))}
    assert wrong == {}


def test_an_unwritable_genbench_cache_is_one_line_not_a_write_into_the_data_root(tmp_path, monkeypatch,
                                                                                  capsys, tiny_torchscript):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv(feats.CACHE_ENV, str(tmp_path / "cache"))
    data_root = tmp_path / "data"
    data_root.mkdir()
    np.savez(tmp_path / "s.npz", samples=np.zeros((30, 8, 8), np.uint8))
    code = main(["score", str(tmp_path / "s.npz"), "--dataset", "toy", "--features", str(tiny_torchscript),
                 "--n-reference", "60", "--data-root", str(data_root)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("genbench: no writable cache folder")
    assert feats.CACHE_ENV in lines[0] and list(data_root.iterdir()) == []
