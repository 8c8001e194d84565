"""genbench: evaluation and benchmarking suite for deep generative models.

The flow mirrors the folders: ``genbench.data`` -> ``zoo`` (models) -> ``genbench.train``
-> ``genbench.metrics`` -> ``genbench.results`` -> ``genbench.leaderboards``.
"""

__version__ = "0.1.0"
