#!/usr/bin/env python
"""Benchmark: the cost of the intervals, FD-infinity and density/coverage next to a plain FID.

On N fake and N real features (synthetic correlated Gaussians; the cost does not depend on
the values) of dimension 128 (LeNet-sized) and, with ``--inception``, 2048, times in one
process:

- plain FID: mean and covariance of both sets and one ``frechet_distance`` (float64);
- FID, torch-fidelity: the same statistics and ``fid_statistics_to_metric`` (its general
  eigenvalue form, for reference: genbench's uses a symmetric one);
- FD-infinity (Chong & Forsyth 2020): the real statistics and ``fd_infinity`` with its
  defaults (15 subset sizes from N/5 to N, each a covariance and a Frechet distance); its
  standard error comes with it;
- FID with its interval: the plain FID and ``fid_stderr``, the delta-method standard error
  over the fakes (what every FID cell's ± costs);
- density/coverage (Naeem et al. 2020), k = 5: chunked float64 k-NN distances, real-real
  and real-fake; their standard errors come with them;
- precision/recall, torch-fidelity (k = 3), whose binomial standard errors cost nothing more;
- KID, torch-fidelity: 100 subsets of 1000, its std over the subsets being its interval;

and the ratio of each to the plain FID. Each timing is the median of ``--repeats`` after an
untimed warm-up (``--repeats 0``: the warm-up alone is timed):

    .venv/bin/python benchmarks/sample_metrics_cost.py --threads 1 [--inception]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from common import contention_note, median_seconds  # benchmarks/common.py (the script folder is on sys.path)
from threadpoolctl import threadpool_limits
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from genbench.metrics.density_coverage import density_coverage
from genbench.metrics.fd_infinity import fd_infinity, fid_stderr, frechet_distance


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="fake and real features each")
    p.add_argument("--inception", action="store_true", help="also dimension 2048 (slow: minutes)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op and BLAS threads")
    return p.parse_args()


def features(n: int, d: int, seed: int, shift: float) -> torch.Tensor:
    """float32 N(shift, A A^T) samples, one A for all seeds: fakes a little off the reals."""
    mix = np.random.default_rng(0).normal(size=(d, d)) / np.sqrt(d)
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)) @ mix + shift).float()


def moments(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = x.double().numpy()
    return x.mean(0), np.cov(x, rowvar=False)


def bench(n: int, d: int, repeats: int) -> None:
    fake, real = features(n, d, 1, 0.05), features(n, d, 2, 0.0)

    def plain():
        return frechet_distance(*moments(fake), *moments(real))

    def fidelity():
        (mf, sf), (mr, sr) = moments(fake), moments(real)
        return fid_statistics_to_metric({"mu": mf, "sigma": sf}, {"mu": mr, "sigma": sr}, False)[
            "frechet_inception_distance"]

    def with_interval():
        (mf, sf), (mr, sr) = moments(fake), moments(real)
        return {"fid": frechet_distance(mf, sf, mr, sr), "stderr": fid_stderr(fake, mr, sr)}

    def infinity():
        return fd_infinity(fake, *moments(real), rng=np.random.default_rng(0))

    fidelity_kwargs = {"verbose": False, "save_cpu_ram": True, "prc_neighborhood": 3, "prc_batch_size": 10000,
                       "kid_subsets": 100, "kid_subset_size": min(1000, n), "kid_kernel": "poly",
                       "kid_kernel_poly_degree": 3,
                       "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1, "rng_seed": 2020}
    rows = [("plain FID", plain), ("FID, torch-fidelity", fidelity), ("FID + its s.e.", with_interval),
            ("FD-infinity + s.e.", infinity),
            ("density/coverage k=5", lambda: density_coverage(real, fake, k=5)),
            ("precision/recall k=3", lambda: prc_features_to_metric(fake, real, **fidelity_kwargs)),
            ("KID, 100 subsets", lambda: kid_features_to_metric(fake, real, **fidelity_kwargs))]
    results = [(name, *median_seconds(fn, repeats)) for name, fn in rows]
    base = results[0][1]
    print(f"\nD = {d}, {n} fake + {n} real features")
    print(f"  {'metric':<22}{'seconds':>9}{'x plain FID':>13}   value")
    for name, t, value in results:
        if isinstance(value, dict):
            keys = ("fd_infinity", "stderr", "fid", "density", "density_se", "coverage", "precision",
                    "recall", "kernel_inception_distance_mean", "kernel_inception_distance_std")
            shown = ", ".join(f"{key.replace('kernel_inception_distance', 'kid')} {value[key]:.5g}"
                              for key in keys if key in value)
        else:
            shown = f"{value:.5g}"
        print(f"  {name:<22}{t:9.2f}{t / base:13.1f}   {shown}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    timing = f"median of {args.repeats} after a warm-up" if args.repeats else "one call each"
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; "
          f"{args.threads} thread(s) for torch and numpy's BLAS; {timing}")
    with threadpool_limits(args.threads):  # numpy's BLAS (covariances, eigh) as well as torch
        for d in (128, 2048) if args.inception else (128,):
            bench(args.n, d, args.repeats)
    note = contention_note(args.threads)
    if note:
        print(note)


if __name__ == "__main__":
    main()
