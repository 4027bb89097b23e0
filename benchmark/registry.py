"""A small name -> object registry shared by methods, data sets, presets and likelihoods."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered objects; unknown names raise :class:`UnknownNameError`.

    ``kind`` is the human word used in messages ("method", "dataset", ...).
    ``on_lookup`` is called before every lookup (used to discover plugins lazily).
    """

    def __init__(self, kind: str, on_lookup: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._on_lookup = on_lookup

    def add(self, name: str, item: T) -> T:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def replace(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``, replacing what was there (a plugin file imported again)."""
        self._items[name] = item
        return item

    def peek(self, name: str) -> T | None:
        """What is registered under ``name`` so far, without the lookup hook (None if nothing)."""
        return self._items.get(name)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda item: self.add(name, item)

    def _ready(self) -> None:
        if self._on_lookup is not None:
            self._on_lookup()

    def __getitem__(self, name: str) -> T:
        self._ready()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._items)) from None

    def __contains__(self, name: object) -> bool:
        self._ready()
        return name in self._items

    def names(self) -> list[str]:
        self._ready()
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]
