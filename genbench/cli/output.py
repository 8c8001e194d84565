"""What the ``genbench`` command prints: an error as one line, a report as strict JSON, and with
``--json`` stdout kept for that report alone.

While a ``--json`` command runs, file descriptor 1 is stderr's, so whatever else is printed, by
genbench, a library, the user's model code or a process it starts, goes to stderr, and the report is
written to the real stdout (``print_json``) at the end.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import json
import math
import os
import sys

#: where ``print_json`` writes: the real stdout of the ``--json`` command running (None: sys.stdout)
_REPORT_STREAM: contextvars.ContextVar = contextvars.ContextVar("genbench_report_stream", default=None)


def one_line(message: str) -> str:
    """A message of several lines (a library's exception text in ours) as one line."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def json_text(report: dict) -> str:
    """The report as strict JSON (RFC 8259 has no NaN or Infinity): a value that is not a finite
    number is null, and ``nulls`` says why, by its path (``metrics.nll_se``, ``config.x``)."""
    reasons: dict[str, str] = {}

    def finite(value, path: str):
        if isinstance(value, float) and not math.isfinite(value):
            reasons[path] = f"{value} is not a finite number"
            return None
        if isinstance(value, dict):
            return {key: finite(item, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [finite(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    clean = finite(report, "")
    if reasons:
        clean["nulls"] = reasons
    return json.dumps(clean, indent=2, allow_nan=False)


def print_json(report: dict) -> None:
    """The report as strict JSON on the real stdout (where ``kept_for_json`` keeps it)."""
    print(json_text(report), file=_REPORT_STREAM.get() or sys.stdout)


@contextlib.contextmanager
def kept_for_json():
    """While a ``--json`` command runs: stdout kept for ``print_json`` alone (``_stdout_kept_for_json``)."""
    with _stdout_kept_for_json() as real:
        token = _REPORT_STREAM.set(real)
        try:
            yield
        finally:
            _REPORT_STREAM.reset(token)


@contextlib.contextmanager
def _stdout_kept_for_json():
    """While a ``--json`` command runs: file descriptor 1 pointed at stderr (``os.dup2``: what model code
    writes to it, and every process it starts, goes there) and ``sys.stdout`` with it; yields the real
    stdout, where the JSON report goes. Where ``sys.stdout`` is not on descriptor 1 (a caller capturing
    it), that object is the real stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 to keep apart
        saved = None
    on_fd_1 = saved is not None and _descriptor(sys.stdout) == 1
    real = os.fdopen(saved, "w", closefd=False) if on_fd_1 else sys.stdout
    try:
        if saved is not None:
            os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield real
    finally:
        real.flush()
        if on_fd_1:
            real.close()  # the wrapper alone: descriptor ``saved`` is closed below, once restored
        if saved is not None:
            _flush_c_stdio()  # a C library's buffered printf goes to stderr, not after the report
            os.dup2(saved, 1)
            os.close(saved)


def _descriptor(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return None


def _flush_c_stdio() -> None:
    """C's stdio buffers flushed (``fflush(NULL)``), where the C library can be found."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
