"""RT-2 and RT-4 through the device: the host socket cannot ask for EREPORT / EGETKEY
(identity only ever comes from an enclave's own channel), replayed and garbage frames are
rejected, and launch integrity holds (EINIT refuses what the SIGSTRUCT does not cover)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from enclavekit.errors import InvalidMeasurement, InvalidSignature
from enclavekit.host.vm import VM
from enclavekit.sgx.signing import SigningKey
from enclavekit.sgx.structs import KeyRequest, TargetInfo
from enclavekit.vm import protocol as p
from enclavekit.wire import FLAG_REPLY, Frame, FrameReader, decode_value, encode_value, pack_frame
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server, signed_image


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return session_signing_key()


def exchange(sock: socket.socket, data: bytes) -> Frame:
    sock.sendall(data)
    reader = FrameReader()
    while True:
        chunk = sock.recv(65536)
        assert chunk, "the device closed without a reply"
        frames = reader.feed(chunk)
        if frames:
            return frames[0]


def refusal(frame: Frame) -> p.ErrorInfo:
    assert frame.is_error
    return decode_value(frame.payload, p.ErrorInfo)


def test_host_cannot_request_ereport_or_egetkey(tmp_path: Path) -> None:
    report_req = encode_value(p.EReportRequest(TargetInfo().to_bytes(), bytes(64)),
                              p.EReportRequest)
    key_req = encode_value(p.EGetKeyRequest(KeyRequest().to_bytes()), p.EGetKeyRequest)
    with device_server(tmp_path) as (_, path, _store):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        for rid, (msg, payload) in enumerate([(p.Msg.EREPORT, report_req),
                                               (p.Msg.EGETKEY, key_req),
                                               (p.Msg.BOOT, b"\x80"), (999, b"\x80")], 1):
            info = refusal(exchange(sock, pack_frame(msg, rid, payload)))
            assert info.type == "ProtocolError"
            assert "not served on the device socket" in info.message
        # the connection still serves what a host may ask
        ok = exchange(sock, pack_frame(p.Msg.HELLO, 10, encode_value(p.Hello(), p.Hello)))
        assert not ok.is_error and decode_value(ok.payload, p.HelloReply).vm == "testvm"
        sock.close()


def test_replayed_and_garbage_frames_are_rejected(tmp_path: Path) -> None:
    hello = pack_frame(p.Msg.HELLO, 5, encode_value(p.Hello(), p.Hello))
    with device_server(tmp_path) as (_, path, _store):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        assert not exchange(sock, hello).is_error
        info = refusal(exchange(sock, hello))  # the same frame again
        assert info.type == "ProtocolError" and "replayed" in info.message
        forged = pack_frame(p.Msg.STATUS, 9, encode_value(p.Empty(), p.Empty), flags=FLAG_REPLY)
        assert "reply frame" in refusal(exchange(sock, forged)).message
        bad_payload = pack_frame(p.Msg.STATUS, 11, b"\xc1")
        assert refusal(exchange(sock, bad_payload)).type == "ProtocolError"
        info = refusal(exchange(sock, b"GET / HTTP/1.1\r\n\r\n" + bytes(16)))
        assert info.type == "ProtocolError" and "magic" in info.message
        with contextlib.suppress(ConnectionResetError):  # reset: our unread bytes
            assert sock.recv(1) == b""  # out of step: the device closed the stream
        sock.close()
        with VM("testvm", path, store=_store) as vm:  # others are still served
            assert vm.status().name == "testvm"


def test_einit_refuses_a_sigstruct_that_does_not_cover_the_image(
        tmp_path: Path, key: SigningKey) -> None:
    image = signed_image(tmp_path, key)
    other = signed_image(tmp_path, key, "other", extra="\nX = 1\n")
    assert image.sigstruct is not None and other.sigstruct is not None
    raw = image.to_bytes()
    swapped = raw[:-1808] + other.sigstruct.to_bytes()  # a valid SIGSTRUCT for another image
    corrupt = bytearray(raw)
    corrupt[-1808 + 200] ^= 0xFF  # a byte of the RSA signature
    with device_server(tmp_path) as (device, path, store), VM("testvm", path, store=store) as vm:
        free = device.epc.cpu.free_pages()
        with pytest.raises(InvalidMeasurement, match="EINIT"):
            vm.load_bytes(swapped)
        with pytest.raises(InvalidSignature, match="EINIT"):
            vm.load_bytes(bytes(corrupt))
        assert device.epc.cpu.free_pages() == free and not device.enclaves
