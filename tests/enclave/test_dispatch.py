"""The dispatcher: typed ecalls, INTERFACE schemas, errors, TCS bound, heap exhaustion."""

from __future__ import annotations

import dataclasses

import pytest

from enclavekit.enclave.dispatch import Registry
from enclavekit.errors import EcallError, IntegrityError, ProtocolError
from enclavekit.vm.protocol import InterfaceReply, Msg
from enclavekit.wire import CallSignature, decode_value, send_frame
from enclavekit.wire.schema import signature_from_schema

from ._harness import dispatcher


@dataclasses.dataclass
class Rec:
    a: int
    b: str


def make() -> tuple[Registry, CallSignature]:
    reg = Registry()

    @reg.ecall
    def add(x: int, y: int = 2) -> Rec:
        return Rec(x + y, "sum")

    @reg.ecall
    def boom(kind: str) -> None:
        if kind == "mem":
            raise MemoryError
        if kind == "typed":
            raise IntegrityError("bad seal")
        raise ValueError("top secret 42")

    return reg, CallSignature.from_function(add)


def test_ecall_round_trip_and_interface() -> None:
    reg, sig = make()
    with dispatcher(reg) as (host, _):
        host.send_ecall("add", sig.encode_args((40,)))
        assert sig.decode_result(host.result(host.recv())) == Rec(42, "sum")
        send_frame(host.sock, Msg.INTERFACE, 99, b"\x80")
        reply = decode_value(host.recv().payload, InterfaceReply)
        names = sorted(signature_from_schema(s).name for s in reply.ecalls)
        assert names == ["add", "boom"]


@pytest.mark.parametrize("debug", [False, True])
def test_exceptions_are_typed_and_traceback_only_in_debug(debug: bool) -> None:
    reg, _ = make()
    boom = CallSignature.from_function(reg.ecalls["boom"][1])
    with dispatcher(reg, debug=debug) as (host, _):
        host.send_ecall("boom", boom.encode_args(("value",)))
        with pytest.raises(EcallError) as info:
            host.result(host.recv())
        assert str(info.value).startswith("ValueError: top secret 42")
        assert ("Traceback" in str(info.value)) is debug
        host.send_ecall("boom", boom.encode_args(("typed",)))
        with pytest.raises(IntegrityError, match="bad seal"):
            host.result(host.recv())
        host.send_ecall("boom", boom.encode_args(("mem",)))
        with pytest.raises(EcallError, match=r"enclave heap exhausted \(heap_size 1048576\)"):
            host.result(host.recv())
        # still serving
        add = CallSignature.from_function(reg.ecalls["add"][1])
        host.send_ecall("add", add.encode_args((1, 1)))
        assert add.decode_result(host.result(host.recv())) == Rec(2, "sum")


def test_hostile_arguments_get_typed_refusals_and_serving_continues() -> None:
    reg, sig = make()
    with dispatcher(reg) as (host, _):
        for bad in (b"\x81\xa1x\xc3", b"\xc1", b"\x81\xa1z\x01", b"\x81\xa1x\xcb" + b"\0" * 8):
            host.send_ecall("add", bad)
            with pytest.raises((EcallError, ProtocolError)):
                host.result(host.recv())
        host.send_ecall("add", sig.encode_args((1,)))
        assert sig.decode_result(host.result(host.recv())) == Rec(3, "sum")


def test_declaring_private_names_is_refused() -> None:
    reg = Registry()
    with pytest.raises(TypeError, match="not starting with '_'"):
        @reg.ecall
        def _helper() -> None: ...
    with pytest.raises(TypeError, match="hint"):
        @reg.ecall
        def nohint(x) -> None: ...  # type: ignore[no-untyped-def]
