#!/usr/bin/env python
"""Benchmark: the beta-VAE score, batched (genbench) against one image at a time.

What is measured, in one process, on the same 64x64 ground-truth data, the same random
encoder and the same random draws:

1. genbench: ``genbench.metrics.disentanglement.beta_vae_score``: every factor vector drawn
   first, observations looked up and encoded ``--batch-size`` at a time.
2. per image: disentanglement_lib's loop structure (per point, per pair) with every image
   looked up and encoded on its own, written below in this file.
3. per point: the same loop, but each point's L images encoded in one call (what
   disentanglement_lib's ``_generate_training_sample`` does).

All three take their factor vectors from ``beta_vae_pairs`` with the same seed, so they must
produce the same features and the same accuracies; the script prints the largest feature
difference and the scores. Times include image lookups, encoding, features and the logistic
regression (identical work in all three). The data set (shape x scale x orientation x pos_x
x pos_y: 3 x 6 x 8 x 16 x 16, pre-rendered like dSprites, not timed) and the encoder (8x8
stride-8 convolution, ReLU, linear to 10 units, random weights) are defined here. The score's own
sizes are L = 64, 10000 training and 5000 evaluation points; ``--n-train``/``--n-eval`` scale
them down for the loops, and ``--paper-size`` also times genbench at the full size.

    .venv/bin/python benchmarks/disentanglement_score.py --n-train 300 --n-eval 150 --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from common import contention_note  # benchmarks/common.py (the script folder is on sys.path)
from torch import nn

from genbench.metrics.disentanglement import (
    DisentanglementSettings,
    beta_vae_batch,
    beta_vae_pairs,
    beta_vae_score,
    linear_classifier_accuracies,
)

SIDE = 64


class Sprites:
    """Ground-truth data: a square, disc or diamond of 6 sizes, 8 angles and 16 x 16 positions.

    Like dSprites, every image of the grid is rendered once up front (uint8, 151 MB) and an
    observation is a lookup, so the timings measure the score, not a renderer.
    """

    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factor_sizes = (3, 6, 8, 16, 16)

    def __init__(self):
        sizes = np.array(self.factor_sizes)
        self.strides = torch.from_numpy(np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]))
        every = np.stack(np.unravel_index(np.arange(sizes.prod()), self.factor_sizes), axis=1)
        self.images = torch.cat([render(part) for part in np.array_split(every, 64)])

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.factor_sizes, size=(n, len(self.factor_sizes)))

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        return self.images[torch.from_numpy(factors) @ self.strides].float()


def render(factors: np.ndarray) -> torch.Tensor:
    """uint8 images ``[n, 1, 64, 64]`` of rows (shape, scale, orientation, pos_x, pos_y)."""
    axis = (torch.arange(SIDE, dtype=torch.float32) + 0.5) / SIDE
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    shape, scale, angle, px, py = torch.from_numpy(factors).float().view(-1, 5, 1, 1).unbind(1)
    half = 0.06 + 0.02 * scale
    angle = angle * (math.pi / 2 / 8)
    du, dv = u - (0.2 + 0.6 * px / 15), v - (0.2 + 0.6 * py / 15)
    a = (du * torch.cos(angle) + dv * torch.sin(angle)) / half
    b = (-du * torch.sin(angle) + dv * torch.cos(angle)) / half
    square = torch.maximum(a.abs(), b.abs()) <= 1
    disc = a.square() + b.square() <= 1
    diamond = a.abs() + b.abs() <= 1
    inside = torch.where(shape == 0, square, torch.where(shape == 1, disc, diamond))
    return inside.to(torch.uint8).unsqueeze(1)


def random_encoder(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 8, stride=8), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)).eval()


# --- the loop references ---------------------------------------------------------------------

def _features_per_image(data, encoder, first, second, group, rng) -> np.ndarray:
    """Per point, per pair: look up and encode each image on its own."""
    n = len(first) // group
    features = []
    for point in range(n):
        diffs = []
        for row in range(point * group, (point + 1) * group):
            r1 = encoder(data.sample_observations_from_factors(first[row : row + 1], rng)).numpy()
            r2 = encoder(data.sample_observations_from_factors(second[row : row + 1], rng)).numpy()
            diffs.append(np.abs(r1.astype(np.float64) - r2.astype(np.float64))[0])
        features.append(np.mean(diffs, axis=0))
    return np.stack(features)


def _features_per_point(data, encoder, first, second, group, rng) -> np.ndarray:
    """Per point: the point's L pairs looked up and encoded in two calls."""
    n = len(first) // group
    features = []
    for point in range(n):
        rows = slice(point * group, (point + 1) * group)
        r1 = encoder(data.sample_observations_from_factors(first[rows], rng)).numpy().astype(np.float64)
        r2 = encoder(data.sample_observations_from_factors(second[rows], rng)).numpy().astype(np.float64)
        features.append(np.abs(r1 - r2).mean(0))
    return np.stack(features)


def looped_beta_vae_score(features_of, data, encoder, rng, settings, keep: dict) -> dict[str, float]:
    sets = []
    for n in (settings.n_train, settings.n_eval):
        labels, first, second = beta_vae_pairs(data, n, settings.group_size, rng)
        sets.append((features_of(data, encoder, first, second, settings.group_size, rng), labels))
    keep["features"] = sets[0][0]
    return linear_classifier_accuracies(*sets[0], *sets[1])


# --- main ------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-train", type=int, default=300, help="training points of every timed run")
    p.add_argument("--n-eval", type=int, default=150, help="evaluation points of every timed run")
    p.add_argument("--group-size", type=int, default=64, help="L, pairs per point")
    p.add_argument("--batch-size", type=int, default=DisentanglementSettings.batch_size,
                   help="genbench's observations per call (default: the metric's)")
    p.add_argument("--paper-size", action="store_true", help="also time genbench at 10000 / 5000 points")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def timed(fn) -> tuple[float, dict]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@torch.no_grad()
def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data, encoder = Sprites(), random_encoder(args.seed)
    settings = DisentanglementSettings(group_size=args.group_size, n_train=args.n_train, n_eval=args.n_eval,
                                       batch_size=args.batch_size)
    images = 2 * args.group_size * (args.n_train + args.n_eval)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, L = {args.group_size}, "
          f"{args.n_train} + {args.n_eval} points ({images} images), load average {os.getloadavg()[0]:.2f}")
    if note := contention_note(args.threads):
        print(note)
    small = DisentanglementSettings(group_size=4, n_train=20, n_eval=20)
    beta_vae_score(data, encoder, np.random.default_rng(0), small)  # warm-up (and sklearn's import)

    def rng():
        return np.random.default_rng(args.seed)

    kept_image, kept_point = {}, {}
    rows = [
        ("genbench beta_vae_score (batched)", timed(lambda: beta_vae_score(data, encoder, rng(), settings))),
        ("per image (disentanglement_lib loop)", timed(lambda: looped_beta_vae_score(
            _features_per_image, data, encoder, rng(), settings, kept_image))),
        ("per point (L images per call)", timed(lambda: looped_beta_vae_score(
            _features_per_point, data, encoder, rng(), settings, kept_point))),
    ]
    batched_features, _ = beta_vae_batch(data, encoder, args.n_train, rng(), settings)
    base = rows[0][1][0]
    print()
    print(f"{'':38s} {'seconds':>9s} {'ms / point':>10s} {'us / image':>10s} {'train acc':>9s} "
          f"{'eval acc':>9s} {'vs genbench':>11s}")
    for name, (seconds, scores) in rows:
        points = args.n_train + args.n_eval
        print(f"{name:38s} {seconds:9.2f} {seconds / points * 1e3:10.2f} {seconds / images * 1e6:10.2f} "
              f"{scores['train_accuracy']:9.4f} {scores['eval_accuracy']:9.4f} {seconds / base:10.1f}x")
    for name, kept in (("per image", kept_image), ("per point", kept_point)):
        diff = np.abs(kept["features"] - batched_features).max()
        print(f"largest training-feature difference, genbench vs {name}: {diff:.2e}")
    same = all(rows[0][1][1] == r[1][1] for r in rows[1:])
    print(f"same scores for the same seed: {'yes' if same else 'NO'}")
    print(f"speed-up over the per-image loop: {rows[1][1][0] / base:.1f}x   (target >= 10x)")
    if args.paper_size:
        paper = DisentanglementSettings(group_size=args.group_size, batch_size=args.batch_size)
        seconds, scores = timed(lambda: beta_vae_score(data, encoder, rng(), paper))
        print(f"genbench at paper size (L = {paper.group_size}, {paper.n_train} + {paper.n_eval} points, "
              f"{2 * paper.group_size * (paper.n_train + paper.n_eval)} images): {seconds:.1f} s, "
              f"eval accuracy {scores['eval_accuracy']:.4f}")


if __name__ == "__main__":
    main()
