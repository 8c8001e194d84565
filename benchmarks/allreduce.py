#!/usr/bin/env python
"""Benchmark: averaging a model's gradients over torchrun ranks, one all-reduce per parameter
against genbench's one flat all-reduce (``genbench.core.distributed.average_gradients``).

``--ranks`` gloo processes on this machine (CPU, one thread each), the gradients of the 1-layer VAE
(784-200-200-50, 14 parameters, 424k floats), ``--steps`` averagings per timing, ``--repeats``
alternating timings of each way: the median ms per step of each and their ratio. The load average
at the start is printed: on a loaded machine the figures are not clean.

    python benchmarks/allreduce.py --ranks 2
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from genbench.core.distributed import average_gradients
from zoo import MODELS


def per_parameter(params, world: int) -> None:
    """The way before the flat buffer: one all-reduce per parameter's gradient."""
    for p in params:
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world


def rank_main(rank: int, world: int, port: int, steps: int, repeats: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        params = list(MODELS["vae"].build({"layers": 1, "k": 1}, (1, 28, 28)).parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        ways = {"one all-reduce per parameter": lambda: per_parameter(params, world),
                "one flat all-reduce (genbench)": lambda: average_gradients(params)}
        times = {name: [] for name in ways}
        for way in ways.values():  # warm-up: connections, buffers
            for _ in range(10):
                way()
        for repeat in range(repeats):
            for name in (list(ways) if repeat % 2 == 0 else list(ways)[::-1]):
                dist.barrier()
                started = time.perf_counter()
                for _ in range(steps):
                    ways[name]()
                times[name].append((time.perf_counter() - started) / steps)
        if rank == 0:
            medians = {name: statistics.median(t) for name, t in times.items()}
            base = medians["one all-reduce per parameter"]
            floats = sum(p.numel() for p in params)
            print(f"{world} gloo ranks, {len(params)} gradients ({floats} floats), {steps} steps x {repeats}")
            for name, seconds in medians.items():
                print(f"  {name:32s} {seconds * 1e3:7.2f} ms/step  ({base / seconds:.2f}x)")
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    one, five, fifteen = os.getloadavg()
    print(f"torch {torch.__version__}, load average at start {one:.2f} {five:.2f} {fifteen:.2f} "
          f"({os.cpu_count()} cores)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(rank_main, args=(args.ranks, port, args.steps, args.repeats), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
