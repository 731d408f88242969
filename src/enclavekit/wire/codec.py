"""Typed values across the enclave boundary: msgpack checked against a declared type hint.

Ecall arguments and results, ocall arguments and results and device-protocol payloads are
encoded with :func:`encode_value` and decoded with :func:`decode_value` against the type
hint the receiving side declared. Only plain msgpack is read (nil, bool, int, float, str,
bin, array, map); extension types are refused, no class name is ever read from the wire and
no host-chosen class is ever instantiated: the only classes built are the dataclasses named
by the receiver's own hint.

Supported hints: ``bytes``, ``str``, ``int``, ``float``, ``bool``, ``None``, ``list[T]``,
``dict[K, V]`` (``K`` is ``str``, ``int`` or ``bytes``), ``tuple[T, ...]``, ``tuple[A, B]``,
``Literal[...]`` of str/int/bytes/bool/None, unions such as ``T | None`` whose members use
different msgpack kinds, ``Annotated[T, ...]`` (read as ``T``) and dataclasses of these,
nested or recursive. Anything else is refused when the hint is first used, with ``TypeError``.

Rules, on both sides of the boundary:

* Types are exact: ``True`` is not an ``int``, an ``int`` or ``str`` subclass is refused
  before any of its methods runs, ``bytearray`` and ``memoryview`` are not ``bytes``; a
  decoded ``bytes`` value is always an immutable ``bytes``.
* ``float`` on the wire must be a msgpack float. When encoding, an ``int`` given for a
  ``float`` is converted if it is exact (``abs(x) <= 2**53``). NaN and ±inf are refused
  unless ``Limits.allow_nonfinite`` is set.
* ``int`` is limited to msgpack's range, -2**63 .. 2**64 - 1 (no quadratic big-int parsing).
* ``str`` must be valid UTF-8 (no over-long forms, no encoded or lone surrogates). An
  embedded NUL is a valid character and is kept: code that passes a str to an OS or path API
  must refuse NUL there.
* A dataclass crosses as a map of exactly its declared fields: an undeclared attribute never
  leaves, and a missing, unknown or repeated field name is refused. Map keys never repeat.
* Sizes are checked before anything is allocated: a declared length or element count larger
  than the bytes that remain, or than the limits, is refused without reading further.
  Nesting is capped (``Limits.max_depth``), so hostile depth never reaches ``RecursionError``.
* Decoding works on one private copy of the input (a shared buffer the sender rewrites
  later changes nothing). Messages up to 1 KiB are unpacked in C and then checked; anything
  that check does not accept outright is decoded again by the streaming reader, which peeks
  at every header first and names the exact fault.

Errors: :class:`~enclavekit.errors.ProtocolError` when the bytes are not one well-formed
msgpack value (truncated, reserved byte 0xC1, invalid UTF-8, trailing bytes);
:class:`~enclavekit.errors.EcallArgumentError` when a well-formed value does not match the hint
or exceeds a limit. Both messages are one line naming the path, e.g.
``argument 'records[3].amount': expected int, found bool``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import struct
import threading
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar, Union, overload

import msgpack  # type: ignore[import-untyped]  # no stubs published

from ..errors import EcallArgumentError, ProtocolError

__all__ = [
    "DEFAULT_LIMITS",
    "Arguments",
    "CallSignature",
    "Limits",
    "check_hint",
    "decode_value",
    "encode_value",
]

T = TypeVar("T")

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1
_EXACT_FLOAT_INT = 1 << 53


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


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


def _int_text(value: object) -> str:
    """An int for a message; a huge one is described, never converted to digits (quadratic)."""
    assert type(value) is int
    return f"int {value}" if value.bit_length() <= 64 else f"a {value.bit_length()}-bit int"


def _short(value: object) -> str:
    """A bounded repr for messages."""
    if type(value) is int and value.bit_length() > 64:
        return _int_text(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- msgpack kinds

NIL, BOOL, INT, FLOAT, STR, BIN, ARRAY, MAP, EXT, RESERVED = range(10)

_KIND_NAME = ("None", "bool", "int", "float", "str", "bytes", "list", "dict", "ext", "0xC1")


def _kind_table() -> tuple[int, ...]:
    kinds = [RESERVED] * 256
    for b in range(256):
        if b <= 0x7F or b >= 0xE0 or 0xCC <= b <= 0xD3:
            kinds[b] = INT
        elif b <= 0x8F or b in (0xDE, 0xDF):
            kinds[b] = MAP
        elif b <= 0x9F or b in (0xDC, 0xDD):
            kinds[b] = ARRAY
        elif b <= 0xBF or 0xD9 <= b <= 0xDB:
            kinds[b] = STR
        elif b == 0xC0:
            kinds[b] = NIL
        elif b in (0xC2, 0xC3):
            kinds[b] = BOOL
        elif 0xC4 <= b <= 0xC6:
            kinds[b] = BIN
        elif 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8:
            kinds[b] = EXT
        elif b in (0xCA, 0xCB):
            kinds[b] = FLOAT
    return tuple(kinds)


_KIND = _kind_table()
# Length field of str8/16/32 and bin8/16/32: first byte -> struct format.
_LEN_FMT = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}
_EXT_TYPE_AT = {0xD4: 1, 0xD5: 1, 0xD6: 1, 0xD7: 1, 0xD8: 1, 0xC7: 2, 0xC8: 3, 0xC9: 5}


class _Fault(Exception):
    """A refusal raised deep in a value; containers add their path segment as it unwinds."""

    def __init__(self, detail: str, *, protocol: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.protocol = protocol
        self.segments: list[str] = []


def _fault_at(fault: _Fault, label: str, root: str) -> EcallArgumentError | ProtocolError:
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


class _Reader:
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
            raise _Fault("truncated: the message ends where a value should start", protocol=True)
        first: int = self.data[pos]
        return first

    def mismatch(self, expected: str, first: int) -> _Fault:
        kind = _KIND[first]
        if kind == RESERVED:
            return _Fault("byte 0xC1 is never used in msgpack", protocol=True)
        if kind == EXT:
            at = self.unpacker.tell() + _EXT_TYPE_AT[first]
            code = self.data[at : at + 1]
            code_text = f" {int.from_bytes(code, 'big', signed=True)}" if code else ""
            return _Fault(f"expected {expected}, found msgpack ext type{code_text} "
                          "(extension types are never decoded)")
        return _Fault(f"expected {expected}, found {_KIND_NAME[kind]}")

    def unpack(self) -> Any:
        try:
            return self.unpacker.unpack()
        except msgpack.OutOfData:
            raise _Fault("truncated: the message ends inside a value", protocol=True) from None
        except UnicodeDecodeError as exc:
            raise _Fault(f"str is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                         protocol=True) from None
        except ValueError as exc:
            raise _Fault(f"malformed msgpack ({exc})", protocol=True) from None

    def blob_length(self, first: int) -> None:
        """Check a str/bin's declared length against the limit and what remains, pre-read."""
        pos = self.unpacker.tell()
        if 0xA0 <= first <= 0xBF:
            size, head = first & 0x1F, 1
        else:
            fmt = _LEN_FMT[first]
            head = 1 + struct.calcsize(fmt)
            if pos + head > self.end:
                raise _Fault("truncated: the message ends inside a length", protocol=True)
            (size,) = struct.unpack_from(fmt, self.data, pos + 1)
        if size > self.limits.max_size:
            raise _Fault(f"{size} bytes exceeds the {_size(self.limits.max_size)} limit")
        left = self.end - pos - head
        if size > left:
            raise _Fault(f"truncated: declares {size} bytes but only {left} remain",
                         protocol=True)

    def container(self, kind: int, expected: str) -> int:
        """Read an array or map header; the count is checked before anything is built."""
        first = self.peek()
        if _KIND[first] != kind:
            raise self.mismatch(expected, first)
        try:
            count: int
            if kind == ARRAY:
                count = self.unpacker.read_array_header()
            else:
                count = self.unpacker.read_map_header()
        except msgpack.OutOfData:
            raise _Fault("truncated: the message ends inside a header", protocol=True) from None
        left = self.end - self.unpacker.tell()
        need = count if kind == ARRAY else 2 * count
        if need > left:
            noun = "elements" if kind == ARRAY else "entries"
            raise _Fault(f"truncated: declares {count} {noun} but only {left} bytes remain",
                         protocol=True)
        self.items += count
        if self.items > self.limits.max_items:
            raise _Fault(f"more than the {self.limits.max_items:,}-element limit in one value")
        return count


class _Encoder:
    """Running totals while a value is checked and turned into plain msgpack types."""

    __slots__ = ("items", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.items = 0

    def count(self, n: int) -> None:
        self.items += n
        if self.items > self.limits.max_items:
            raise _Fault(f"more than the {self.limits.max_items:,}-element limit in one value")


def _depth_fault(limits: Limits) -> _Fault:
    return _Fault(f"nested deeper than the {limits.max_depth}-level limit")


def _found(value: object) -> str:
    return "None" if value is None else type(value).__name__


class _Miss(Exception):
    """The fast path met something unexpected; the streaming path will say exactly what."""


# Types ``msgpack.unpackb(use_list=False, object_pairs_hook=list)`` returns, by msgpack kind.
_PLAIN_KIND = {type(None): NIL, bool: BOOL, int: INT, float: FLOAT, str: STR, bytes: BIN,
               tuple: ARRAY, list: MAP}
_FAST_MAX = 1024
"""Messages up to this size are unpacked in C first: lying nested counts in so small a
message cannot make msgpack pre-allocate more than a few MiB."""


def _no_ext(code: int, data: bytes) -> object:
    raise _Miss


def _unpack_small(data: bytes) -> object:
    """Unpack a small message in C, or return _Miss to send it to the streaming path."""
    n = len(data)
    if n > _FAST_MAX:
        return _Miss
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=False, object_pairs_hook=list, strict_map_key=False,
            ext_hook=_no_ext, max_str_len=n, max_bin_len=n, max_array_len=n,
            max_map_len=n // 2, max_ext_len=n,
        )
    except Exception:  # malformed, truncated, trailing bytes, ext: the slow path explains
        return _Miss


# --------------------------------------------------------------------------- nodes


class _Node:
    """One compiled type hint: how to check, encode and decode its values."""

    kinds: frozenset[int] = frozenset()
    label: str = "?"

    def accepts(self, value: object) -> bool:
        raise NotImplementedError

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        raise NotImplementedError

    def dec(self, r: _Reader, depth: int) -> object:
        raise NotImplementedError

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        """Fast path: a value already unpacked by ``msgpack.unpackb`` (arrays as tuples,
        maps as lists of pairs); anything unexpected raises :class:`_Miss`."""
        raise NotImplementedError


class _Scalar(_Node):
    """``int``, ``bool`` and ``None``: the msgpack kind and the Python type must both match."""

    def __init__(self, pytype: type, kind: int, label: str) -> None:
        self.pytype = pytype
        self.kinds = frozenset({kind})
        self.kind = kind
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is self.pytype

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if type(value) is not self.pytype:
            raise _Fault(f"expected {self.label}, found {_found(value)}")
        if self.kind == INT and not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise _Fault(f"{_int_text(value)} is outside msgpack's 64-bit range")
        return value

    def dec(self, r: _Reader, depth: int) -> object:
        first = r.peek()
        if _KIND[first] != self.kind:
            raise r.mismatch(self.label, first)
        return r.unpack()

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if type(plain) is not self.pytype:
            raise _Miss
        return plain


class _Float(_Node):
    kinds = frozenset({FLOAT})
    label = "float"

    def accepts(self, value: object) -> bool:
        return type(value) is float

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if type(value) is int:
            if abs(value) > _EXACT_FLOAT_INT:
                raise _Fault(f"{_int_text(value)} has no exact float; pass a float")
            return float(value)
        if type(value) is not float:
            raise _Fault(f"expected float, found {_found(value)}")
        if not cx.limits.allow_nonfinite and not math.isfinite(value):
            raise _Fault(f"{value} is not a finite float")
        return value

    def dec(self, r: _Reader, depth: int) -> object:
        first = r.peek()
        if _KIND[first] != FLOAT:
            raise r.mismatch("float", first)
        value: float = r.unpack()
        if not r.limits.allow_nonfinite and not math.isfinite(value):
            raise _Fault(f"{value} is not a finite float")
        return value

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if type(plain) is not float or not (cx.limits.allow_nonfinite or math.isfinite(plain)):
            raise _Miss
        return plain


class _Blob(_Node):
    """``str`` and ``bytes``: declared length checked before the body is read."""

    def __init__(self, pytype: type, kind: int) -> None:
        self.pytype = pytype
        self.kind = kind
        self.kinds = frozenset({kind})
        self.label = pytype.__name__

    def accepts(self, value: object) -> bool:
        return type(value) is self.pytype

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if type(value) is not self.pytype:
            hint = " (pass bytes(value))" if isinstance(value, bytearray | memoryview) else ""
            raise _Fault(f"expected {self.label}, found {_found(value)}{hint}")
        if self.kind == STR and not value.isascii():  # type: ignore[attr-defined]
            try:
                value.encode("utf-8")  # type: ignore[attr-defined]
            except UnicodeEncodeError as exc:
                raise _Fault(f"str has a lone surrogate at index {exc.start}") from None
        return value

    def dec(self, r: _Reader, depth: int) -> object:
        first = r.peek()
        if _KIND[first] != self.kind:
            raise r.mismatch(self.label, first)
        r.blob_length(first)
        return r.unpack()

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if type(plain) is not self.pytype:
            raise _Miss
        return plain


_LITERAL_TYPES = {str: STR, bytes: BIN, int: INT, bool: BOOL, type(None): NIL}


class _Literal(_Node):
    def __init__(self, values: tuple[object, ...], label: str) -> None:
        for v in values:
            if type(v) not in _LITERAL_TYPES:
                raise TypeError(f"{label}: Literal values must be str, bytes, int, bool or None")
        self.allowed = frozenset((type(v), v) for v in values)
        self.kinds = frozenset(_LITERAL_TYPES[type(v)] for v in values)
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) in _LITERAL_TYPES and (type(value), value) in self.allowed

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if not self.accepts(value):
            if type(value) in _LITERAL_TYPES:
                raise _Fault(f"expected {self.label}, found {_short(value)}")
            raise _Fault(f"expected {self.label}, found {_found(value)}")
        return value

    def dec(self, r: _Reader, depth: int) -> object:
        first = r.peek()
        kind = _KIND[first]
        if kind not in self.kinds:
            raise r.mismatch(self.label, first)
        if kind in (STR, BIN):
            r.blob_length(first)
        value = r.unpack()
        if (type(value), value) not in self.allowed:
            raise _Fault(f"expected {self.label}, found {_short(value)}")
        return value

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if not self.accepts(plain):
            raise _Miss
        return plain


class _List(_Node):
    kinds = frozenset({ARRAY})

    def __init__(self, item: _Node, label: str) -> None:
        self.item = item
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is list

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if type(value) is not list:
            raise _Fault(f"expected {self.label}, found {_found(value)}")
        if depth >= cx.limits.max_depth:
            raise _depth_fault(cx.limits)
        cx.count(len(value))
        enc, out, i = self.item.enc, [], 0
        try:
            for i, v in enumerate(value):  # noqa: B007 (i names the failing element)
                out.append(enc(v, cx, depth + 1))
        except _Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return out

    def dec(self, r: _Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise _depth_fault(r.limits)
        n = r.container(ARRAY, self.label)
        dec, out, i = self.item.dec, [], 0
        try:
            for i in range(n):  # noqa: B007
                out.append(dec(r, depth + 1))
        except _Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return out

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if type(plain) is not tuple or depth >= cx.limits.max_depth:
            raise _Miss
        cx.count(len(plain))
        conv = self.item.conv
        return [conv(v, cx, depth + 1) for v in plain]


class _Tuple(_Node):
    """``tuple[A, B]`` (fixed) or ``tuple[T, ...]`` (``items`` is None)."""

    kinds = frozenset({ARRAY})

    def __init__(self, fixed: tuple[_Node, ...] | None, item: _Node | None, label: str) -> None:
        self.fixed = fixed
        self.item = item
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is tuple

    def _node(self, i: int) -> _Node:
        if self.fixed is not None:
            return self.fixed[i]
        assert self.item is not None
        return self.item

    def _check_len(self, n: int) -> None:
        if self.fixed is not None and n != len(self.fixed):
            raise _Fault(f"expected {self.label} of {len(self.fixed)} elements, found {n}")

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if type(value) is not tuple:
            raise _Fault(f"expected {self.label}, found {_found(value)}")
        self._check_len(len(value))
        if depth >= cx.limits.max_depth:
            raise _depth_fault(cx.limits)
        cx.count(len(value))
        out, i = [], 0
        try:
            for i, v in enumerate(value):
                out.append(self._node(i).enc(v, cx, depth + 1))
        except _Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return out

    def dec(self, r: _Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise _depth_fault(r.limits)
        n = r.container(ARRAY, self.label)
        self._check_len(n)
        out, i = [], 0
        try:
            for i in range(n):
                out.append(self._node(i).dec(r, depth + 1))
        except _Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return tuple(out)

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if type(plain) is not tuple or depth >= cx.limits.max_depth:
            raise _Miss
        if self.fixed is not None and len(plain) != len(self.fixed):
            raise _Miss
        cx.count(len(plain))
        return tuple(self._node(i).conv(v, cx, depth + 1) for i, v in enumerate(plain))


class _Dict(_Node):
    kinds = frozenset({MAP})

    def __init__(self, key: _Node, value: _Node, label: str) -> None:
        self.key = key
        self.value = value
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is dict

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if type(value) is not dict:
            raise _Fault(f"expected {self.label}, found {_found(value)}")
        if depth >= cx.limits.max_depth:
            raise _depth_fault(cx.limits)
        cx.count(len(value))
        out: dict[object, object] = {}
        for i, (k, v) in enumerate(value.items()):
            try:
                ek = self.key.enc(k, cx, depth + 1)
            except _Fault as f:
                f.segments.append(f"<key #{i}>")
                raise
            try:
                out[ek] = self.value.enc(v, cx, depth + 1)
            except _Fault as f:
                f.segments.append(f"[{_short(k)}]")
                raise
        return out

    def dec(self, r: _Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise _depth_fault(r.limits)
        n = r.container(MAP, self.label)
        out: dict[object, object] = {}
        for i in range(n):
            try:
                k = self.key.dec(r, depth + 1)
                if k in out:  # exact str/int/bytes: hashing runs no foreign code
                    raise _Fault(f"duplicate key {_short(k)}")
            except _Fault as f:
                f.segments.append(f"<key #{i}>")
                raise
            try:
                out[k] = self.value.dec(r, depth + 1)
            except _Fault as f:
                f.segments.append(f"[{_short(k)}]")
                raise
        return out

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if type(plain) is not list or depth >= cx.limits.max_depth:
            raise _Miss
        cx.count(len(plain))
        key, val = self.key.conv, self.value.conv
        out = {key(k, cx, depth + 1): val(v, cx, depth + 1) for k, v in plain}
        if len(out) != len(plain):  # a repeated key
            raise _Miss
        return out


class _Dataclass(_Node):
    """A dataclass: a map of exactly its declared fields, built by its own ``__init__``."""

    kinds = frozenset({MAP})

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.label = cls.__qualname__
        self.fields: dict[str, _Node] = {}  # filled in after construction (recursive hints)

    def accepts(self, value: object) -> bool:
        return type(value) is self.cls

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        if type(value) is not self.cls:
            raise _Fault(f"expected {self.label}, found {_found(value)}")
        if depth >= cx.limits.max_depth:
            raise _depth_fault(cx.limits)
        cx.count(len(self.fields))
        out: dict[str, object] = {}
        for name, node in self.fields.items():  # declared fields only (IF-8)
            try:
                out[name] = node.enc(getattr(value, name), cx, depth + 1)
            except _Fault as f:
                f.segments.append(f".{name}")
                raise
        return out

    def dec(self, r: _Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise _depth_fault(r.limits)
        n = r.container(MAP, self.label)
        got: dict[str, object] = {}
        for _ in range(n):
            first = r.peek()
            if _KIND[first] != STR:
                raise r.mismatch(f"a field name of {self.label}", first)
            r.blob_length(first)
            name = r.unpack()
            node = self.fields.get(name)
            if node is None:
                raise _Fault(f"{self.label} has no field {_short(name)} "
                             f"(declared: {', '.join(self.fields) or 'none'})")
            if name in got:
                raise _Fault(f"field {name!r} of {self.label} appears twice")
            try:
                got[name] = node.dec(r, depth + 1)
            except _Fault as f:
                f.segments.append(f".{name}")
                raise
        missing = [name for name in self.fields if name not in got]
        if missing:
            raise _Fault(f"{self.label} is missing field {missing[0]!r}")
        try:
            return self.cls(**got)
        except (TypeError, ValueError) as exc:
            raise _Fault(f"{self.label} refused the value: {exc}") from None

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        if type(plain) is not list or depth >= cx.limits.max_depth:
            raise _Miss
        cx.count(len(plain))
        fields = self.fields
        got: dict[str, object] = {}
        for name, v in plain:
            if type(name) is not str or name not in fields:
                raise _Miss
            got[name] = fields[name].conv(v, cx, depth + 1)
        if len(got) != len(plain) or len(got) != len(fields):  # repeated or missing field
            raise _Miss
        try:
            return self.cls(**got)
        except (TypeError, ValueError):
            raise _Miss from None


class _Union(_Node):
    """Members of distinct msgpack kinds: the wire kind alone picks the member."""

    def __init__(self, members: tuple[_Node, ...], label: str) -> None:
        self.members = members
        self.label = label
        self.by_kind: dict[int, _Node] = {}
        for m in members:
            for k in m.kinds:
                if k in self.by_kind:
                    raise TypeError(
                        f"{label}: {self.by_kind[k].label} and {m.label} both encode as "
                        f"msgpack {_KIND_NAME[k]}, so the receiver could not tell them apart"
                    )
                self.by_kind[k] = m
        self.kinds = frozenset(self.by_kind)
        self.float = next((m for m in members if isinstance(m, _Float)), None)

    def accepts(self, value: object) -> bool:
        return any(m.accepts(value) for m in self.members)

    def enc(self, value: object, cx: _Encoder, depth: int) -> object:
        for m in self.members:
            if m.accepts(value):
                return m.enc(value, cx, depth)
        if self.float is not None and type(value) is int:
            return self.float.enc(value, cx, depth)
        raise _Fault(f"expected {self.label}, found {_found(value)}")

    def dec(self, r: _Reader, depth: int) -> object:
        first = r.peek()
        member = self.by_kind.get(_KIND[first])
        if member is None:
            raise r.mismatch(self.label, first)
        return member.dec(r, depth)

    def conv(self, plain: object, cx: _Encoder, depth: int) -> object:
        member = self.by_kind.get(_PLAIN_KIND.get(type(plain), EXT))
        if member is None:
            raise _Miss
        return member.conv(plain, cx, depth)


# --------------------------------------------------------------------------- compiling hints

_SUPPORTED = ("bytes, str, int, float, bool, None, list[T], dict[K, V], tuple[...], "
              "Literal[...], T | None and dataclasses of these")
_LEAVES: dict[object, _Node] = {
    int: _Scalar(int, INT, "int"),
    bool: _Scalar(bool, BOOL, "bool"),
    None: _Scalar(type(None), NIL, "None"),
    type(None): _Scalar(type(None), NIL, "None"),
    float: _Float(),
    str: _Blob(str, STR),
    bytes: _Blob(bytes, BIN),
}
_CACHE: dict[object, _Node] = dict(_LEAVES)
_LOCK = threading.RLock()


def _name(hint: object) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    if hint is None:
        return "None"
    return repr(hint).replace("typing.", "")


def _compile(hint: object) -> _Node:
    try:
        return _CACHE[hint]
    except KeyError:
        pass
    except TypeError:
        raise TypeError(f"type hint {hint!r} is not supported (supported: {_SUPPORTED})") \
            from None
    with _LOCK:
        pending: dict[object, _Node] = {}
        node = _build(hint, pending)
        _CACHE.update(pending)  # published only once every part compiled
        return node


def _build(hint: object, pending: dict[object, _Node]) -> _Node:
    if hint in _CACHE:
        return _CACHE[hint]
    if hint in pending:
        return pending[hint]
    node = _build_new(hint, pending)
    pending[hint] = node
    return node


def _build_new(hint: object, pending: dict[object, _Node]) -> _Node:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    label = _name(hint)
    if isinstance(hint, str | typing.ForwardRef):
        raise TypeError(f"type hint {hint!r} is a string; resolve it first "
                        "(typing.get_type_hints)")
    if origin is typing.Annotated:
        return _build(args[0], pending)
    if origin is list:
        if len(args) != 1:
            raise TypeError(f"{label}: list needs one element type, e.g. list[int]")
        return _List(_build(args[0], pending), label)
    if origin is dict:
        if len(args) != 2:
            raise TypeError(f"{label}: dict needs key and value types, e.g. dict[str, int]")
        if args[0] not in (str, int, bytes):
            raise TypeError(f"{label}: dict keys must be str, int or bytes")
        return _Dict(_build(args[0], pending), _build(args[1], pending), label)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _Tuple(None, _build(args[0], pending), label)
        if Ellipsis in args:
            raise TypeError(f"{label}: write tuple[T, ...] or tuple[A, B]")
        return _Tuple(tuple(_build(a, pending) for a in args), None, label)
    if origin is Literal:
        return _Literal(args, label)
    if origin is Union or origin is types.UnionType:
        return _Union(tuple(_build(a, pending) for a in args), label)
    if hint in (list, dict, tuple):
        raise TypeError(f"{label}: give the element types, e.g. list[int] or dict[str, bytes]")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, pending)
    raise TypeError(f"type hint {label} is not supported (supported: {_SUPPORTED})")


def _build_dataclass(cls: type, pending: dict[object, _Node]) -> _Node:
    node = _Dataclass(cls)
    pending[cls] = node  # before the fields, so a recursive field finds it
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # NameError, TypeError... from user annotations
        raise TypeError(f"cannot resolve the type hints of {cls.__qualname__}: {exc}") from None
    for f in dataclasses.fields(cls):
        if not f.init:
            raise TypeError(f"{cls.__qualname__}.{f.name}: fields with init=False cannot cross "
                            "the boundary")
        try:
            node.fields[f.name] = _build(hints[f.name], pending)
        except TypeError as exc:
            raise TypeError(f"{cls.__qualname__}.{f.name}: {exc}") from None
    return node


def check_hint(hint: object) -> None:
    """Refuse, with ``TypeError``, a type hint that values cannot cross the boundary as."""
    _compile(hint)


# --------------------------------------------------------------------------- values


_PACKERS = threading.local()


def _pack(plain: object) -> bytes:
    """msgpack bytes of a checked plain value (one reusable Packer per thread)."""
    try:
        packer = _PACKERS.packer
    except AttributeError:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True, datetime=False)
    data: bytes = packer.pack(plain)
    return data


def _encode(node: _Node, value: object, limits: Limits, label: str, root: str) -> bytes:
    try:
        plain = node.enc(value, _Encoder(limits), 0)
    except _Fault as f:
        raise _fault_at(f, label, root) from None
    data = _pack(plain)
    if len(data) > limits.max_size:
        raise _fault_at(_Fault(f"{len(data)} bytes encoded exceeds the "
                               f"{_size(limits.max_size)} limit"), label, root)
    return data


def _snapshot(data: object, limits: Limits, label: str) -> bytes:
    """One immutable copy of the input, so a writer sharing the buffer cannot race the checks."""
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(f"{label}: expected encoded bytes, found {_found(data)}")
        data = bytes(data)
    assert isinstance(data, bytes)
    if len(data) > limits.max_size:
        raise EcallArgumentError(f"{label}: {len(data)} bytes exceeds the "
                                 f"{_size(limits.max_size)} limit")
    if not data:
        raise ProtocolError(f"{label}: empty message")
    return data


def _decode_bytes(node: _Node, data: object, limits: Limits, label: str) -> object:
    data = _snapshot(data, limits, label)
    plain = _unpack_small(data)
    if plain is not _Miss:
        try:
            return node.conv(plain, _Encoder(limits), 0)
        except (_Miss, _Fault):
            pass  # the streaming path below finds and names what is wrong
    r = _Reader(data, limits)
    try:
        value = node.dec(r, 0)
    except _Fault as f:
        raise _fault_at(f, label, "") from None
    _finish(r, label)
    return value


def _finish(r: _Reader, label: str) -> None:
    extra = r.end - r.unpacker.tell()
    if extra:
        noun = "byte" if extra == 1 else "bytes"
        raise ProtocolError(f"{label}: {extra} trailing {noun} after the value")


def encode_value(value: object, hint: object, *, limits: Limits = DEFAULT_LIMITS,
                 what: str = "value") -> bytes:
    """Check ``value`` against ``hint`` and encode it; only declared dataclass fields leave."""
    return _encode(_compile(hint), value, limits, what, "")


@overload
def decode_value(data: bytes | bytearray | memoryview, hint: type[T], *,
                 limits: Limits = ..., what: str = ...) -> T: ...
@overload
def decode_value(data: bytes | bytearray | memoryview, hint: object, *,
                 limits: Limits = ..., what: str = ...) -> object: ...


def decode_value(data: bytes | bytearray | memoryview, hint: object, *,
                 limits: Limits = DEFAULT_LIMITS, what: str = "value") -> object:
    """Decode hostile bytes into a value of exactly ``hint``, or raise a typed refusal.

    ``what`` names the value in error messages (e.g. ``"ocall 'read' result"``).
    """
    return _decode_bytes(_compile(hint), data, limits, what)


# --------------------------------------------------------------------------- calls


class Arguments(NamedTuple):
    """Decoded call arguments, ready for ``fn(*args, **kwargs)``."""

    args: tuple[object, ...]
    kwargs: dict[str, object]


_EMPTY = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True, eq=False)
class CallSignature:
    """The declared parameters and result of an ecall or ocall, checked on both sides.

    Arguments cross as a map from parameter name to value; a parameter left out takes the
    declared default on the receiving side, never one chosen by the sender.
    """

    name: str
    parameters: tuple[inspect.Parameter, ...]
    result: object
    kind: str = "ecall"
    _nodes: dict[str, _Node] = dataclasses.field(init=False, repr=False)
    _result: _Node = dataclasses.field(init=False, repr=False)
    _where: str = dataclasses.field(init=False, repr=False)
    _positional: tuple[inspect.Parameter, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"{self.kind} {self.name!r}"
        nodes: dict[str, _Node] = {}
        for p in self.parameters:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{where}: *{p.name} / **{p.name} parameters cannot be declared; "
                                "list each parameter with its type")
            try:
                nodes[p.name] = _compile(p.annotation)
            except TypeError as exc:
                raise TypeError(f"{where}: parameter {p.name!r}: {exc}") from None
            if p.default is not _EMPTY:
                try:
                    _encode(nodes[p.name], p.default, DEFAULT_LIMITS, "default", p.name)
                except EcallArgumentError as exc:
                    raise TypeError(f"{where}: the default of {p.name!r} does not match its "
                                    f"type ({exc})") from None
        try:
            result = _compile(self.result)
        except TypeError as exc:
            raise TypeError(f"{where}: return type: {exc}") from None
        object.__setattr__(self, "_nodes", nodes)
        object.__setattr__(self, "_result", result)
        object.__setattr__(self, "_where", where)
        positional = tuple(p for p in self.parameters
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        object.__setattr__(self, "_positional", positional)

    @classmethod
    def from_function(cls, fn: Callable[..., object], *, name: str | None = None,
                      kind: str = "ecall") -> CallSignature:
        """Read the declared signature of ``fn``; every parameter and the return need a hint."""
        call: str = name or str(getattr(fn, "__name__", repr(fn)))
        where = f"{kind} {call!r}"
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # NameError etc. from user annotations
            raise TypeError(f"{where}: cannot resolve type hints: {exc}") from None
        params = []
        for p in inspect.signature(fn).parameters.values():
            if p.name not in hints and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{where}: parameter {p.name!r} has no type hint")
            params.append(p.replace(annotation=hints.get(p.name, _EMPTY)))
        if "return" not in hints:
            raise TypeError(f"{where}: no return type hint (write '-> None' if it returns "
                            "nothing)")
        return cls(call, tuple(params), hints["return"], kind)

    def _bind(self, args: Sequence[object], kwargs: Mapping[str, object]) -> dict[str, object]:
        """Match arguments to parameters as a Python call would (``inspect``'s rules)."""
        if not kwargs and len(args) == len(self._positional) == len(self.parameters):
            return dict(zip(self._nodes, args, strict=True))  # every parameter, in order
        if len(args) > len(self._positional):
            raise TypeError(f"takes {len(self._positional)} positional arguments but "
                            f"{len(args)} were given")
        bound = {p.name: v for p, v in zip(self._positional, args, strict=False)}
        for pname, value in kwargs.items():
            if pname in bound:
                raise TypeError(f"got multiple values for argument {pname!r}")
            if pname not in self._nodes:
                raise TypeError(f"got an unexpected keyword argument {pname!r}")
            bound[pname] = value
        for p in self.parameters:
            if p.name not in bound:
                if p.default is _EMPTY:
                    raise TypeError(f"missing a required argument: {p.name!r}")
            elif p.kind is p.POSITIONAL_ONLY and p.name in kwargs:
                raise TypeError(f"positional-only argument {p.name!r} passed by keyword")
        return bound

    def encode_args(self, args: Sequence[object] = (),
                    kwargs: Mapping[str, object] | None = None, *,
                    limits: Limits = DEFAULT_LIMITS) -> bytes:
        """Bind arguments as Python would call the function, check each, and encode them."""
        try:
            bound = self._bind(args, kwargs or {})
        except TypeError as exc:
            raise EcallArgumentError(f"{self._where}: {exc}") from None
        cx = _Encoder(limits)
        plain: dict[str, object] = {}
        for pname, value in bound.items():
            try:
                plain[pname] = self._nodes[pname].enc(value, cx, 1)
            except _Fault as f:
                raise _fault_at(f, "argument", pname) from None
        data = _pack(plain)
        if len(data) > limits.max_size:
            raise EcallArgumentError(f"{self._where}: arguments encode to {len(data)} bytes, "
                                     f"over the {_size(limits.max_size)} limit")
        return data

    def decode_args(self, data: bytes | bytearray | memoryview, *,
                    limits: Limits = DEFAULT_LIMITS) -> Arguments:
        """Decode hostile argument bytes against the declared parameters."""
        label = f"{self._where} arguments"
        data = _snapshot(data, limits, label)
        got = self._fast_args(data, limits)
        if got is None:
            got = self._slow_args(data, limits, label)
        args: list[object] = []
        kwargs: dict[str, object] = {}
        for p in self.parameters:
            if p.name in got:
                value = got[p.name]
            elif p.default is not _EMPTY:
                value = p.default
            else:
                raise EcallArgumentError(f"{self._where}: missing argument {p.name!r}")
            if p.kind is p.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[p.name] = value
        return Arguments(tuple(args), kwargs)

    def _fast_args(self, data: bytes, limits: Limits) -> dict[str, object] | None:
        plain = _unpack_small(data)
        if type(plain) is not list:  # _Miss, or not a map
            return None
        cx = _Encoder(limits)
        got: dict[str, object] = {}
        try:
            cx.count(len(plain))
            for pname, value in plain:
                node = self._nodes.get(pname) if type(pname) is str else None
                if node is None:
                    return None
                got[pname] = node.conv(value, cx, 1)
        except (_Miss, _Fault):
            return None
        return got if len(got) == len(plain) else None

    def _slow_args(self, data: bytes, limits: Limits, label: str) -> dict[str, object]:
        r = _Reader(data, limits)
        got: dict[str, object] = {}
        try:
            n = r.container(MAP, "a map of arguments")
            for _ in range(n):
                first = r.peek()
                if _KIND[first] != STR:
                    raise r.mismatch("a parameter name", first)
                r.blob_length(first)
                pname = r.unpack()
                node = self._nodes.get(pname)
                if node is None:
                    raise _Fault(f"{self._where} has no parameter {_short(pname)}")
                if pname in got:
                    raise _Fault(f"argument {pname!r} given twice")
                try:
                    got[pname] = node.dec(r, 1)
                except _Fault as f:
                    raise _fault_at(f, "argument", pname) from None
        except _Fault as f:
            raise _fault_at(f, label, "") from None
        _finish(r, label)
        return got

    def encode_result(self, value: object, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
        """Check a return value against the declared return type and encode it."""
        return _encode(self._result, value, limits, f"{self._where} result", "")

    def decode_result(self, data: bytes | bytearray | memoryview, *,
                      limits: Limits = DEFAULT_LIMITS) -> object:
        """Decode a (hostile, for ocalls) result against the declared return type."""
        return _decode_bytes(self._result, data, limits, f"{self._where} result")
