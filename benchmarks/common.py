"""Shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import os


def contention_note(threads: int) -> str | None:
    """A warning when other processes keep the cores busy (timings then are not clean)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if threads > 1 and load + threads > cores + 0.5:
        return (f"warning: load average {load:.2f} on {cores} cores: with {threads} threads "
                "every parallel op waits for a busy core, which slows many small ops most "
                "(compare with --threads 1)")
    return None
