"""Beyond one process: ``torchrun`` ranks for one run, and sweeps of a suite's runs as jobs.

What a run directory tells other processes (its lock, ``owner.json``, ``result.json``) lives below
the runner, in ``genbench.results.rundir``: the runner and the jobs both use it.

- ``torchrun``: the process group from torchrun's environment (nccl on CUDA, gloo on CPU), so
  ``torchrun -m genbench run|score`` is data-parallel.
- ``job``: the submitit job that trains runs into their directories (torchrun inside for several
  GPUs), requeued through submitit's checkpointing and resuming from genbench's checkpoint.
- ``executors``: submitit executors for ``--launcher local`` (W processes here) and ``slurm``.
- ``sweep``: plan a suite's runs against the database, submit them, wait, collect.
- ``collect``: ingest result files into the database, each exactly once.
- ``status``: each run of a sweep queued, running, done or failed, with its job id and log.
"""
