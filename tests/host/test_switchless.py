"""Switchless ecalls end to end: same results, ocalls and typed errors as the socket path,
fallback when the lane is busy, hostile lane traffic refused, manifest option measured."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclavekit.errors import EcallArgumentError, EcallError, ProtocolError
from enclavekit.host import VM, Enclave, build
from enclavekit.host.switchless import _NONE_RESULT, SwitchlessRing
from enclavekit.vm import protocol as p
from enclavekit.wire import FLAG_REPLY, decode_value, encode_value, pack_frame
from enclavekit.wire.ring import one_frame
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

APP = '''
from enclavekit.enclave import ecall, ocall


@ocall
def host_add(a: int, b: int) -> int: ...


@ecall
def add3(a: int) -> int:
    return host_add(a, 3)


@ecall
def boom(x: int) -> int:
    raise ValueError("bad " + str(x))


@ecall
def big(n: int) -> bytes:
    return b"x" * n


@ecall
def ping() -> None:
    return None


@ecall
def liar() -> int:
    return None  # against its declared result


@ecall
def maybe(flag: bool) -> int | None:
    return None if flag else 5
'''


def _app(root: Path, workers: int) -> Path:
    app = root / f"sw{workers}"
    app.mkdir()
    extra = f"switchless_workers = {workers}\n" if workers else ""
    (app / "enclave.toml").write_text('name = "sw"\nentry = "app.py"\nthreads = 2\n' + extra)
    (app / "app.py").write_text(APP)
    return app


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[tuple[Enclave, Enclave]]:
    key = session_signing_key()
    fast = build(_app(tmp_path, 1)).sign(key)
    plain = build(_app(tmp_path, 0)).sign(key)
    ocalls = {"host_add": lambda a, b: a + b}
    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, \
            vm.load(fast, ocalls=ocalls) as a, vm.load(plain, ocalls=ocalls) as b:
        yield a, b


def _published(enc: Enclave) -> int:
    ring = enc._switchless
    assert isinstance(ring, SwitchlessRing)
    box = ring.ring.lanes[0].to_enclave
    return int(box._q[box._seq])


def test_switchless_calls_match_the_socket_path(pair: tuple[Enclave, Enclave]) -> None:
    fast, plain = pair
    assert plain._switchless is None
    before = _published(fast)
    assert fast.ecalls.add3(4) == plain.ecalls.add3(4) == 7  # with an ocall inside
    assert _published(fast) > before  # the ECALL (and the ocall reply) went through the ring
    assert len(fast.ecalls.big(300_000)) == 300_000  # chunked over several mailbox areas
    errors = []
    for enc in pair:
        with pytest.raises(EcallError) as info:
            enc.ecalls.boom(2)
        errors.append(str(info.value))
    assert errors[0] == errors[1] == "ValueError: bad 2"


def test_a_busy_lane_falls_back_to_the_socket(pair: tuple[Enclave, Enclave]) -> None:
    fast, _ = pair
    assert isinstance(fast._switchless, SwitchlessRing)
    lock = fast._switchless._locks[0]
    before = _published(fast)
    with lock:  # another host thread holds the only lane
        assert fast.ecalls.add3(1) == 4
    assert _published(fast) == before


def test_hostile_lane_traffic_is_refused_typed(pair: tuple[Enclave, Enclave]) -> None:
    fast, _ = pair
    assert isinstance(fast._switchless, SwitchlessRing)
    lane = fast._switchless.ring.lanes[0]
    call = encode_value(p.Call("add3", b"\x00"), p.Call)
    n = fast._claim_id(pending=False)
    for _ in range(10):  # the ids the hostile frames below use are taken
        fast._claim_id(pending=False)
    for frame, match in [(b"garbage", "magic"),
                         (pack_frame(p.Msg.INTERFACE, n + 1, b""), "not served"),
                         (pack_frame(p.Msg.ECALL, n + 2, b"\xc1"), "ECALL"),
                         (pack_frame(p.Msg.ECALL, n + 2, call), "not above")]:  # replayed id
        lane.to_enclave.send(frame)
        reply = one_frame(lane.to_host.recv(1 << 20))
        assert reply.is_error
        info = p.rebuild_error(decode_value(reply.payload, p.ErrorInfo))
        assert isinstance(info, ProtocolError | EcallError)
        assert match in str(info) or match == "ECALL"
    assert fast.ecalls.add3(2) == 5  # the enclave keeps serving


def test_concurrent_callers_share_lanes_and_socket(pair: tuple[Enclave, Enclave]) -> None:
    fast, _ = pair
    out: dict[int, int] = {}

    def run(base: int) -> None:
        for i in range(30):
            out[base + i] = fast.ecalls.add3(base + i)

    threads = [threading.Thread(target=run, args=(k * 100,)) for k in range(2)]  # threads = 2 TCS
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == {k: k + 3 for k in out} and len(out) == 60


def test_switchless_workers_is_measured(tmp_path: Path) -> None:
    assert build(_app(tmp_path, 1)).sign(session_signing_key()).mrenclave != \
        build(_app(tmp_path, 0)).sign(session_signing_key()).mrenclave


def test_the_fast_paths_keep_the_typed_semantics(pair: tuple[Enclave, Enclave]) -> None:
    """No-argument calls, None results and their caches on both sides: the same outcome as
    the socket path every time, including refusals that must not be cached."""
    fast = pair[0]
    for enc in pair:
        for _ in range(3):
            assert enc.ecalls.ping() is None
            assert enc.ecalls.maybe(True) is None
            assert enc.ecalls.maybe(False) == 5
            with pytest.raises(EcallError, match="does not match its declared return type"):
                enc.ecalls.liar()
            with pytest.raises(EcallArgumentError):
                enc.ecalls.ping(1)  # refused on the host, before any lane is claimed
    before = _published(fast)
    fast.ecalls.ping()
    assert _published(fast) == before + 1  # went through the ring


def test_a_none_reply_is_decoded_against_the_signature(pair: tuple[Enclave, Enclave]) -> None:
    """A hostile enclave answering "None" for an ecall declared ``-> int`` is refused, even
    after another ecall's None reply was taken from the cache."""
    fast, _ = pair
    ring = fast._switchless
    assert isinstance(ring, SwitchlessRing)
    assert fast.ecalls.ping() is None  # "ping" decodes None: cached for ping only
    sig = fast._signature("big")

    class ForgedLane:  # answers every ECALL with "returned None"
        class to_enclave:
            @staticmethod
            def send_frame(msg: int, rid: int, payload: bytes, flags: int, check: object) -> None:
                sent.append(rid)

        class to_host:
            @staticmethod
            def take(limit: int, check: object) -> tuple[int, int, bytes, int, int]:
                return (p.Msg.ECALL, sent[-1], _NONE_RESULT, FLAG_REPLY, 1)

    sent: list[int] = []
    real = ring._free
    ring._free = [(0, ForgedLane, real[0][2])]  # type: ignore[list-item]
    try:
        with pytest.raises(EcallArgumentError):
            ring.ecall(fast, "big", sig, 1)
        with pytest.raises(EcallArgumentError):
            ring.ecall(fast, "big", sig, 1)  # and again: nothing was cached
        assert ring.ecall(fast, "ping", fast._signature("ping")) is None
        assert len(sent) == 3
    finally:
        ring._free = real
