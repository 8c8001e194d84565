"""The results database (SQLite): every run and every metric value.

Writes are transactions on short-lived connections in WAL mode with a generous busy
timeout, so a crash never leaves a half-written run (a run's metrics and its "done" status
land together or not at all) and two processes writing at once both get their rows in.
"""

from __future__ import annotations

import json
import platform
import sqlite3
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genbench
from genbench.train.identity import RunIdentity

DEFAULT_DB = Path("runs/genbench.sqlite")

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
    versions TEXT NOT NULL
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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    import numpy
    import torch

    return {"genbench": genbench.__version__, "torch": torch.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


class ResultsDB:
    def __init__(self, path: str | Path = DEFAULT_DB):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self):
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self):
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- writing -------------------------------------------------------------------------
    def start_run(self, run: RunIdentity, run_dir: Path | str, device: str) -> int:
        """Open (or re-open, when resuming an unfinished one) the row of run ``run``."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM runs WHERE run_key = ? AND status != 'done' ORDER BY id DESC LIMIT 1",
                (run.key,),
            ).fetchone()
            if row is not None:
                conn.execute("UPDATE runs SET status='running', error=NULL, started_at=? WHERE id=?",
                             (now(), row["id"]))
                return int(row["id"])
            cur = conn.execute(
                "INSERT INTO runs (run_key, suite, name, model, dataset, config, seed, budget, "
                "train, eval, status, run_dir, device, started_at, versions) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (run.key, run.suite, run.name, run.model, run.dataset,
                 json.dumps(run.config, sort_keys=True), run.seed, run.budget,
                 json.dumps(run.train, sort_keys=True), json.dumps(run.eval, sort_keys=True),
                 str(run_dir), device, now(), json.dumps(package_versions())),
            )
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, metrics: dict[str, float], train_seconds: float,
                   eval_seconds: float, skipped: dict[str, str] | None = None,
                   curve: list[dict[str, float]] | None = None) -> None:
        """Store all metric values (and why any applicable metric was skipped, and the learning
        curve's rows, each with its ``epoch``) and mark the run done, in one transaction."""
        with self.transaction() as conn:
            for table in ("metrics", "skipped", "curves"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            self._insert_results(conn, run_id, metrics, skipped or {})
            conn.executemany("INSERT INTO curves (run_id, epoch, name, value) VALUES (?, ?, ?, ?)",
                             [(run_id, row["epoch"], k, v) for row in curve or [] for k, v in row.items()
                              if k != "epoch"])
            conn.execute(
                "UPDATE runs SET status='done', finished_at=?, train_seconds=?, eval_seconds=? "
                "WHERE id=?", (now(), train_seconds, eval_seconds, run_id))

    def add_results(self, run_id: int, metric: str, values: dict[str, float], skipped: str | None,
                    eval_settings: dict[str, Any], eval_seconds: float) -> None:
        """Add one metric's values (or why it was skipped) to a finished run, evaluated later
        from its final checkpoint with ``eval_settings``; replaces that metric's old outcome."""
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

    def fail_run(self, run_id: int, error: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status='failed', error=?, finished_at=? WHERE id=?",
                         (error, now(), run_id))

    # --- reading -------------------------------------------------------------------------
    def done_run(self, run_key: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_key=? AND status='done' "
                               "ORDER BY id DESC LIMIT 1", (run_key,)).fetchone()
        return dict(row) if row else None

    def metrics(self, run_id: int) -> dict[str, float]:
        with self._connect() as conn:
            rows = conn.execute("SELECT name, value FROM metrics WHERE run_id=?", (run_id,))
            return {r["name"]: r["value"] for r in rows}

    def runs(self, suite: str | None = None, status: str | None = "done") -> list[dict[str, Any]]:
        """Runs (newest first) with their metrics as a dict under ``"metrics"``."""
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if suite is not None:
            query += " AND suite = ?"
            args.append(suite)
        if status is not None:
            query += " AND status = ?"
            args.append(status)
        with self._connect() as conn:
            rows = [dict(r) for r in conn.execute(query + " ORDER BY id DESC", args)]
            metric_rows = conn.execute("SELECT run_id, name, value FROM metrics").fetchall()
            skipped_rows = conn.execute("SELECT run_id, metric, reason FROM skipped").fetchall()
        by_run: dict[int, dict[str, float]] = {}
        for m in metric_rows:
            by_run.setdefault(m["run_id"], {})[m["name"]] = m["value"]
        reasons: dict[int, dict[str, str]] = {}
        for m in skipped_rows:
            reasons.setdefault(m["run_id"], {})[m["metric"]] = m["reason"]
        for r in rows:
            for key in ("config", "train", "eval", "versions"):
                r[key] = json.loads(r[key])
            r["metrics"] = by_run.get(r["id"], {})
            r["skipped"] = reasons.get(r["id"], {})
        return rows

    def curve(self, run_id: int) -> list[dict[str, float]]:
        """The run's learning curve: one dict per epoch, with its ``epoch``."""
        with self._connect() as conn:
            rows = conn.execute("SELECT epoch, name, value FROM curves WHERE run_id=? ORDER BY epoch",
                                (run_id,)).fetchall()
        by_epoch: dict[float, dict[str, float]] = {}
        for r in rows:
            by_epoch.setdefault(r["epoch"], {"epoch": r["epoch"]})[r["name"]] = r["value"]
        return list(by_epoch.values())
