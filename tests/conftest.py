"""Shared fixtures: the toy data set, small models, a temporary results database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from genbench.data.toy import make_toy

REAL_DATA = Path(os.environ.get("GENBENCH_DATA", "")).expanduser()


def has_real_mnist() -> bool:
    return bool(os.environ.get("GENBENCH_DATA")) and (
        REAL_DATA / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    ).exists()


@pytest.fixture(autouse=True)
def _threads_and_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def http_dir(tmp_path):
    """A folder served over HTTP on the loopback address: (folder, base URL)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def toy():
    return make_toy(n_train=400, n_test=200)


@pytest.fixture
def tiny_torchscript(tmp_path):
    """A TorchScript feature network file (``--features``) of a few hundred weights."""
    from tests.helpers import TinyFeatures

    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyFeatures().eval()), str(path))
    return path
