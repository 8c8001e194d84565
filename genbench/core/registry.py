"""A validated name -> entry mapping, shared by datasets, models, metrics and suites.

Looking up an unknown name raises one clear line that lists the valid names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from genbench.core.errors import GenbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[Registry[T]], None] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise GenbenchError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._loader is not None
            self._loader(self)

    def __getitem__(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none)"
            raise GenbenchError(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._ensure_loaded()
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        self._ensure_loaded()
        return sorted(self._entries.items())

    def in_order(self) -> list[T]:
        """The entries in the order they were registered (tables show metrics in that order)."""
        self._ensure_loaded()
        return list(self._entries.values())
