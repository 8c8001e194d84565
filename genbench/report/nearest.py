"""The copying figure of a run: samples beside their nearest training images in feature space.

A reader judges copying at a glance where a number cannot say how: each sample is followed by the
training image nearest to it in the features of the sample-quality network (the copying tests' own,
``genbench.metrics.memorization``), four pairs to a row. A model that copies shows identical pairs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from genbench.core.image_grid import grid_png
from genbench.core.weights import atomic_write

#: the figure's file in a run directory, which the report shows beside the run's samples
NEAREST_FILE = "nearest-training.png"
#: pairs (sample, nearest training image) per row
PAIRS_PER_ROW = 4


def nearest_figure_png(samples: Tensor, nearest: Tensor) -> bytes:
    """PNG bytes: each of the uint8 images ``samples`` [N, C, H, W] followed by its ``nearest``."""
    if samples.shape != nearest.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and nearest images {tuple(nearest.shape)} differ")
    pairs = torch.stack([samples, nearest], dim=1).flatten(0, 1).float() / 255
    return grid_png(pairs, {"genbench-figure": "samples beside their nearest training images"},
                    nrow=2 * PAIRS_PER_ROW)


def write_nearest_figure(path: Path, samples: Tensor, nearest: Tensor) -> Path:
    """Write the figure to ``path`` (replaced atomically); its path."""
    path = Path(path)
    data = nearest_figure_png(samples.cpu(), nearest.cpu())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def save_nearest_figure(model, dataset, settings, run_dir: Path, count: int = 16) -> Path | None:
    """The figure of ``count`` samples of a run's model in its run directory, where its evaluation ran
    the copying tests (``memorization_train`` > 0) and a feature network fits its data; else None."""
    from genbench.core.errors import MetricSkipped
    from genbench.core.protocols import Sampler
    from genbench.metrics.features import resolve_feature_net
    from genbench.metrics.memorization import copying_data, nearest_training_images
    from genbench.metrics.sample_quality import model_samples

    if not (isinstance(model, Sampler) and settings.memorization_train and settings.quality_samples):
        return None
    try:
        net = resolve_feature_net(settings.features, dataset, settings.cache_root)
        fake = model_samples(model, count, settings.seed)
        data = copying_data(dataset, settings, dataset.device)
        shown, nearest, _ = nearest_training_images(fake, data, net, count)
    except MetricSkipped:
        return None
    return write_nearest_figure(Path(run_dir) / NEAREST_FILE, shown, nearest)
