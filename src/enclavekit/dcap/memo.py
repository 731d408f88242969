"""Bounded parse caches keyed by the exact bytes parsed (content-addressed).

A relying party sees the same collateral pieces (CRLs, issuer chains, TCB info, QE identity)
and the same PCK chain in many quotes. Parsing them is a pure function of their bytes and the
parsed values are immutable, so a :class:`ContentCache` keeps the parse of each distinct input:

* the key is the full input (bytes, text, or a tuple of bytes), compared in full on a hit,
  never a name, a digest or an object identity;
* only successful parses are kept (a refusal is parsed, and refused, again each time);
* it is bounded twice, by entries and by the bytes its keys hold (least recently used out
  first; an input larger than the byte bound is parsed and not kept);
* one lock guards it, so the services' thread pools may share it.

Nothing here stands for a check: verifiers run every signature, revocation and validity check
on the cached values at each call. :func:`clear` empties every cache (tests that inject faults
into a parser use it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ContentCache", "clear"]

Key = bytes | str | tuple[bytes, ...]
V = TypeVar("V")

_ALL: list[ContentCache[Any]] = []


def _size(key: Key) -> int:
    return sum(len(part) for part in key) if isinstance(key, tuple) else len(key)


class ContentCache(Generic[V]):
    """``parse(key, *args)`` memoized on ``key`` (the bytes parsed; ``args`` only label errors).

    Args:
        parse: a pure function of ``key`` whose result is immutable; it raises on bad input.
        entries: most values kept.
        max_bytes: most key bytes kept in total (the memory bound of the keys).
    """

    def __init__(self, parse: Callable[..., V], *, entries: int = 64,
                 max_bytes: int = 4 << 20) -> None:
        self._parse = parse
        self._entries = entries
        self._max_bytes = max_bytes
        self._held = 0
        self._table: OrderedDict[Key, V] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.append(self)

    def __call__(self, key: Key, *args: object) -> V:
        with self._lock:
            value = self._table.get(key)
            if value is not None:
                self._table.move_to_end(key)
                return value
        value = self._parse(key, *args)
        size = _size(key)
        if size > self._max_bytes:
            return value
        with self._lock:
            if key not in self._table:
                self._table[key] = value
                self._held += size
                while len(self._table) > self._entries or self._held > self._max_bytes:
                    old, _ = self._table.popitem(last=False)
                    self._held -= _size(old)
        return value

    def __len__(self) -> int:
        return len(self._table)

    @property
    def held_bytes(self) -> int:
        """Key bytes currently kept."""
        return self._held

    def clear(self) -> None:
        with self._lock:
            self._table.clear()
            self._held = 0


def clear() -> None:
    """Empty every content cache of the process."""
    for cache in _ALL:
        cache.clear()
