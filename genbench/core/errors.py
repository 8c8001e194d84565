"""The one error type users see: a clear single line, then exit code 2; and where every other
message goes (``log``: stderr, so that stdout holds only results, ``--json`` output included)."""

import sys


class GenbenchError(Exception):
    """Bad input or an unusable file. The CLI prints ``genbench: <message>`` and exits 2."""


class TrainingDiverged(GenbenchError):
    """A loss became NaN or infinite: the run stops and is marked failed."""


class MetricSkipped(GenbenchError):
    """A metric applies to the model but cannot be computed here (no feature-net weights,
    samples outside the data's range): the run records why and goes on without it."""


def log(message: str) -> None:
    """A progress or log line, on stderr."""
    print(message, file=sys.stderr, flush=True)
