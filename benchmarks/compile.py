#!/usr/bin/env python
"""Benchmark: what ``torch.compile`` buys the training step and the NLL estimator, and what it costs.

The 1-stochastic-layer VAE (784-200-200-50) on dynamically binarized MNIST, side by side in one
process, at each thread count of ``--threads``:

1. the training step (k = 1, batch 20 and 100): the model's loss, backward and its fused Adam,
   eager against the same step with its losses compiled as ``train()`` compiles them past the
   break-even (``genbench.train.loop.loss_function``: inductor, automatic dynamic);
2. the estimator's inner call, ``log_importance_weights(x, k = 5000)`` on as many points per call
   as the IWAE estimator groups at its CPU row limit (``default_max_rows``: 1), eager against
   compiled.

For each: the first call's seconds (compilation included), the steady ms per call (median of
``--repeats`` timings of ``--calls`` calls, eager and compiled alternating so a change of machine
load hits both), their ratio, and the break-even: how many calls the compiled version needs before
its saving has paid for its compilation (none where it is slower). Timings on a loaded machine are
not clean: the load average at the start is printed, quote only an idle machine's. Compilation
is timed with a cold inductor cache (a fresh ``TORCHINDUCTOR_CACHE_DIR``) unless the caller sets
one: a second process with a warm cache compiles several times faster.

    GENBENCH_DATA=../shared/data python benchmarks/compile.py --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="genbench-inductor-"))

import torch  # noqa: E402 (after the cache folder is chosen)
from common import contention_note  # noqa: E402 (benchmarks/common.py: the script folder is on sys.path)

from genbench.core import compile as compilation  # noqa: E402
from genbench.data import load_dataset  # noqa: E402
from genbench.metrics.importance import call_grouping, default_max_rows  # noqa: E402
from genbench.train.loop import Optimizers, TrainConfig, loss_function  # noqa: E402
from zoo import MODELS  # noqa: E402

MODEL_CONFIG = {"layers": 1, "k": 1}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads")
    p.add_argument("--batches", type=int, nargs="+", default=[20, 100])
    p.add_argument("--calls", type=int, default=200, help="training steps per timing")
    p.add_argument("--estimator-calls", type=int, default=10, help="estimator calls per timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-root", default=os.environ.get("GENBENCH_DATA"))
    return p.parse_args()


def new_model(ds):
    torch.manual_seed(0)
    model = MODELS["vae"].build(MODEL_CONFIG, ds.shape)
    model.init_from_data(ds.eval_tensor("train")[:1000])
    return model


def first_call(call) -> float:
    """Seconds of the first call (for a compiled function: its compilation)."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def steady(a, b, calls: int, repeats: int) -> tuple[float, float]:
    """Median seconds per call of ``a`` and of ``b``, timed alternately ``repeats`` times."""
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((a, b), times, strict=True):
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            out.append((time.perf_counter() - started) / calls)
    return statistics.median(times[0]), statistics.median(times[1])


def training_step(model, x, compiled: bool):
    """One training step, eager or with its losses compiled as ``train()`` compiles them
    (``genbench.train.loop.loss_function``); the fused Adam step stays eager in both."""
    optimizers = Optimizers(model, TrainConfig(lr=1e-3))
    optimizer = optimizers.named["model"]
    losses = loss_function(model, optimizers, steps=10**9) if compiled else None  # past any break-even
    if losses is None:
        def losses(batch):
            return list(model.training_losses(batch))

    def step():
        optimizer.zero_grad(set_to_none=True)
        for _, loss in losses(x):
            loss.backward()
        optimizer.step()
    return step


def estimator_call(model, x, k: int, compiled: bool):
    """One estimator call, eager or compiled as genbench compiles it (genbench.core.compile)."""
    fn = model.log_importance_weights
    if compiled:
        fn = compilation.compiled(fn, calls=10**9, workload="estimator")  # whatever the break-even says

    @torch.no_grad()
    def call():
        return fn(x, k)
    return call


def report(label: str, first_eager: float, first_compiled: float, eager: float, compiled: float) -> None:
    saving = eager - compiled
    cost = first_compiled - first_eager
    even = f"{cost / saving:,.0f}" if saving > 0 else "never"
    print(f"{label:<34s} {first_compiled:>10.1f} {eager * 1e3:>9.2f} {compiled * 1e3:>9.2f} "
          f"{eager / compiled:>6.2f}x {even:>11s}")


def main() -> None:
    args = parse_args()
    ds = load_dataset("mnist", args.data_root, download=False)
    one, five, fifteen = os.getloadavg()
    print(f"torch {torch.__version__}, load average at start {one:.2f} {five:.2f} {fifteen:.2f} "
          f"({os.cpu_count()} cores); {args.repeats} alternating repeats; inductor cache "
          f"{os.environ['TORCHINDUCTOR_CACHE_DIR']}")
    print(f"{'':<34s} {'compile s':>10s} {'eager ms':>9s} {'comp. ms':>9s} {'ratio':>7s} {'break-even':>11s}")
    images = ds.eval_tensor("test")
    for threads in args.threads:
        torch.set_num_threads(threads)
        if note := contention_note(threads):
            print(note)
        for batch in args.batches:
            x = images[:batch]
            torch._dynamo.reset()
            eager, compiled = training_step(new_model(ds), x, False), training_step(new_model(ds), x, True)
            first_e, first_c = first_call(eager), first_call(compiled)
            steady_e, steady_c = steady(eager, compiled, args.calls, args.repeats)
            report(f"train step, batch {batch}, {threads} thr", first_e, first_c, steady_e, steady_c)
        torch._dynamo.reset()
        model = new_model(ds).eval()
        points = call_grouping(5000, default_max_rows(images.device))[0]
        x = images[:points]
        eager, compiled = estimator_call(model, x, 5000, False), estimator_call(model, x, 5000, True)
        first_e, first_c = first_call(eager), first_call(compiled)
        steady_e, steady_c = steady(eager, compiled, args.estimator_calls, args.repeats)
        report(f"estimator k=5000 x {points} pts, {threads} thr", first_e, first_c, steady_e, steady_c)
    print("break-even: calls before the compiled version has paid for its compilation")
    one, five, fifteen = os.getloadavg()
    print(f"load average at the end {one:.2f} {five:.2f} {fifteen:.2f}")


if __name__ == "__main__":
    main()
