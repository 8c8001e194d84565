"""Beyond one process: ``torchrun`` ranks for one run, and sweeps of a suite's runs as jobs.

- ``torchrun``: the process group from torchrun's environment (nccl on CUDA, gloo on CPU), so
  ``torchrun -m genbench run|score`` is data-parallel.
- ``rundir``: what a run directory says of its run to other processes: its lock (one trainer at a
  time, released when the process dies), its ``job.json`` (which job holds it, its log) and its
  ``result.json`` (the outcome, written atomically: jobs never touch the database).
- ``job``: the submitit job that trains runs into their directories (torchrun inside for several
  GPUs), requeued through submitit's checkpointing and resuming from genbench's checkpoint.
- ``executors``: submitit executors for ``--launcher local`` (W processes here) and ``slurm``.
- ``sweep``: plan a suite's runs against the database, submit them, wait, collect.
- ``collect``: ingest result files into the database, each exactly once.
- ``status``: each run of a sweep queued, running, done or failed, with its job id and log.
"""
