"""The dispatcher's shortcuts (no arguments to decode, a cached "returned None" reply) give
exactly the outcomes of the general path, hostile argument bytes included."""

from __future__ import annotations

import pytest

from enclavekit.enclave.dispatch import Registry
from enclavekit.errors import EcallArgumentError, EcallError, ProtocolError
from enclavekit.wire import CallSignature

from ._harness import dispatcher


def make() -> Registry:
    reg = Registry()

    @reg.ecall
    def ping() -> None:
        return None

    @reg.ecall
    def liar() -> int:
        return None  # type: ignore[return-value]

    @reg.ecall
    def opt(x: int = 1) -> int | None:
        return None if x == 1 else x

    return reg


def test_no_argument_calls_and_none_replies_repeat_identically() -> None:
    reg = make()
    opt = CallSignature.from_function(reg.ecalls["opt"][1])
    with dispatcher(reg) as (host, _):
        for _ in range(3):
            host.send_ecall("ping", b"\x80")
            assert host.result(host.recv()) == b"\xc0"
            host.send_ecall("opt", opt.encode_args(()))  # the default applies: None
            assert opt.decode_result(host.result(host.recv())) is None
            host.send_ecall("opt", opt.encode_args((7,)))
            assert opt.decode_result(host.result(host.recv())) == 7
            host.send_ecall("liar", b"\x80")  # None against "-> int": refused every time
            with pytest.raises(EcallError, match="does not match its declared return type"):
                host.result(host.recv())


@pytest.mark.parametrize("args", [b"\x81\xa1x\x01", b"\x90", b"\xc1", b"\x80\x80", b""])
def test_a_no_argument_ecall_refuses_any_other_argument_bytes(args: bytes) -> None:
    with dispatcher(make()) as (host, _):
        host.send_ecall("ping", args)
        with pytest.raises((EcallArgumentError, EcallError, ProtocolError)):
            host.result(host.recv())
        host.send_ecall("ping", b"\x80")  # and keeps serving
        assert host.result(host.recv()) == b"\xc0"
