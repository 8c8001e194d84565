"""A heartbeat: a daemon thread that calls ``beat()`` every few seconds while a ``with`` block runs.

A thread, not a callback of the training loop, so that a long evaluation beats too. Both beats of
a run use it: its database row's (``genbench.results.db.Lease``) and its run directory's
``owner.json`` (``genbench.results.rundir.OwnerHeartbeat``).
"""

from __future__ import annotations

import threading


class Heartbeat:
    """Calls ``beat()`` every ``every`` seconds until the ``with`` block ends, or until ``beat``
    returns False (the beat has nothing left to keep alive). An exception of a type in ``retry_on``
    (a locked database, a full disk) is tried again at the next beat."""

    retry_on: tuple[type[BaseException], ...] = ()

    def __init__(self, every: float, name: str):
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def beat(self) -> bool:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if self.beat() is False:
                    return
            except self.retry_on:
                continue
