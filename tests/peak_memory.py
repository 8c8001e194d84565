"""Peak resident memory of one process alone, as Linux's /proc reports it.

``ru_maxrss`` (``getrusage``, ``os.wait4``) cannot be used for a process the tests start: when a
process forked from pytest calls exec, the kernel keeps the old image's high-water mark in the
process's ``maxrss``, so a child started from a pytest that has grown past 1.5 GiB in a full run
reports 1.5 GiB whatever it used itself (and a ``before``/``after`` difference inside it reads
zero). ``VmHWM`` in ``/proc/PID/status`` belongs to the current image only, and writing 5 to
``/proc/self/clear_refs`` resets it to the current size (Linux 4.0 and later).
"""

from __future__ import annotations

import re


def peak_rss() -> int:
    """This process's peak resident memory in bytes since its exec or the last ``reset_peak``."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) * 1024


def reset_peak() -> int:
    """Reset the peak to the current resident size, and return it (bytes)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return peak_rss()


#: ``python -c CLI_WITH_PEAK ARGS``: ``genbench ARGS``, and its own peak resident memory in bytes
#: written to the file ``$PEAK_FILE`` names
CLI_WITH_PEAK = """
import os, sys
from genbench.cli import main
from tests.peak_memory import peak_rss
try:
    code = main(sys.argv[1:])
finally:
    with open(os.environ["PEAK_FILE"], "w") as f:
        f.write(str(peak_rss()))
sys.exit(code)
"""
