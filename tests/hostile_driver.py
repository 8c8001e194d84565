"""Runs ``genbench`` command lines, each in a forked child of one process that imported genbench once.

``python -m tests.hostile_driver FOLDER`` (the repository root on PYTHONPATH) reads a JSON list of
{name, argv} on stdin and prints a JSON list of {name, code, stdout, stderr, peak_rss, seconds}:
each child runs ``genbench.cli.main(argv)`` with its stdout and stderr on files in FOLDER, under
``RLIMIT_AS`` (a memory bomb fails fast rather than taking the machine) and an alarm; its exit
status and peak RSS come from ``os.wait4`` (a fork of the driver, not an exec: its ru_maxrss is its
own, starting at the driver's size). It imports nothing else of the tests, so that PYTHONPATH may
put another checkout's genbench first (to measure it before a change). Used by
``tests/harness/test_hostile_inputs.py``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

#: address-space cap of each child: the CUDA build of torch maps about 3.4 GiB of libraries, the rest
#: is what a case may allocate before it fails with MemoryError instead of exhausting the machine
ADDRESS_SPACE_CAP = 5 * 2**30
#: seconds a case may take before its alarm ends it
CASE_SECONDS = 60
#: modules the commands import as they run, imported by the driver before it forks
PRELOADED = (
    "genbench.cli",
    "genbench.scoring",
    "genbench.sample_sets",
    "genbench.data",
    "genbench.suites",
    "genbench.runner",
    "genbench.results.db",
    "genbench.results.paper_tables",
    "genbench.results.leaderboard",
    "genbench.metrics.features",
    "genbench.metrics.fidelity_extractors",
    "genbench.train.device",
)


def _child(argv: list[str], out: str, err: str) -> None:
    """In the forked child: ``main(argv)`` with stdout/stderr on files, capped; never returns."""
    from genbench.cli import main

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))
    for fd, name in ((1, out), (2, err)):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
    signal.alarm(CASE_SECONDS)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit, where it is not genbench's one line
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # what the interpreter would do: the traceback, exit 1
        sys.excepthook(*sys.exc_info())
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def drive(cases: list[dict], folder: str) -> list[dict]:
    """Each case ({name, argv}) in a forked child: its exit code, stdout, stderr and peak RSS (bytes)."""
    import importlib

    for module in PRELOADED:  # imported once, before the forks, so that each child starts warm
        importlib.import_module(module)
    from genbench.core.models import MODELS

    MODELS.items()  # the zoo's entry point, loaded once
    results = []
    for i, case in enumerate(cases):
        out, err = os.path.join(folder, f"{i}.out"), os.path.join(folder, f"{i}.err")
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(case["argv"], out, err)
        _, status, usage = os.wait4(pid, 0)
        results.append(
            {
                "name": case["name"],
                "code": os.waitstatus_to_exitcode(status),
                "stdout": Path(out).read_text(errors="replace"),
                "stderr": Path(err).read_text(errors="replace"),
                "peak_rss": usage.ru_maxrss * 1024,
                "seconds": time.perf_counter() - started,
            }
        )
    return results


if __name__ == "__main__":
    print(json.dumps(drive(json.load(sys.stdin), sys.argv[1])))
