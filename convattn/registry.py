"""Named entries: networks, attribution methods, ablations, out-of-distribution scores.

Each family is one ``Registry``; a new entry is one line in its list, and menus, help
texts and reports read the registry. Every lookup goes through ``get``, so an unknown
name is the same error everywhere: ``UnknownName``, one sentence listing what exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar


class UnknownName(ValueError):
    """A name no entry of a registry has; the message is one sentence."""


class Named(Protocol):
    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=Named)


class Registry(Generic[E]):
    """Entries with unique ``name``s, in the order given (menus keep it)."""

    def __init__(self, kind: str, entries: Iterable[E] = ()) -> None:
        self.kind = kind  # e.g. "attribution method": what an unknown name is called
        self._entries: dict[str, E] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: E) -> None:
        if entry.name in self._entries:
            raise ValueError(f"the {self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry

    def get(self, name: str) -> E:
        """The entry called ``name``; UnknownName names the known ones."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"Unknown {self.kind} {name!r}; expected one of "
                              f"{', '.join(self._entries)}.") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
