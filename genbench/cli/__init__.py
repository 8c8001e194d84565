"""The ``genbench`` command: run, score, compare, tables, archive, report, collect, status, list.

One module per command (``genbench.cli.run`` ...: its parser and a thin function that turns the
arguments into a typed request for the harness and prints the result); the flags they share are
declared once in ``genbench.cli.flags``. Bad input raises :class:`GenbenchError`; ``main`` prints it as
one line and exits 2. A bad argument is one too (``Parser.error``). With ``--json`` stdout holds the
JSON report alone, strict JSON (``genbench.cli.output``). An exit that code asks for while a command
runs (``sys.exit``) is a failure, one line, never a silent exit 0. The parsed arguments are read,
never changed: under torchrun a rank's own values are a copy.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from genbench.cli import archive, collect, compare, flags, listing, report, run, score, status, tables
from genbench.cli.output import json_text, kept_for_json, one_line
from genbench.core.errors import GenbenchError

__all__ = ["COMMANDS", "build_parser", "json_text", "main"]

#: each command's module, in the order ``genbench --help`` lists them
MODULES = {"run": run, "score": score, "compare": compare, "tables": tables, "archive": archive,
           "report": report, "collect": collect, "status": status, "list": listing}
COMMANDS = {name: module.command for name, module in MODULES.items()}
#: commands that run data-parallel under torchrun (each rank trains and evaluates its shard)
DISTRIBUTED = ("run", "score")


def build_parser() -> argparse.ArgumentParser:
    parser = flags.Parser(prog="genbench", description="Train, evaluate and compare deep generative models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES.values():
        module.add_parser(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    """The command, with stdout kept for the JSON report alone under ``--json``."""
    from genbench.core import compile as compilation
    from genbench.results.db import check_database_file

    if getattr(args, "db", None) is not None:
        check_database_file(args.db)
    if getattr(args, "no_compile", False):
        compilation.disable()
    with _torchrun_rank(args) as args:
        try:
            with kept_for_json() if getattr(args, "json", False) else contextlib.nullcontext():
                return COMMANDS[args.command](args)
        except SystemExit as exc:  # argparse's exits are over: this one was asked for by code the command ran
            raise GenbenchError(f"code run by genbench {args.command} called sys.exit({exc.code!r}): "
                                "a failure, whatever its exit code") from None


@contextlib.contextmanager
def _torchrun_rank(args: argparse.Namespace):
    """Under torchrun, for ``DISTRIBUTED`` commands: this rank in the process group; yields the
    arguments of this rank (a copy: its device, and for a rank other than 0 of ``score`` nothing to
    record, ``--name``, ``--db`` and ``--suite`` none), which prints nothing and records nothing."""
    from genbench.core.distributed import is_main
    from genbench.launch.torchrun import process_group

    if args.command not in DISTRIBUTED or getattr(args, "launcher", None):
        yield args
        return
    with process_group(args.device) as device:
        if device is None:
            yield args
            return
        mine = {"device": str(device)}
        if not is_main() and args.command == "score":
            mine |= {"name": None, "db": None, "suite": None}
        yield argparse.Namespace(**{**vars(args), **mine})


def main(argv: list[str] | None = None) -> int:
    # `genbench list | head` ends quietly; the previous handler comes back when main returns,
    # so a caller in the same process (tests, notebooks) keeps Python's own SIGPIPE handling
    previous = signal.signal(signal.SIGPIPE, signal.SIG_DFL) if hasattr(signal, "SIGPIPE") else None
    try:
        return _run(build_parser().parse_args(argv))
    except GenbenchError as exc:
        print(f"genbench: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genbench: interrupted (run again to resume from the last checkpoint)", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGPIPE, previous)

