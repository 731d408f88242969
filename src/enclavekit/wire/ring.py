"""Switchless rings: single-producer/single-consumer mailboxes in one shared buffer.

The buffer (an ``mmap`` of a sealed memfd the device creates; this module only sees the
mapping) holds a header page and, per worker, one *lane* of two mailboxes: ``to_enclave``
(host produces, enclave consumes) and ``to_host`` (the reverse). Each message is one wire
frame (:mod:`.frame`), split into chunks when larger than a mailbox's area.

Mailbox layout (offsets from the mailbox start; integers little-endian)::

      0   8  seq     chunks published by the producer (it alone writes it)
     64   8  ack     chunks taken by the consumer (it alone writes it)
    128   4  length  bytes of this chunk in ``data``
    132   4  flags   MORE (1): the message continues in the next chunk
    136      data    AREA bytes

The producer writes a chunk only when ``ack == seq`` (mailbox empty), then ``seq += 1``;
the consumer waits for ``seq != ack``, reads every value **once** (headers into private
integers, data into a private copy) and only then checks and uses them; it sets
``ack = seq`` once it holds its copy. Every value read from the buffer is
untrusted: a length over the area or a message over ``limit`` is refused with
``ProtocolError``, never read past (IF-6: the peer may change bytes at any time).

Waiting spins on the shared words for a bounded time (no system call), then sleeps with
a growing interval (idle path only), calling ``check`` now and then so the caller can stop
(enclave unloaded, peer gone). Ordering relies on x86-64's total store order (data is
written before ``seq``); a torn read only ever yields bytes the copy's checks refuse.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Callable

from ..errors import ProtocolError
from . import frame as _frame
from .frame import Frame, FrameReader, pack_frame

__all__ = ["AREA", "HEADER_PAGE", "LANE", "MAGIC", "MAILBOX", "Lane", "Mailbox", "Ring",
           "one_frame", "ring_header", "ring_size"]

MAGIC = b"EKRING01"
HEADER_PAGE = 4096
MAILBOX = 64 << 10
"""Bytes per mailbox (header words and data area)."""
_DATA = 136
AREA = MAILBOX - _DATA
"""Data bytes per chunk."""
LANE = 2 * MAILBOX
MAX_WORKERS = 64
MORE = 1
_CHUNK = struct.Struct("<II")
_FRAME_HEADER = _frame.HEADER_SIZE
_FRAME_MAGIC = _frame.MAGIC
_UNKNOWN_FLAGS = ~_frame.KNOWN_FLAGS
_VERSION = _frame.PROTOCOL_VERSION
_SLOT = struct.Struct("<II6sHIQI")
"""A chunk header followed by the header of the one frame the chunk carries whole (its
magic and version read as one 6-byte field)."""
_MAGIC_VERSION = _FRAME_MAGIC + struct.pack("<H", _VERSION)
_new_tuple = tuple.__new__
FrameTuple = tuple[int, int, bytes, int, int]
"""A received frame's fields in :class:`Frame` order, as a plain tuple."""
_ONE_CHUNK = AREA - _FRAME_HEADER
"""The largest payload whose frame fits one chunk (the fast path of ``send_frame``)."""
SPIN = 200e-6
"""Seconds a waiter polls the shared words before it starts sleeping."""
_INLINE_SPINS = 512
"""Polls of the shared word ``take`` makes before it calls the timed wait (tens of
microseconds: a reply already on its way is caught without a call or a clock read)."""
MAX_SLEEP = 1e-3
CHECK_EVERY = 10e-3
"""Seconds between ``check`` calls while sleeping."""


def ring_size(workers: int) -> int:
    """Bytes of a ring with ``workers`` lanes."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"switchless workers must be 1..{MAX_WORKERS}, found {workers}")
    return HEADER_PAGE + workers * LANE


def one_frame(data: bytes) -> Frame:
    """A received message as exactly one frame, else ``ProtocolError``."""
    reader = FrameReader()
    frames = reader.feed(data)
    if len(frames) != 1 or reader.buffered:
        raise ProtocolError(f"switchless message is not exactly one frame ({len(frames)} "
                            f"frames, {reader.buffered} bytes left over)")
    return frames[0]


def ring_header(workers: int) -> bytes:
    """The ring's first 16 bytes: magic, worker count, area size."""
    return MAGIC + struct.pack("<II", workers, AREA)


class Mailbox:
    """One direction of a lane: this side is either its producer or its consumer."""

    __slots__ = ("_ack", "_body", "_head", "_mm", "_mv", "_q", "_seq")

    def __init__(self, buf: memoryview, offset: int) -> None:
        self._mv = buf
        self._mm: mmap.mmap = buf.obj  # type: ignore[assignment]  # (Ring checks it is one)
        """The mapping itself: its slices copy straight to and from ``bytes``."""
        self._q = buf.cast("Q")
        self._seq = offset // 8
        self._ack = (offset + 64) // 8
        self._head = offset + 128
        self._body = self._head + 8 + _FRAME_HEADER
        """Where the payload of a one-chunk frame starts."""

    # ------------------------------------------------------------------ producer

    def send(self, data: bytes, check: Callable[[], None] | None = None) -> None:
        """Publish ``data`` (chunked), waiting for the consumer to take each chunk."""
        q, si, ai, mv = self._q, self._seq, self._ack, self._mv
        head = self._head
        pos, end = 0, len(data)
        while True:
            seq = q[si]
            if q[ai] != seq:
                _wait(q, ai, seq, check, equal=True)
            n = min(AREA, end - pos)
            mv[head : head + 8] = _CHUNK.pack(n, MORE if pos + n < end else 0)
            mv[head + 8 : head + 8 + n] = data[pos : pos + n]
            q[si] = (seq + 1) & 0xFFFFFFFFFFFFFFFF
            pos += n
            if pos >= end:
                return

    def send_frame(self, msg_type: int, request_id: int, payload: bytes, flags: int = 0,
                   check: Callable[[], None] | None = None) -> None:
        """Publish one frame; a small one is packed straight into the chunk (one
        ``pack_into`` for the chunk and frame headers, one copy of the payload)."""
        n = len(payload)
        if n > _ONE_CHUNK:
            self.send(pack_frame(msg_type, request_id, payload, flags=flags), check)
            return
        q, si = self._q, self._seq
        seq = q[si]
        if q[self._ack] != seq:
            _wait(q, self._ack, seq, check, equal=True)
        _SLOT.pack_into(self._mv, self._head, _FRAME_HEADER + n, 0, _MAGIC_VERSION, msg_type,
                        flags, request_id, n)
        body = self._body
        self._mm[body : body + n] = payload
        q[si] = (seq + 1) & 0xFFFFFFFFFFFFFFFF

    # ------------------------------------------------------------------ consumer

    def recv_frame(self, limit: int, check: Callable[[], None] | None = None) -> Frame:
        """The next message as exactly one frame (as ``one_frame(recv(...))`` gives it)."""
        return _new_tuple(Frame, self.take(limit, check))

    def take(self, limit: int, check: Callable[[], None] | None = None) -> FrameTuple:
        """The next message as the plain tuple of a :class:`Frame` (the switchless hot paths:
        no ``Frame`` object is built).

        A message in one chunk has its chunk and frame headers read once (one
        ``unpack_from`` into private integers, then checked) and its payload copied out
        once; anything else (chunked, short, over ``limit``, a bad frame header) takes the
        general path, which copies the message once and parses that copy.
        """
        q, si = self._q, self._seq
        ack = q[self._ack]
        seq = q[si]
        if seq == ack:
            spins = _INLINE_SPINS  # a first bounded spin right here: no call, no clock
            while spins:
                seq = q[si]
                if seq != ack:
                    break
                spins -= 1
            else:
                seq = _wait(q, si, ack, check, equal=False)
        length, cflags, magic_version, msg_type, fflags, request_id, size = \
            _SLOT.unpack_from(self._mv, self._head)  # read once, then checked
        if cflags or length != size + _FRAME_HEADER or length > AREA or length > limit \
                or magic_version != _MAGIC_VERSION or fflags & _UNKNOWN_FLAGS:
            # chunked, another supported version, or refused there
            return tuple(one_frame(self.recv(limit, check)))  # type: ignore[return-value]
        body = self._body
        payload = self._mm[body : body + size]
        q[self._ack] = seq
        return msg_type, request_id, payload, fflags, _VERSION

    def ready(self) -> bool:
        """Whether a chunk is waiting (one read of two words; no system call)."""
        return bool(self._q[self._seq] != self._q[self._ack])

    def recv(self, limit: int, check: Callable[[], None] | None = None) -> bytes:
        """The next whole message (at most ``limit`` bytes), copied out of the buffer."""
        q, si, ai, mv = self._q, self._seq, self._ack, self._mv
        head = self._head
        parts: list[bytes] = []
        total = 0
        while True:
            ack = q[ai]
            seq = q[si]
            if seq == ack:
                seq = _wait(q, si, ack, check, equal=False)
            length, flags = _CHUNK.unpack(bytes(mv[head : head + 8]))  # one copy, then checks
            if length > AREA:
                q[ai] = seq
                raise ProtocolError(f"switchless chunk length {length} is over the "
                                    f"{AREA}-byte area")
            total += length
            if total > limit:
                q[ai] = seq
                raise ProtocolError(f"switchless message of over {limit} bytes (limit {limit})")
            parts.append(bytes(mv[head + 8 : head + 8 + length]))
            q[ai] = seq
            if not flags & MORE:
                return parts[0] if len(parts) == 1 else b"".join(parts)


def _wait(q: memoryview, index: int, value: int, check: Callable[[], None] | None, *,
          equal: bool) -> int:
    """Wait until ``q[index] == value`` (``equal``) or ``!= value``; returns the word."""
    deadline = time.perf_counter() + SPIN
    spins = 0
    while True:
        got = q[index]
        if (got == value) is equal:
            return int(got)
        spins += 1
        if spins & 63 == 0 and time.perf_counter() > deadline:
            break
    sleep, next_check = 20e-6, 0.0
    while True:
        got = q[index]
        if (got == value) is equal:
            return int(got)
        now = time.monotonic()
        if check is not None and now >= next_check:
            check()
            next_check = now + CHECK_EVERY
        time.sleep(sleep)
        sleep = min(sleep * 2, MAX_SLEEP)


class Lane:
    """One worker's pair of mailboxes."""

    __slots__ = ("index", "to_enclave", "to_host")

    def __init__(self, buf: memoryview, index: int) -> None:
        base = HEADER_PAGE + index * LANE
        self.index = index
        self.to_enclave = Mailbox(buf, base)
        self.to_host = Mailbox(buf, base + MAILBOX)


class Ring:
    """A ring over a shared writable mapping of :func:`ring_size` bytes."""

    def __init__(self, buf: memoryview, workers: int) -> None:
        """``buf``: a writable view of a whole shared ``mmap``."""
        want = ring_size(workers)
        if not isinstance(buf.obj, mmap.mmap):
            raise ProtocolError("switchless ring: the buffer must be a view of an mmap")
        if buf.readonly or buf.nbytes != want:
            raise ProtocolError(f"switchless ring: expected a writable {want}-byte buffer for "
                                f"{workers} workers, found {buf.nbytes} bytes")
        self.buf = buf.cast("B")
        self.workers = workers
        self.lanes = [Lane(self.buf, i) for i in range(workers)]

    @classmethod
    def format(cls, buf: memoryview, workers: int) -> Ring:
        """Write the header into a fresh zeroed buffer (tests; the device uses
        :func:`ring_header`)."""
        ring = cls(buf, workers)
        ring.buf[:16] = ring_header(workers)
        return ring

    @classmethod
    def attach(cls, buf: memoryview, workers: int) -> Ring:
        """A ring whose header must name ``workers`` lanes (from the measured manifest)."""
        ring = cls(buf, workers)
        head = bytes(ring.buf[:16])
        if head != ring_header(workers):
            raise ProtocolError(f"switchless ring header {head.hex()} does not name "
                                f"{workers} workers of {AREA}-byte areas")
        return ring
