"""clean-fid's resize against known answers: constants stay, a checkerboard shrinks to its mean (a
non-antialiased resize does not), and each channel is PIL's bicubic of it as a float image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.metrics.clean_resize import clean_resize


def test_a_constant_image_stays_constant_at_any_size():
    images = np.full((2, 3, 32, 32), 77, np.uint8)
    out = clean_resize(images)
    assert out.shape == (2, 3, 299, 299) and out.dtype == np.float32
    assert np.allclose(out, 77, atol=1e-3)


def test_a_downsampled_checkerboard_becomes_its_mean_unlike_the_legacy_resize():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[None, None]
    clean = clean_resize(board, (8, 8))
    assert np.abs(clean - 127.5).max() < 1  # antialiased: every output pixel averages many inputs
    legacy = interpolate_bilinear_2d_like_tensorflow1x(torch.from_numpy(board).float(), size=(8, 8),
                                                       align_corners=False)
    assert np.abs(legacy.numpy() - 127.5).min() > 100  # a few samples per pixel: it aliases to black


def test_each_channel_is_pils_bicubic_of_a_float_image_never_rounded():
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    out = clean_resize(images, (40, 30))
    assert out.shape == (2, 3, 30, 40)
    expected = np.asarray(Image.fromarray(images[1, 2].astype(np.float32)).resize((40, 30), Image.BICUBIC))
    assert np.array_equal(out[1, 2], expected.clip(0, 255))
    assert not np.array_equal(out, out.round())  # floats, as clean-fid keeps them
    assert np.array_equal(clean_resize(images, (32, 32)), images.astype(np.float32))  # its own size
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        clean_resize(images[0])
