#!/usr/bin/env python
"""Benchmark: 5 seeds trained as one vectorised ensemble against one run trained alone.

The 1-stochastic-layer VAE (784-200-200-50, k = 1, batch 20) on dynamically binarized MNIST:
``genbench.train.ensemble.train_ensemble`` over ``--seeds`` seeds against ``train()`` of one
seed, ``--steps`` steps each, at each thread count of ``--threads``. Each is also timed for 0
steps (init from data, the checkpoints) and that fixed cost is reported apart, so the per-step
ratio is clean. Target: the ensemble of 5 in at most 2x the wall time of one run. The load
average at the start is printed: on a loaded machine the figures are not clean.

    GENBENCH_DATA=../shared/data python benchmarks/ensemble.py --steps 300 --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)

from genbench.data import load_dataset
from genbench.train.ensemble import train_ensemble
from genbench.train.loop import TrainConfig, train
from zoo import MODELS

MODEL_CONFIG = {"layers": 1, "k": 1}
META = {"name": "vae-L1-k1", "model": "vae", "config": MODEL_CONFIG, "dataset": "mnist",
        "data_shape": [1, 28, 28]}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per timing")
    p.add_argument("--seeds", type=int, default=5, help="members of the ensemble")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads")
    p.add_argument("--data-root", default=os.environ.get("GENBENCH_DATA"))
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def build(ds, seed: int):
    torch.manual_seed(seed)
    return MODELS["vae"].build(MODEL_CONFIG, ds.shape)


def time_single(ds, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        model = build(ds, 0)
        started = time.perf_counter()
        train(model, ds, TrainConfig(epochs=1, seed=0), Path(tmp), META, max_steps=steps, progress=False)
        return time.perf_counter() - started


def time_ensemble(ds, steps: int, seeds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        models = [build(ds, s) for s in range(seeds)]
        configs = [TrainConfig(epochs=1, seed=s) for s in range(seeds)]
        started = time.perf_counter()
        train_ensemble(models, ds, configs, [Path(tmp) / str(s) for s in range(seeds)], [META] * seeds,
                       max_steps=steps, progress=False)
        return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    ds = load_dataset("mnist", args.data_root, download=False).to(args.device)
    print(f"torch {torch.__version__} on {args.device}, load average at start {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores; {args.seeds} seeds, {args.steps} steps, batch 20")
    for threads in args.threads:
        torch.set_num_threads(threads)
        if note := contention_note(threads):
            print(note)
        fixed_one, fixed_ens = time_single(ds, 0), time_ensemble(ds, 0, args.seeds)
        one, ens = time_single(ds, args.steps), time_ensemble(ds, args.steps, args.seeds)
        step_one, step_ens = one - fixed_one, ens - fixed_ens
        print(f"threads {threads}: one run {one:.2f} s ({1e3 * step_one / args.steps:.2f} ms/step, "
              f"fixed {fixed_one:.2f} s); ensemble x{args.seeds} {ens:.2f} s "
              f"({1e3 * step_ens / args.steps:.2f} ms/step, fixed {fixed_ens:.2f} s); "
              f"ratio {ens / one:.2f} in all, {step_ens / step_one:.2f} per step "
              f"(x{args.seeds} alone: {args.seeds:.0f}.00)")


if __name__ == "__main__":
    main()
