"""What a run directory tells other processes about its run, without the database.

- ``.lock``: held (``flock``) by the one process that trains the run, whoever started it (``genbench
  run``, a local worker, a Slurm job). The kernel releases it when that process dies, so a killed
  or preempted job leaves nothing stale. On a network file system flock works where the file system
  supports locks (NFS through its lock manager, Lustre mounted with ``-o flock``); where it does not,
  the lock is skipped with a warning and only the database's claims and the launcher's plan keep
  two trainers apart.
- ``owner.json``: who holds (or last held) the run: owner, job id and log, host and pid, and a
  heartbeat refreshed while it trains.
- ``result.json``: the run's outcome (done with its metrics, or failed with its reason) and its
  identity, replaced atomically; ``genbench collect`` ingests it into the database.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genbench.core.errors import GenbenchError, log
from genbench.core.heartbeat import Heartbeat
from genbench.core.weights import atomic_write
from genbench.results.db import (
    HEARTBEAT_EVERY,
    STALE_AFTER,
    FinishedRun,
    check_finished,
    now,
    package_versions,
)
from genbench.train.identity import RunIdentity

LOCK_FILE = ".lock"
OWNER_FILE = "owner.json"
RESULT_FILE = "result.json"
#: what result.json says it is, and the version of its layout
RESULT_FORMAT, RESULT_VERSION = "genbench-run-result", 1
#: the largest owner.json or result.json read (a result's metrics and curve take a few kB)
MAX_RECORD_BYTES = 16 << 20
#: errors of a file system that has no flock (the lock is skipped, once said)
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_warned_no_locks: set[str] = set()


class RunDirLock:
    """The exclusive lock of a run directory, taken without waiting (``acquire`` says whether it was)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.held = False

    def acquire(self) -> bool:
        if self.held:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            where = str(self.path.parent.parent)
            if where not in _warned_no_locks:
                _warned_no_locks.add(where)
                log(f"warning: {where} does not support file locks ({exc.strerror}); run directories "
                    "are not locked, only the database's claims keep two trainers apart")
        self._fd, self.held = fd, True
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
        self._fd, self.held = None, False

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --- owner.json ------------------------------------------------------------------------------
def write_owner(run_dir: Path, owner: str, job_id: str | None = None, log_path: str | None = None) -> dict:
    """Say who holds the run now (the lock's holder calls it), with a first heartbeat."""
    record = {"owner": owner, "job_id": job_id, "log": log_path, "host": socket.gethostname(),
              "pid": os.getpid(), "since": now(), "heartbeat": time.time()}
    _write_json(Path(run_dir) / OWNER_FILE, record)
    return record


def read_owner(run_dir: Path) -> dict | None:
    return _read_json(Path(run_dir) / OWNER_FILE)


def owner_is_live(record: dict | None, at: float | None = None) -> bool:
    """Whether the holder named in ``owner.json`` still trains: a fresh heartbeat and, on this host,
    its process still there."""
    if not record or not isinstance(record.get("heartbeat"), int | float):
        return False
    if (at or time.time()) - record["heartbeat"] > STALE_AFTER:
        return False
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        try:
            os.kill(record["pid"], 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
    return True


def describe_owner(record: dict | None) -> str:
    if not record:
        return "another process (no owner.json)"
    log_path = f" (log {record['log']})" if record.get("log") else ""
    return f"{record.get('owner')}{log_path}"


class OwnerHeartbeat(Heartbeat):
    """``owner.json``'s heartbeat, refreshed by a daemon thread while the run trains and evaluates
    (a full or unreachable disk: tried again at the next beat)."""

    retry_on = (OSError,)

    def __init__(self, run_dir: Path, record: dict):
        super().__init__(HEARTBEAT_EVERY, "genbench-owner-heartbeat")
        self.path, self.record = Path(run_dir) / OWNER_FILE, dict(record)

    def beat(self) -> bool:
        _write_json(self.path, {**self.record, "heartbeat": time.time()})
        return True


def holding(run_dir: Path, owner: str, job_id: str | None = None,
            log_path: str | None = None) -> OwnerHeartbeat:
    """For the lock's holder, about to train: remove a failed result of an earlier try, say who holds
    the run in owner.json, and keep its heartbeat beating (``with``)."""
    clear_failed_result(run_dir)
    return OwnerHeartbeat(run_dir, write_owner(run_dir, owner, job_id, log_path))


# --- result.json -----------------------------------------------------------------------------
def write_result(run_dir: Path, run: RunIdentity, finished: FinishedRun, suite_source: str | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    """The run's outcome, atomically (a reader sees the old file or the new one, never half)."""
    record = {"format": RESULT_FORMAT, "version": RESULT_VERSION, "key": run.key,
              "suite_source": suite_source, "run": {**asdict(run), "data_shape": list(run.data_shape)},
              **asdict(finished), **(extra or {})}
    path = Path(run_dir) / RESULT_FILE
    _write_json(path, record)
    return path


def finished_run(status: str, run_dir: Path, device: str, producer: str, world: tuple[int, str],
                 **values) -> FinishedRun:
    """A FinishedRun of this process, stamped with its package versions and the time."""
    return FinishedRun(status=status, run_dir=str(run_dir), device=device, producer=producer,
                       world_size=world[0], backend=world[1], versions=package_versions(), finished_at=now(),
                       **values)


def results_under(runs_dir: Path, unreadable: list[str], warn=log):
    """``(path, (identity, outcome, record))`` of every result file under ``runs_dir``, in path order;
    a file that is not a genbench result is named through ``warn``, added to ``unreadable`` and
    skipped."""
    for path in sorted(Path(runs_dir).rglob(RESULT_FILE)):
        try:
            found = read_result(path)
        except GenbenchError as exc:
            warn(f"warning: {exc}; skipped")
            unreadable.append(str(exc))
            continue
        if found is not None:
            yield path, found


def read_result(path: Path) -> tuple[RunIdentity, FinishedRun, dict] | None:
    """(identity, outcome, the whole record) of a run directory's result file (or the file itself);
    None where there is none. A file that is not a genbench result, whose fields are not what a
    results row holds (``check_finished``: a metric that is not a finite number, no seed, a curve row
    without its epoch), or whose identity does not hash to its key, is refused in one line."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    record = _read_json(path)
    if record is None:
        return None
    if record.get("format") != RESULT_FORMAT or not isinstance(record.get("run"), dict):
        raise GenbenchError(f"{path}: not a genbench run result")
    try:
        raw = record["run"]
        run = RunIdentity(**{**raw, "data_shape": tuple(raw["data_shape"])})
        fields = {name: record[name] for name in FinishedRun.__dataclass_fields__ if name in record}
        finished = FinishedRun(**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise GenbenchError(f"{path}: a genbench run result with missing or unknown fields ({exc})") from None
    check_finished(run, finished, f"{path}")
    if run.key != record.get("key"):
        raise GenbenchError(f"{path}: its run's identity hashes to {run.key}, not the key "
                            f"{record.get('key')} it names; not ingested")
    return run, finished, record


def result_status(run_dir: Path, key: str) -> str | None:
    """done | failed where the run directory holds a result of run ``key``, else None."""
    try:
        found = read_result(run_dir)
    except GenbenchError:
        return None
    if found is None or found[0].key != key:
        return None
    return found[1].status


def clear_failed_result(run_dir: Path) -> None:
    """Remove a failed result before the run is tried again (a done one is never removed)."""
    path = Path(run_dir) / RESULT_FILE
    try:
        found = read_result(path)
    except GenbenchError:
        found = None
    if found is not None and found[1].status == "failed":
        path.unlink(missing_ok=True)


def _write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1, sort_keys=True)))


def _read_json(path: Path) -> dict | None:
    """A JSON object from a record file (None where there is none); anything but a regular file
    of at most ``MAX_RECORD_BYTES`` is refused in one line, without being opened for long: a FIFO
    or a device is never read (opened without blocking, checked before and after opening)."""
    try:
        text = read_regular(Path(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GenbenchError(f"{path}: unreadable ({exc.strerror or exc})") from None
    try:
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise GenbenchError(f"{path}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise GenbenchError(f"{path}: not a JSON object")
    return record


def read_regular(path: Path, limit: int = MAX_RECORD_BYTES, what: str = "a record") -> bytes:
    """The bytes of a regular file (not a link, FIFO, socket or device) of at most ``limit`` bytes:
    ``GenbenchError`` otherwise (``what`` names the file in the message)."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise GenbenchError(f"{path}: not a regular file; not read")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the two looks
            raise GenbenchError(f"{path}: not a regular file; not read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise GenbenchError(f"{path}: over the limit of {limit:,} bytes for {what}; not read")
    return data
