#!/usr/bin/env python
"""Benchmark: what scoring NLL on all test points costs, per run of a suite, at a budget's k.

The paired protocol scores NLL, ELBO and bits/dim on every test point wherever the estimator's
cost allows, and on a seeded random subset only where it does not (a run's ``n_test``). This
prints, for each run of the suite that has a likelihood, the wall time of the estimator behind
``nll`` (``genbench.metrics.nll_per_example``) per test point at the k that run's budget gives it,
timed on ``--points`` seeded random test points of the run's data set, and its extrapolation to
the whole test split beside the points the budget scores. All runs are timed in one process, one
after another, with freshly initialised weights (the cost does not depend on training); the
load average at the start is printed with the results.

    GENBENCH_DATA=../shared/data python benchmarks/nll_cost.py --suite mnist --budget short --points 20
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)

from genbench.core.protocols import ExactLikelihood, LatentVariableModel
from genbench.data import load_dataset
from genbench.metrics import nll_per_example
from genbench.metrics.subsets import representative
from genbench.suites import SUITES
from zoo import MODELS


def seconds_per_point(model, x: torch.Tensor, k: int) -> float:
    """Wall seconds of the NLL estimator per point of ``x`` (after one untimed warm-up point)."""
    nll_per_example(model, x[:1], k)
    started = time.perf_counter()
    nll_per_example(model, x, k)
    return (time.perf_counter() - started) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="mnist")
    parser.add_argument("--budget", default="short")
    parser.add_argument("--points", type=int, default=20, help="test points each run is timed on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", help="only these run names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suite = SUITES[args.suite]
    budget = suite.budget(args.budget)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; threads {args.threads}; "
          f"{args.points} points per run")
    if note := contention_note(args.threads):
        print(note)
    print("| run | data | k | s per point | all test points (s) | the budget scores |")
    print("|---|---|---|---|---|---|")
    data = {}
    for entry in suite.runs:
        if args.models and entry.name not in args.models:
            continue
        name = suite.dataset_of(entry)
        if name not in data:
            data[name] = load_dataset(name)
        dataset = data[name]
        torch.manual_seed(0)
        model = MODELS[entry.model].build(entry.config, dataset.shape)
        if hasattr(model, "init_from_data"):  # output biases, or a fitted PPCA: as training starts
            model.init_from_data(dataset.train_batch(torch.randperm(dataset.size("train"))[:5000]))
        model.eval()
        if not isinstance(model, (ExactLikelihood, LatentVariableModel)):
            continue
        settings = suite.budget_for(entry, budget).eval
        test = dataset.eval_tensor("test")
        x = representative(test, args.points, 0)
        per_point = seconds_per_point(model, x, settings.k)
        scored = "all" if settings.n_test is None or settings.n_test >= len(test) else f"{settings.n_test}"
        print(f"| {entry.name} | {name} | {settings.k} | {per_point:.4f} | {per_point * len(test):.0f} | "
              f"{scored} of {len(test)} |", flush=True)


if __name__ == "__main__":
    main()
