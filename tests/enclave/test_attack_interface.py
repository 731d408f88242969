"""IF-1, IF-7, IF-8, IF-10, IF-11, IF-12 at the runtime level: each attack, its refusal."""

from __future__ import annotations

import threading

import pytest

from enclavekit.enclave.dispatch import Registry
from enclavekit.errors import EcallArgumentError, EcallError, UnknownEcall
from enclavekit.vm.protocol import Call, Msg
from enclavekit.wire import CallSignature, decode_value, encode_value

from ._harness import dispatcher


def interface() -> tuple[Registry, list[str]]:
    reg = Registry()
    calls: list[str] = []

    @reg.ocall
    def read_count(n: int) -> int: ...

    @reg.ecall
    def secret_op(n: int) -> int:
        calls.append("secret_op")
        got = read_count(n)
        if got > n or got < 0:
            raise ValueError("count out of range")
        return got

    @reg.ecall
    def ping() -> str:
        calls.append("ping")
        return "pong"

    return reg, calls


@pytest.mark.parametrize("name", ["__init__", "_helper", "os.system", "ping.__globals__",
                                  "pіng", "PING", "ping ", "read_count", "-1", str(2**63), ""])
def test_if1_undeclared_names_refused_before_any_code_runs(name: str) -> None:
    reg, calls = interface()
    with dispatcher(reg) as (host, _):
        host.send_ecall(name, b"\x80")
        with pytest.raises(UnknownEcall, match="no ecall named"):
            host.result(host.recv())
    assert calls == []


def _ocall_frame(host, rid_expected_name: str = "read_count"):  # type: ignore[no-untyped-def]
    frame = host.recv()
    assert frame.msg_type == Msg.OCALL and not frame.is_reply
    assert decode_value(frame.payload, Call).name == rid_expected_name
    return frame


@pytest.mark.parametrize("hostile", [True, "3", None, 2**64 - 1, b"\x01"])
def test_if7_hostile_ocall_results_are_refused_inside(hostile: object) -> None:
    reg, _ = interface()
    sig = CallSignature.from_function(reg.ecalls["secret_op"][1])
    with dispatcher(reg) as (host, _):
        host.send_ecall("secret_op", sig.encode_args((5,)))
        oc = _ocall_frame(host)
        import msgpack
        host.reply_ocall(oc.request_id, msgpack.packb(hostile))
        reply = host.recv()
        with pytest.raises(EcallError):
            host.result(reply)
        if type(hostile) is not int:
            with pytest.raises(EcallArgumentError):
                host.result(reply)


def test_if8_production_errors_carry_no_traceback_or_locals() -> None:
    reg = Registry()

    @reg.ecall
    def leak() -> int:
        key = "SECRET-KEY-MATERIAL"  # noqa: F841
        return "not an int" + "SECRET-KEY-MATERIAL"  # type: ignore[return-value]

    with dispatcher(reg) as (host, _):
        host.send_ecall("leak", b"\x80")
        with pytest.raises(EcallError) as info:
            host.result(host.recv())
    assert "SECRET" not in str(info.value) and "Traceback" not in str(info.value)


def test_if11_forged_ocall_replies_are_dropped_and_the_real_one_wins() -> None:
    reg, _ = interface()
    sig = CallSignature.from_function(reg.ecalls["secret_op"][1])
    with dispatcher(reg) as (host, disp):
        host.reply_ocall(12345, encode_value(1, int))  # no ocall pending
        host.send_ecall("secret_op", sig.encode_args((5,)))
        oc = _ocall_frame(host)
        host.reply_ocall(oc.request_id + 1, encode_value(0, int))  # wrong id
        host.reply_ocall(oc.request_id, encode_value(4, int))  # the real reply
        assert sig.decode_result(host.result(host.recv())) == 4
        host.reply_ocall(oc.request_id, encode_value(3, int))  # sent twice
        host.send_ecall("ping", b"\x80")
        assert decode_value(host.result(host.recv()), str) == "pong"
        assert disp.refused_replies == 3


def test_if10_if12_ecall_during_held_ocall_refused_not_queued() -> None:
    reg, calls = interface()
    sig = CallSignature.from_function(reg.ecalls["secret_op"][1])
    with dispatcher(reg, threads=1) as (host, _):
        host.send_ecall("secret_op", sig.encode_args((5,)))
        oc = _ocall_frame(host)  # host now holds the ocall open
        for name in ("secret_op", "ping"):
            host.send_ecall(name, sig.encode_args((5,)) if name == "secret_op" else b"\x80")
            with pytest.raises(EcallError, match="all 1 TCS are busy"):
                host.result(host.recv())
        host.reply_ocall(oc.request_id, encode_value(5, int))
        assert sig.decode_result(host.result(host.recv())) == 5
    assert calls == ["secret_op"]


def test_ocall_outside_an_ecall_is_refused() -> None:
    reg, _ = interface()
    stub = next(iter([reg.ecalls["secret_op"][1]]))
    with pytest.raises(EcallError, match="only be made while an ecall"):
        stub(1)
    assert threading.active_count() >= 1
