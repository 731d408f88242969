"""Device-protocol frames: versioned, length-prefixed messages on a Unix stream socket.

Every message between the host SDK, the device service and an enclave process is one frame:
a fixed 24-byte header, all integers little-endian, followed by the payload (a msgpack value,
decoded by the receiver with :mod:`enclavekit.wire.values` against the hint it declared for
that message type)::

    offset  size  field
    ------  ----  ---------------------------------------------------------------
         0     4  magic b"\\x89EKP" (the high first byte stops text protocols early)
         4     2  protocol version (u16), 1
         6     2  message type (u16), defined by the protocol built on these frames
         8     4  flags (u32): bit 0 REPLY, bit 1 ERROR; every other bit must be zero
        12     8  request id (u64): a reply carries the id of its request
        20     4  payload length n (u32), at most the receiver's max_payload
        24     n  payload

A receiver checks the magic, version, flags and length before it reads or allocates the
payload, so a lying header costs it nothing. Any header fault raises
:class:`~enclavekit.errors.ProtocolError`, and the stream is then out of step: close it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ProtocolError

if TYPE_CHECKING:  # asyncio costs an enclave ~17 ms to import; only read_frame needs it
    import asyncio

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "FLAG_ERROR",
    "FLAG_REPLY",
    "HEADER_SIZE",
    "MAGIC",
    "PROTOCOL_VERSION",
    "Frame",
    "FrameReader",
    "pack_frame",
    "read_frame",
    "recv_frame",
    "send_frame",
]

MAGIC = b"\x89EKP"
PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: frozenset[int] = frozenset({PROTOCOL_VERSION})
FLAG_REPLY = 0x1
FLAG_ERROR = 0x2
KNOWN_FLAGS = FLAG_REPLY | FLAG_ERROR
DEFAULT_MAX_PAYLOAD = (64 << 20) + (1 << 20)
"""A 64 MiB codec value plus room for the message around it."""

_HEADER = struct.Struct("<4sHHIQI")
HEADER_SIZE = _HEADER.size
_U16, _U32, _U64 = (1 << 16) - 1, (1 << 32) - 1, (1 << 64) - 1
_SMALL = 1 << 16  # below this, header and payload go out in one send


class Frame(NamedTuple):
    """One received message: its type, request id, flags and undecoded payload bytes."""

    msg_type: int
    request_id: int
    payload: bytes
    flags: int = 0
    version: int = PROTOCOL_VERSION

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & FLAG_REPLY)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)


def _header(msg_type: int, request_id: int, length: int, flags: int, max_payload: int) -> bytes:
    if not 0 <= msg_type <= _U16:
        raise ProtocolError(f"message type {msg_type} is outside the u16 range")
    if not 0 <= request_id <= _U64:
        raise ProtocolError(f"request id {request_id} is outside the u64 range")
    if flags & ~KNOWN_FLAGS or flags < 0:
        raise ProtocolError(f"flags {flags:#x} set bits other than REPLY and ERROR")
    if length > min(max_payload, _U32):
        raise ProtocolError(f"payload of {length} bytes is over the {max_payload}-byte limit")
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, msg_type, flags, request_id, length)


def pack_frame(msg_type: int, request_id: int, payload: bytes, *, flags: int = 0,
               max_payload: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """The bytes of one frame carrying ``payload``."""
    return _header(msg_type, request_id, len(payload), flags, max_payload) + payload


def _check_magic(prefix: bytes | bytearray) -> None:
    if prefix != MAGIC[: len(prefix)]:
        raise ProtocolError(f"not a device-protocol frame: magic {bytes(prefix).hex()} "
                            f"(expected {MAGIC.hex()})")


def _parse(header: bytes | bytearray | memoryview, max_payload: int,
           versions: Collection[int]) -> tuple[int, int, int, int, int]:
    """Validate a 24-byte header: (version, msg_type, flags, request_id, payload length)."""
    magic, version, msg_type, flags, request_id, length = _HEADER.unpack(header)
    _check_magic(magic)
    if version not in versions:
        raise ProtocolError(f"protocol version {version} is not supported "
                            f"(this side speaks {', '.join(map(str, sorted(versions)))})")
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError(f"reserved flag bits {flags & ~KNOWN_FLAGS:#x} are set")
    if length > max_payload:
        raise ProtocolError(f"frame declares a {length}-byte payload, over the "
                            f"{max_payload}-byte limit")
    return version, msg_type, flags, request_id, length


class FrameReader:
    """Cut a byte stream into frames: :meth:`feed` what arrives, get the complete frames.

    After a :class:`~enclavekit.errors.ProtocolError` the reader refuses every later feed:
    the stream can no longer be trusted to be in step.
    """

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 versions: Collection[int] = SUPPORTED_VERSIONS) -> None:
        self._max = max_payload
        self._versions = frozenset(versions)
        self._buf = bytearray()
        self._head: tuple[int, int, int, int, int] | None = None
        self._broken: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a returned frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Take the next bytes of the stream; return every frame they complete, in order."""
        if self._broken is not None:
            raise ProtocolError(f"stream already out of step: {self._broken}")
        if not self._buf and self._head is None and len(data) >= HEADER_SIZE:
            # Fast path: exactly one whole frame arrived on a frame boundary.
            magic, version, msg_type, flags, request_id, length = _HEADER.unpack_from(data)
            if length == len(data) - HEADER_SIZE and magic == MAGIC \
                    and version in self._versions and not flags & ~KNOWN_FLAGS \
                    and length <= self._max:
                return [Frame(msg_type, request_id, bytes(data[HEADER_SIZE:]), flags, version)]
        self._buf += data
        frames: list[Frame] = []
        buf, pos = self._buf, 0
        try:
            while True:
                if self._head is None:
                    if len(buf) - pos < HEADER_SIZE:
                        _check_magic(buf[pos : pos + 4])
                        break
                    self._head = _parse(buf[pos : pos + HEADER_SIZE], self._max, self._versions)
                version, msg_type, flags, request_id, length = self._head
                end = pos + HEADER_SIZE + length
                if len(buf) < end:
                    break
                frames.append(Frame(msg_type, request_id, bytes(buf[pos + HEADER_SIZE : end]),
                                    flags, version))
                self._head, pos = None, end
        except ProtocolError as exc:
            self._broken = str(exc)
            self._buf = bytearray()
            raise
        finally:
            if pos and not self._broken:
                del buf[:pos]
        return frames

    def close(self) -> None:
        """Declare the end of the stream; refuse it if it stopped inside a frame."""
        if self._buf:
            want = HEADER_SIZE + (self._head[4] if self._head else 0)
            where = "payload" if self._head else "header"
            raise ProtocolError(f"connection closed inside a frame {where}: "
                                f"{len(self._buf)} of {want} bytes arrived")


def send_frame(sock: socket.socket, msg_type: int, request_id: int, payload: bytes, *,
               flags: int = 0, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
    """Write one frame to a connected socket (callers sharing a socket serialise sends)."""
    header = _header(msg_type, request_id, len(payload), flags, max_payload)
    if len(payload) < _SMALL:
        sock.sendall(header + payload)
    else:
        sock.sendall(header)
        sock.sendall(payload)


def _recv_exactly(sock: socket.socket, n: int, what: str, eof_ok: bool) -> bytes | None:
    """Exactly ``n`` bytes (``n`` already checked against the limit), or None at a clean EOF."""
    first = sock.recv(n)
    if len(first) == n:
        return first
    got = len(first)
    if got == 0 and eof_ok:
        return None
    buf = bytearray(n)
    view = memoryview(buf)
    view[:got] = first
    while got:
        if got == n:
            return bytes(buf)
        k = sock.recv_into(view[got:])
        if k == 0:
            break
        got += k
    raise ProtocolError(f"connection closed inside a frame {what}: {got} of {n} bytes arrived")


def recv_frame(sock: socket.socket, *, max_payload: int = DEFAULT_MAX_PAYLOAD,
               versions: Collection[int] = SUPPORTED_VERSIONS) -> Frame | None:
    """Read one frame from a connected socket; ``None`` if the peer closed between frames.

    Short reads are completed; the end of the stream inside a frame raises
    :class:`~enclavekit.errors.ProtocolError`, as does any bad header. Socket errors
    (timeouts, resets) propagate as ``OSError``.
    """
    header = _recv_exactly(sock, HEADER_SIZE, "header", True)
    if header is None:
        return None
    version, msg_type, flags, request_id, length = _parse(header, max_payload, versions)
    payload = _recv_exactly(sock, length, "payload", False) if length else b""
    assert payload is not None
    return Frame(msg_type, request_id, payload, flags, version)


async def read_frame(reader: asyncio.StreamReader, *, max_payload: int = DEFAULT_MAX_PAYLOAD,
                     versions: Collection[int] = SUPPORTED_VERSIONS) -> Frame | None:
    """asyncio form of :func:`recv_frame` (write with ``writer.write(pack_frame(...))``)."""
    import asyncio

    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError(f"connection closed inside a frame header: {len(exc.partial)} of "
                            f"{HEADER_SIZE} bytes arrived") from None
    version, msg_type, flags, request_id, length = _parse(header, max_payload, versions)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"connection closed inside a frame payload: {len(exc.partial)} of "
                            f"{length} bytes arrived") from None
    return Frame(msg_type, request_id, payload, flags, version)
