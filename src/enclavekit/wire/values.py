"""One typed value across the boundary: :func:`encode_value` and :func:`decode_value`.

Device-protocol payloads, sealed metadata and counter records are encoded against the
hint the sender declared and decoded against the hint the receiver declared (the rules:
:mod:`.hints`, :mod:`._encode`, :mod:`._decode`; the bounds: :mod:`.limits`). Ecall and
ocall arguments and results go through :class:`~.calls.CallSignature` instead.
"""

from __future__ import annotations

from typing import TypeVar, overload

from ._decode import decode_node
from ._encode import encode_node
from .hints import compile_hint
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["decode_value", "encode_value"]

T = TypeVar("T")


def encode_value(value: object, hint: object, *, limits: Limits = DEFAULT_LIMITS,
                 what: str = "value") -> bytes:
    """Check ``value`` against ``hint`` and encode it; only declared dataclass fields leave.

    Raises:
        TypeError: ``hint`` is not supported.
        EcallArgumentError: ``value`` does not match ``hint`` or exceeds ``limits``.
    """
    return encode_node(compile_hint(hint), value, limits, what, "")


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

    Raises:
        TypeError: ``hint`` is not supported.
        ProtocolError: the bytes are not one well-formed msgpack value (truncated, reserved
            byte 0xC1, invalid UTF-8, trailing bytes).
        EcallArgumentError: the value does not match ``hint`` or exceeds ``limits``.
    """
    return decode_node(compile_hint(hint), data, limits, what)
