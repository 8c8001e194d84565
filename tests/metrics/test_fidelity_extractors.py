"""The torch-fidelity side of the feature networks: imported only where samples are scored."""

import subprocess
import sys

from genbench.metrics import features


def test_inception_url_is_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert features.URL_INCEPTION_V3 == URL_INCEPTION_V3


def test_extractors_are_registered_on_import():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    import genbench.metrics.fidelity_extractors as extractors

    assert FEATURE_EXTRACTORS_REGISTRY["genbench-lenet"] is extractors.LeNetExtractor
    assert FEATURE_EXTRACTORS_REGISTRY["genbench-torchscript"] is extractors.TorchScriptExtractor


def test_cli_and_job_start_without_torchvision():
    """A worker's or the CLI's start-up pays for torchvision (and torch's compiler stack, which it
    imports) only where it scores samples or reads a torchvision data set."""
    heavy = "('torchvision', 'torch_fidelity', 'torch._dynamo')"
    code = ("import sys, genbench.cli, genbench.launch.job, genbench.runner; "
            f"print(sorted(m for m in {heavy} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
