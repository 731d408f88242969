"""What the joint-statistics scenario reports as it runs: plain data for a front end to
render (``enclavekit demo`` prints it with rich; a test or a notebook may collect it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Event", "HostSaw", "Outcome", "Report", "Say", "SideBySide", "Step", "Title",
           "snippet"]


@dataclass(frozen=True)
class Title:
    """The scenario's heading."""

    text: str


@dataclass(frozen=True)
class Step:
    """A numbered step begins (``text`` starts with its number)."""

    text: str


@dataclass(frozen=True)
class Say:
    """One line of a step: ``ok`` a check that held, ``warn`` a warning, ``""`` a fact."""

    text: str
    mark: Literal["", "ok", "warn"] = ""


@dataclass(frozen=True)
class HostSaw:
    """Bytes the untrusted host relayed: a label, the size and the first and last bytes."""

    label: str
    size: int
    snippet: str


@dataclass(frozen=True)
class SideBySide:
    """A table of one row: what the host saw beside what each owner decrypted."""

    title: str
    columns: tuple[str, ...]
    cells: tuple[str, ...]


Event = Title | Step | Say | HostSaw | SideBySide
Report = Callable[[Event], None]
"""The callback the scenario reports each event to, in order."""


@dataclass(frozen=True)
class Outcome:
    """How the scenario ended: every check held (``ok``) or the first that did not
    (``failure``, one line); ``seconds`` of wall time."""

    ok: bool
    seconds: float
    failure: str = ""


def snippet(blob: bytes) -> str:
    """The first 8 and last 4 bytes of ``blob`` in hex, as the host-saw lines show them."""
    return f"{blob[:8].hex()}…{blob[-4:].hex()}"
