#!/usr/bin/env python
"""Benchmark: what a diffusion model's likelihoods cost per point, beside realnvp's exact likelihood.

For each of ddpm, vdm and flow-matching (the zoo's defaults, freshly initialised: the cost depends on
the network and the solver's steps, and an untrained network's ODE takes fewer steps than a trained
one's, so the ODE figures are a lower bound) this times, on ``--points`` 8-bit MNIST-shaped images:
the variational bound (``genbench.metrics.diffusion_bound``, one step or time per point, as the
budget's ``bound_time_samples`` = 1), the probability-flow likelihood (``probability_flow_discrete_nll``,
dopri5 at ``--tolerance``) with its evaluations per solve, and realnvp's exact ``log_prob`` (the
mnist suite's realnvp size), all in one process one after another. The load average at the start
is printed first.

    python benchmarks/diffusion_likelihood.py --points 8 --threads 1
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)

from genbench.core.protocols import DiffusionDecoder
from genbench.metrics import diffusion_bound, probability_flow_discrete_nll
from zoo import MODELS

SHAPE = (1, 28, 28)
#: realnvp as the diffusion suite sizes it (genbench/suites/diffusion.toml)
REALNVP = {"scales": 2, "width": 32, "blocks": 2}


def per_point(fn, points: int) -> tuple[float, object]:
    """(wall seconds of ``fn()`` per point, its value)."""
    started = time.perf_counter()
    value = fn()
    return (time.perf_counter() - started) / points, value


def diffusion_row(name: str, x: torch.Tensor, tolerance: float) -> str:
    """The bound's and the ODE's seconds per point and the ODE's evaluations per solve, as a table row."""
    model = MODELS[name].build({}, SHAPE).eval()
    bound = "-"
    if isinstance(model, DiffusionDecoder):
        steps = getattr(model, "time_steps", None)
        with torch.no_grad():
            seconds, _ = per_point(lambda: diffusion_bound(model, 2 * x - 1, steps=steps), len(x))
        bound = f"{seconds:.4f}"
    solver = {"rtol": tolerance, "atol": tolerance}
    seconds, result = per_point(lambda: probability_flow_discrete_nll(model, x, **solver), len(x))
    return f"{name:<14} {bound:>14} {seconds:>12.3f} {result.nfe_per_batch:>14.0f} {'-':>14}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; threads {args.threads}; "
          f"{args.points} points of shape {list(SHAPE)}; ODE rtol = atol = {args.tolerance:g}")
    note = contention_note(args.threads)
    if note:
        print(note)
    torch.manual_seed(0)
    x = (torch.rand(args.points, *SHAPE) * 255).round() / 255
    header = ("model", "bound s/point", "ODE s/point", "ODE NFE/solve", "exact s/point")
    print(f"{header[0]:<14} {header[1]:>14} {header[2]:>12} {header[3]:>14} {header[4]:>14}")
    for name in ("ddpm", "vdm", "flow-matching"):
        print(diffusion_row(name, x, args.tolerance))
    flow = MODELS["realnvp"].build(REALNVP, SHAPE).eval()
    flow.init_from_data(x)
    with torch.no_grad():
        seconds, _ = per_point(lambda: flow.log_prob(x), len(x))
    print(f"{'realnvp':<14} {'-':>14} {'-':>12} {'-':>14} {seconds:>14.4f}")


if __name__ == "__main__":
    main()
