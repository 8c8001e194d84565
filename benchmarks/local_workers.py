#!/usr/bin/env python
"""Benchmark: a suite's runs in W local worker processes, and one run on N torchrun CPU ranks.

Side by side in one invocation, each in a fresh folder (its own database and run directories),
as a user types them (subprocesses of the CLI, wall clock from start to exit):

1. ``genbench run --suite S --budget B --launcher local --workers W`` for each W of ``--workers``
   (default 1 and 2), ``--repeats`` times in alternating order: the median wall time of each W and
   the ratio of the first W's to it (its speed-up);
2. ``torchrun --nproc-per-node N -m genbench run --suite S --budget B --models RUN --device cpu``
   for each N of ``--ranks`` (default 1 and 2): wall time, and the training seconds the run's
   database row records (without the start-up of the processes).

Each worker gets the machine's cores shared out (or ``--threads`` per process, through
OMP_NUM_THREADS); torchrun sets one thread per rank where N > 1 unless ``--threads`` says.
The load average is printed before and after: timings on a loaded machine are not clean.

    GENBENCH_DATA=../shared/data python benchmarks/local_workers.py --suite smoke --budget short
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def timed(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def cli_run(folder: Path, suite: str, budget: str, *extra: str) -> list[str]:
    return ["-m", "genbench", "run", "--suite", suite, "--budget", budget, "--no-progress",
            "--db", str(folder / "db.sqlite"), "--runs-dir", str(folder / "runs"),
            "--leaderboards", str(folder / "lb"), *extra]


def train_seconds(db: Path) -> float:
    with sqlite3.connect(db) as conn:
        return sum(r[0] for r in conn.execute("SELECT train_seconds FROM runs WHERE status = 'done'"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--budget", default="short", help="default: genbench run's default, short")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--run", default="vae-L1-k1", help="the run of --suite that torchrun trains")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timings of each W")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: the share of cores)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
    print(f"start: {load()}")

    print(f"\n1. genbench run --suite {args.suite} --budget {args.budget} --launcher local --workers W "
          f"({args.repeats} alternating repeats, median)")
    walls: dict[int, list[float]] = {w: [] for w in args.workers}
    trainings: dict[int, list[float]] = {w: [] for w in args.workers}
    for repeat in range(args.repeats):
        order = args.workers if repeat % 2 == 0 else args.workers[::-1]
        for workers in order:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                walls[workers].append(timed([sys.executable, *cli_run(
                    folder, args.suite, args.budget, "--launcher", "local", "--workers", str(workers))], env))
                trainings[workers].append(train_seconds(folder / "db.sqlite"))
    base = statistics.median(walls[args.workers[0]])
    for workers in args.workers:
        wall = statistics.median(walls[workers])
        spread = ", ".join(f"{w:.1f}" for w in walls[workers])
        print(f"  W={workers}: {wall:7.1f} s wall ({base / wall:.2f}x the first's speed; each: {spread}), "
              f"runs' training {statistics.median(trainings[workers]):.1f} s summed")
    print(f"  [{load()}]")

    print(f"\n2. torchrun --nproc-per-node N -m genbench run --suite {args.suite} --budget {args.budget} "
          f"--models {args.run} --device cpu")
    base = None
    for ranks in args.ranks:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={ranks}",
                    *cli_run(folder, args.suite, args.budget, "--models", args.run, "--device", "cpu")]
            seconds = timed(argv, env)
            training = train_seconds(folder / "db.sqlite")
        base = base or training
        print(f"  N={ranks}: {seconds:7.1f} s wall, training {training:6.1f} s ({base / training:.2f}x the "
              f"first's speed)   [{load()}]")
    print(f"\nend: {load()}")


if __name__ == "__main__":
    main()
