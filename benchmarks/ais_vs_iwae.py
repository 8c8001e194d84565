#!/usr/bin/env python
"""Benchmark: AIS against the IWAE estimator on the 1-layer MNIST VAE (784-200-200-50), at matched
decoder evaluations.

What is measured, in one process, on one machine, on the same test points (a seeded random subset):

1. AIS (``genbench.metrics.ais``): wall time and points/s at ``--steps`` (1000) annealing steps and
   ``--chains`` (16) chains, HMC of 10 leapfrog steps, plus its pilot chain. Its decoder evaluations per
   point are (chains + pilot) x (1 + (steps - 1) x leapfrog), each a forward and a backward pass (the
   gradient in z).
2. IWAE (``genbench.metrics.importance_bounds``, the one estimator behind the NLL column) with k equal to
   that count: as many decoder forward passes as AIS makes (no backward), and its points/s; and at
   k = 5000, genbench's NLL setting, for reference.
3. Which bound on log p(x) is tighter there, in nats: the mean paired difference AIS - L_k over the
   points with its standard error (both are stochastic lower bounds, so the higher one is tighter).

The model is the zoo's ``vae`` {layers: 1, k: 1}, trained here for ``--epochs`` on dynamically
binarized MNIST (genbench's training loop, batch 20, lr 1e-3), unless ``--checkpoint`` names a genbench
checkpoint of that model.

    GENBENCH_DATA=~/.cache/genbench python benchmarks/ais_vs_iwae.py --points 8 --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)
from torch import nn

from genbench.data import load_dataset
from genbench.metrics import ais, importance_bounds
from genbench.metrics.ais import DEFAULT_HMC
from genbench.metrics.subsets import representative
from genbench.train.loop import TrainConfig, train
from zoo import MODELS

CONFIG = {"layers": 1, "k": 1}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=8, help="test points scored by both estimators")
    p.add_argument("--steps", type=int, default=1000, help="AIS annealing steps")
    p.add_argument("--chains", type=int, default=16, help="AIS chains per point")
    p.add_argument("--epochs", type=float, default=1.0,
                   help="training epochs of the VAE scored (without --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="a genbench checkpoint of vae {layers: 1, k: 1}")
    p.add_argument("--data-root", default=os.environ.get("GENBENCH_DATA"),
                   help="directory holding MNIST/raw (default: $GENBENCH_DATA)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def build_model(ds, args) -> tuple[nn.Module, str]:
    torch.manual_seed(args.seed)
    model = MODELS["vae"].build(CONFIG, ds.shape)
    if args.checkpoint:
        from genbench.core.weights import load_state_dict_checked
        from genbench.train import checkpoint as ckpt

        _, tensors, _ = ckpt.read_checkpoint(args.checkpoint)
        load_state_dict_checked(model, ckpt.model_state(tensors), args.checkpoint)
        return model.eval(), f"checkpoint {args.checkpoint}"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        train(model, ds, TrainConfig(epochs=args.epochs, batch_size=20, lr=1e-3, seed=args.seed),
              Path(run_dir), {"model": "vae", "config": CONFIG, "dataset": ds.name}, progress=False)
    return model.eval(), f"trained {args.epochs:g} epoch(s) here in {time.perf_counter() - started:.0f} s"


def decoder_evaluations(steps: int, chains: int) -> int:
    """Decoder passes per point of AIS: every chain (and the pilot) once at the start, then one per
    leapfrog step of every move."""
    return (chains + DEFAULT_HMC.pilot_chains) * (1 + (steps - 1) * DEFAULT_HMC.leapfrog)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def paired(a: torch.Tensor, b: torch.Tensor) -> str:
    d = (a - b).double()
    se = d.std().item() / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{d.mean().item():+.2f} ± {se:.2f} nats"


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
    model, origin = build_model(ds, args)
    x = representative(ds.eval_tensor("test"), args.points, seed=0)  # never a prefix: files may be sorted
    print(f"model: vae {CONFIG} (784-200-200-50), {origin}; {args.points} test points")

    evals = decoder_evaluations(args.steps, args.chains)
    ais(model, x[:1], 3, 2, seed=1)  # warm-up
    ais_s, result = timed(lambda: ais(model, x, args.steps, args.chains, seed=args.seed))
    torch.manual_seed(args.seed)
    iwae_s, matched = timed(lambda: importance_bounds(model, x, evals).iwae)
    torch.manual_seed(args.seed)
    ref_s, reference = timed(lambda: importance_bounds(model, x, 5000).iwae)

    rows = [("AIS", f"{args.steps} steps, {args.chains} chains (+{DEFAULT_HMC.pilot_chains} pilot), "
             f"{DEFAULT_HMC.leapfrog} leapfrog", evals, ais_s, result.log_p),
            ("IWAE, matched", f"k = {evals}", evals, iwae_s, matched),
            ("IWAE, genbench NLL", "k = 5000", 5000, ref_s, reference)]
    print("\n| estimator | setting | decoder passes per point | s per point | points/s | mean bound (nats) |")
    print("|---|---|---|---|---|---|")
    for name, setting, passes, seconds, bound in rows:
        print(f"| {name} | {setting} | {passes:,} | {seconds / args.points:.2f} | "
              f"{args.points / seconds:.3f} | {bound.mean().item():.2f} |")
    print(f"\nAIS per-point s.e. over chains (delta method), mean: {result.se.mean().item():.3f} nats; "
          f"HMC acceptance {result.acceptance.mean().item():.3f}")
    print(f"AIS - L_k at matched decoder passes: {paired(result.log_p, matched)}; "
          f"AIS - L_5000: {paired(result.log_p, reference)} (paired over points; positive: AIS is tighter)")
    tighter = "AIS" if (result.log_p - matched).mean() > 0 else "IWAE"
    print(f"tighter at matched decoder passes: {tighter}; AIS took {ais_s / iwae_s:.1f}x the IWAE time "
          "(a backward pass per decoder pass)")


if __name__ == "__main__":
    main()
