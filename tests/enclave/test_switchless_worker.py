"""A switchless worker served in-process over a ring in private memory: the one-chunk fast
path, the decoded-call cache and hostile lane content (always a typed error reply, the
worker keeps serving, nothing refused is remembered)."""

from __future__ import annotations

import mmap
import socket
import threading
from collections.abc import Iterator

import pytest

from enclavekit.enclave.dispatch import Dispatcher, Registry
from enclavekit.enclave.switchless import _CACHED_CALLS, Worker
from enclavekit.errors import EcallArgumentError, ProtocolError, UnknownEcall
from enclavekit.vm import protocol as p
from enclavekit.wire import FLAG_ERROR, FLAG_REPLY, Frame, decode_value, encode_value, pack_frame
from enclavekit.wire.ring import Ring, ring_size


@pytest.fixture()
def served() -> Iterator[tuple[Worker, Ring]]:
    reg = Registry()

    @reg.ecall
    def ping() -> None:
        return None

    @reg.ecall
    def inc(x: int) -> int:
        return x + 1

    a, b = socket.socketpair()
    disp = Dispatcher(b, threads=1, debug=False, registry=reg)
    ring = Ring.format(memoryview(mmap.mmap(-1, ring_size(1))), 1)
    yield Worker(disp, ring.lanes[0]), ring
    a.close()
    b.close()


def _call(name: str, args: bytes) -> bytes:
    return encode_value(p.Call(name, args), p.Call)


def _ask(worker: Worker, ring: Ring, rid: int, payload: bytes) -> Frame:
    ring.lanes[0].to_enclave.send_frame(p.Msg.ECALL, rid, payload)
    worker.serve_one()
    return ring.lanes[0].to_host.recv_frame(1 << 20)


def _error(frame: Frame) -> Exception:
    assert frame.flags == FLAG_REPLY | FLAG_ERROR
    return p.rebuild_error(decode_value(frame.payload, p.ErrorInfo))


def test_calls_are_answered_and_small_payloads_looked_up_once(served: tuple[Worker, Ring]) -> None:
    worker, ring = served
    assert not worker.calls
    for rid in range(1, 4):
        reply = _ask(worker, ring, rid, _call("ping", b"\x80"))
        assert (reply.request_id, reply.flags) == (rid, FLAG_REPLY)
        assert decode_value(reply.payload, p.CallResult).result == b"\xc0"
    assert list(worker.calls) == [_call("ping", b"\x80")]
    reply = _ask(worker, ring, 4, _call("inc", b"\x81\xa1x\x29"))
    assert decode_value(reply.payload, p.CallResult).result == b"\x2a"


def test_hostile_payloads_get_typed_errors_and_are_not_remembered(
        served: tuple[Worker, Ring]) -> None:
    worker, ring = served
    assert isinstance(_error(_ask(worker, ring, 1, b"\xc1")), ProtocolError)  # not msgpack
    assert isinstance(_error(_ask(worker, ring, 2, b"\x92\x01\x02")), EcallArgumentError)
    for rid in (3, 4):  # decodes, but names nothing: refused each time
        assert isinstance(_error(_ask(worker, ring, rid, _call("nope", b"\x80"))), UnknownEcall)
    assert not worker.calls  # only a payload that names a declared ecall is kept
    err = _error(_ask(worker, ring, 4, _call("ping", b"\x80")))  # replayed id, cached payload
    assert "not above" in str(err)
    big = _call("ping", b"\x80" + b"\x00" * 300)  # over the cached size: never kept
    assert _error(_ask(worker, ring, 5, big))
    assert big not in worker.calls
    serving = threading.Thread(target=worker.serve_one)  # a chunked message needs the
    serving.start()  # consumer to take each chunk while the producer sends
    ring.lanes[0].to_enclave.send(pack_frame(p.Msg.ECALL, 6, b"\x00" * 70_000))
    serving.join(10)
    assert _error(ring.lanes[0].to_host.recv_frame(1 << 20))
    assert _ask(worker, ring, 7, _call("ping", b"\x80")).flags == FLAG_REPLY  # still serving


def test_the_cache_is_bounded(served: tuple[Worker, Ring]) -> None:
    worker, ring = served
    for rid in range(1, _CACHED_CALLS + 10):
        _ask(worker, ring, rid, _call("inc", encode_value({"x": rid}, dict[str, int])))
    assert len(worker.calls) == _CACHED_CALLS
