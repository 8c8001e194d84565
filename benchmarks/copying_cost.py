#!/usr/bin/env python
"""Benchmark: the cost of the memorization tests next to FID, on 10,000 samples.

On features of dimension 128 (LeNet-sized; synthetic: a mixture of Gaussians, whose values do not
change the cost) of N samples, N held-out reference images and T training images, times in one
process, side by side:

- FID: the statistics of samples and reference and torch-fidelity's ``fid_statistics_to_metric``
  (what every FID column costs once the features exist);
- the copying tests (``genbench.metrics.memorization.copying_tests``): nearest training neighbours
  of samples, reference and training points (blocked float64 distances), authenticity and the copied
  fraction, and C_T (scikit-learn's k-means of the training features into 50 cells, scipy's
  Mann-Whitney U per cell);

and their ratio. Feature extraction is left out of both: the copying tests reuse the reference
features FID has and add the training images' once (cached). The load average at the start is
printed: timings on a busy machine are slower. Each timing is the median of ``--repeats`` after an
untimed warm-up:

    .venv/bin/python benchmarks/copying_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from common import median_seconds  # benchmarks/common.py (the script folder is on sys.path)
from threadpoolctl import threadpool_limits
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from genbench.metrics.memorization import copying_tests


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="samples and reference images each")
    p.add_argument("--train", type=int, default=10_000, help="training images searched")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op and BLAS threads")
    return p.parse_args()


def features(n: int, d: int, seed: int) -> torch.Tensor:
    """float32 features of a 10-component Gaussian mixture (the same centres for every seed)."""
    centres = np.random.default_rng(0).normal(size=(10, d)) * 4
    rng = np.random.default_rng(seed)
    return torch.from_numpy(centres[rng.integers(10, size=n)] + rng.normal(size=(n, d))).float()


def main() -> None:
    args = parse_args()
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} "
          f"cores; {args.threads} thread(s)")
    torch.set_num_threads(args.threads)
    samples, reference, train = (features(n, args.dim, seed) for n, seed in
                                 ((args.n, 1), (args.n, 2), (args.train, 3)))

    def fid() -> float:
        fake, real = fid_features_to_statistics(samples), fid_features_to_statistics(reference)
        return fid_statistics_to_metric(fake, real, False)["frechet_inception_distance"]

    with threadpool_limits(args.threads):
        fid_seconds, _ = median_seconds(fid, args.repeats)
        copying_seconds, out = median_seconds(lambda: copying_tests(train, reference, samples, "x"),
                                              args.repeats)
    print(f"{args.n:,} samples, {args.n:,} reference and {args.train:,} training features of dimension "
          f"{args.dim}")
    print(f"{'FID':<16} {fid_seconds:8.2f} s")
    print(f"{'copying tests':<16} {copying_seconds:8.2f} s   C_T {out['ct_x']:.2f} over "
          f"{out['ct_x_cells']:.0f} cells, copied fraction {out['copied_x']:.3f} ± {out['copied_x_se']:.3f}")
    print(f"ratio copying / FID: {copying_seconds / fid_seconds:.1f}")


if __name__ == "__main__":
    main()
