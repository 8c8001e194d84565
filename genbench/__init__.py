"""genbench: evaluation and benchmarking suite for deep generative models.

Layers, each importing only from the ones below it (``tests/project/test_layers.py`` checks):

1. ``genbench.core``: the model contract (protocols), the model registry, errors, registries,
   weight I/O, distributed helpers, numerics.
2. ``genbench.data`` (data sets) and ``zoo`` (models, registered through the ``genbench.zoo``
   entry-point group like any plugin); both see only ``genbench.core``.
3. ``genbench.metrics``: metrics as functions of (model, data, settings), each declaring its columns.
4. ``genbench.train``: the training loop, its callbacks, checkpoints, run identity.
5. ``genbench.suites``: suites and budgets.
6. ``genbench.results``: the results database, leaderboards, paper tables.
7. The harness: ``genbench.runner``, ``genbench.scoring``, ``genbench.sample_sets``, ``genbench.cli``.
"""

__version__ = "0.1.0"
