"""``torch.compile`` where it pays, and one switch to turn it off.

Compiling a function costs seconds up front (tens of seconds on a CPU with a cold inductor cache)
and then saves a fraction of every call. It pays only for a workload of enough calls:
``compiled(fn, calls)`` compiles ``fn`` where ``calls`` reaches the break-even in ``MIN_CALLS``
(measured by ``benchmarks/compile.py``), else returns it as it is. Where compilation fails (no C
compiler for inductor, an op it does not support), the first call says so once on stderr and the
function runs eagerly from then on: compiling never changes whether a result is produced.

Numbers: a compiled function fuses ops, so its float32 results round differently from eager
ones (within float tolerance, ``tests/train/test_compile.py``); the same setting gives the same numbers.

``genbench run/score --no-compile`` sets ``GENBENCH_NO_COMPILE=1``, which worker processes and
torchrun ranks inherit.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable

import torch

from genbench.core.errors import log

#: the environment switch of ``--no-compile``
SWITCH = "GENBENCH_NO_COMPILE"
#: calls of a workload from which compiling pays: above every break-even that ``benchmarks/compile.py``
#: and ``benchmarks/nll_estimator.py`` measured (the figures: benchmarks/RESULTS.md, Compilation)
MIN_CALLS = {
    # log_importance_weights at k = 5000, one point per call (8192 rows): the long and paper
    # budgets' 10,000 calls compile; the short budget's ~125 do not
    "estimator": 2500,
    # a one-optimizer model's training step (its losses and their backward; the optimizer steps
    # eagerly): the long budget's 363,000 steps compile; the short budget's 6,000 and every test
    # run stay eager
    "train step": 100_000,
}
#: torch.compile's ``dynamic`` per workload: the estimator's shapes are fixed; the loss of a
#: training step reads the epoch and KL weight, floats that change every step, which automatic
#: dynamic traces as symbols after their first change (2 graphs instead of one per step)
DYNAMIC = {"estimator": False, "train step": None}


def enabled() -> bool:
    return os.environ.get(SWITCH, "") not in ("1", "true", "yes")


def disable() -> None:
    """Switch compilation off for this process and the processes it starts (``--no-compile``)."""
    os.environ[SWITCH] = "1"


#: per object, its methods' compiled versions (a second call of ``compiled`` on the same method of
#: the same model reuses the compilation instead of paying for it again)
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(fn: Callable, calls: int, workload: str) -> Callable:
    """``fn`` (a function, or a method of a model) compiled where this workload's ``calls`` pay for
    it and compiling is on, else ``fn`` itself."""
    if not enabled() or calls < MIN_CALLS[workload]:
        return fn
    owner = getattr(fn, "__self__", None)
    if owner is None:
        return _FallingBack(fn, workload)
    methods = _COMPILED.setdefault(owner, {})  # the unbound function: no reference to the owner kept
    if fn.__func__ not in methods:
        methods[fn.__func__] = _FallingBack(fn.__func__, workload)
    return functools.partial(methods[fn.__func__], owner)


class _FallingBack:
    """A compiled ``fn`` that runs ``fn`` eagerly from the first call whose compilation fails."""

    def __init__(self, fn: Callable, workload: str):
        self.fn, self.workload = fn, workload
        # fallback_random: random ops draw what eager draws (same seed, same noise)
        self.compiled: Callable | None = torch.compile(fn, dynamic=DYNAMIC[workload],
                                                       options={"fallback_random": True})

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (any failure to compile: run eagerly)
            first = str(exc).splitlines()[0] if str(exc) else ""
            log(f"warning: torch.compile of the {self.workload} failed ({type(exc).__name__}: {first}); "
                "running it eagerly")
            self.compiled = None
            return self.fn(*args, **kwargs)
