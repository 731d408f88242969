"""Declaring fixed-size little-endian SGX structures once, as readable tables.

A structure is a frozen dataclass whose fields carry their wire type in the
annotation::

    @structure(size=64)
    class SecInfo(Structure):
        flags: U64 = 0
        reserved: Annotated[bytes, 56] = bytes(56)

``U8``/``U16``/``U32``/``U64`` are little-endian unsigned integers,
``Annotated[bytes, N]`` is an N-byte string, and a field whose type is another
``Structure`` is nested in place. The decorator computes the packing, checks it
against the size the architecture gives (a ``TypeError`` at import time, which
survives ``python -O``) and records each field's offset.

``from_bytes`` refuses a wrong length and, when ``strict`` (the default), any
non-zero ``reserved*`` field, with an :class:`~enclavekit.errors.InvalidStructure`
that names the structure and the field.
"""

from __future__ import annotations

import dataclasses
import inspect
import struct
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Self, TypeVar, dataclass_transform, get_args

from ..errors import InvalidStructure

U8 = Annotated[int, "B"]
U16 = Annotated[int, "H"]
U32 = Annotated[int, "I"]
U64 = Annotated[int, "Q"]

_INT_LIMITS = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFF_FFFF, "Q": 0xFFFF_FFFF_FFFF_FFFF}

S = TypeVar("S", bound="Structure")


class Structure:
    """Base of every SGX structure: ``to_bytes``, ``from_bytes``, offsets and a JSON view."""

    __slots__ = ()

    SIZE: ClassVar[int]
    OFFSETS: ClassVar[dict[str, int]]
    _struct: ClassVar[struct.Struct]
    _specs: ClassVar[tuple[tuple[str, Any], ...]]

    def to_bytes(self) -> bytes:
        """Pack the structure into exactly ``SIZE`` bytes."""
        values: list[Any] = []
        for name, code in self._specs:
            value = getattr(self, name)
            if isinstance(code, type):
                value = value.to_bytes()
            elif code in _INT_LIMITS:
                if not isinstance(value, int) or not 0 <= value <= _INT_LIMITS[code]:
                    raise InvalidStructure(
                        type(self).__name__, f"{name}={value!r} does not fit a {code} field"
                    )
            elif not isinstance(value, (bytes, bytearray)) or len(value) != int(code[:-1]):
                raise InvalidStructure(
                    type(self).__name__,
                    f"{name} must be {code[:-1]} bytes, found {len(value)}"
                    if isinstance(value, (bytes, bytearray))
                    else f"{name} must be bytes, found {type(value).__name__}",
                )
            values.append(value)
        return self._struct.pack(*values)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, strict: bool = True) -> Self:
        """Parse exactly ``SIZE`` bytes.

        Raises:
            InvalidStructure: wrong length, or (``strict``) a non-zero reserved field.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidStructure(cls.__name__, f"expected bytes, found {type(data).__name__}")
        if len(data) != cls.SIZE:
            raise InvalidStructure(
                cls.__name__, f"expected {cls.SIZE} bytes, found {len(data)}"
            )
        raw = cls._struct.unpack(bytes(data))
        kwargs: dict[str, Any] = {}
        for (name, code), value in zip(cls._specs, raw, strict=True):
            if isinstance(code, type):
                nested: type[Structure] = code
                value = nested.from_bytes(value, strict=strict)
            elif strict and name.startswith("reserved") and any(value):
                raise InvalidStructure(
                    cls.__name__, f"{name} (offset {cls.OFFSETS[name]}) must be zero"
                )
            kwargs[name] = value
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (structures are immutable)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """A plain view for JSON: bytes as lowercase hex, nested structures as dicts."""
        out: dict[str, Any] = {}
        for name, code in self._specs:
            value = getattr(self, name)
            if isinstance(code, type):
                out[name] = value.to_dict()
            elif isinstance(value, (bytes, bytearray)):
                out[name] = bytes(value).hex()
            else:
                out[name] = value
        return out


def _code_of(owner: type, name: str, hint: Any) -> Any:
    if isinstance(hint, type) and issubclass(hint, Structure):
        return hint
    args = get_args(hint)
    if len(args) == 2 and args[0] is int and args[1] in _INT_LIMITS:
        return args[1]
    if len(args) == 2 and args[0] is bytes and isinstance(args[1], int):
        return f"{args[1]}s"
    raise TypeError(f"{owner.__name__}.{name}: unsupported field type {hint!r}")


@dataclass_transform(frozen_default=True)
def structure(size: int) -> Callable[[type[S]], type[S]]:
    """Class decorator: make a frozen, slotted dataclass and check it packs to ``size``."""

    def wrap(cls: type[S]) -> type[S]:
        hints = typing.get_type_hints(cls, include_extras=True)
        names = [n for n in inspect.get_annotations(cls) if n in hints]
        specs = tuple((n, _code_of(cls, n, hints[n])) for n in names)
        fmt = "<" + "".join(c if isinstance(c, str) else f"{c.SIZE}s" for _, c in specs)
        packer = struct.Struct(fmt)
        if packer.size != size:
            raise TypeError(f"{cls.__name__} packs to {packer.size} bytes, not {size}")
        new = dataclasses.dataclass(frozen=True, slots=True)(cls)
        offsets: dict[str, int] = {}
        position = 0
        for name, code in specs:
            offsets[name] = position
            position += struct.calcsize("<" + (code if isinstance(code, str) else f"{code.SIZE}s"))
        new.SIZE = size
        new.OFFSETS = offsets
        new._struct = packer
        new._specs = specs
        return new

    return wrap
