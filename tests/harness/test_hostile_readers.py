"""Hostile sample files: readers read only what they claim, in bounded memory for every layout.

Through the CLI (``tests/hostile_driver.py``: exit 2, one ``genbench:`` line, bounded peak RSS): a
PostScript, JPEG, GIF or BMP file named ``.png`` is refused before any decoder sees it (a fake
``gs`` first on PATH proves that no program is started), and a Fortran-order float128 ``.npz`` of
100,000 MNIST-sized images is streamed, not read whole; a legitimate set of 30,000 samples is
scored with every sample metric within the bound. In process, ``tracemalloc`` bounds the reader's
memory for every order, layout and dtype by the output plus a few chunks.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import genbench.sample_sets as sample_sets
from tests.harness.test_hostile_inputs import ROOT, Case, npy_bytes, problems, run_driver

#: what a fake ``gs`` writes, wherever it is started
MARKER = "gs-was-started"


def fake_ghostscript(folder: Path) -> Path:
    """A folder holding an executable ``gs`` that leaves ``MARKER`` (its arguments) beside it."""
    folder.mkdir(parents=True)
    gs = folder / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{folder / MARKER}"\nexit 1\n')
    gs.chmod(0o755)
    return folder


def image_bytes(fmt: str, mode: str, size: int) -> bytes:
    """A size x size image of ``mode`` saved by Pillow as ``fmt``."""
    buffer = io.BytesIO()
    Image.new(mode, (size, size), 128).save(buffer, fmt)
    return buffer.getvalue()


#: an EPS file Pillow reads as a 32x32 RGB image, whose pixels it asks Ghostscript for
POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\nshowpage\n%%EOF\n"


def disguised_png_cases(d: Path) -> list[Case]:
    """A folder per foreign format, its one file named ``0.png``, each the size and mode of its data set."""
    files = {"postscript": ("cifar10", POSTSCRIPT), "jpeg": ("mnist", image_bytes("JPEG", "L", 28)),
             "gif": ("mnist", image_bytes("GIF", "L", 28)), "bmp": ("mnist", image_bytes("BMP", "L", 28))}
    cases = []
    for name, (dataset, data) in files.items():
        (d / name).mkdir(parents=True)
        (d / name / "0.png").write_bytes(data)
        cases.append(Case(f"{name}_named_png", ["score", str(d / name), "--dataset", dataset],
                          "0.png: not a PNG file"))
    return cases


def fortran_float128_npz(path: Path, n: int = 100_000) -> Path:
    """A deflated .npz (about 1 MB) of a Fortran-order float128 [n, 28, 28] array of zeros whose last
    value is 2: only a reader that reaches the end can name the value outside [0, 1]."""
    dtype = np.dtype("<f16")
    total, block = n * 28 * 28 * dtype.itemsize, bytes(1 << 22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("samples.npy", "w", force_zip64=True) as stream:
            stream.write(npy_bytes((n, 28, 28), dtype.str, fortran=True))
            for start in range(0, total - dtype.itemsize, len(block)):
                stream.write(block[:min(len(block), total - dtype.itemsize - start)])
            stream.write(np.array([2.0], dtype).tobytes())
    return path


@pytest.mark.slow
def test_foreign_files_named_png_and_a_fortran_float128_npz_are_one_line_in_bounded_memory(
        tmp_path, monkeypatch):
    """Old code: the EPS started ``gs`` (then a traceback), the JPEG and BMP were read as PNGs, the GIF
    was a palette PNG, the Fortran float128 array was read whole (2.5 GB, then MemoryError)."""
    bin_folder = fake_ghostscript(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}")
    files = tmp_path / "files"
    cases = [*disguised_png_cases(files),
             Case("npz_fortran_float128_100000", ["score", str(fortran_float128_npz(tmp_path / "f16.npz")),
                                                   "--dataset", "mnist8"],
                  "float samples must lie in [0, 1], found values in [0, 2]")]
    results = zip(cases, run_driver(cases, tmp_path), strict=True)
    failures = {case.name: [*problems(case, result), result["stderr"].strip()[-400:]]
                for case, result in results if problems(case, result)}
    assert not failures, json.dumps(failures, indent=1)
    assert not (bin_folder / MARKER).exists(), (bin_folder / MARKER).read_text()


def levels_nchw(array: np.ndarray) -> np.ndarray:
    """What the reader must give for ``array``: uint8 levels, [N, C, H, W]."""
    if array.ndim == 3 or array.shape[-1] == 3:
        array = array[:, None] if array.ndim == 3 else array.transpose(0, 3, 1, 2)
    if array.dtype == np.uint8:
        return array
    return array.astype(np.uint8) * 255 if array.dtype == bool else np.round(array * 255).astype(np.uint8)


@pytest.mark.parametrize("dtype", ["|u1", "|b1", "<f2", "<f4", ">f8", "<f16"])
@pytest.mark.parametrize("fortran", [False, True])
@pytest.mark.parametrize("shape", [(1500, 28, 28), (500, 3, 16, 16), (500, 16, 16, 3)])
def test_every_order_layout_and_dtype_is_read_exactly_within_the_output_and_a_few_chunks(
        tmp_path, monkeypatch, dtype, fortran, shape):
    """The values np.load gives, and a peak Python/numpy allocation of ``read_samples`` <= the uint8
    output + 4 chunks + 4 reads + the offsets table: the arrays are 0.4-19 MB where a chunk is 64 kB
    (old code: a Fortran-order array was read whole, and copied)."""
    monkeypatch.setattr(sample_sets, "CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(sample_sets, "READ_BYTES", 16 << 10)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, shape, np.uint8) if dtype == "|u1" else rng.random(shape).astype(dtype)
    np.savez(tmp_path / "s.npz", samples=np.asfortranarray(values) if fortran else values)
    expected = levels_nchw(np.load(tmp_path / "s.npz")["samples"])
    offsets = 8 * 4 * int(np.prod(shape[1:]))  # the table and the index arrays it is made from
    tracemalloc.start()
    try:
        images = sample_sets.read_samples(tmp_path / "s.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(images.numpy(), expected)
    assert peak <= expected.nbytes + 4 * sample_sets.CHUNK_BYTES + 4 * sample_sets.READ_BYTES + offsets, peak


def _command_with_peak_rss(args: list[str], cwd: Path) -> tuple[int, str, str, int]:
    """``genbench ARGS`` in a fresh process: (exit code, stdout, stderr, its own peak RSS in bytes,
    read from /proc: ``wait4``'s ru_maxrss would count the test process's size at the exec)."""
    from tests.peak_memory import CLI_WITH_PEAK

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "GENBENCH_CACHE": str(cwd / "cache"), "GENBENCH_DATA": str(cwd / "data"),
           "PEAK_FILE": str(cwd / "peak"), "PYTHONPATH": str(ROOT)}
    with open(cwd / "out", "w") as out, open(cwd / "err", "w") as err:
        code = subprocess.run([sys.executable, "-c", CLI_WITH_PEAK, *args], stdout=out, stderr=err,
                              env=env, cwd=cwd).returncode
    return code, (cwd / "out").read_text(), (cwd / "err").read_text(), int((cwd / "peak").read_text())


@pytest.mark.slow
def test_a_set_of_30000_samples_is_scored_within_the_bound_through_the_cli(tmp_path):
    """30,000 toy samples against the toy test split, TinyFeatures: every sample metric in one process
    under PEAK_RSS_BOUND: 1.23 GiB (old code 5.45 GiB: torch-fidelity's precision/recall holds 10,000 x
    30,000 float32 distances at once, several times over)."""
    from tests.harness.test_hostile_inputs import PEAK_RSS_BOUND, script
    from tests.helpers import TinyFeatures

    net = script(TinyFeatures(), tmp_path / "tiny.pt")
    images = np.random.default_rng(0).integers(0, 256, (30_000, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", samples=images)
    code, out, err, peak = _command_with_peak_rss(
        ["score", str(tmp_path / "s.npz"), "--dataset", "toy", "--features", str(net), "--json"], tmp_path)
    assert code == 0, err[-2000:]
    metrics = json.loads(out)["metrics"]
    assert {"precision_ts_tiny", "recall_ts_tiny", "density_ts_tiny", "coverage_ts_tiny"} <= set(metrics)
    assert peak < PEAK_RSS_BOUND, peak / 2**30
