#!/usr/bin/env python
"""Benchmark: FID through genbench against torch-fidelity called directly, and the reference cache.

What is measured, in one process, on N real MNIST images standing in for model samples
(the first N of the training split) against the first N of the test split, features of
genbench's LeNet (trained once and cached under the data root if absent):

- direct: ``torch_fidelity.calculate_metrics(fid=True)`` on both uint8 sets (its cache off);
- genbench, cold: ``score_images`` FID with an empty cache (extracts both sets, writes the
  reference features); the ratio cold / direct is genbench's overhead (1.00: none);
- genbench, warm: a second "model" (the next N training images) with the reference cached:
  only the samples are extracted; cold - warm is the time a cached reference saves.

The FID values of direct and cold must agree (same features, same torch-fidelity function).
Each timing is the median of ``--repeats`` after an untimed warm-up:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fid_overhead.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch_fidelity
from common import contention_note, median_seconds  # benchmarks/common.py (the script folder is on sys.path)

import genbench.metrics.fidelity_extractors  # noqa: F401 (registers genbench's extractors with torch-fidelity)
from genbench.data import load_dataset
from genbench.metrics.features import resolve_feature_net
from genbench.metrics.sample_quality import UInt8Images, reference_images, score_images


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="samples and reference images")
    p.add_argument("--data-root", help="data folder with MNIST (its genbench-cache keeps the LeNet)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset("mnist8", args.data_root)
    net = resolve_feature_net("lenet", dataset, args.data_root)
    fake = reference_images(dataset, "train", 2 * args.n)
    model_a, model_b = fake[: args.n], fake[args.n:]
    real = reference_images(dataset, "test", args.n)

    def direct():
        return torch_fidelity.calculate_metrics(
            input1=UInt8Images(model_a), input2=UInt8Images(real), fid=True,
            feature_extractor=net.fidelity_name,
            feature_extractor_weights_path=str(net.weights_path), cuda=False, cache=False, verbose=False,
            save_cpu_ram=True, batch_size=500)["frechet_inception_distance"]

    def genbench(model, cache):
        return score_images(model, dataset, net, "test", args.n, cache, which=("fid",))["fid_lenet"]

    def cold():
        with tempfile.TemporaryDirectory() as folder:
            return genbench(model_a, Path(folder))

    with tempfile.TemporaryDirectory() as folder:
        genbench(model_a, Path(folder))  # fills the reference cache
        t_warm, fid_b = median_seconds(lambda: genbench(model_b, Path(folder)), args.repeats)
    t_direct, fid_direct = median_seconds(direct, args.repeats)
    t_cold, fid_cold = median_seconds(cold, args.repeats)

    print(f"FID-LeNet, N = {args.n} samples vs {args.n} test images, {args.threads} thread(s), "
          f"median of {args.repeats}")
    print(f"  torch-fidelity directly  {t_direct:7.2f} s   FID {fid_direct:.6f}")
    print(f"  genbench, cold cache     {t_cold:7.2f} s   FID {fid_cold:.6f}   "
          f"ratio to direct {t_cold / t_direct:.3f}")
    print(f"  genbench, cached ref.    {t_warm:7.2f} s   FID {fid_b:.6f} (second model)   "
          f"saves {t_cold - t_warm:.2f} s ({1 - t_warm / t_cold:.0%})")
    if abs(fid_direct - fid_cold) > 1e-6 * max(1.0, abs(fid_direct)):
        print("  MISMATCH: genbench and torch-fidelity disagree")
    note = contention_note(args.threads)
    if note:
        print(note)


if __name__ == "__main__":
    main()
