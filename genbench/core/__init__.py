"""The bottom layer: the model contract and the mechanics every other layer shares.

- ``protocols``: the capabilities a model implements (``Sampler``, ``LatentVariableModel`` ...).
- ``models``: the one model registry, filled from the ``genbench.zoo`` entry-point group; every
  model is sized on the meta device before it is built.
- ``hyperparameters``: config fields that declare their valid intervals, and the one check of them.
- ``state_specs``: a model's state as shapes and dtypes against a weights file's, before loading it.
- ``errors``, ``registry``: the one user-facing error type and validated name registries.
- ``weights``: safetensors weights, written atomically, read without unpickling.
- ``distributed``: rank/world helpers for data-parallel training and sharded evaluation.
- ``numerics``: small numerical helpers (log-mean-exp).

Nothing here imports from the rest of genbench or from the zoo; the layers above are
``genbench.data`` and ``zoo`` (which see only this package), then ``genbench.metrics``,
``genbench.train``, ``genbench.suites``, ``genbench.results``, and on top the harness
(``runner``, ``scoring``, ``cli``). ``tests/project/test_layers.py`` enforces this.
"""
