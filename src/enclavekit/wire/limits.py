"""Bounds on one encoded value, checked before anything is allocated.

:class:`Limits` caps the bytes of a whole value, its nesting and its element count;
:class:`Tally` is the running element count while one value is encoded or checked. A
declared length or count is compared with the limits (and with the bytes that remain) before
the body is read, so a lying header costs the receiver nothing, and hostile depth never
reaches ``RecursionError``.
"""

from __future__ import annotations

import dataclasses

from ._faults import Fault

__all__ = ["DEFAULT_LIMITS", "Limits", "Tally", "depth_fault", "items_fault", "size_text"]


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one encoded value; everything past them is refused before allocation."""

    max_size: int = 64 << 20
    """Bytes in the whole encoded value (and so in any one str or bytes inside it)."""
    max_depth: int = 32
    """Nested containers (list, tuple, dict, dataclass) below the top-level value."""
    max_items: int = 1_000_000
    """Elements, entries and fields summed over every container in the value."""
    allow_nonfinite: bool = False
    """Accept NaN and ±inf for ``float``."""


DEFAULT_LIMITS = Limits()


class Tally:
    """Running totals while a value is checked and turned into plain msgpack types."""

    __slots__ = ("items", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.items = 0

    def count(self, n: int) -> None:
        self.items += n
        if self.items > self.limits.max_items:
            raise items_fault(self.limits)


def size_text(n: int) -> str:
    """A byte count for messages: ``64 MiB``, ``4 KiB`` or ``100 bytes``."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


def depth_fault(limits: Limits) -> Fault:
    """The refusal of a container nested past ``limits.max_depth``."""
    return Fault(f"nested deeper than the {limits.max_depth}-level limit")


def items_fault(limits: Limits) -> Fault:
    """The refusal of a value with more than ``limits.max_items`` elements in all."""
    return Fault(f"more than the {limits.max_items:,}-element limit in one value")
