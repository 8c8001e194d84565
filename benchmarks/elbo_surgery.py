#!/usr/bin/env python
"""Benchmark: ELBO surgery's exact aggregate-posterior mixture, cost against N x samples.

What is measured, in one process: wall time of ``genbench.metrics.elbo_surgery.kl_decomposition``
(avg KL, mutual information and marginal KL from S samples per point, log q(z) the exact
mixture of all N posteriors) on random diagonal-Gaussian encoder outputs, ``--latent``
dimensions (means ~ N(0, 1), stds log-uniform in [0.05, 1]): it measures the estimator, not a
model. Every sample meets every component, so the work is N x S x N (sample, component)
pairs; the table prints seconds, ns per pair (flat when the cost is linear in N x S x
components) and ms per sample, time / (N x S) (linear in N x S for a fixed mixture).

Rows: one per ``--n`` with ``--samples``; one at the smallest N with ``--more-samples``
samples (cost linear in S); one at the smallest N with a fixed ``--components`` subsample
(cost linear in N x S alone); one chunk-size variant (``--chunk-mib``) at the smallest N
beside the default chunk budget. Each timing is preceded by an untimed warm-up. The paper
size is N = 60000 (MNIST's training set):

    .venv/bin/python benchmarks/elbo_surgery.py --n 5000 10000 20000 --threads 1
    .venv/bin/python benchmarks/elbo_surgery.py --n 15000 30000 60000 --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)
from torch import Tensor

from genbench.metrics.elbo_surgery import default_memory_bytes, kl_decomposition
from zoo.layers import diagonal_normal

#: MNIST's training set, the size of Hoffman & Johnson's surgery
PAPER_N = 60_000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[5000, 10000, 20000],
                   help="training points N (each is a sample carrier and a mixture component)")
    p.add_argument("--samples", type=int, default=1, help="samples S per point")
    p.add_argument("--more-samples", type=int, default=4, help="S of the samples row (0: skip)")
    p.add_argument("--components", type=int, default=2000, help="mixture subsample of that row (0: skip)")
    p.add_argument("--latent", type=int, default=50)
    p.add_argument("--chunk-mib", type=float, default=256.0, help="chunk budget of the variant row (0: skip)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def encoder_outputs(n: int, latent: int, seed: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Random means and stds from numpy's generator (torch's seeded one draws the samples)."""
    rng = np.random.default_rng(seed)
    mean = torch.from_numpy(rng.normal(size=(n, latent)))
    std = torch.from_numpy(np.exp(rng.uniform(-3.0, 0.0, size=(n, latent))))
    return mean.to(device), std.to(device)


def timed(mean, std, prior, samples, components=None, memory_bytes=None) -> tuple[float, object]:
    if mean.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    terms = kl_decomposition(mean, std, prior, samples=samples, n_components=components,
                             memory_bytes=memory_bytes)
    if mean.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, terms


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    zeros = torch.zeros(args.latent, dtype=torch.float64, device=device)
    prior = diagonal_normal(zeros, zeros)
    budget = default_memory_bytes(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, latent "
          f"{args.latent}, chunk budget {budget / 2**20:.0f} MiB, load average {os.getloadavg()[0]:.2f}")
    if note := contention_note(args.threads):
        print(note)

    small = min(args.n)
    warm_mean, warm_std = encoder_outputs(1000, args.latent, args.seed, device)
    kl_decomposition(warm_mean, warm_std, prior)  # warm-up
    runs = [(n, args.samples, None, None, "") for n in sorted(args.n)]
    if args.more_samples:
        runs.append((small, args.more_samples, None, None, "more samples"))
    if args.components:
        runs.append((small, args.samples, args.components, None, "fixed mixture subsample"))
    if args.chunk_mib:
        runs.append((small, args.samples, None, int(args.chunk_mib * 2**20),
                     f"chunk budget {args.chunk_mib:g} MiB"))

    print()
    print(f"{'N':>7s} {'S':>3s} {'components':>10s} {'pairs':>10s} {'seconds':>9s} {'ns/pair':>8s} "
          f"{'ms/sample':>10s}  {'MI':>7s} {'marg. KL':>8s}  note")
    per_pair = {}
    for n, samples, components, memory_bytes, note in runs:
        mean, std = encoder_outputs(n, args.latent, args.seed, device)
        seconds, terms = timed(mean, std, prior, samples, components, memory_bytes)
        pairs = n * samples * terms.n_components
        if not note:
            per_pair[n] = seconds / pairs
        print(f"{n:7d} {samples:3d} {terms.n_components:10d} {pairs:10.2e} {seconds:9.2f} "
              f"{seconds / pairs * 1e9:8.3f} {seconds / (n * samples) * 1e3:10.3f}  "
              f"{terms.mutual_info:7.3f} {terms.marginal_kl:8.3f}  {note}")
    largest = max(per_pair)
    print(f"\nMI <= log N (N = {largest}: {math.log(largest):.3f}). Full-mixture rows cost N x S x N "
          "pairs, the fixed-subsample row N x S x components.")
    if PAPER_N not in per_pair:
        print(f"N = {PAPER_N}, S = {args.samples} at the ns/pair of N = {largest}: "
              f"{per_pair[largest] * PAPER_N**2 * args.samples:.0f} s (extrapolated)")

if __name__ == "__main__":
    main()
