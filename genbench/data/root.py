"""Where data files live: ``--data-root``, else ``$GENBENCH_DATA``, else ~/.cache/genbench."""

from __future__ import annotations

import os
from pathlib import Path

#: the data root where neither is given (and the feature cache's, where the data root is read-only)
DEFAULT_ROOT = "~/.cache/genbench"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("GENBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path(DEFAULT_ROOT).expanduser()
