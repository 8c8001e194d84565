#!/usr/bin/env python
"""Benchmark: which AIS budget makes AIS at least as tight as the NLL column's -L_k, on the same points.

The leaderboard ranks the AIS NLL with the NLLs only where AIS log p - L_k >= 0 within its s.e.
(``genbench.metrics.comparable.ais_is_tight``). This script measures that paired difference, and
the cost of AIS per point, for several (annealing steps, chains) settings on one model: the zoo's
``vae`` {layers: 1, k: 1} (784-200-200-50; ``--config`` for another, e.g. '{"layers": 2, "k": 50}'),
trained here for ``--epochs`` on dynamically binarized MNIST with genbench's loop (batch 20, lr 1e-3),
scored on a seeded random ``--points`` test points. L_k uses ``--k`` importance samples (the short
budget's 1000).

    GENBENCH_DATA=../shared/data python benchmarks/ais_tightness.py --points 16 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)

from genbench.data import load_dataset
from genbench.metrics import ais, importance_bounds
from genbench.metrics.comparable import ais_is_tight
from genbench.metrics.subsets import representative
from genbench.train.loop import TrainConfig, train
from zoo import MODELS

CONFIG = '{"layers": 1, "k": 1}'
SETTINGS = ("100x4", "300x4", "1000x4", "300x16", "1000x16", "3000x4")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=16, help="test points scored by every setting")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), help="STEPSxCHAINS settings of AIS")
    p.add_argument("--k", type=int, default=1000, help="importance samples of L_k")
    p.add_argument("--config", default=CONFIG, help="the zoo vae's hyperparameters, as JSON")
    p.add_argument("--epochs", type=float, default=2.0, help="training epochs of the VAE scored")
    p.add_argument("--data-root", default=os.environ.get("GENBENCH_DATA"),
                   help="directory holding MNIST/raw (default: $GENBENCH_DATA)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def paired(d: torch.Tensor) -> tuple[float, float]:
    d = d.double()
    return d.mean().item(), (d.std().item() / math.sqrt(len(d)) if len(d) > 1 else float("nan"))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.data_root is None:
        raise SystemExit("give --data-root or set GENBENCH_DATA")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average at start "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if note := contention_note(args.threads):
        print(note)
    ds = load_dataset("mnist", args.data_root, download=False)
    torch.manual_seed(args.seed)
    config = json.loads(args.config)
    model = MODELS["vae"].build(config, ds.shape)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        train(model, ds, TrainConfig(epochs=args.epochs, batch_size=20, lr=1e-3, seed=args.seed),
              Path(run_dir), {"model": "vae", "config": config, "dataset": ds.name}, progress=False)
    model.eval()
    print(f"model: vae {config}, trained {args.epochs:g} epoch(s) in {time.perf_counter() - started:.0f} s; "
          f"{args.points} test points, L_k with k = {args.k}")
    x = representative(ds.eval_tensor("test"), args.points, seed=0)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        iwae = importance_bounds(model, x, args.k).iwae
    print(f"mean L_k {iwae.mean().item():.2f} nats")
    ais(model, x[:1], 3, 2, seed=1)  # warm-up
    print("\n| steps | chains | AIS log p - L_k (nats) | tight (rule) | AIS s.e. over chains | acceptance "
          "| s per point |")
    print("|---|---|---|---|---|---|---|")
    for setting in args.settings:
        steps, chains = (int(v) for v in setting.split("x"))
        started = time.perf_counter()
        result = ais(model, x, steps, chains, seed=args.seed)
        seconds = (time.perf_counter() - started) / args.points
        gain, se = paired(result.log_p - iwae)
        tight = ais_is_tight({"ais_minus_iwae": gain, "ais_minus_iwae_se": se})
        print(f"| {steps} | {chains} | {gain:+.2f} ± {se:.2f} | {'yes' if tight else 'no'} | "
              f"{result.se.mean().item():.2f} | {result.acceptance.mean().item():.3f} | {seconds:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
