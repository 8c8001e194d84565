#!/usr/bin/env python
"""Benchmark: NLL with k = 5000 on the MNIST test images, 1-stochastic-layer VAE (784-200-200-50).

What is measured, in one process, on one machine:

1. genbench: wall time of ``genbench.metrics.nll_per_example(model, x, k)`` (the estimator
   behind ``nll``) on the first ``--points`` test images, reported per point and
   extrapolated linearly to the full test set (10,000 points x k samples).
2. pythae: wall time of ``pythae.models.VAE.get_nll(x, n_samples=k)`` on the first
   ``--pythae-points`` test images, with an encoder and decoder that are exact copies of the
   genbench model's layers (Bernoulli likelihood: ``reconstruction_loss="bce"``, decoder
   returning sigmoid probabilities, as pythae expects). get_nll is called as pythae ships
   it (autograd on, its default batch_size=100 samples per call). Both estimates are
   printed on the same points with their Monte Carlo standard error, as a check that the
   two compute the same thing. Skipped, with a note, if pythae is not installed.
3. the floor: the decoder's matrix-multiply FLOPs, 2 * rows * (50*200 + 200*200 + 200*784)
   for rows = points x k, divided by the float32 matmul rate measured in the same run on a
   [R, 200] x [200, 784] product, R the rows of one of the estimator's model calls (the decoder's
   largest GEMM at the shape it runs; median of several runs).

Per-point costs are compared, so the two estimators may be timed on different numbers of
points. Both sides get one untimed warm-up call. The model is freshly initialised
(output bias at the logit of the training mean) unless ``--checkpoint`` names a genbench
checkpoint of the same model.

    GENBENCH_DATA=~/.cache/genbench python benchmarks/nll_estimator.py --points 60 --pythae-points 20
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import statistics
import time

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)
from torch import nn

from genbench.core import compile as compilation
from genbench.data import load_dataset
from genbench.metrics import nll_per_example
from genbench.metrics.importance import call_grouping, default_max_rows
from genbench.metrics.subsets import representative
from zoo import MODELS

#: multiply-accumulates per sample in the decoder 50-200-200-784
DECODER_MACS = 50 * 200 + 200 * 200 + 200 * 784
FULL_TEST_SET = 10_000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=60, help="test points timed for genbench")
    p.add_argument("--pythae-points", type=int, default=20, help="test points timed for pythae")
    p.add_argument("--k", type=int, default=5000, help="importance samples per point")
    p.add_argument("--data-root", default=os.environ.get("GENBENCH_DATA"),
                   help="directory holding MNIST/raw (default: $GENBENCH_DATA)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--max-rows", type=int, default=None,
                   help="genbench's rows per model call (default: its own default)")
    p.add_argument("--pythae-batch-size", type=int, default=100,
                   help="get_nll's batch_size (pythae's default is 100)")
    p.add_argument("--checkpoint", default=None, help="optional genbench checkpoint to load")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


# --- the model -------------------------------------------------------------------------------

def build_model(ds, checkpoint: str | None, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS["vae"].build({"layers": 1, "k": 1}, ds.shape)
    if checkpoint:
        from genbench.core.weights import load_state_dict_checked
        from genbench.train import checkpoint as ckpt

        _, tensors, _ = ckpt.read_checkpoint(checkpoint)
        load_state_dict_checked(model, ckpt.model_state(tensors), checkpoint)
    else:
        model.init_from_data(ds.train_batch(torch.arange(ds.size("train"))))
    return model.eval()


@torch.no_grad()
def mc_standard_error(model: nn.Module, x: torch.Tensor, k: int) -> float:
    """Standard error of the mean of -L_k over ``x`` (delta method: sd(w / mean w) / sqrt k)."""
    variances = []
    for xi in x.split(1):
        log_w = model.log_importance_weights(xi, k).double().squeeze(1)
        w = torch.exp(log_w - log_w.max())
        variances.append((w / w.mean()).var() / k)
    return math.sqrt(sum(variances)) / x.shape[0]


# --- timings ---------------------------------------------------------------------------------

def time_genbench(model, x, k, max_rows) -> tuple[float, torch.Tensor]:
    """Seconds and values of the eager estimator (after an untimed warm-up call)."""
    with compile_threshold(None):
        nll_per_example(model, x[:1], k=min(k, 500), max_rows=max_rows)  # warm-up
        start = time.perf_counter()
        values = nll_per_example(model, x, k=k, max_rows=max_rows)
    return time.perf_counter() - start, values


def time_compiled(model, x, k, max_rows) -> tuple[float, float, torch.Tensor]:
    """(seconds of the compiling first call on one call's points, seconds of the timed call, values)
    of the estimator with ``log_importance_weights`` compiled (genbench.core.compile) whatever the
    workload's size."""
    per_call = call_grouping(k, max_rows or default_max_rows(x.device))[0]
    with compile_threshold(0):
        start = time.perf_counter()
        nll_per_example(model, x[:per_call], k=k, max_rows=max_rows)  # compiles, at the timed shapes
        compiling = time.perf_counter() - start
        start = time.perf_counter()
        values = nll_per_example(model, x, k=k, max_rows=max_rows)
    return compiling, time.perf_counter() - start, values


@contextlib.contextmanager
def compile_threshold(calls: int | None):
    """The estimator compiled from ``calls`` calls on (None: never), whatever the defaults say."""
    saved, switch = compilation.MIN_CALLS["estimator"], os.environ.pop(compilation.SWITCH, None)
    if calls is None:
        compilation.disable()
    else:
        compilation.MIN_CALLS["estimator"] = calls
    try:
        yield
    finally:
        compilation.MIN_CALLS["estimator"] = saved
        os.environ.pop(compilation.SWITCH, None)
        if switch is not None:
            os.environ[compilation.SWITCH] = switch


def matmul_rate(rows: int, repeats: int = 7) -> float:
    """float32 FLOP/s of a [rows, 200] x [200, 784] product (median of ``repeats`` timings)."""
    a, b = torch.randn(rows, 200), torch.randn(200, 784)
    out = torch.empty(rows, 784)
    for _ in range(2):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b, out=out)
        times.append((time.perf_counter() - start) / 5)
    return 2 * rows * 200 * 784 / statistics.median(times)


def pythae_vae(model: nn.Module):
    """pythae VAE whose encoder and decoder are copies of the genbench model's layers."""
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError as exc:
        return None, f"pythae not installed ({exc}); its comparison is skipped"

    class Encoder(BaseEncoder):
        def __init__(self, layer):  # genbench GaussianLayer: body, mean, log_std heads
            super().__init__()
            self.body = copy.deepcopy(layer.body)
            self.mean = copy.deepcopy(layer.mean)
            self.log_std = copy.deepcopy(layer.log_std)

        def forward(self, x):
            h = self.body(x.flatten(1))
            # pythae's log_covariance is log sigma^2
            return ModelOutput(embedding=self.mean(h), log_covariance=2 * self.log_std(h))

    class Decoder(BaseDecoder):
        def __init__(self, pixel_decoder, data_shape):
            super().__init__()
            self.net = copy.deepcopy(pixel_decoder)
            self.data_shape = data_shape

        def forward(self, z):
            # pythae's "bce" loss takes Bernoulli probabilities, not logits
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(-1, *self.data_shape))

    config = VAEConfig(input_dim=model.data_shape, latent_dim=model.latents[0],
                       reconstruction_loss="bce")
    vae = VAE(config, encoder=Encoder(model.encoders[0]),
              decoder=Decoder(model.pixel_decoder, model.data_shape))
    return vae.eval(), None


def time_pythae(vae, x, k, batch_size) -> tuple[float, float]:
    vae.get_nll(x[:1], n_samples=min(k, batch_size), batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    mean_log_p = vae.get_nll(x, n_samples=k, batch_size=batch_size)
    return time.perf_counter() - start, -float(mean_log_p)


# --- main ------------------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.data_root is None:
        raise SystemExit("give --data-root or set GENBENCH_DATA")
    ds = load_dataset("mnist", args.data_root, download=False)
    model = build_model(ds, args.checkpoint, args.seed)
    n_points = max(args.points, args.pythae_points)
    x = representative(ds.eval_tensor("test"), n_points, seed=0)  # never a prefix: files may be sorted
    k = args.k
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, k = {k}, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    if note := contention_note(args.threads):
        print(note)

    # the rate at the decoder's own shape: the rows of one of the estimator's model calls
    points, samples = call_grouping(k, args.max_rows or default_max_rows(x.device))
    call_rows = points * samples
    rate = matmul_rate(call_rows)
    print(f"float32 matmul [{call_rows},200]x[200,784]: {rate / 1e9:.1f} GFLOP/s (median)")

    torch.manual_seed(args.seed)
    gb_seconds, gb_nll = time_genbench(model, x[: args.points], k, args.max_rows)
    gb_per_point = gb_seconds / args.points
    torch.manual_seed(args.seed)
    compiling, compiled_seconds, compiled_nll = time_compiled(model, x[: args.points], k, args.max_rows)
    compiled_per_point = compiled_seconds / args.points
    floor_per_point = 2 * k * DECODER_MACS / rate

    vae, skipped = pythae_vae(model)
    py_per_point = None
    if vae is not None:
        xp = x[: args.pythae_points]
        torch.manual_seed(args.seed + 1)
        py_seconds, py_nll = time_pythae(vae, xp, k, args.pythae_batch_size)
        py_per_point = py_seconds / args.pythae_points
        # genbench on exactly the same points: from the timed run, or one more untimed run
        if args.points >= args.pythae_points:
            gb_same = gb_nll[: args.pythae_points].mean().item()
        else:
            gb_same = nll_per_example(model, xp, k=k, max_rows=args.max_rows).mean().item()
        se = mc_standard_error(model, xp, k)

    full = FULL_TEST_SET
    rows = [
        ("genbench nll_per_example", args.points, gb_per_point),
        ("genbench, compiled", args.points, compiled_per_point),
        ("pythae VAE.get_nll", args.pythae_points if vae else None, py_per_point),
        ("floor: decoder matmul FLOPs / rate", None, floor_per_point),
    ]
    print()
    print(f"NLL, k = {k}, 1-layer VAE 784-200-200-50, MNIST test set")
    print(f"{'':36s} {'points timed':>12s} {'s / point':>10s} {f'{full} points (s)':>18s}")
    for name, timed, per_point in rows:
        if per_point is None:
            print(f"{name:36s} {'-':>12s} {'skipped':>10s}")
            continue
        timed_s = f"{timed}" if timed is not None else "-"
        note = "extrapolated" if timed is not None and timed < full else ""
        print(f"{name:36s} {timed_s:>12s} {per_point:10.4f} {per_point * full:18.1f} {note}")
    print()
    print(f"genbench NLL on its {args.points} points: {gb_nll.mean().item():.3f} nats")
    if vae is None:
        print(skipped)
    else:
        diff = gb_same - py_nll
        print(f"same {args.pythae_points} points: genbench {gb_same:.3f} nats, pythae {py_nll:.3f} "
              f"nats, difference {diff:+.3f} (MC std error of the difference ~ "
              f"{math.sqrt(2) * se:.3f}, i.e. {abs(diff) / (math.sqrt(2) * se):.1f} sigma)")
        print(f"speed-up over pythae (per point): {py_per_point / gb_per_point:.2f}x eager, "
              f"{py_per_point / compiled_per_point:.2f}x compiled   (target >= 3x)")
    print(f"genbench / floor: {gb_per_point / floor_per_point:.2f}x eager, "
          f"{compiled_per_point / floor_per_point:.2f}x compiled   (target <= 1.5x)")
    print(f"compiled: its first call (compilation, {compiling:.1f} s) is paid back after "
          f"{compiling / max(gb_per_point - compiled_per_point, 1e-9):.0f} points; its NLL "
          f"{compiled_nll.mean().item():.3f} vs eager {gb_nll.mean().item():.3f} nats on the same points "
          f"(each after its own warm-up draws: equal within Monte Carlo error)")


if __name__ == "__main__":
    main()
