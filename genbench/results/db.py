"""The results database (SQLite): every run and every metric value.

Writes are transactions on short-lived connections in WAL mode with a generous busy
timeout, so a crash never leaves a half-written run (a run's metrics and its "done" status
land together or not at all) and two processes writing at once both get their rows in.

A run is owned by one process at a time: ``claim_run`` writes the process's owner (host:pid:
token) and a heartbeat into the run's row before it trains, a ``Lease`` thread refreshes the
heartbeat while it trains and evaluates, and only the owner can move a run from ``running`` to
``done`` or ``failed``. A run whose owner is gone (heartbeat older than ``STALE_AFTER``, or its
process no longer exists on this host) is taken over by the next process that reaches it.

Runs trained away from the database (sweep jobs on a cluster, which never open it: SQLite's WAL
does not work over a network file system) leave a result file in their run directory; ``ingest``
records one in one transaction, exactly once: a run that is done already gains nothing, so
collecting twice, or from two launchers at once, adds no row.

Each run records the world it trained in: ``world_size`` (ranks under torchrun, else 1) and
``backend`` (nccl, gloo, or none for one process).

Nothing without numbers is recorded as done, and every row read is decoded in one place
(``genbench.results.rows``): a row no renderer could show is named in one warning and left out.
A database that cannot be used (corrupt, in a folder SQLite cannot write its WAL files in, locked
by another process for longer than ``LOCK_WAIT``) is one ``GenbenchError`` line; a write waiting
for another process's lock says so after ``SAY_WAITING_AFTER`` seconds.

A new database is made WAL under an exclusive ``flock`` of its folder: switching the journal mode
upgrades the pragma's read lock to a write lock, and two connections that both hold the read lock
and both want the write lock deadlock, which SQLite breaks by failing one of them at once with
"database is locked" (its busy handler is not called where waiting could not help). Under the lock
one opener switches; every later one finds WAL set and needs no write lock for it.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import secrets
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genbench
from genbench.core.errors import GenbenchError, log
from genbench.core.heartbeat import Heartbeat
from genbench.results.rows import (
    BadRow,
    RunRecord,
    UnreadableRun,
    check_curve,
    check_fields,
    check_identity,
    check_metrics,
    check_skipped,
    decode_run,
)
from genbench.train.identity import RunIdentity

DEFAULT_DB = Path("runs/genbench.sqlite")

#: seconds without a heartbeat after which a running run's owner counts as dead (its run is
#: taken over by the next process that reaches it)
STALE_AFTER = 120.0
#: seconds between heartbeats of a run being trained or evaluated
HEARTBEAT_EVERY = STALE_AFTER / 8
#: seconds a write waits for another process's lock on the database before giving up
LOCK_WAIT = 60.0
#: seconds of waiting for a lock after which the wait is said on stderr
SAY_WAITING_AFTER = 2.0
#: columns added after the first schema (ownership; the provenance of an external result, JSON,
#: NULL for a zoo run; the world a run trained in); older databases gain them on opening
ADDED_COLUMNS = {"owner": "TEXT", "heartbeat": "REAL", "external": "TEXT", "world_size": "INTEGER",
                 "backend": "TEXT"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_key TEXT NOT NULL,
    suite TEXT NOT NULL,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget TEXT NOT NULL,
    train TEXT NOT NULL,
    eval TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    error TEXT,
    run_dir TEXT,
    device TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    train_seconds REAL,
    eval_seconds REAL,
    versions TEXT NOT NULL,
    owner TEXT,
    heartbeat REAL,
    external TEXT,
    world_size INTEGER,
    backend TEXT
);
CREATE INDEX IF NOT EXISTS runs_key ON runs (run_key);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS curves (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch REAL NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, epoch, name)
);
CREATE TABLE IF NOT EXISTS skipped (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (run_id, metric)
);
"""
#: the tables of SCHEMA
TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_owner() -> str:
    """A name for one process's claims: host and pid (to tell whether it still runs) and a
    random token (a reused pid is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _pid_exists(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's process
        return True
    return True


def owner_alive(owner: str | None, heartbeat: float | None, at: float) -> bool:
    """Whether the process that claimed a run may still be at work on it: its heartbeat is
    fresher than ``STALE_AFTER`` and, where it ran on this host, its process still exists (so a
    killed run is resumed at once when run again here). A row claimed by a genbench older than
    ownership has no owner: nobody holds it."""
    if owner is None or heartbeat is None or at - heartbeat > STALE_AFTER:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    return host != socket.gethostname() or not pid.isdigit() or _pid_exists(int(pid))


@dataclass(frozen=True)
class FinishedRun:
    """A run's outcome produced away from the database (a sweep job's result file), to ``ingest``."""

    status: str
    """done | failed"""
    run_dir: str
    device: str
    producer: str
    """Who trained it (``job 4242_3 on node12``): the row's owner once ingested."""
    world_size: int = 1
    backend: str = "none"
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float | None = None
    eval_seconds: float | None = None
    error: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class Claim:
    """What claiming a run found: ``claimed`` (this process owns row ``run_id`` now; with
    ``taken_over``, from a dead owner ``holder``), ``busy`` (``holder``, alive, owns it) or ``done``."""

    status: str
    run_id: int
    holder: str | None = None
    heartbeat_age: float | None = None
    taken_over: bool = False

    def describe_holder(self) -> str:
        """Who held the run and how long ago it was last heard of, for a message."""
        if self.holder is None:
            return "a genbench without run ownership (no heartbeat)"
        if self.heartbeat_age is None:
            return f"{self.holder} (no heartbeat)"
        return f"{self.holder} (heartbeat {self.heartbeat_age:.0f} s ago)"


class DatabaseUnusable(GenbenchError):
    """The results database cannot be read or written: corrupt, locked too long, or a folder SQLite
    cannot write in."""


class Lease(Heartbeat):
    """A claimed run's heartbeat: a daemon thread refreshes it every ``HEARTBEAT_EVERY`` seconds
    while the run trains and evaluates (a thread, so long evaluations beat too). ``lost`` is set
    once the row is no longer this owner's running run (another process took it over); a database
    locked or busy for longer than the timeout is tried again at the next beat."""

    retry_on = (sqlite3.Error, DatabaseUnusable)

    def __init__(self, db: ResultsDB, run_id: int):
        super().__init__(HEARTBEAT_EVERY, f"genbench-heartbeat-{run_id}")
        self.db, self.run_id = db, run_id
        self.lost = threading.Event()

    def beat(self) -> bool:
        if self.db.heartbeat(self.run_id):
            return True
        self.lost.set()
        return False


def package_versions() -> dict[str, str]:
    import numpy
    import torch

    return {"genbench": genbench.__version__, "torch": torch.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


class ResultsDB:
    """The database as one owner sees it: the runs it claims are ``owner``'s (default: a new
    name for this process), and only they can be finished or failed through it."""

    def __init__(self, path: str | Path = DEFAULT_DB, owner: str | None = None):
        self.path = Path(path)
        self.owner = owner or new_owner()
        self._warned: set[int] = set()  # rows named already as left out
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _folder_lock(self.path.parent), self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        with self._connect() as conn:
            complete = _has_schema(conn)
        if not complete:  # a write only where tables or columns are missing: reading needs no lock
            with self.transaction() as conn:
                # in one transaction: a concurrent reader (check_database_file) sees all tables or none
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
                _add_missing_columns(conn)

    @contextmanager
    def _connect(self):
        """A connection; an SQLite error that is not a bug of genbench's (a corrupt file, a lock held
        too long, a folder it cannot write its WAL files in) becomes one ``DatabaseUnusable`` line."""
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=LOCK_WAIT, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.DatabaseError as exc:
            raise DatabaseUnusable(_unusable(self.path, exc)) from None
        finally:
            if conn is not None:
                conn.close()

    @contextmanager
    def transaction(self):
        with self._connect() as conn:
            _begin_immediate(conn, self.path)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- writing -------------------------------------------------------------------------
    def claim_run(self, run: RunIdentity, run_dir: Path | str, device: str,
                  world: tuple[int, str] = (1, "none")) -> Claim:
        """Own the row of ``run`` before training it, unless it is done (maybe just now, by
        another process) or a live process owns it. A failed run's row, or one whose owner is
        gone, is re-opened: the run resumes from its checkpoint. ``world``: (world size, backend)
        it trains in."""
        with self.transaction() as conn:
            row = conn.execute("SELECT id FROM runs WHERE run_key = ? AND status = 'done' "
                               "ORDER BY id DESC LIMIT 1", (run.key,)).fetchone()
            if row is not None:
                return Claim("done", int(row["id"]))
            return self._claim(conn, run, run_dir, device, world)

    def start_run(self, run: RunIdentity, run_dir: Path | str, device: str,
                  world: tuple[int, str] = (1, "none")) -> int:
        """Own a new row of ``run`` or re-open its unfinished one (a done row is left as it is:
        the run gets a new row). Refused while a live process owns the run."""
        with self.transaction() as conn:
            claim = self._claim(conn, run, run_dir, device, world)
        if claim.status == "busy":
            raise GenbenchError(f"run {run.name} seed {run.seed} is being trained by "
                                f"{claim.describe_holder()}")
        return claim.run_id

    def _claim(self, conn, run: RunIdentity, run_dir: Path | str, device: str,
               world: tuple[int, str]) -> Claim:
        """Inside a write transaction (so two claims never interleave): take the newest unfinished
        row of ``run`` unless a live other owner holds it, else insert a new one."""
        at = time.time()
        row = conn.execute("SELECT id, status, owner, heartbeat FROM runs "
                           "WHERE run_key = ? AND status != 'done' ORDER BY id DESC LIMIT 1",
                           (run.key,)).fetchone()
        if row is not None:
            running = row["status"] == "running" and row["owner"] != self.owner
            age = None if row["heartbeat"] is None else at - row["heartbeat"]
            if running and owner_alive(row["owner"], row["heartbeat"], at):
                return Claim("busy", int(row["id"]), row["owner"], age)
            conn.execute("UPDATE runs SET status='running', error=NULL, finished_at=NULL, started_at=?, "
                         "owner=?, heartbeat=?, run_dir=?, device=?, eval=?, world_size=?, backend=? "
                         "WHERE id=?",
                         (now(), self.owner, at, str(run_dir), device, json.dumps(run.eval, sort_keys=True),
                          *world, row["id"]))
            return Claim("claimed", int(row["id"]), row["owner"], age, taken_over=running)
        cur = conn.execute(
            "INSERT INTO runs (run_key, suite, name, model, dataset, config, seed, budget, "
            "train, eval, status, run_dir, device, started_at, versions, owner, heartbeat, world_size, "
            "backend) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
            (*_identity_values(run), str(run_dir), device, now(), json.dumps(package_versions()), self.owner,
             at, *world),
        )
        return Claim("claimed", int(cur.lastrowid))

    def ingest(self, run: RunIdentity, finished: FinishedRun) -> bool:
        """Record a run trained away from the database, in one transaction, exactly once: nothing
        where the run is done already (collected before, or trained here) or where ``finished`` is a
        failure already recorded, or one of a run a live process is retrying now. Returns whether
        anything was recorded. The run's newest unfinished row becomes this outcome, else a new row;
        one without finite numbers is refused (``check_finished``)."""
        check_finished(run, finished)
        with self.transaction() as conn:
            done = conn.execute("SELECT 1 FROM runs WHERE run_key = ? AND status = 'done'", (run.key,))
            if done.fetchone() is not None:
                return False
            row = conn.execute("SELECT id, status, owner, heartbeat, error, finished_at FROM runs "
                               "WHERE run_key = ? AND status != 'done' ORDER BY id DESC LIMIT 1",
                               (run.key,)).fetchone()
            if finished.status == "failed" and row is not None:
                retried = row["status"] == "running" and owner_alive(row["owner"], row["heartbeat"],
                                                                     time.time())
                recorded = (row["status"], row["error"], row["finished_at"]) == (
                    "failed", finished.error, finished.finished_at)
                if retried or recorded:
                    return False
            values = (finished.status, finished.error, finished.run_dir, finished.device,
                      finished.started_at or now(), finished.finished_at or now(), finished.train_seconds,
                      finished.eval_seconds, json.dumps(finished.versions), finished.producer,
                      json.dumps(run.eval, sort_keys=True), finished.world_size, finished.backend)
            if row is not None:
                run_id = int(row["id"])
                conn.execute("UPDATE runs SET status=?, error=?, run_dir=?, device=?, started_at=?, "
                             "finished_at=?, train_seconds=?, eval_seconds=?, versions=?, owner=?, "
                             "heartbeat=NULL, eval=?, "
                             "world_size=?, backend=? WHERE id=?", (*values, run_id))
                for table in ("metrics", "skipped", "curves"):
                    conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            else:
                cur = conn.execute(
                    "INSERT INTO runs (run_key, suite, name, model, dataset, config, seed, budget, train, "
                    "status, error, run_dir, device, started_at, finished_at, train_seconds, eval_seconds, "
                    "versions, owner, eval, world_size, backend) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*_identity_values(run)[:-1], *values))
                run_id = int(cur.lastrowid)
            if finished.status == "done":
                self._insert_results(conn, run_id, finished.metrics, finished.skipped)
                conn.executemany("INSERT INTO curves (run_id, epoch, name, value) VALUES (?, ?, ?, ?)",
                                 [(run_id, r["epoch"], k, v) for r in finished.curve for k, v in r.items()
                                  if k != "epoch"])
        return True

    def heartbeat(self, run_id: int) -> bool:
        """Refresh the heartbeat of this owner's running run; False where it is not that any more."""
        with self._connect() as conn:
            cur = conn.execute("UPDATE runs SET heartbeat=? WHERE id=? AND owner=? AND status='running'",
                               (time.time(), run_id, self.owner))
            return cur.rowcount == 1

    def holding(self, run_id: int) -> Lease:
        """The heartbeat of a claimed run, for ``with`` around its training and evaluation."""
        return Lease(self, run_id)

    def finish_run(self, run_id: int, metrics: dict[str, float], train_seconds: float,
                   eval_seconds: float, skipped: dict[str, str] | None = None,
                   curve: list[dict[str, float]] | None = None) -> bool:
        """Store all metric values (and why any applicable metric was skipped, and the learning
        curve's rows, each with its ``epoch``) and mark the run done, in one transaction. Only
        this owner's running run: returns False (and stores nothing) where it is not that. Refused
        (one line naming the value) without finite metric values."""
        metrics, skipped = check_metrics(metrics), check_skipped(skipped or {})
        curve = check_curve(curve or [])
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status='done', finished_at=?, train_seconds=?, eval_seconds=? "
                "WHERE id=? AND owner=? AND status='running'",
                (now(), train_seconds, eval_seconds, run_id, self.owner))
            if cur.rowcount != 1:
                return False
            for table in ("metrics", "skipped", "curves"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            self._insert_results(conn, run_id, metrics, skipped or {})
            conn.executemany("INSERT INTO curves (run_id, epoch, name, value) VALUES (?, ?, ?, ?)",
                             [(run_id, row["epoch"], k, v) for row in curve or [] for k, v in row.items()
                              if k != "epoch"])
        return True

    def add_results(self, run_id: int, metric: str, values: dict[str, float], skipped: str | None,
                    eval_settings: dict[str, Any], eval_seconds: float) -> None:
        """Add one metric's values (or why it was skipped) to a finished run, evaluated later
        from its final checkpoint with ``eval_settings``; replaces that metric's old outcome."""
        values = check_metrics(values, f"metric {metric}") if values else {}
        with self.transaction() as conn:
            conn.execute("DELETE FROM skipped WHERE run_id = ? AND metric = ?", (run_id, metric))
            self._insert_results(conn, run_id, values, {metric: skipped} if skipped else {}, replace=True)
            conn.execute("UPDATE runs SET eval=?, eval_seconds=COALESCE(eval_seconds, 0) + ? WHERE id=?",
                         (json.dumps(eval_settings, sort_keys=True), eval_seconds, run_id))

    @staticmethod
    def _insert_results(conn, run_id: int, metrics: dict[str, float], skipped: dict[str, str],
                        replace: bool = False) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        conn.executemany(f"{verb} INTO metrics (run_id, name, value) VALUES (?, ?, ?)",
                         [(run_id, k, float(v)) for k, v in metrics.items()])
        conn.executemany("INSERT INTO skipped (run_id, metric, reason) VALUES (?, ?, ?)",
                         [(run_id, k, v) for k, v in skipped.items()])

    def record_external(self, key: str, run: RunIdentity, external: dict[str, Any], metrics: dict[str, float],
                        skipped: dict[str, str], device: str, eval_seconds: float) -> int:
        """A result scored outside genbench's training (``genbench score --name``): its row, done, with
        its provenance ``external``, metrics and skipped reasons, in one transaction under run key
        ``key``; a key that has a row already is refused (a finished result is never changed), and so
        is one without finite metric values."""
        what = f"result {run.name!r}"
        metrics, skipped = check_metrics(metrics, what), check_skipped(skipped, what)
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_key = ?", (key,)).fetchone() is not None:
                raise GenbenchError(f"{run.name!r} is recorded already for suite {run.suite} on "
                                    f"{run.dataset} in {self.path}: pick another --name")
            at = now()
            cur = conn.execute(
                "INSERT INTO runs (run_key, suite, name, model, dataset, config, seed, budget, train, eval, "
                "status, device, started_at, finished_at, eval_seconds, versions, external) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'done', ?, ?, ?, ?, ?, ?)",
                (key, run.suite, run.name, run.model, run.dataset, json.dumps(run.config, sort_keys=True),
                 run.seed, run.budget, json.dumps(run.train, sort_keys=True),
                 json.dumps(run.eval, sort_keys=True), device, at, at, eval_seconds,
                 json.dumps(package_versions()), json.dumps(external, sort_keys=True)))
            self._insert_results(conn, int(cur.lastrowid), metrics, skipped)
        return int(cur.lastrowid)

    def fail_run(self, run_id: int, error: str) -> bool:
        """Mark this owner's running run failed with ``error``; False (nothing changed) where the
        run is not that: a done run, or one another process took over, stays as it is."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE runs SET status='failed', error=?, finished_at=? "
                               "WHERE id=? AND owner=? AND status='running'",
                               (error, now(), run_id, self.owner))
            return cur.rowcount == 1

    # --- reading -------------------------------------------------------------------------
    def live_holder(self, run_key: str) -> Claim | None:
        """The run's running row where a live process other than this owner holds it (else None)."""
        with self._connect() as conn:
            row = conn.execute("SELECT id, owner, heartbeat FROM runs WHERE run_key = ? "
                               "AND status = 'running' ORDER BY id DESC LIMIT 1", (run_key,)).fetchone()
        at = time.time()
        if row is None or row["owner"] == self.owner or not owner_alive(row["owner"], row["heartbeat"], at):
            return None
        age = None if row["heartbeat"] is None else at - row["heartbeat"]
        return Claim("busy", int(row["id"]), row["owner"], age)

    def done_run(self, run_key: str) -> RunRecord | None:
        """The run's newest done row, decoded as ``runs`` decodes rows (None where it has none); a
        done row that cannot be decoded raises ``UnreadableRun``: not a run to reuse or train again."""
        where = ("id = (SELECT MAX(id) FROM runs WHERE run_key = ? AND status = 'done')", [run_key])
        found = self._decoded(*where, on_bad=self._refuse)
        return found[0] if found else None

    def runs(self, suite: str | None = None, status: str | None = "done") -> list[RunRecord]:
        """Runs (newest first), each decoded by ``decode_run`` with its metrics and skipped reasons:
        a row that cannot be rendered is named in one warning (once per database object) and left out."""
        where, args = "1=1", []
        if suite is not None:
            where += " AND suite = ?"
            args.append(suite)
        if status is not None:
            where += " AND status = ?"
            args.append(status)
        return self._decoded(where, args, on_bad=self._left_out)

    def _decoded(self, where: str, args: list[Any], on_bad) -> list[RunRecord]:
        """The rows of ``runs`` matching ``where`` (newest first) decoded with their metrics and
        skipped reasons; ``on_bad(row, why)`` is told of each that cannot be, which is left out."""
        chosen = f"SELECT id FROM runs WHERE {where}"
        with self._connect() as conn:
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM runs WHERE {where} ORDER BY id DESC", args)]
            metric_rows = conn.execute(f"SELECT run_id, name, value FROM metrics "
                                       f"WHERE run_id IN ({chosen})", args).fetchall()
            skipped_rows = conn.execute(f"SELECT run_id, metric, reason FROM skipped "
                                        f"WHERE run_id IN ({chosen})", args).fetchall()
        by_run: dict[int, dict[str, float]] = {}
        for m in metric_rows:
            by_run.setdefault(m["run_id"], {})[m["name"]] = m["value"]
        reasons: dict[int, dict[str, str]] = {}
        for m in skipped_rows:
            reasons.setdefault(m["run_id"], {})[m["metric"]] = m["reason"]
        decoded = []
        for r in rows:
            try:
                decoded.append(decode_run(r, by_run.get(r["id"], {}), reasons.get(r["id"], {})))
            except BadRow as exc:
                on_bad(r, exc)
        return decoded

    def _refuse(self, row: dict[str, Any], why: BadRow) -> None:
        raise UnreadableRun(f"{self.path}: run {row['id']} ({row.get('name')!r}) is done but cannot be read: "
                            f"{why}")

    def _left_out(self, row: dict[str, Any], why: BadRow) -> None:
        """Say once that a row is left out of what is rendered, and why."""
        if row["id"] not in self._warned:
            self._warned.add(row["id"])
            log(f"warning: {self.path}: run {row['id']} ({row.get('name')!r}) left out of the tables: {why}")

    def curve(self, run_id: int) -> list[dict[str, float]]:
        """The run's learning curve: one dict per epoch, with its ``epoch``."""
        with self._connect() as conn:
            rows = conn.execute("SELECT epoch, name, value FROM curves WHERE run_id=? ORDER BY epoch",
                                (run_id,)).fetchall()
        by_epoch: dict[float, dict[str, float]] = {}
        for r in rows:
            by_epoch.setdefault(r["epoch"], {"epoch": r["epoch"]})[r["name"]] = r["value"]
        return list(by_epoch.values())


def check_finished(run: RunIdentity, finished: FinishedRun, what: str = "result") -> None:
    """A result to ingest as rows need it (``GenbenchError`` naming the value where not): its
    identity, its fields' types, and, done, finite metric values and a learning curve of epochs."""
    check_identity(run, what)
    if finished.status not in ("done", "failed"):
        raise GenbenchError(f"{what}: its status is {finished.status!r}, not done or failed")
    check_fields(finished, FINISHED_FIELDS, what)
    versions = finished.versions
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise GenbenchError(f"{what}: its versions are not a mapping of names to text")
    if finished.status == "done":
        check_metrics(finished.metrics, what)
        check_skipped(finished.skipped, what)
        check_curve(finished.curve, what)


#: a FinishedRun's fields and the types they may hold (None: may be missing)
FINISHED_FIELDS = {"run_dir": (str,), "device": (str,), "producer": (str,), "backend": (str,),
                   "world_size": (int,), "error": (str, None), "started_at": (str, None),
                   "finished_at": (str, None), "train_seconds": (float, None), "eval_seconds": (float, None)}


def _identity_values(run: RunIdentity) -> tuple:
    """The identity columns of a new row, in SCHEMA's order: run_key ... train, eval."""
    return (run.key, run.suite, run.name, run.model, run.dataset, json.dumps(run.config, sort_keys=True),
            run.seed, run.budget, json.dumps(run.train, sort_keys=True), json.dumps(run.eval, sort_keys=True))


def run_key_taken(path: str | Path, key: str) -> bool:
    """Whether the database at ``path`` has a row of ``key``, read without writing (an absent or
    empty file, or one of an older schema, has none yet)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        return conn.execute("SELECT 1 FROM runs WHERE run_key = ?", (key,)).fetchone() is not None
    except sqlite3.OperationalError:  # no runs table yet
        return False
    finally:
        conn.close()


def _has_schema(conn) -> bool:
    """Whether the database has every table and column of SCHEMA (read without writing)."""
    tables = {row["name"] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(TABLES) <= tables and not _missing_columns(conn)


def _is_locked(exc: sqlite3.Error) -> bool:
    """Whether an SQLite error is another connection's lock (SQLITE_BUSY or SQLITE_LOCKED)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _unusable(path: Path, exc: sqlite3.Error) -> str:
    """The one line of an SQLite error that is the database's, not genbench's."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if _is_locked(exc):
        return (f"results database {path}: locked by another process for over {LOCK_WAIT:.0f} s; gave up "
                "(run again once it is done)")
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR):
        return (f"results database {path}: cannot write it ({exc}); SQLite writes its -wal and -shm files "
                "beside it, so its folder must be writable")
    return f"results database {path}: corrupt or not genbench's ({exc})"


def _begin_immediate(conn, path: Path) -> None:
    """Begin a write transaction, waiting up to ``LOCK_WAIT`` seconds for another process's write
    lock: after ``SAY_WAITING_AFTER`` seconds the wait is said on stderr, once."""
    conn.execute(f"PRAGMA busy_timeout = {int(SAY_WAITING_AFTER * 1000)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if not _is_locked(exc):
            raise
        log(f"waiting for the results database {path}, locked by another process (up to {LOCK_WAIT:.0f} s)")
        conn.execute(f"PRAGMA busy_timeout = {int((LOCK_WAIT - SAY_WAITING_AFTER) * 1000)}")
        conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT * 1000)}")


@contextmanager
def _folder_lock(folder: Path):
    """An exclusive ``flock`` of the database's folder while a connection sets WAL (the module says
    why). The folder, not the database file: closing a second descriptor of the database would drop
    the POSIX locks SQLite's connections in this process hold on it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise DatabaseUnusable(f"results database folder {folder}: unreadable ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise DatabaseUnusable(f"results database folder {folder}: cannot be locked ({exc.strerror}); "
                                   "the database needs a local file system") from None
        yield
    finally:
        os.close(fd)


def _missing_columns(conn) -> list[str]:
    have = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
    return [name for name in ADDED_COLUMNS if name not in have]


def _add_missing_columns(conn) -> None:
    """Bring a database of an older genbench up to the schema, inside a write transaction (two
    processes opening it at once add each column once): add the columns it lacks. Its rows keep
    their values; a run it left running has no owner, so nobody holds it."""
    for name in _missing_columns(conn):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {ADDED_COLUMNS[name]}")


def check_database_file(path: str | Path) -> None:
    """One line where ``path`` cannot be genbench's results database, before anything opens it: a
    folder, a file that is not SQLite, an SQLite database of another schema (its tables and
    ``user_version`` said), a corrupt one (``PRAGMA quick_check``), or a place that cannot be written
    (the file, or its folder, where SQLite writes its -wal and -shm files). An absent or empty file is
    a new one."""
    path = Path(path)
    folder = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if path.is_dir():
        raise GenbenchError(f"--db {path}: a directory, not a genbench results database")
    if folder != path.absolute() and not (folder.is_dir() and os.access(folder, os.W_OK)):
        raise GenbenchError(f"--db {path}: cannot write there ({folder} is not a writable folder)")
    if folder != path.absolute():
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise GenbenchError(f"--db {path}: cannot write to it")
    if not os.access(path.absolute().parent, os.W_OK | os.X_OK):
        raise GenbenchError(f"--db {path}: its folder {path.absolute().parent} is not writable, and SQLite "
                            "writes the database's -wal and -shm files beside it")
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise GenbenchError(f"--db {path}: not a genbench results database (not an SQLite file)")
    conn = None
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=LOCK_WAIT)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        health = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.Error as exc:
        raise GenbenchError(f"--db {path}: not a genbench results database ({exc})") from None
    finally:
        if conn is not None:
            conn.close()
    wanted = set(TABLES)
    runs = re.search(r"CREATE TABLE IF NOT EXISTS runs \((.*?)\n\);", SCHEMA, re.S).group(1)
    needed = {line.split()[0] for line in runs.strip().splitlines()} - set(ADDED_COLUMNS)
    if tables - {"sqlite_sequence"} and not (wanted <= tables and needed <= columns):
        raise GenbenchError(f"--db {path}: an SQLite database of another schema, version {version} (tables: "
                            f"{', '.join(sorted(tables)) or 'none'}), not genbench results")
    if health != "ok":
        raise GenbenchError(f"--db {path}: a corrupt database (SQLite's quick_check: {health})")
