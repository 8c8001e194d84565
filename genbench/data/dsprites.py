"""dSprites as ground-truth data: DeepMind's file and an offline procedural re-rendering.

``dsprites`` is DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (Matthey et al.
2017): every combination of colour (1) x shape (3) x scale (6) x orientation (40) x pos_x (32)
x pos_y (32) once, 737280 binary 64x64 images laid out in C order of that grid, so an image's
index is its factor indices dotted with the grid's strides. Only ``imgs`` and
``latents_classes`` are read, with pickle disabled (the file's ``metadata`` is a pickle).

``dsprites_rendered`` is NOT DeepMind's file but a procedural re-rendering: genbench draws the
same factor grid itself (square, ellipse and heart as implicit shapes; scales
``linspace(0.5, 1, 6)``; orientations ``linspace(0, 2 pi, 40)``, both ends included as in
dSprites' metadata; positions ``linspace(0, 1, 32)``). DeepMind's renderer is not public, so
sprite outlines, sizes and placement are genbench's own: results on it are not comparable with
published dSprites numbers. It exists so the disentanglement metrics run offline.

Neither has a test split of its own: ``test`` is a fixed sample of training images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genbench.core.errors import GenbenchError
from genbench.data.base import ImageDataset
from genbench.data.download import RemoteFile, ensure_files

URL = "https://github.com/deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
#: md5 of DeepMind's file, as recorded independently by several public dSprites loaders
FILE = RemoteFile("dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz", URL,
                  md5="7da33b31b13a06f4b04a70402ce90c2e")

#: the file's latent factors and their number of values, in its (C) order; colour is constant
FILE_FACTORS = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")
FILE_GRID = (1, 3, 6, 40, 32, 32)
FACTOR_NAMES = FILE_FACTORS[1:]
SIDE = 64
TEST_SIZE = 10000
TEST_SEED = 0
NOT_HELD_OUT = (f"'test' is a fixed sample of {TEST_SIZE} training images (seed {TEST_SEED}), NOT held "
                "out: dSprites has no test split, so an NLL on it is a training-set number")


# --- the factor grid ------------------------------------------------------------------------

def grid_strides(sizes: tuple[int, ...]) -> np.ndarray:
    """Items between consecutive values of each factor in a C-order grid of ``sizes``."""
    return np.concatenate([np.cumprod(sizes[::-1])[::-1][1:], [1]]).astype(np.int64)


def grid_index(factors: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Flat index of each row of factor indices (the inverse of :func:`grid_factors`)."""
    return factors @ grid_strides(sizes)


def grid_factors(index: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """``[n, len(sizes)]`` factor indices of flat grid indices."""
    return np.stack(np.unravel_index(index, sizes), axis=1).astype(np.int64)


def fixed_test_indices(n_total: int) -> np.ndarray:
    """The ``test`` split: a fixed random sample of the grid, in random order (not sorted, so
    its first ``n`` items are a fair sample too)."""
    rng = np.random.default_rng(TEST_SEED)
    return rng.choice(n_total, size=min(TEST_SIZE, n_total), replace=False)


@dataclass
class DSprites(ImageDataset):
    """Binary 64x64 images whose ``train`` split is the full factor grid in C order.

    Implements :class:`~genbench.data.ground_truth.GroundTruthData` over the varying factors
    (shape, scale, orientation, pos_x, pos_y); observations are looked up in ``train``.
    """

    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_sizes: tuple[int, ...] = FILE_GRID[1:]

    def __post_init__(self):
        super().__post_init__()
        if len(self.factor_names) != len(self.factor_sizes):
            raise ValueError("one size per factor name")

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        return rng.integers(0, sizes, size=(n, len(sizes)), dtype=np.int64)

    def checked_factors(self, factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != len(self.factor_sizes) or factors.dtype.kind not in "iu":
            raise ValueError(f"factors must be [n, {len(self.factor_sizes)}] integers, got {factors.shape}")
        if factors.size and (factors.min() < 0 or np.any(factors.max(0) >= np.asarray(self.factor_sizes))):
            raise ValueError(f"factor indices out of range for sizes {self.factor_sizes}")
        return factors.astype(np.int64)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> Tensor:
        index = grid_index(self.checked_factors(factors), self.factor_sizes)
        train = self.splits["train"]
        return train[torch.from_numpy(index).to(train.device)].float()


# --- DeepMind's file ------------------------------------------------------------------------

def read_dsprites(path: Path) -> Tensor:
    """``imgs`` as uint8 ``[N, 1, 64, 64]`` (a view of the loaded array), checked against the grid.

    ``latents_classes`` must be exactly the C-order grid of :data:`FILE_GRID`: that is what
    makes an image's index computable from its factors. Arrays that need pickle are refused.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # not a zip, truncated ...
        raise GenbenchError(f"{path}: not a dSprites .npz file ({exc})") from None
    if not hasattr(archive, "files"):
        raise GenbenchError(f"{path}: not a dSprites .npz file (a single array)")
    with archive:
        missing = sorted({"imgs", "latents_classes"} - set(archive.files))
        if missing:
            raise GenbenchError(f"{path}: not a dSprites .npz file (no {', '.join(missing)})")
        try:
            imgs, classes = archive["imgs"], archive["latents_classes"]
        except ValueError as exc:  # object arrays: loading them would unpickle
            raise GenbenchError(f"{path}: refused, its arrays need pickle to load ({exc})") from None
        except Exception as exc:
            raise GenbenchError(f"{path}: unreadable dSprites .npz file ({exc})") from None
    n = math.prod(FILE_GRID)
    if imgs.dtype != np.uint8 or imgs.shape != (n, SIDE, SIDE):
        raise GenbenchError(f"{path}: 'imgs' should be uint8 {(n, SIDE, SIDE)}, "
                            f"found {imgs.dtype} {imgs.shape}")
    expected = grid_factors(np.arange(n), FILE_GRID)
    if classes.shape != expected.shape or not np.array_equal(classes, expected):
        raise GenbenchError(f"{path}: 'latents_classes' is not the C-order factor grid {FILE_GRID}")
    if imgs.max(initial=0) > 1:
        raise GenbenchError(f"{path}: 'imgs' has values other than 0/1")
    return torch.from_numpy(imgs).unsqueeze(1)


def load_dsprites(root: Path, download: bool) -> DSprites:
    try:
        [path] = ensure_files("dsprites", root, [FILE], download)
    except GenbenchError as exc:
        raise GenbenchError(f"{exc}; 'dsprites_rendered' is an offline procedural re-rendering of the "
                            "same factor grid (not DeepMind's images)") from None
    images = read_dsprites(path)
    return DSprites(
        name="dsprites",
        kind="binary",
        splits={"train": images, "test": images[torch.from_numpy(fixed_test_indices(len(images)))]},
        factor_sizes=tuple(FILE_GRID[1:]),
        description=f"dSprites (Matthey et al. 2017): all {len(images)} 64x64 binary images of the "
        f"shape x scale x orientation x pos_x x pos_y grid in 'train'; {NOT_HELD_OUT}",
        source=URL,
    )


# --- the procedural re-rendering ------------------------------------------------------------

SHAPES = ("square", "ellipse", "heart")

#: Sprite centres span the middle half of the frame: pos 0 -> pixel coordinate 16, pos 1 -> 48
#: (pixel ``[i, j]`` covers ``[j, j + 1) x [i, i + 1)``; pos_x grows rightwards, pos_y downwards).
POSITION_MIN, POSITION_SPAN = 16.0, 32.0
#: Every shape lies in a disc of this radius (pixels) at scale 1, so the largest sprite at the
#: extreme positions leaves 16 - 12.6 = 3.4 empty pixels at the border, whatever its orientation.
#: The value makes the mean pixel over the grid 0.042, about the 0.0425 that a public dSprites
#: loader records for DeepMind's file (similar ink, not the same outlines).
SPRITE_RADIUS = 12.6

# Shapes in units of SPRITE_RADIUS, (u, v) with v pointing up, all inside the unit disc.
SQUARE_HALF = 1 / math.sqrt(2)  # corners on the unit circle
ELLIPSE_AXES = (1.0, 0.5)
# Heart: a diamond |u| + |w| <= d and two discs of radius d / sqrt(2) on its upper edges,
# shifted so its bounding box is centred, and sized so its farthest point is at radius 1.
HEART_SHIFT = (0.5 + 1 / math.sqrt(2) - 1) / 2  # bounding-box centre above the diamond's, in d
HEART_D = 1 / (math.hypot(0.5, 0.5 - HEART_SHIFT) + 1 / math.sqrt(2))

RENDER_CHUNK = 512


def _inside_square(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() <= SQUARE_HALF) & (v.abs() <= SQUARE_HALF)


def _inside_ellipse(u: Tensor, v: Tensor) -> Tensor:
    a, b = ELLIPSE_AXES
    return (u / a).square() + (v / b).square() <= 1.0


def _inside_heart(u: Tensor, v: Tensor) -> Tensor:
    d = HEART_D
    au, w = u.abs(), v + HEART_SHIFT * d
    diamond = au + w.abs() <= d
    lobes = (au - d / 2).square() + (w - d / 2).square() <= d * d / 2
    return diamond | lobes


INSIDE = (_inside_square, _inside_ellipse, _inside_heart)


def render_sprites(shape: Tensor, scale: Tensor, orientation: Tensor, pos_x: Tensor, pos_y: Tensor,
                   chunk: int = RENDER_CHUNK, out: Tensor | None = None) -> Tensor:
    """uint8 ``[n, 1, 64, 64]`` binary sprites, one per row of factor values.

    Each pixel centre is moved into the sprite's frame (translated, rotated by
    ``-orientation`` so the sprite turns counter-clockwise on screen, divided by
    ``scale * SPRITE_RADIUS``) and tested against the shape's implicit inequality; ``chunk``
    images at a time keep the float temporaries small. ``out`` receives the images if given.
    """
    n = shape.shape[0]
    out = torch.empty(n, 1, SIDE, SIDE, dtype=torch.uint8) if out is None else out
    centres = torch.arange(SIDE, dtype=torch.float32) + 0.5
    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        k = 1.0 / (scale[rows].float() * SPRITE_RADIUS)
        cos = (torch.cos(orientation[rows].float()) * k).view(-1, 1, 1)
        sin = (torch.sin(orientation[rows].float()) * k).view(-1, 1, 1)
        dx = centres.view(1, 1, SIDE) - (POSITION_MIN + POSITION_SPAN * pos_x[rows].float()).view(-1, 1, 1)
        dy = (POSITION_MIN + POSITION_SPAN * pos_y[rows].float()).view(-1, 1, 1) - centres.view(1, SIDE, 1)
        u = cos * dx + sin * dy  # [m, 64, 64]: two small products broadcast into one sum
        v = cos * dy - sin * dx
        shapes = shape[rows]
        target = out[rows, 0]
        for s in shapes.unique().tolist():
            mine = shapes == s
            if bool(mine.all()):
                target.copy_(INSIDE[s](u, v))
            else:
                target[mine] = INSIDE[s](u[mine], v[mine]).to(torch.uint8)
    return out


def _linspace(start: float, stop: float, num: int) -> tuple[float, ...]:
    return tuple(float(x) for x in np.linspace(start, stop, num))


@dataclass(frozen=True)
class SpriteGrid:
    """The values of each varying factor; the images are their C-order product.

    The default is dSprites' grid; tests pass a few values per factor instead.
    """

    shapes: tuple[int, ...] = (0, 1, 2)  # indices into SHAPES
    scales: tuple[float, ...] = _linspace(0.5, 1.0, 6)
    orientations: tuple[float, ...] = _linspace(0.0, 2 * math.pi, 40)
    pos_x: tuple[float, ...] = _linspace(0.0, 1.0, 32)
    pos_y: tuple[float, ...] = _linspace(0.0, 1.0, 32)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values_per_factor())

    def values_per_factor(self) -> tuple[tuple[float, ...], ...]:
        return (self.shapes, self.scales, self.orientations, self.pos_x, self.pos_y)

    def render(self, factors: np.ndarray, chunk: int = RENDER_CHUNK, out: Tensor | None = None) -> Tensor:
        """uint8 images of ``[n, 5]`` factor indices into this grid (into ``out`` if given)."""
        idx = torch.from_numpy(np.asarray(factors, dtype=np.int64))
        shape, scale, orientation, pos_x, pos_y = (
            torch.tensor(values, dtype=torch.float64)[idx[:, i]]
            for i, values in enumerate(self.values_per_factor())
        )
        return render_sprites(shape.long(), scale, orientation, pos_x, pos_y, chunk, out)

    def render_all(self, chunk: int = RENDER_CHUNK) -> Tensor:
        """Every image of the grid in C order: uint8 ``[prod(sizes), 1, 64, 64]``."""
        total = math.prod(self.sizes)
        out = torch.empty(total, 1, SIDE, SIDE, dtype=torch.uint8)
        block = 64 * chunk  # factor indices for this many images at a time
        for start in range(0, total, block):
            stop = min(total, start + block)
            self.render(grid_factors(np.arange(start, stop), self.sizes), chunk, out[start:stop])
        return out


@dataclass
class DSpritesRendered(DSprites):
    """The procedural re-rendering: observations are rendered straight from factor values."""

    grid: SpriteGrid = SpriteGrid()

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> Tensor:
        return self.grid.render(self.checked_factors(factors)).to(self.device).float()


def make_dsprites_rendered(grid: SpriteGrid | None = None) -> DSpritesRendered:
    grid = SpriteGrid() if grid is None else grid
    images = grid.render_all()
    return DSpritesRendered(
        name="dsprites_rendered",
        kind="binary",
        splits={"train": images, "test": images[torch.from_numpy(fixed_test_indices(len(images)))]},
        factor_sizes=grid.sizes,
        grid=grid,
        description=f"procedural re-rendering of the dSprites factor grid by genbench ({len(images)} "
        "64x64 binary images: square/ellipse/heart x scale x orientation x pos_x x pos_y), NOT "
        "DeepMind's dSprites file: not comparable with published dSprites numbers; " + NOT_HELD_OUT,
        source="generated by genbench.data.dsprites.render_sprites (a procedural re-rendering, "
        "not DeepMind's dsprites_ndarray file)",
    )


def load_dsprites_rendered(root: Path, download: bool) -> DSpritesRendered:
    return make_dsprites_rendered()
