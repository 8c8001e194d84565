"""Shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import os
import statistics
import time


def contention_note(threads: int) -> str | None:
    """A warning when other processes keep the cores busy (timings then are not clean)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if threads > 1 and load + threads > cores + 0.5:
        return (f"warning: load average {load:.2f} on {cores} cores: with {threads} threads "
                "every parallel op waits for a busy core, which slows many small ops most "
                "(compare with --threads 1)")
    return None


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    """(median seconds, last value) of ``repeats`` calls of ``fn()`` after an untimed warm-up call;
    with ``repeats`` 0, the warm-up call alone is timed."""
    started = time.perf_counter()
    value = fn()
    times = [time.perf_counter() - started]
    if repeats > 0:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - started)
    return statistics.median(times), value
