#!/usr/bin/env python
"""Benchmark: the cost of genbench's training loop over a plain PyTorch loop, and the FLOP floor.

The 1-stochastic-layer VAE (784-200-200-50, k = 1) on dynamically binarized MNIST, side by
side in one process, at each batch size of ``--batches`` and each thread count of ``--threads``:

1. genbench: ``genbench.train.loop.train`` as a run uses it (its seeding, schedule, loss
   window, callbacks and checkpoint every 2000 steps), ``--steps`` steps;
2. plain: the same model, optimizer (``configure_optimizers``: fused Adam) and in-memory
   batches in the loop a researcher writes by hand: index a permutation, binarize,
   ``training_losses``, ``zero_grad``, ``backward``, ``step``; no NaN check, no schedule;
3. floor: 6 x batch x MACs (2 for the forward pass, 4 for the backward) divided by the float32
   matmul rate measured in the same run at the model's own largest GEMM shape (batch x 784 x 200).

genbench's fixed cost (init from data, the final checkpoint) is timed in a run of 0 steps and
subtracted. The two loops alternate ``--repeats`` times and the medians are compared, so a
change of machine load hits both. Timings on a loaded machine are not clean: the load average
at the start is printed, quote only an idle machine's.

    GENBENCH_DATA=../shared/data python benchmarks/train_loop.py --threads 1 2 --batches 20 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)

from genbench.data import load_dataset
from genbench.train.loop import TrainConfig, epoch_permutation, train
from zoo import MODELS

MODEL_CONFIG = {"layers": 1, "k": 1}
#: multiply-accumulates per image: encoder 784-200-200-(2 x 50), decoder 50-200-200-784
MACS = (784 * 200 + 200 * 200 + 200 * 100) + (50 * 200 + 200 * 200 + 200 * 784)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400, help="training steps per timing")
    p.add_argument("--repeats", type=int, default=3, help="alternating timings per loop")
    p.add_argument("--batches", type=int, nargs="+", default=[20, 100])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads")
    p.add_argument("--data-root", default=os.environ.get("GENBENCH_DATA"))
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def new_model(ds, device):
    torch.manual_seed(0)
    model = MODELS["vae"].build(MODEL_CONFIG, ds.shape).to(device)
    model.init_from_data(ds.eval_tensor("train")[:1000])
    return model


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_genbench(ds, batch: int, steps: int, device) -> float:
    """Seconds per step of ``train()``, its fixed cost (a 0-step run) subtracted."""
    meta = {"name": "bench", "model": "vae", "config": MODEL_CONFIG, "dataset": ds.name,
            "data_shape": list(ds.shape)}
    per_epoch = -(-ds.size("train") // batch)
    seconds = []
    for n in (0, steps):
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(epochs=n / per_epoch, batch_size=batch, seed=0)
            model = new_model(ds, device)
            sync(device)
            started = time.perf_counter()
            train(model, ds, config, Path(tmp), meta, progress=False)
            sync(device)
            seconds.append(time.perf_counter() - started)
    return (seconds[1] - seconds[0]) / steps


def time_plain(ds, batch: int, steps: int, device) -> float:
    """Seconds per step of the hand-written loop on the same in-memory batches."""
    model = new_model(ds, device)
    optimizer = model.configure_optimizers(1e-3)["model"]
    model.train()
    images = ds.splits["train"]
    perm = epoch_permutation(0, 0, ds.size("train")).to(device)
    sync(device)
    started = time.perf_counter()
    for step in range(steps):
        x = torch.bernoulli(images[perm[step * batch:(step + 1) * batch]].float() / 255.0)
        for _, loss in model.training_losses(x):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    sync(device)
    return (time.perf_counter() - started) / steps


def matmul_flops(batch: int, device, repeats: int = 20) -> float:
    """float32 FLOP/s of the model's largest GEMM, [batch, 784] x [784, 200], median of repeats
    (each repeat runs enough products to take a few milliseconds)."""
    a, b = torch.randn(batch, 784, device=device), torch.randn(784, 200, device=device)
    inner = max(1, 200 // batch * 10)
    times = []
    for _ in range(repeats + 1):
        sync(device)
        started = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        times.append((time.perf_counter() - started) / inner)
    return 2 * batch * 784 * 200 / statistics.median(times[1:])


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    ds = load_dataset("mnist", args.data_root, download=False).to(device)
    print(f"torch {torch.__version__} on {device}, load average at start {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores); {args.steps} steps per timing, {args.repeats} alternating repeats")
    print(f"{'threads':>7s} {'batch':>5s} {'genbench ms':>11s} {'plain ms':>8s} {'ratio':>6s} "
          f"{'GFLOP/s':>7s} {'floor ms':>8s} {'plain/floor':>11s} {'genbench img/s':>14s}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        if note := contention_note(threads):
            print(note)
        for batch in args.batches:
            time_plain(ds, batch, 20, device)  # warm-up: allocator, thread pool
            ours, plain = [], []
            for _ in range(args.repeats):
                ours.append(time_genbench(ds, batch, args.steps, device))
                plain.append(time_plain(ds, batch, args.steps, device))
            g, p = statistics.median(ours), statistics.median(plain)
            rate = matmul_flops(batch, device)
            floor = 6 * batch * MACS / rate
            print(f"{threads:7d} {batch:5d} {1e3 * g:11.2f} {1e3 * p:8.2f} {g / p:6.2f} {rate / 1e9:7.1f} "
                  f"{1e3 * floor:8.2f} {p / floor:11.2f} {batch / g:14.0f}")


if __name__ == "__main__":
    main()
