"""Refusals of the value codec: a fault raised deep in a value, turned into one typed error.

A node that refuses a value raises :class:`Fault` with the detail; each container it sits
in adds its path segment (``[3]``, ``.amount``, ``<key #0>``) as the fault unwinds, and the
entry point turns it into :class:`~enclavekit.errors.ProtocolError` (the bytes are not one
well-formed msgpack value) or :class:`~enclavekit.errors.EcallArgumentError` (a well-formed
value does not match the hint or exceeds a limit), one line naming the path, e.g.
``argument 'records[3].amount': expected int, found bool``. :class:`Miss` is not a refusal:
the C fast path met something it does not accept outright, and the streaming reader will
name the fault.
"""

from __future__ import annotations

from ..errors import EcallArgumentError, ProtocolError

__all__ = ["Fault", "Miss", "fault_at", "found", "int_text", "short"]


class Fault(Exception):
    """A refusal raised deep in a value; containers add their path segment as it unwinds."""

    def __init__(self, detail: str, *, protocol: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.protocol = protocol
        self.segments: list[str] = []


class Miss(Exception):
    """The fast path met something unexpected; the streaming path will say exactly what."""


def fault_at(fault: Fault, label: str, root: str) -> EcallArgumentError | ProtocolError:
    """The typed error for ``fault``: ``label 'root.path': detail``, with ``.path`` set."""
    path = root + "".join(reversed(fault.segments))
    if not root:
        path = path.removeprefix(".")
    where = f"{label} '{path}'" if path else label
    exc: EcallArgumentError | ProtocolError
    if fault.protocol:
        exc = ProtocolError(f"{where}: {fault.detail}")
    else:
        exc = EcallArgumentError(f"{where}: {fault.detail}")
    exc.path = path  # type: ignore[union-attr]
    return exc


def int_text(value: object) -> str:
    """An int for a message; a huge one is described, never converted to digits (quadratic)."""
    assert type(value) is int
    return f"int {value}" if value.bit_length() <= 64 else f"a {value.bit_length()}-bit int"


def short(value: object) -> str:
    """A bounded repr for messages."""
    if type(value) is int and value.bit_length() > 64:
        return int_text(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def found(value: object) -> str:
    """The type a message says was found (``None`` for None)."""
    return "None" if value is None else type(value).__name__
