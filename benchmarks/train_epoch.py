#!/usr/bin/env python
"""Benchmark: one training epoch of the 1-stochastic-layer VAE (784-200-200-50) on MNIST.

Two ways of feeding the same model, optimizer and loss, side by side in one process:

1. genbench: the real training loop ``genbench.train.loop.train`` with its in-memory data
   (``ImageDataset.train_batch(idx)``: one uint8 index slice, re-binarized per batch).
2. baseline: ``torchvision.datasets.MNIST`` with per-item transforms (``ToTensor`` then a
   per-item Bernoulli binarization) behind ``torch.utils.data.DataLoader(batch_size=20,
   shuffle=True, num_workers=W)``, and a plain loop: ``model.training_losses(x)``, the
   model's own optimizer (``configure_optimizers``), backward, step. One run per ``W`` in
   ``--workers``.

Both models start from the same weights and run the same number of steps:
``--fraction`` of an epoch (60,000 images / 20 = 3000 steps). Each side's time is split
into a fixed part (paid once per run; a run here is one epoch) and a per-step part, and
the epoch time is extrapolated as fixed + 3000 x per-step:
- genbench fixed part: ``train(..., epochs=0)`` (initialising the output bias from the
  data and writing the checkpoint), timed in its own run directory;
- baseline fixed part: building the torchvision data set and ``iter(loader)`` (which
  starts the workers).

    GENBENCH_DATA=~/.cache/genbench python benchmarks/train_epoch.py --fraction 0.2
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
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from genbench.data import load_dataset
from genbench.train.loop import TrainConfig, train
from zoo import MODELS

BATCH_SIZE = 20
LR = 1e-3
MODEL_CONFIG = {"layers": 1, "k": 1}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fraction", type=float, default=0.2,
                   help="fraction of an epoch actually run (the rest is extrapolated)")
    p.add_argument("--workers", type=int, nargs="+", default=[0],
                   help="DataLoader num_workers for the baseline (one run per value)")
    p.add_argument("--data-root", default=os.environ.get("GENBENCH_DATA"),
                   help="directory holding MNIST/raw (default: $GENBENCH_DATA)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def new_model(data_shape, seed: int):
    torch.manual_seed(seed)
    return MODELS["vae"].build(MODEL_CONFIG, data_shape)


# --- genbench --------------------------------------------------------------------------------

def time_genbench(ds, fraction: float, seed: int) -> tuple[float, float, int]:
    """(fixed seconds, loop seconds, steps) of genbench's training loop."""
    meta = {"name": "bench-vae", "model": "vae", "config": MODEL_CONFIG, "dataset": ds.name,
            "data_shape": list(ds.shape)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(new_model(ds.shape, seed), ds, TrainConfig(epochs=0, batch_size=BATCH_SIZE, lr=LR,
              seed=seed), Path(tmp) / "fixed", meta, progress=False)
        fixed = time.perf_counter() - start

        start = time.perf_counter()
        result = train(new_model(ds.shape, seed), ds,
                       TrainConfig(epochs=fraction, batch_size=BATCH_SIZE, lr=LR, seed=seed),
                       Path(tmp) / "run", meta, progress=False)
        total = time.perf_counter() - start
    return fixed, total - fixed, result.steps


# --- torchvision DataLoader baseline ---------------------------------------------------------

def binarize(image: torch.Tensor) -> torch.Tensor:
    """Per-item dynamic binarization: Bernoulli(pixel intensity in [0, 1])."""
    return torch.bernoulli(image)


def time_dataloader(root: str, steps: int, workers: int, data_shape, seed: int
                    ) -> tuple[float, float, int]:
    """(fixed seconds, loop seconds, steps) of a plain loop fed by a torchvision DataLoader."""
    model = new_model(data_shape, seed)
    optimizer = model.configure_optimizers(LR)["model"]
    model.train()
    torch.manual_seed(seed)

    start = time.perf_counter()
    dataset = MNIST(root=root, train=True, download=False,
                    transform=transforms.Compose([transforms.ToTensor(), binarize]))
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers)
    batches = iter(loader)
    fixed = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(steps):
        x, _ = next(batches)
        for _, loss in model.training_losses(x):
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise RuntimeError(f"loss became {loss_value}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    loop = time.perf_counter() - start
    del batches  # shuts the workers down
    return fixed, loop, steps


# --- main ------------------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.data_root is None:
        raise SystemExit("give --data-root or set GENBENCH_DATA")
    if not 0 < args.fraction <= 1:
        raise SystemExit("--fraction must be in (0, 1]")
    ds = load_dataset("mnist", args.data_root, download=False)
    steps_per_epoch = math.ceil(ds.size("train") / BATCH_SIZE)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH_SIZE}, "
          f"{steps_per_epoch} steps per epoch, load average at start {os.getloadavg()[0]:.2f}")
    if note := contention_note(args.threads):
        print(note)

    # warm-up (thread pools, allocator, first-call overheads), not timed
    time_dataloader(args.data_root, 20, 0, ds.shape, args.seed)

    results = [("genbench train() in-memory batches",
                *time_genbench(ds, args.fraction, args.seed))]
    for workers in args.workers:
        results.append((f"torchvision DataLoader, {workers} workers",
                        *time_dataloader(args.data_root, results[0][3], workers, ds.shape,
                                         args.seed)))

    print()
    print(f"one epoch of the 1-layer VAE, batch {BATCH_SIZE}: {results[0][3]} steps run "
          f"({args.fraction:g} of an epoch), epoch time extrapolated as fixed + "
          f"{steps_per_epoch} x per step")
    print(f"{'':38s} {'steps':>6s} {'fixed (s)':>9s} {'ms / step':>9s} {'epoch (s)':>10s} "
          f"{'vs genbench':>11s}")
    genbench_epoch = None
    for name, fixed, loop, steps in results:
        epoch = fixed + steps_per_epoch * loop / steps
        genbench_epoch = genbench_epoch or epoch
        print(f"{name:38s} {steps:6d} {fixed:9.2f} {1e3 * loop / steps:9.2f} {epoch:10.1f} "
              f"{epoch / genbench_epoch:10.2f}x")


if __name__ == "__main__":
    main()
