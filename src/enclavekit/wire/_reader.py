"""The streaming reader: a cursor over one hostile message that peeks before it decodes.

Every value's first byte is looked at before msgpack decodes it, so a value of the wrong
kind is refused by name, and a declared length or element count is compared with the limits
and with the bytes that remain before anything is allocated. It works on one private copy of
the input (:func:`snapshot`): a shared buffer the sender rewrites later changes nothing.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs published

from ..errors import EcallArgumentError, ProtocolError
from ._faults import Fault, found
from ._kinds import ARRAY, EXT, EXT_TYPE_AT, KIND, KIND_NAME, LEN_FMT, RESERVED
from .limits import Limits, items_fault, size_text

__all__ = ["Reader", "finish", "snapshot"]


class Reader:
    """A cursor over one message: peeks at each msgpack header before anything is decoded."""

    __slots__ = ("data", "end", "items", "limits", "unpacker")

    def __init__(self, data: bytes, limits: Limits) -> None:
        self.data = data
        self.end = len(data)
        self.limits = limits
        self.items = 0
        self.unpacker = msgpack.Unpacker(
            raw=False, use_list=True, strict_map_key=False, max_buffer_size=max(self.end, 1)
        )
        self.unpacker.feed(data)

    def peek(self) -> int:
        pos = self.unpacker.tell()
        if pos >= self.end:
            raise Fault("truncated: the message ends where a value should start", protocol=True)
        first: int = self.data[pos]
        return first

    def mismatch(self, expected: str, first: int) -> Fault:
        kind = KIND[first]
        if kind == RESERVED:
            return Fault("byte 0xC1 is never used in msgpack", protocol=True)
        if kind == EXT:
            at = self.unpacker.tell() + EXT_TYPE_AT[first]
            code = self.data[at : at + 1]
            code_text = f" {int.from_bytes(code, 'big', signed=True)}" if code else ""
            return Fault(f"expected {expected}, found msgpack ext type{code_text} "
                         "(extension types are never decoded)")
        return Fault(f"expected {expected}, found {KIND_NAME[kind]}")

    def unpack(self) -> Any:
        try:
            return self.unpacker.unpack()
        except msgpack.OutOfData:
            raise Fault("truncated: the message ends inside a value", protocol=True) from None
        except UnicodeDecodeError as exc:
            raise Fault(f"str is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                        protocol=True) from None
        except ValueError as exc:
            raise Fault(f"malformed msgpack ({exc})", protocol=True) from None

    def blob_length(self, first: int) -> None:
        """Check a str/bin's declared length against the limit and what remains, pre-read."""
        pos = self.unpacker.tell()
        if 0xA0 <= first <= 0xBF:
            size, head = first & 0x1F, 1
        else:
            fmt = LEN_FMT[first]
            head = 1 + struct.calcsize(fmt)
            if pos + head > self.end:
                raise Fault("truncated: the message ends inside a length", protocol=True)
            (size,) = struct.unpack_from(fmt, self.data, pos + 1)
        if size > self.limits.max_size:
            raise Fault(f"{size} bytes exceeds the {size_text(self.limits.max_size)} limit")
        left = self.end - pos - head
        if size > left:
            raise Fault(f"truncated: declares {size} bytes but only {left} remain",
                        protocol=True)

    def container(self, kind: int, expected: str) -> int:
        """Read an array or map header; the count is checked before anything is built."""
        first = self.peek()
        if KIND[first] != kind:
            raise self.mismatch(expected, first)
        try:
            count: int
            if kind == ARRAY:
                count = self.unpacker.read_array_header()
            else:
                count = self.unpacker.read_map_header()
        except msgpack.OutOfData:
            raise Fault("truncated: the message ends inside a header", protocol=True) from None
        left = self.end - self.unpacker.tell()
        need = count if kind == ARRAY else 2 * count
        if need > left:
            noun = "elements" if kind == ARRAY else "entries"
            raise Fault(f"truncated: declares {count} {noun} but only {left} bytes remain",
                        protocol=True)
        self.items += count
        if self.items > self.limits.max_items:
            raise items_fault(self.limits)
        return count


def snapshot(data: object, limits: Limits, label: str) -> bytes:
    """One immutable copy of the input, so a writer sharing the buffer cannot race the checks."""
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(f"{label}: expected encoded bytes, found {found(data)}")
        data = bytes(data)
    assert isinstance(data, bytes)
    if len(data) > limits.max_size:
        raise EcallArgumentError(f"{label}: {len(data)} bytes exceeds the "
                                 f"{size_text(limits.max_size)} limit")
    if not data:
        raise ProtocolError(f"{label}: empty message")
    return data


def finish(r: Reader, label: str) -> None:
    """Refuse bytes left after the one value a message holds."""
    extra = r.end - r.unpacker.tell()
    if extra:
        noun = "byte" if extra == 1 else "bytes"
        raise ProtocolError(f"{label}: {extra} trailing {noun} after the value")
