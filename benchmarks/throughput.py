#!/usr/bin/env python
"""Benchmark: training throughput (images/s) of the exact-likelihood family, and whether
channels-last memory and bfloat16 autocast help.

For each model (``realnvp``, ``pixelcnn``, ``pixelvae``; those not registered are skipped
with a note) and each input (1x28x28 binary, 1x28x28 8-bit, 3x32x32 8-bit), one training
step is what genbench's loop does: ``model.training_losses(x)``, the model's own optimizer
(``configure_optimizers``), zero_grad, backward, step. The model's config and batch size
are its suite run's: the first run of that model on a data set of the input's shape (the
mnist suite's for 28x28, the cifar10 suite's for 32x32), else its cifar10 run; a config with
an ``output`` field gets the input's (``bernoulli`` for bits, ``softmax256`` for 8-bit
levels). ``init_from_data`` runs first where the model has it (on one batch: the runs'
data-dependent init is not what is timed). Inputs are random (Bernoulli(1/2) bits or uniform
8-bit levels as pixel / 255), so no data files are needed.

Variants, side by side on the same device, weights and batches:
- fp32: contiguous float32 (what genbench's loop runs);
- channels-last: model and input in ``torch.channels_last`` memory format;
- bf16 autocast: ``torch.autocast(device, torch.bfloat16)`` around the forward pass
  (parameters, gradients and optimizer stay float32);
- both.
Each row prints images/s, the ratio to fp32 and the last step's loss minus fp32's (in the
model's loss units): every
variant starts from the same weights and trains on the same batches and seeds, so a gap means
the variant changes the numbers, not only the speed (at the first step it often cannot show:
a flow whose couplings start as the identity has the same first loss in any precision).
Runs on CPU, and on CUDA when available (``--devices``).

    OMP_NUM_THREADS=1 python benchmarks/throughput.py --threads 1 --steps 3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import time

import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)

from genbench.core.protocols import DataInitialized
from genbench.data import DATASETS
from genbench.suites import SUITES
from zoo import MODELS

MODEL_NAMES = ("realnvp", "pixelcnn", "pixelvae")
#: the ``output`` of a model config for binary (True) and 8-bit (False) inputs
OUTPUT_FOR_BINARY = {True: "bernoulli", False: "softmax256"}
#: name -> (shape, binary)
INPUTS = {
    "1x28x28 binary": ((1, 28, 28), True),
    "1x28x28 8-bit": ((1, 28, 28), False),
    "3x32x32 8-bit": ((3, 32, 32), False),
}
#: name -> (channels_last, bf16 autocast)
VARIANTS = {
    "fp32": (False, False),
    "channels-last": (True, False),
    "bf16 autocast": (False, True),
    "channels-last + bf16": (True, True),
}
LR = 1e-3


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    p.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS)[1:], choices=list(VARIANTS)[1:],
                   help="variants timed beside fp32 (which always runs first)")
    p.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    p.add_argument("--steps", type=int, default=5, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--batch-size", type=int, help="instead of each run's batch size")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def suite_setup(model: str, shape: tuple[int, ...], binary: bool) -> tuple[dict, int, str]:
    """(config, batch size, where from) of the model's suite run for inputs of ``shape``, its
    ``output`` set for the input's kind."""
    runs = [(suite, run) for _, suite in SUITES.items() for run in suite.runs if run.model == model]
    same_shape = [(s, r) for s, r in runs if DATASETS[s.dataset_of(r)].shape == shape]
    cifar10 = [(s, r) for s, r in runs if s.name == "cifar10"]
    if not (same_shape or cifar10):
        return {}, 64, "the model's defaults"
    suite, run = (same_shape or cifar10)[0]
    config = dict(run.config)
    if "output" in {f.name for f in dataclasses.fields(MODELS[model].config_cls)}:
        config["output"] = OUTPUT_FOR_BINARY[binary]
    return config, suite.train_config(suite.budget("short"), 0, run).batch_size, f"{suite.name}/{run.name}"


def random_batches(n: int, batch: int, shape, binary: bool, device, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    if binary:
        data = torch.bernoulli(torch.full((n, batch, *shape), 0.5), generator=gen)
    else:
        data = torch.randint(0, 256, (n, batch, *shape), generator=gen).float() / 255
    return list(data.to(device))


def prepared_model(name: str, config: dict, shape, init_data: torch.Tensor, seed: int):
    """The model built from ``config`` with fixed weights and its data-dependent init done."""
    torch.manual_seed(seed)
    model = MODELS[name].build(config, shape)
    if isinstance(model, DataInitialized):
        model.init_from_data(init_data)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(base, batches, device, channels_last: bool, bf16: bool, warmup: int
                 ) -> tuple[float, float]:
    """(images/s over the timed steps, the last step's loss) of one variant."""
    model = copy.deepcopy(base).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [x.contiguous(memory_format=torch.channels_last) for x in batches]
    optimizers = model.configure_optimizers(LR)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())
    model.train()
    last_loss = None
    for i, x in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        torch.manual_seed(i)
        losses = model.training_losses(x)
        while True:  # as the loop: each optimizer steps before the next loss is computed
            with autocast:  # the forward pass only; backward and step run outside it
                item = next(losses, None)
            if item is None:
                break
            name, loss = item
            value = loss.item()
            if not math.isfinite(value):
                raise RuntimeError(f"loss became {value}")
            last_loss = value
            optimizer = optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    sync(device)
    seconds = time.perf_counter() - start
    return (len(batches) - warmup) * len(batches[0]) / seconds, last_loss


def variant_applies(device: torch.device, bf16: bool) -> str | None:
    """None where the variant can run on this device, else why not."""
    if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "no bf16 on this GPU"
    return None


def main() -> None:
    args = parse_args()
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average at start "
          f"{os.getloadavg()[0]:.2f}; devices: {', '.join(args.devices)}")
    if note := contention_note(args.threads):
        print(note)
    missing = [m for m in args.models if m not in MODELS]
    if missing:
        print(f"not registered (skipped): {', '.join(missing)}")
    header = f"{'model':9s} {'input':15s} {'device':6s} {'variant':21s} {'batch':>5s} {'img/s':>9s} " \
             f"{'vs fp32':>8s} {'loss diff':>10s}"
    print(header)
    for name in [m for m in args.models if m in MODELS]:
        for input_name in args.inputs:
            shape, binary = INPUTS[input_name]
            config, batch, source = suite_setup(name, shape, binary)
            batch = args.batch_size or batch
            print(f"# {name} on {input_name}: config {config or '{}'} from {source}, batch {batch}")
            init = random_batches(1, batch, shape, binary, "cpu", args.seed + 1)[0]
            try:
                base = prepared_model(name, config, shape, init, args.seed)
            except Exception as exc:
                print(f"{name:9s} {input_name:15s} not built: {exc}")
                continue
            for device_name in args.devices:
                device = torch.device(device_name)
                batches = random_batches(args.warmup + args.steps, batch, shape, binary, device, args.seed)
                reference = None
                for variant in ["fp32", *args.variants]:
                    channels_last, bf16 = VARIANTS[variant]
                    row = f"{name:9s} {input_name:15s} {device.type:6s} {variant:21s} {batch:5d}"
                    if reason := variant_applies(device, bf16):
                        print(f"{row} {'n/a':>9s} ({reason})")
                        continue
                    try:
                        rate, loss = time_variant(base, batches, device, channels_last, bf16, args.warmup)
                    except Exception as exc:  # a variant an op does not support: say so, go on
                        print(f"{row} {'failed':>9s} ({type(exc).__name__}: {str(exc)[:80]})")
                        continue
                    if variant == "fp32":
                        reference = (rate, loss)
                    if reference is None:
                        print(f"{row} {rate:9.1f} {'n/a':>8s} {'n/a':>10s}")
                        continue
                    print(f"{row} {rate:9.1f} {rate / reference[0]:7.2f}x {loss - reference[1]:10.4f}")


if __name__ == "__main__":
    main()
