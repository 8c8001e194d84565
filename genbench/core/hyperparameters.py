"""Hyperparameters: config fields that declare their valid values, and the one check of them.

A model's config is a dataclass. Each numeric field declares its interval beside it,
``latent: int = bounded(40, "[1, 1024]")``, so the bounds table of a model is its config class.
``check_hyperparameters`` is the one check: an int field takes an integer (not a bool, not 40.5),
a float field a finite number, a str field a string, a bool field true or false, and a bounded
field a value inside its interval. It runs on the values of every source (``--set``, a suite's
TOML, a checkpoint's metadata) before anything is built (``ModelEntry.make_config``), and on
direct construction of a config deriving from :class:`Hyperparameters`.

A :class:`Range` is the same for the numbers of genbench's own settings (a budget's ``k``, a suite's
``seeds``): ``genbench.suites.RANGES`` holds them, and the command line's flags and the suite
parser both check a value with them, so both refuse it alike, in the same words.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from typing import Any

#: dataclass field metadata key of a field's :class:`Interval`
BOUNDS = "genbench.bounds"
#: how many characters of a refused value an error message shows
SHOWN_CHARS = 40

_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")


@dataclass(frozen=True)
class Interval:
    """A closed, open or half-open interval of numbers, written as in mathematics: ``[1, 1024]``,
    ``(0, 0.5)``, ``[0, 1)``."""

    low: float
    high: float
    low_open: bool
    high_open: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = _INTERVAL.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"not an interval: {text!r} (write it as [low, high], (low, high) ...)")
        opening, low, high, closing = match.groups()
        return cls(float(low), float(high), opening == "(", closing == ")", text.strip())

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return self.text


def bounded(default: Any, interval: str) -> Any:
    """A config field whose values must lie in ``interval`` (checked for every source of values)."""
    return dataclasses.field(default=default, metadata={BOUNDS: Interval.parse(interval)})


def bounds_of(field: dataclasses.Field) -> Interval | None:
    """The interval a config field declares (None: it declares none)."""
    return field.metadata.get(BOUNDS)


def shown(value: Any) -> str:
    """``value`` as an error message shows it: its repr, cut to ``SHOWN_CHARS``."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}..."


@dataclass(frozen=True)
class Range:
    """The values of a numeric setting, refused alike wherever one is given (a command-line flag, a
    suite file): an integer (a finite number where ``real``) of at least ``least`` (above it where
    ``open``) and at most ``most``, or 0 (meaning none) where ``zero``. Not a bool, and not 2.0 where
    an integer is meant. The messages are the flags': ``must be an integer >= 1, got '0'``."""

    least: int
    most: float = math.inf
    real: bool = False
    open: bool = False
    zero: bool = False

    def __str__(self) -> str:
        """What a value must be, from below: ``an integer >= 1``, ``0 or an integer >= 10`` ..."""
        text = f"{'a number' if self.real else 'an integer'} {'>' if self.open else '>='} {self.least}"
        return f"0 or {text}" if self.zero else text

    def _is_number(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.real:
            return isinstance(value, int | float) and math.isfinite(value)
        return isinstance(value, int)

    def _reaches_least(self, value: float) -> bool:
        above = value > self.least if self.open else value >= self.least
        return above or (self.zero and value == 0)

    def check(self, value: Any, as_shown: str | None = None) -> Any:
        """``value`` where it is one of the range's; else ValueError ``must be ..., got <as_shown>``."""
        as_shown = as_shown or shown(value)
        if not (self._is_number(value) and self._reaches_least(value)):
            raise ValueError(f"must be {self}, got {as_shown}")
        if value > self.most:
            raise ValueError(f"must be at most {self.most:,}, got {as_shown}")
        return value

    def parse(self, text: str) -> Any:
        """The value of a flag's text, checked as ``check`` does (its repr in the message)."""
        try:
            value = float(text) if self.real else int(text)
        except ValueError:
            value = None
        return self.check(value, repr(text))


def check_value(name: str, value: Any, hint: Any, interval: Interval | None) -> None:
    """One hyperparameter against its declared type and interval; ValueError says what is wrong."""
    what = f"hyperparameter {name}={shown(value)}"
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{what} is not an integer")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what} is not a number")
        if not math.isfinite(value):
            raise ValueError(f"{what} is not a finite number")
    if hint is bool and not isinstance(value, bool):
        raise ValueError(f"{what} is not true or false")
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    if interval is not None and value not in interval:
        raise ValueError(f"{what} is outside {interval}")


def check_hyperparameters(config_cls: type, values: dict[str, Any]) -> None:
    """Every value of ``values`` that names a field of ``config_cls`` against that field's type and
    interval (``check_value``); unknown names are the caller's to refuse."""
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        if field.name in values:
            check_value(field.name, values[field.name], hints[field.name], bounds_of(field))


class Hyperparameters:
    """Base of the zoo's config dataclasses: a config built directly in Python is checked as one
    built from ``--set`` or a checkpoint is."""

    def __post_init__(self):
        check_hyperparameters(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
