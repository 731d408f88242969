"""Device-protocol frames: the header table, incremental reading, sockets, hostile headers."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import ProtocolError
from enclavekit.wire.frame import (
    FLAG_ERROR,
    FLAG_REPLY,
    HEADER_SIZE,
    Frame,
    FrameReader,
    pack_frame,
    read_frame,
    recv_frame,
    send_frame,
)

# The header, typed from the module docstring's table: magic, u16 version, u16 type,
# u32 flags, u64 request id, u32 length, all little-endian.
KNOWN = bytes.fromhex("89454b50" "0100" "0201" "01000000" "8877665544332211" "02000000") + b"hi"


def header(*, magic: bytes = b"\x89EKP", version: int = 1, msg_type: int = 1, flags: int = 0,
           request_id: int = 1, length: int = 0) -> bytes:
    return magic + struct.pack("<HHIQI", version, msg_type, flags, request_id, length)


def test_header_layout_matches_the_table() -> None:
    assert HEADER_SIZE == 24
    assert pack_frame(0x0102, 0x1122334455667788, b"hi", flags=FLAG_REPLY) == KNOWN
    assert FrameReader().feed(KNOWN) == [Frame(0x0102, 0x1122334455667788, b"hi", FLAG_REPLY)]


def test_reply_and_error_flags() -> None:
    (frame,) = FrameReader().feed(pack_frame(3, 9, b"", flags=FLAG_REPLY | FLAG_ERROR))
    assert frame.is_reply and frame.is_error and frame.payload == b""
    (frame,) = FrameReader().feed(pack_frame(3, 9, b"x"))
    assert not frame.is_reply and not frame.is_error


FRAMES = st.lists(
    st.builds(Frame, st.integers(0, 2**16 - 1), st.integers(0, 2**64 - 1),
              st.binary(max_size=300), st.sampled_from([0, FLAG_REPLY, FLAG_REPLY | FLAG_ERROR]),
              st.just(1)),
    max_size=6,
)


@given(FRAMES, st.lists(st.integers(1, 64), min_size=1))
def test_any_split_of_a_stream_yields_the_same_frames(frames: list[Frame], cuts: list[int]
                                                      ) -> None:
    stream = b"".join(pack_frame(f.msg_type, f.request_id, f.payload, flags=f.flags)
                      for f in frames)
    reader, got, pos, i = FrameReader(), [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += reader.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
    assert got == frames
    assert reader.buffered == 0
    reader.close()


def test_bad_magic_is_refused_from_the_first_byte() -> None:
    with pytest.raises(ProtocolError, match=r"magic 47 \(expected 89454b50\)"):
        FrameReader().feed(b"G")  # an HTTP client, before it sends a whole header
    with pytest.raises(ProtocolError, match="magic"):
        FrameReader().feed(header(magic=b"\x89EKQ"))


def test_unknown_version_and_reserved_flags_are_refused() -> None:
    with pytest.raises(ProtocolError, match=r"protocol version 2 is not supported \(this side "
                                            r"speaks 1\)"):
        FrameReader().feed(header(version=2))
    with pytest.raises(ProtocolError, match="reserved flag bits 0x80000000"):
        FrameReader().feed(header(flags=0x80000001))
    assert FrameReader(versions={1, 2}).feed(header(version=2)) == [Frame(1, 1, b"", 0, 2)]


def test_oversized_length_is_refused_with_the_header_alone() -> None:
    reader = FrameReader(max_payload=1024)
    with pytest.raises(ProtocolError, match="declares a 4294967295-byte payload, over the "
                                            "1024-byte limit"):
        reader.feed(header(length=2**32 - 1))
    assert reader.buffered == 0
    assert FrameReader(max_payload=1024).feed(header(length=1024) + bytes(1024))


def test_reader_stays_refused_after_a_fault() -> None:
    reader = FrameReader()
    with pytest.raises(ProtocolError):
        reader.feed(header(version=9))
    with pytest.raises(ProtocolError, match="out of step: protocol version 9"):
        reader.feed(pack_frame(1, 1, b"fine"))


def test_close_inside_a_frame_is_refused() -> None:
    reader = FrameReader()
    reader.feed(KNOWN[:10])
    with pytest.raises(ProtocolError, match="inside a frame header: 10 of 24 bytes"):
        reader.close()
    reader = FrameReader()
    reader.feed(KNOWN[:-1])
    with pytest.raises(ProtocolError, match="inside a frame payload: 25 of 26 bytes"):
        reader.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"msg_type": 2**16}, "message type 65536"),
        ({"msg_type": -1}, "message type -1"),
        ({"request_id": 2**64}, "request id"),
        ({"flags": 0x4}, "flags 0x4"),
        ({"payload": bytes(11), "max_payload": 10}, "over the 10-byte limit"),
    ],
)
def test_pack_refuses_what_a_reader_would(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"msg_type": 1, "request_id": 1, "payload": b""} | kwargs
    with pytest.raises(ProtocolError, match=message):
        pack_frame(**args)  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_fuzz_reader_gives_frames_or_protocol_errors(data: bytes) -> None:
    reader = FrameReader(max_payload=256)
    try:
        frames = reader.feed(data)
        reader.close()
    except ProtocolError:
        return
    assert all(type(f.payload) is bytes and len(f.payload) <= 256 for f in frames)


# --------------------------------------------------------------------------- sockets


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(10)
    b.settimeout(10)
    yield a, b  # type: ignore[misc]
    a.close()
    b.close()


def test_socket_round_trip_including_a_large_payload(pair: tuple[socket.socket, socket.socket]
                                                     ) -> None:
    a, b = pair
    big = bytes(range(256)) * 8192  # 2 MiB: several partial sends and receives
    sender = threading.Thread(target=lambda: (send_frame(a, 7, 1, b"small"),
                                              send_frame(a, 8, 2, big, flags=FLAG_REPLY)))
    sender.start()
    first, second = recv_frame(b), recv_frame(b)
    sender.join()
    assert first == Frame(7, 1, b"small")
    assert second is not None and second.payload == big and second.is_reply
    a.close()
    assert recv_frame(b) is None  # clean EOF between frames


def test_short_writes_are_reassembled(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    data = pack_frame(5, 99, b"trickle")

    def trickle() -> None:
        for i in range(len(data)):
            a.send(data[i : i + 1])

    t = threading.Thread(target=trickle)
    t.start()
    assert recv_frame(b) == Frame(5, 99, b"trickle")
    t.join()


class OneByteSocket:
    """A peer that hands over one byte per receive call: every read is short."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0

    def recv(self, n: int) -> bytes:
        self.calls += 1
        chunk, self.data = self.data[:1], self.data[1:]
        return chunk

    def recv_into(self, view: memoryview) -> int:
        chunk = self.recv(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)


def test_every_read_short_still_yields_the_frame() -> None:
    data = pack_frame(6, 2**64 - 1, b"one byte at a time") * 2
    sock = OneByteSocket(data)
    got = [recv_frame(sock), recv_frame(sock), recv_frame(sock)]  # type: ignore[arg-type]
    assert got == [Frame(6, 2**64 - 1, b"one byte at a time")] * 2 + [None]
    assert sock.calls == len(data) + 1


@pytest.mark.parametrize(("cut", "where"), [(7, "header: 7 of 24"), (30, "payload: 6 of 10")])
def test_eof_inside_a_frame_is_a_protocol_error(pair: tuple[socket.socket, socket.socket],
                                                cut: int, where: str) -> None:
    a, b = pair
    a.sendall(pack_frame(1, 1, b"0123456789")[:cut])
    a.close()
    with pytest.raises(ProtocolError, match=f"closed inside a frame {where} bytes"):
        recv_frame(b)


def test_recv_refuses_oversized_header_before_reading_payload(
    pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    a.sendall(header(length=2**31))
    with pytest.raises(ProtocolError, match="over the"):
        recv_frame(b, max_payload=1 << 20)


def test_asyncio_read_frame() -> None:
    async def scenario() -> list[Frame | str | None]:
        reader = asyncio.StreamReader()
        reader.feed_data(pack_frame(4, 4, b"async") + KNOWN[:5])
        reader.feed_eof()
        out: list[Frame | str | None] = [await read_frame(reader)]
        try:
            await read_frame(reader)
        except ProtocolError as exc:
            out.append(str(exc))
        empty = asyncio.StreamReader()
        empty.feed_eof()
        out.append(await read_frame(empty))
        return out

    first, error, eof = asyncio.run(scenario())
    assert first == Frame(4, 4, b"async")
    assert error == "connection closed inside a frame header: 5 of 24 bytes arrived"
    assert eof is None
