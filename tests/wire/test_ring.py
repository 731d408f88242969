"""Switchless ring mailboxes: chunked round trips, untrusted lengths, and IF-6 (a peer
process flipping bytes while the consumer copies never yields anything but a valid
message or a typed refusal)."""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.errors import ProtocolError
from enclavekit.wire import FLAG_REPLY, pack_frame
from enclavekit.wire.ring import AREA, HEADER_PAGE, Ring, one_frame, ring_header, ring_size


def _ring(workers: int = 1) -> tuple[mmap.mmap, Ring]:
    mm = mmap.mmap(-1, ring_size(workers))
    return mm, Ring.format(memoryview(mm), workers)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=3 * AREA + 17))
def test_messages_of_any_size_arrive_whole(data: bytes) -> None:
    import threading

    _, ring = _ring()
    box = ring.lanes[0].to_enclave
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(box.recv(1 << 20)))
    t.start()
    box.send(data)
    t.join(10)
    assert got == [data]


def test_attach_checks_the_header_against_the_manifest() -> None:
    mm, _ = _ring(2)
    Ring.attach(memoryview(mm), 2)
    with pytest.raises(ProtocolError, match="does not name 3 workers"):
        Ring.attach(memoryview(mmap.mmap(-1, ring_size(3))), 3)
    with pytest.raises(ProtocolError, match="expected a writable"):
        Ring.attach(memoryview(mm), 3)
    assert ring_header(2)[:8] == b"EKRING01"


def _publish(mm: mmap.mmap, length: int, flags: int, data: bytes) -> None:
    base = HEADER_PAGE  # lane 0, to_enclave
    mm[base + 128 : base + 136] = struct.pack("<II", length, flags)
    mm[base + 136 : base + 136 + len(data)] = data
    seq = struct.unpack_from("<Q", mm, base)[0]
    struct.pack_into("<Q", mm, base, seq + 1)


def test_a_length_over_the_area_is_refused_not_read() -> None:
    mm, ring = _ring()
    _publish(mm, AREA + 1, 0, b"")
    with pytest.raises(ProtocolError, match="over the"):
        ring.lanes[0].to_enclave.recv(1 << 20)
    _publish(mm, 0xFFFFFFFF, 0, b"")
    with pytest.raises(ProtocolError, match="over the"):
        ring.lanes[0].to_enclave.recv(1 << 20)


def test_a_message_over_the_limit_is_refused() -> None:
    mm, ring = _ring()
    _publish(mm, 200, 1, b"a" * 200)  # MORE: the message would go on
    with pytest.raises(ProtocolError, match="over 100 bytes"):
        ring.lanes[0].to_enclave.recv(100)


def test_one_frame_refuses_garbage_and_trailing_bytes() -> None:
    frame = pack_frame(41, 7, b"abc", flags=FLAG_REPLY)
    assert one_frame(frame).payload == b"abc"
    with pytest.raises(ProtocolError):
        one_frame(frame + b"x")
    with pytest.raises(ProtocolError):
        one_frame(frame[:-1])
    with pytest.raises(ProtocolError):
        one_frame(b"\x00" * 40)


MUTATOR = """
import mmap, random, sys, time
fd, size, base = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
buf = mmap.mmap(fd, size)
rng = random.Random(1)
buf[100] = 1  # started
end = time.monotonic() + 30
while time.monotonic() < end:
    at = rng.randrange(0, 68)  # the length word and the data (not MORE: this test's single
    buf[base + (at if at < 4 else at + 4)] = rng.randrange(256)  # thread would wait on it)
"""


@pytest.mark.parametrize("fast", [False, True], ids=["recv+one_frame", "recv_frame"])
def test_toctou_a_racing_process_flipping_slot_bytes_gives_only_valid_or_refused(
        fast: bool) -> None:
    """IF-6: 10^4 messages while another process flips bytes of the slot (header and data),
    read by the general path or by the one-chunk fast path (``recv_frame``)."""
    size = ring_size(1)
    fd = os.memfd_create("ring-test")
    os.ftruncate(fd, size)
    mm = mmap.mmap(fd, size)
    ring = Ring.format(memoryview(mm), 1)
    box = ring.lanes[0].to_enclave
    want = pack_frame(41, 1, b"p" * 40)
    child = subprocess.Popen([sys.executable, "-c", MUTATOR, str(fd), str(size),
                              str(HEADER_PAGE + 128)], pass_fds=(fd,))
    os.close(fd)
    ok = refused = 0
    start = time.monotonic()
    while mm[100] != 1:
        assert child.poll() is None and time.monotonic() < start + 20
        time.sleep(0.001)
    deadline = time.monotonic() + 10
    try:
        while ok + refused < 10_000 or (refused == 0 and time.monotonic() < deadline):
            box.send(want)
            if fast:
                try:
                    got = box.recv_frame(1 << 16)
                except ProtocolError:
                    refused += 1
                    continue
                assert isinstance(got.payload, bytes) and len(got.payload) <= AREA
                ok += 1
                continue
            try:
                data = box.recv(1 << 16)
            except ProtocolError:
                refused += 1
                continue
            assert len(data) <= AREA
            try:
                frame = one_frame(data)
            except ProtocolError:
                refused += 1
                continue
            assert isinstance(frame.payload, bytes) and len(frame.payload) <= AREA
            ok += 1
    finally:
        child.kill()
        child.wait(5)
    assert ok + refused >= 10_000
    assert refused > 0  # the mutation really raced the copies


@pytest.mark.parametrize("size", [0, 1, 40, AREA - 24, AREA - 23, 3 * AREA + 5])
def test_send_frame_and_recv_frame_carry_what_pack_frame_and_one_frame_do(size: int) -> None:
    import threading

    _, ring = _ring()
    box = ring.lanes[0].to_enclave
    payload = os.urandom(size)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.extend([box.recv(1 << 20), box.recv_frame(1 << 20)]))
    t.start()
    box.send_frame(41, 7, payload, FLAG_REPLY)  # fast sender, general receiver
    box.send(pack_frame(42, 8, payload))  # general sender, fast receiver
    t.join(10)
    assert got[0] == pack_frame(41, 7, payload, flags=FLAG_REPLY)
    assert got[1] == one_frame(pack_frame(42, 8, payload))


def _frame_bytes(magic: bytes = b"\x89EKP", version: int = 1, flags: int = 0,
                 size: int | None = None, payload: bytes = b"abc") -> bytes:
    n = len(payload) if size is None else size
    return struct.pack("<4sHHIQI", magic, version, 41, flags, 9, n) + payload


@pytest.mark.parametrize(("length", "more", "data", "match"), [
    (28, 0, b"\x00" * 28, "magic"),
    (10, 0, b"\x89EKP" + b"\x00" * 6, "."),  # shorter than a frame header
    (AREA + 1, 0, b"", "over the"),
    (0xFFFFFFFF, 0, b"", "over the"),
    (27, 0, _frame_bytes(version=7), "version"),
    (27, 0, _frame_bytes(flags=0x80), "reserved flag"),
    (27, 0, _frame_bytes(size=2), "."),  # the frame says less than the chunk holds
    (27, 0, _frame_bytes(size=500), "."),  # ... or more
    (31, 1, _frame_bytes(payload=b"abcdefg"), "over 30 bytes"),  # chunked, over the limit
])
def test_recv_frame_refuses_hostile_chunks_typed_and_keeps_the_mailbox_in_step(
        length: int, more: int, data: bytes, match: str) -> None:
    mm, ring = _ring()
    box = ring.lanes[0].to_enclave
    _publish(mm, length, more, data)
    with pytest.raises(ProtocolError, match=match):
        box.recv_frame(30)
    assert not box.ready()  # the bad chunk was taken: the next message is read cleanly
    box.send_frame(41, 10, b"ok")
    assert box.recv_frame(30).payload == b"ok"


def test_recv_frame_returns_a_private_copy() -> None:
    mm, ring = _ring()
    box = ring.lanes[0].to_enclave
    box.send_frame(41, 1, b"secret-ish")
    frame = box.recv_frame(1 << 16)
    mm[HEADER_PAGE + 136 : HEADER_PAGE + 200] = b"\xff" * 64  # the peer rewrites the slot
    assert frame.payload == b"secret-ish" and frame.request_id == 1
