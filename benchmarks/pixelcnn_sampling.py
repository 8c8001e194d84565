#!/usr/bin/env python
"""Benchmark: sampling the gated PixelCNN, cached against naive recomputation; training throughput.

For two suite-sized configurations (binarized MNIST, 1 x 28 x 28 Bernoulli; CIFAR-10,
3 x 32 x 32 with a 256-way softmax), in one process, on freshly initialised weights:

1. cached: ``GatedPixelCNN.sample(n)``, the default sampler (one new vertical row per layer
   per image row, one new horizontal column per layer per value), timed over all C x H x W
   values of ``--n`` images;
2. naive: the same values each from a full teacher-forced pass over the whole image (what
   ``sample(n, naive=True)`` does). Every value costs the same pass, so the first
   ``--naive-values`` values are timed and the cost is extrapolated to C x H x W values
   ("extrapolated" in the table). Both samplers use the same uniforms; the values the naive
   one drew are compared with the cached sample (float32 may flip a draw whose uniform lies
   within rounding of a CDF boundary; expect all to agree);
3. training: ``--train-steps`` steps of batch ``--batch-size`` (after one warm-up step), the
   model's own Adam; images per second and the time of one 50,000-image epoch at that rate.

Prints the parameter count of each configuration and the speed-up cached / naive.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pixelcnn_sampling.py --threads 1
    .venv/bin/python benchmarks/pixelcnn_sampling.py --mnist channels=24 --cifar layers=8
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)

from zoo import MODELS

#: name, data shape, pixelcnn hyperparameters (the CPU suite sizes this benchmark argues for)
CONFIGS = {
    "binarized MNIST": ((1, 28, 28), {"output": "bernoulli", "channels": 32, "layers": 5}),
    "CIFAR-10": ((3, 32, 32), {"output": "softmax256", "channels": 64, "layers": 6}),
}
EPOCH_IMAGES = 50_000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64, help="images per sampling call")
    p.add_argument("--naive-values", type=int, default=6, help="values timed for the naive sampler")
    p.add_argument("--train-steps", type=int, default=3, help="training steps timed (0: skip)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--mnist", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the binarized-MNIST configuration")
    p.add_argument("--cifar", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the CIFAR-10 configuration")
    p.add_argument("--only", choices=list(CONFIGS), default=None, help="run one configuration")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def build(shape, config: dict, seed: int):
    torch.manual_seed(seed)
    return MODELS["pixelcnn"].build(config, shape)


def time_cached(net, n: int, u: torch.Tensor) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    x = net.sample(n, uniforms=u)
    return time.perf_counter() - start, x


@torch.no_grad()
def time_naive(net, n: int, u: torch.Tensor, values: int, reference: torch.Tensor) -> tuple[float, int]:
    """Seconds for the first ``values`` values by full recomputation, and how many equal ``reference``."""
    x = u.new_zeros(n, *net.data_shape)
    agree, start = 0, time.perf_counter()
    for done, (i, j, c, logits) in enumerate(net._naive_values(x, None), start=1):
        x[:, c, i, j] = net.output.draw(logits, u[:, c, i, j])
        agree += int(torch.equal(x[:, c, i, j], reference[:, c, i, j]))
        if done == values:
            break
    return time.perf_counter() - start, agree


def time_training(model, shape, output: str, batch_size: int, steps: int, seed: int) -> float:
    """Seconds per step of batch ``batch_size`` after one untimed warm-up step."""
    gen = torch.Generator().manual_seed(seed)
    levels = 1 if output == "bernoulli" else 255
    x = torch.randint(0, levels + 1, (batch_size, *shape), generator=gen).float() / levels
    optimizer = model.configure_optimizers(1e-3)["model"]
    start = 0.0
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        for _, loss in model.training_losses(x):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / steps


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = value
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.n} images per sample "
          f"call, load average at start {os.getloadavg()[0]:.2f}")
    if note := contention_note(args.threads):
        print(note)
    overrides = {"binarized MNIST": parse_overrides(args.mnist), "CIFAR-10": parse_overrides(args.cifar)}
    rows = []
    for name, (shape, config) in CONFIGS.items():
        if args.only and name != args.only:
            continue
        model = build(shape, {**config, **overrides[name]}, args.seed)
        net, values = model.network, shape[0] * shape[1] * shape[2]
        params = sum(p.numel() for p in model.parameters())
        cfg = model.config
        print(f"\n{name} {'x'.join(map(str, shape))}: pixelcnn output={cfg.output} channels={cfg.channels} "
              f"layers={cfg.layers} kernel={cfg.kernel_size} first_kernel={cfg.first_kernel_size} "
              f"(reach {net.reach}), {params:,} parameters", flush=True)
        u = torch.rand(args.n, *shape, generator=torch.Generator().manual_seed(args.seed + 1))
        cached, sample = time_cached(net, args.n, u)
        timed = min(args.naive_values, values)
        naive_part, agree = time_naive(net, args.n, u, timed, sample)
        naive = naive_part * values / timed
        rows.append((name, cached, naive, timed < values))
        extrapolated = f" (extrapolated from {timed} of {values} values)" if timed < values else ""
        print(f"  sample {args.n}: cached {cached:.2f} s, naive {naive:.1f} s{extrapolated}, "
              f"speed-up {naive / cached:.0f}x; naive draws equal to the cached ones: {agree} of {timed}",
              flush=True)
        if args.train_steps:
            step = time_training(model, shape, cfg.output, args.batch_size, args.train_steps, args.seed)
            rate = args.batch_size / step
            print(f"  training, batch {args.batch_size}: {step:.2f} s per step, {rate:.1f} images/s, "
                  f"a {EPOCH_IMAGES:,}-image epoch {EPOCH_IMAGES / rate / 60:.1f} min", flush=True)

    print(f"\n{'':18s} {'cached (s)':>10s} {'naive (s)':>10s} {'speed-up':>9s}")
    for name, cached, naive, extrapolated in rows:
        print(f"{name:18s} {cached:10.2f} {naive:10.1f} {naive / cached:8.0f}x"
              f"{'  (naive extrapolated)' if extrapolated else ''}")


if __name__ == "__main__":
    main()
