"""Local attestation between two enclaves (RT-7), over a fake device backed by a real Processor.

Each "enclave" is an initialised enclave in one ``sgx.Processor``; a fake device thread
answers its EREPORT / EGETKEY on a private socketpair exactly as the device service does
(identity from the channel, never from the request). The trusted API's channel is
switched between the two enclaves for each step, as if each step ran in its own process.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from enclavekit.enclave import api
from enclavekit.enclave.local import KeyExchange, LocalAttestation, PeerPolicy
from enclavekit.errors import IntegrityError, PolicyError
from enclavekit.sgx.processor import Processor
from enclavekit.sgx.structs import KeyRequest, TargetInfo
from enclavekit.vm.protocol import (
    Data,
    EGetKeyRequest,
    EReportRequest,
    Msg,
    error_info,
)
from enclavekit.wire import (
    FLAG_ERROR,
    FLAG_REPLY,
    decode_value,
    encode_value,
    recv_frame,
    send_frame,
)
from tests.enclave._harness import acting_as, boot_for
from tests.sgx._cpu import cpu, enclave, signed
from tests.sgx.conftest import session_signing_key


def _serve(proc: Processor, secs_page: int, sock: socket.socket) -> None:
    while (frame := recv_frame(sock)) is not None:
        try:
            if frame.msg_type == Msg.EREPORT:
                req = decode_value(frame.payload, EReportRequest)
                out = proc.ereport(secs_page, TargetInfo.from_bytes(req.targetinfo),
                                   req.reportdata).to_bytes()
            elif frame.msg_type == Msg.EGETKEY:
                kreq = decode_value(frame.payload, EGetKeyRequest)
                out = proc.egetkey(secs_page, KeyRequest.from_bytes(kreq.keyrequest))
            else:
                raise ValueError(f"unexpected message {frame.msg_type}")
            send_frame(sock, frame.msg_type, frame.request_id, encode_value(Data(out), Data),
                       flags=FLAG_REPLY)
        except Exception as exc:
            send_frame(sock, frame.msg_type, frame.request_id,
                       encode_value(error_info(exc), type(error_info(exc))),
                       flags=FLAG_REPLY | FLAG_ERROR)


class FakeEnclave:
    """One initialised enclave and the private channel its trusted API would use."""

    def __init__(self, proc: Processor, npages: int, *, debug: bool) -> None:
        self.secs = enclave(proc, npages, debug=debug)
        proc.einit(self.secs, signed(npages, session_signing_key()))  # type: ignore[arg-type]
        ident = proc.identity(self.secs)
        self.mrenclave = ident.mrenclave
        self.mrsigner = ident.mrsigner
        ours, theirs = socket.socketpair()
        self._sock, self._device = ours, theirs
        self._thread = threading.Thread(target=_serve, args=(proc, self.secs, theirs),
                                        daemon=True)
        self._thread.start()
        self.channel = api._Channel(ours, boot_for(proc, self.secs, debug=debug))

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run the block as this enclave (its trusted API talks to its own device channel)."""
        with acting_as(self.channel):
            yield

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)
        self._device.close()


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, FakeEnclave]]:
    proc = cpu(256)
    enclaves = {
        "a": FakeEnclave(proc, 2, debug=False),
        "b": FakeEnclave(proc, 3, debug=False),
        "c": FakeEnclave(proc, 4, debug=False),
        "dbg": FakeEnclave(proc, 2, debug=True),  # same pages as "a": same MRENCLAVE, DEBUG set
    }
    yield enclaves
    for e in enclaves.values():
        e.close()


def handshake(x: FakeEnclave, y: FakeEnclave, px: PeerPolicy, py: PeerPolicy) -> tuple[
        tuple[bytes, api.ReportInfo], tuple[bytes, api.ReportInfo]]:
    sx, sy = LocalAttestation(px, b"demo"), LocalAttestation(py, b"demo")
    with x.active():
        hello_x = sx.start()
    with y.active():
        hello_y = sy.start()
    with x.active():
        offer_x = sx.respond(hello_y)
    with y.active():
        offer_y = sy.respond(hello_x)
    with x.active():
        rx = sx.finish(offer_y)
    with y.active():
        ry = sy.finish(offer_x)
    return rx, ry


def test_two_enclaves_derive_the_same_key_and_learn_each_other(
        world: dict[str, FakeEnclave]) -> None:
    a, b = world["a"], world["b"]
    (ka, peer_b), (kb, peer_a) = handshake(
        a, b, PeerPolicy(mrenclave=b.mrenclave), PeerPolicy(mrenclave=a.mrenclave))
    assert ka == kb and len(ka) == 32
    assert peer_b.mrenclave == b.mrenclave and peer_a.mrenclave == a.mrenclave
    assert not peer_a.debug and not peer_b.debug
    (ka2, _), (kb2, _) = handshake(
        a, b, PeerPolicy(mrenclave=b.mrenclave), PeerPolicy(mrenclave=a.mrenclave))
    assert ka2 == kb2 != ka  # fresh keys every session


def test_a_debug_build_with_the_same_mrenclave_is_refused(world: dict[str, FakeEnclave]) -> None:
    a, b, dbg = world["a"], world["b"], world["dbg"]
    assert dbg.mrenclave == a.mrenclave  # the DEBUG bit is not measured (RT-8)
    with pytest.raises(PolicyError, match="DEBUG build"):
        handshake(b, dbg, PeerPolicy(mrenclave=a.mrenclave), PeerPolicy())


def test_wrong_mrenclave_is_refused(world: dict[str, FakeEnclave]) -> None:
    a, b, c = world["a"], world["b"], world["c"]
    with pytest.raises(PolicyError, match="MRENCLAVE"):
        handshake(a, c, PeerPolicy(mrenclave=b.mrenclave), PeerPolicy())


def _offer_for(x: FakeEnclave, y: FakeEnclave) -> tuple[LocalAttestation, bytes]:
    """y's session after x answered y's hello: (y's session, x's offer)."""
    sx, sy = LocalAttestation(PeerPolicy()), LocalAttestation(PeerPolicy())
    with y.active():
        hello_y = sy.start()
    with x.active():
        hello_x = sx.start()
        offer_x = sx.respond(hello_y)
    with y.active():
        sy.respond(hello_x)
    return sy, offer_x


@pytest.mark.parametrize("offset", [0, 64, 200, 320, 383, 384, 416, 431, 432, 463])
def test_tampered_offer_is_refused(world: dict[str, FakeEnclave], offset: int) -> None:
    sy, offer = _offer_for(world["a"], world["b"])
    bad = bytearray(offer)
    bad[offset] ^= 0x01
    with world["b"].active(), pytest.raises(IntegrityError):
        sy.finish(bytes(bad))


def test_replayed_report_from_an_older_session_is_refused(world: dict[str, FakeEnclave]) -> None:
    a, b = world["a"], world["b"]
    _, old_offer = _offer_for(a, b)
    fresh, _ = _offer_for(a, b)  # a new session of b, with a new nonce
    with b.active(), pytest.raises(IntegrityError, match="replayed or altered"):
        fresh.finish(old_offer)


def test_report_targeted_at_another_enclave_is_refused(world: dict[str, FakeEnclave]) -> None:
    a, b, c = world["a"], world["b"], world["c"]
    sc, sb = LocalAttestation(PeerPolicy()), LocalAttestation(PeerPolicy())
    with c.active():
        hello_c = sc.start()
    with b.active():
        hello_b = sb.start()
        sb.respond(hello_b)
    sa = LocalAttestation(PeerPolicy())
    with a.active():
        offer_for_c = sa.respond(hello_c)  # made for C, shown to B
    with b.active(), pytest.raises(IntegrityError, match="MAC does not verify"):
        sb.finish(offer_for_c)


def test_key_exchange_refuses_a_replayed_offer(world: dict[str, FakeEnclave]) -> None:
    a, b = world["a"], world["b"]
    xa, xb = KeyExchange(PeerPolicy(mrenclave=b.mrenclave)), KeyExchange(PeerPolicy())
    with a.active():
        offer_a = xa.offer(_target(b))
    with b.active():
        offer_b = xb.offer(_target(a))
        kb = xb.finish(offer_a)
    with a.active():
        ka = xa.finish(offer_b)
    assert ka == kb
    again = KeyExchange(PeerPolicy())
    with b.active():
        again.offer(_target(a))
        with pytest.raises(IntegrityError, match="replayed nonce"):
            again.finish(offer_a)


def _target(x: FakeEnclave) -> bytes:
    with x.active():
        return api.target_info()
