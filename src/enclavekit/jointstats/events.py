"""What the joint-statistics scenario reports as it runs: plain data for a front end to
render (``enclavekit demo`` prints it with rich; a test or a notebook may collect it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Event", "HostSaw", "Mark", "Outcome", "Report", "Say", "SideBySide", "Step",
           "Title", "snippet"]


@dataclass(frozen=True)
class Title:
    """The scenario's heading, or (``final``) the line that closes a run that succeeded."""

    text: str
    final: bool = False


@dataclass(frozen=True)
class Step:
    """A numbered step begins (``text`` starts with its number)."""

    text: str


Mark = Literal["", "ok", "warn", "fail", "item", "note"]
"""What a line says: ``""`` a fact of the current step, ``ok`` a check that held, ``warn``
a warning, ``fail`` the check that did not hold (the run ends), ``item`` a point of its own
(no step), ``note`` a remark about the run itself."""


@dataclass(frozen=True)
class Say:
    """One line of output, marked with what it says (:data:`Mark`)."""

    text: str
    mark: Mark = ""


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
    (``failure``, one line, also reported as a ``fail`` line); ``seconds`` of wall time."""

    ok: bool
    seconds: float
    failure: str = ""


def snippet(blob: bytes) -> str:
    """The first 8 and last 4 bytes of ``blob`` in hex, as the host-saw lines show them."""
    return f"{blob[:8].hex()}…{blob[-4:].hex()}"
