"""Names are identifiers, not paths: the one rule for a suite's, a run's, a budget's and an external
result's name, and the one check that a path built from names lies inside the folder it was given.

A name becomes a path component (``runs/<suite>/<budget>/<run>-seed0-...``, ``leaderboards/<suite>.md``),
a table cell and part of a run key, so it is checked where it is parsed (``check_name``); every path
made from names is checked again where the folder is made (``inside``), a second line of defence
against a name that came another way (a database row, a job's spec).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import shown

#: the longest name: it is a folder name, a file name and a table cell
MAX_NAME_CHARS = 100
#: letters, digits and . _ + -, starting with a letter or a digit (so never ".", ".." or "-flag")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: what a name may be, said in the error message
NAME_RULE = (f"a name is letters, digits and . _ + - (starting with a letter or a digit, no '..', "
             f"at most {MAX_NAME_CHARS} characters)")


def is_name(value: object) -> bool:
    """Whether ``value`` is a valid name (a string that keeps ``NAME_RULE``)."""
    return (isinstance(value, str) and len(value) <= MAX_NAME_CHARS and _NAME.fullmatch(value) is not None
            and ".." not in value)


def check_name(value: object, what: str) -> str:
    """``value`` if it is a name; else one GenbenchError saying ``what`` it was and the rule."""
    if not is_name(value):
        raise GenbenchError(f"{what} {shown(value)}: {NAME_RULE}")
    return value


def _normal(path: Path) -> Path:
    """``path`` absolute, with '.' and '..' taken out as written (no symbolic link is followed: a
    folder the user links elsewhere is theirs to link)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def inside(folder: Path, path: Path) -> Path:
    """``path`` where it lies strictly inside ``folder`` (as written); else one GenbenchError: a path
    made from names must never land outside the folder it was given."""
    if _normal(folder) not in _normal(path).parents:
        raise GenbenchError(f"{path} is not inside {folder}: refused (a name made it a path elsewhere)")
    return path
