"""``enclavekit.enclave.get_quote`` in a real enclave, and a hostile host around it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from enclavekit.dcap.ecdsa import public_key_from_raw, verify_raw
from enclavekit.dcap.quote import Quote
from enclavekit.errors import EcallError, EnclaveKitError, InvalidStructure, QuotingError
from enclavekit.host import VM, Enclave, build, quoting
from enclavekit.wire import CallSignature
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

APP = '''
from enclavekit.enclave import ecall, get_quote, identity, report


@ecall
def quote(data: bytes, version: int) -> bytes:
    return get_quote(data, version=version)


@ecall
def report_for(target: bytes, data: bytes) -> bytes:
    return report(target, data)


@ecall
def mrenclave() -> bytes:
    return identity().mrenclave
'''


@pytest.fixture(scope="module")
def enclave(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Enclave, VM]]:
    tmp = tmp_path_factory.mktemp("getquote")
    app = tmp / "app"
    app.mkdir()
    (app / "enclave.toml").write_text('name = "quoted"\nentry = "app.py"\ndebug = false\n'
                                      'heap_size = "256K"\nstack_size = "64K"\nthreads = 2\n')
    (app / "app.py").write_text(APP)
    image = build(app).sign(session_signing_key())
    with device_server(tmp, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, vm.load(image) as enc:
        yield enc, vm


@pytest.mark.parametrize("version", [3, 4])
def test_get_quote_quotes_this_enclave_with_its_report_data(
        enclave: tuple[Enclave, VM], version: int) -> None:
    enc, _ = enclave
    nonce = bytes(range(64))
    q = Quote.parse(enc.ecalls.quote(nonce, version))
    assert q.version == version
    assert q.body.reportdata == nonce
    assert q.body.mrenclave == enc.mrenclave == enc.ecalls.mrenclave()
    assert q.body.mrsigner == enc.mrsigner
    assert verify_raw(public_key_from_raw(q.attestation_key), q.signature, q.signed_bytes())
    short = Quote.parse(enc.ecalls.quote(b"abc", version))
    assert short.body.reportdata == b"abc".ljust(64, b"\0")


def test_bad_arguments_are_typed_errors(enclave: tuple[Enclave, VM]) -> None:
    enc, _ = enclave
    with pytest.raises(InvalidStructure, match="at most 64 bytes"):
        enc.ecalls.quote(bytes(65), 3)
    with pytest.raises(QuotingError, match="version 5 is not supported"):
        enc.ecalls.quote(b"", 5)


def _hostile(monkeypatch: pytest.MonkeyPatch, vm: VM,
             quote: Callable[[bytes, int], Any] | None = None,
             target: Callable[[], Any] | None = None) -> None:
    """Replace what the host SDK answers to the built-in quoting ocalls."""
    real = quoting.builtin_ocall

    def fake(vm_: VM, name: str) -> tuple[CallSignature, Callable[..., Any]] | None:
        found = real(vm_, name)
        if found is None:
            return None
        sig, fn = found
        if name == "enclavekit_quote" and quote is not None:
            return sig, quote
        if name == "enclavekit_qe_target_info" and target is not None:
            return sig, target
        return sig, fn

    monkeypatch.setattr(quoting, "builtin_ocall", fake)


def test_a_host_that_swaps_the_quote_is_detected(enclave: tuple[Enclave, VM],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The host answers with a genuine quote of the same enclave, but of an older REPORT
    (another REPORTDATA): replaying it for a fresh nonce is refused inside the enclave."""
    enc, vm = enclave
    quoter = quoting.quoter_for(vm)
    old = quoter.quote(enc.ecalls.report_for(quoter.target_info(), b"old nonce"))
    assert Quote.parse(old).body.mrenclave == enc.mrenclave
    _hostile(monkeypatch, vm, quote=lambda report, version: old)
    with pytest.raises(QuotingError, match="another REPORT body"):
        enc.ecalls.quote(b"fresh nonce", 3)


@pytest.mark.parametrize("answer, message", [
    (b"", "not a quote"),
    (b"\x03\x00" + bytes(2000), "another REPORT body"),
    (b"\x04\x00" + bytes(2000), "version 4 quote, 3 was asked for"),
])
def test_a_host_that_returns_garbage_is_refused(enclave: tuple[Enclave, VM],
                                                monkeypatch: pytest.MonkeyPatch,
                                                answer: bytes, message: str) -> None:
    enc, vm = enclave
    _hostile(monkeypatch, vm, quote=lambda report, version: answer)
    with pytest.raises(QuotingError, match=message):
        enc.ecalls.quote(b"n", 3)


def test_a_host_that_names_another_target_gets_a_refusal(enclave: tuple[Enclave, VM],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         ) -> None:
    """A TARGETINFO that is not the QE's yields a REPORT the QE cannot verify."""
    enc, vm = enclave
    pce_target = quoting.quoter_for(vm).pce.ecalls.target()
    _hostile(monkeypatch, vm, target=lambda: pce_target)
    with pytest.raises(QuotingError, match="not made for this quoting enclave"):
        enc.ecalls.quote(b"n", 3)
    _hostile(monkeypatch, vm, target=lambda: b"short")
    with pytest.raises(QuotingError, match="no quoting-enclave TARGETINFO"):
        enc.ecalls.quote(b"n", 3)


def test_a_host_that_denies_service_only_denies_it(enclave: tuple[Enclave, VM],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    enc, vm = enclave

    def refuse(report: bytes, version: int) -> bytes:
        raise RuntimeError("no quotes today")

    _hostile(monkeypatch, vm, quote=refuse)
    with pytest.raises(EnclaveKitError, match="no quotes today"):
        enc.ecalls.quote(b"n", 3)
    monkeypatch.undo()
    assert Quote.parse(enc.ecalls.quote(b"n", 3)).body.reportdata[:1] == b"n"


def test_get_quote_outside_an_enclave_is_a_clear_error() -> None:
    from enclavekit.enclave import get_quote

    with pytest.raises(EcallError, match="only be made while an ecall is running"):
        get_quote(b"x")
