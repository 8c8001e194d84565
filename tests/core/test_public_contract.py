"""The public model contract cannot drift: every capability declared in ``genbench.core.protocols``
is exported by ``genbench.protocols`` (the import path README gives), named in ``CAPABILITIES``
and shown by ``genbench list``."""

from __future__ import annotations

import inspect
from itertools import takewhile
from typing import Protocol

import genbench.protocols as public
from genbench.cli import main
from genbench.core import protocols as core


def declared_protocols() -> dict[str, type]:
    """Every Protocol class defined in genbench.core.protocols, by name."""
    return {name: obj for name, obj in vars(core).items()
            if inspect.isclass(obj) and Protocol in obj.__mro__ and obj is not Protocol
            and obj.__module__ == core.__name__}


def test_every_capability_is_exported_by_the_public_module():
    declared = declared_protocols()
    assert {"Sampler", "LatentVariableModel", "DecoderModel", "DeterministicDecoder"} <= set(declared)
    for name, proto in declared.items():
        assert getattr(public, name, None) is proto, f"genbench.protocols lacks {name}"
        assert name in public.__all__, f"genbench.protocols.__all__ lacks {name}"


def test_every_capability_is_in_capabilities_under_its_name():
    assert core.CAPABILITIES == declared_protocols()


def test_genbench_list_shows_every_capability_with_its_methods(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("capabilities"))
    section = takewhile(lambda line: line.startswith("  "), lines[start + 1:])  # up to the next heading
    shown = {words[0]: words[1:] for words in map(str.split, section)}
    assert set(shown) == set(declared_protocols())
    assert shown["DecoderModel"] == ["prior(),", "log_likelihood()"]
