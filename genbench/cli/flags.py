"""The parser of the ``genbench`` command and every flag more than one command shares, declared once.

A bad argument is one ``GenbenchError`` line (``Parser.error``); every numeric flag is checked by its
argparse type (``SETTING_TYPES``: the ranges a suite file's values are held to).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from genbench.core.errors import GenbenchError
from genbench.core.hyperparameters import Range
from genbench.core.names import check_name
from genbench.results.db import DEFAULT_DB
from genbench.scoring import NUMERIC_SETTINGS, SETTINGS_FLAGS, SettingsRequest
from genbench.suites import RANGES

DEFAULT_RUNS_DIR = Path("runs")
#: where a user's commands render the leaderboards of their database: beside it, under runs/, never
#: over the published tables
DEFAULT_LEADERBOARDS = DEFAULT_DB.parent / "leaderboards"
#: the published folder: the committed tables, their figures, tables.toml and the archive of records
DEFAULT_PUBLISHED = Path("leaderboards")


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one GenbenchError line (``main`` prints it, exit 2), not usage + error."""

    def error(self, message: str):
        raise GenbenchError(f"{message} (see {self.prog} --help)")


def in_range(values: Range):
    """An argparse type: the flag's text as a value of ``values``, refused in the words a suite file's
    value is refused in (``genbench.suites.RANGES``)."""
    def parse(text: str):
        try:
            return values.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def name_of(flag: str):
    """An argparse type: a name (``genbench.core.names``), which a path is made of, never a path."""
    return lambda text: check_name(text, flag)


def count(minimum: int, zero: bool = False):
    """An argparse type: an integer of at least ``minimum`` (or 0, meaning none, where ``zero``), for a
    flag no suite file sets."""
    return in_range(Range(minimum, zero=zero))


#: the argparse type of each numeric EvalSettings flag, from the ranges a suite's budget is held to
SETTING_TYPES = {name: in_range(RANGES[name]) for name in NUMERIC_SETTINGS}


def data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="data folder (default $GENBENCH_DATA or ~/.cache/genbench)")


def db(p: argparse.ArgumentParser, help: str = "results database (SQLite)", optional: bool = False) -> None:
    """``--db``: as typed (a path's text is kept as given, for messages and reports), by default
    ``DEFAULT_DB``, or none where ``optional``."""
    p.add_argument("--db", default=None if optional else str(DEFAULT_DB), help=help)


def device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda ...")
    p.add_argument("--no-compile", action="store_true",
                   help="never torch.compile (by default the NLL estimator is compiled where its calls are "
                   "many enough to pay for it, e.g. k = 5000 on all test points)")


def json_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="run directories")


def leaderboards(p: argparse.ArgumentParser, help: str = "where leaderboard tables are written") -> None:
    p.add_argument("--leaderboards", type=Path, default=DEFAULT_LEADERBOARDS,
                   help=f"{help} (default {DEFAULT_LEADERBOARDS}; the published tables in "
                   f"{DEFAULT_PUBLISHED}/ are rendered by genbench tables from the archive)")


def published(p: argparse.ArgumentParser) -> None:
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED, metavar="DIR",
                   help="the published folder: its tables.toml, archive/ of result records, tables and "
                   f"figures (default {DEFAULT_PUBLISHED})")


def typed(cls, args: argparse.Namespace, **given):
    """A request ``cls`` (a frozen dataclass) of the parsed arguments of its fields' names (a list as
    a tuple), with ``given`` fields built by the command: the arguments are read, never changed."""
    names = [f.name for f in fields(cls) if f.name not in given and hasattr(args, f.name)]
    values = {name: getattr(args, name) for name in names}
    return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}, **given)


def settings_request(args: argparse.Namespace) -> SettingsRequest:
    """How a scored checkpoint's evaluation settings are made: ``--budget`` and the setting flags given."""
    overrides = {name: getattr(args, name) for name in SETTINGS_FLAGS
                 if getattr(args, name, None) is not None}
    return typed(SettingsRequest, args, overrides=overrides)
