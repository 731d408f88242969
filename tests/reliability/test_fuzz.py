"""Parser fuzzing: mutated real inputs through every parser that reads what crossed a trust
boundary give a result or a typed refusal (an ``EnclaveKitError``), never another exception.

Short form in CI (half the hypothesis profile ``ci``: 100 inputs per parser); ``--slow``
runs half the ``slow`` profile (2,500 per parser); ``HYPOTHESIS_PROFILE`` picks any other
profile, ``EK_FUZZ_EXAMPLES`` a count. The JWT and ecall
codec fuzzers go through stable public entry points — the key service's token verifier, the
attestation service's policy JWS intake, ``enclavekit.wire.decode_value`` and
``CallSignature.decode_args`` — so they keep working while those modules are reorganised.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enclavekit.attest.policy import DEFAULT_SGX_POLICY, parse_policy
from enclavekit.dcap.quote import Quote
from enclavekit.dcap.tcbinfo import QeIdentity, TcbInfo
from enclavekit.enclave import files
from enclavekit.errors import EnclaveKitError
from enclavekit.kms.policy import parse_release_policy
from enclavekit.sgx.sgxs import read_sgxs
from enclavekit.sgx.sigstruct import verify as verify_sigstruct
from enclavekit.sgx.structs import SigStruct
from enclavekit.wire import CallSignature, decode_value, encode_value
from tests.vectors import vector

from ._mutate import mutated, mutated_text

EXAMPLES = int(os.environ.get("EK_FUZZ_EXAMPLES", max(settings().max_examples // 2, 1)))
"""Inputs per parser (the profile, loaded by conftest before collection, halved)."""
_FUZZ = settings(max_examples=EXAMPLES)
_FIXTURE_OK = settings(max_examples=EXAMPLES,
                       suppress_health_check=[HealthCheck.function_scoped_fixture,
                                              HealthCheck.too_slow, HealthCheck.data_too_large])


def _typed(parse: object, *args: object) -> None:
    """Call ``parse(*args)``; a typed refusal is a pass, any other exception fails the test."""
    with contextlib.suppress(EnclaveKitError):
        parse(*args)  # type: ignore[operator]


QUOTE = vector("phala_dcap_qvl/sgx_quote").read_bytes()
SIGSTRUCT = vector("enarx_sgx/encl.ss").read_bytes()
SGXS = vector("fortanix_sgxs/test_enclave.sgxs").read_bytes()
TCB_INFO = vector("intel_qvl_sample_testroot/tcbInfo.json").read_bytes()
QE_IDENTITY = vector("intel_qvl_sample_testroot/qeIdentity.json").read_bytes()
RELEASE_POLICY = vector("akv_skr_policies/skr_sgx_example1_mrsigner.json").read_bytes()


@_FUZZ
@given(data=mutated(QUOTE))
def test_quote(data: bytes) -> None:
    _typed(Quote.parse, data)


def _sigstruct(data: bytes) -> None:
    verify_sigstruct(SigStruct.from_bytes(data))


@_FUZZ
@given(data=mutated(SIGSTRUCT))
def test_sigstruct(data: bytes) -> None:
    _typed(_sigstruct, data)


def _sgxs(data: bytes) -> None:
    read_sgxs(data).mrenclave()


@_FUZZ
@given(data=mutated(SGXS))
def test_sgxs(data: bytes) -> None:
    _typed(_sgxs, data)


@_FUZZ
@given(data=mutated(TCB_INFO))
def test_tcb_info(data: bytes) -> None:
    _typed(TcbInfo.from_json, data)


@_FUZZ
@given(data=mutated(QE_IDENTITY))
def test_qe_identity(data: bytes) -> None:
    _typed(QeIdentity.from_json, data)


@_FUZZ
@given(text=mutated_text(DEFAULT_SGX_POLICY))
def test_attestation_policy_language(text: str) -> None:
    _typed(parse_policy, text)


@_FUZZ
@given(data=mutated(RELEASE_POLICY))
def test_release_policy_language(data: bytes) -> None:
    _typed(functools.partial(parse_release_policy, require_debug_pin=False), data)


# --- JWT, through the services' own verification ------------------------------------------

@functools.cache
def _kms_verifier() -> tuple[object, str]:
    from tests.kms._support import FakeAuthority, multi_verifier

    authority = FakeAuthority()
    return multi_verifier([authority]), authority.token()


@_FUZZ
@given(data=st.data())
def test_jwt_through_the_key_service_verifier(data: st.DataObject) -> None:
    verifier, token = _kms_verifier()
    text = data.draw(mutated_text(token))
    _typed(verifier.verify, text)  # type: ignore[attr-defined]


@functools.cache
def _maa_service() -> object:
    from tests.attest._maa import make_service

    return make_service(Path(tempfile.mkdtemp(prefix="ek-fuzz-maa-")))


def _b64url_json(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _policy_jws() -> str:
    """An unsecured policy JWS, as Microsoft's client sends it in AAD mode."""
    policy = base64.urlsafe_b64encode(DEFAULT_SGX_POLICY.encode()).rstrip(b"=").decode()
    return f"{_b64url_json({'alg': 'none'})}.{_b64url_json({'AttestationPolicy': policy})}."


@_FUZZ
@given(data=st.data())
def test_policy_jws_through_the_attestation_service(data: st.DataObject) -> None:
    service = _maa_service()
    text = data.draw(mutated_text(_policy_jws()))
    _typed(service.set_policy, "SgxEnclave", text, "http://maa.test")  # type: ignore[attr-defined]


# --- the ecall codec -------------------------------------------------------------------

@dataclasses.dataclass
class Record:
    name: str
    values: list[int]
    blob: bytes
    nested: dict[str, list[str]]
    flag: bool | None = None


def _ecall(record: Record, items: list[Record], count: int, tag: str = "t") -> Record:
    return record


_SIGNATURE = CallSignature.from_function(_ecall)
_RECORD = Record("r", [1, -2, 1 << 40], b"\x00\xff" * 8, {"a": ["x", "y"]}, True)
_ARGS = _SIGNATURE.encode_args((_RECORD, [_RECORD, _RECORD], 7), {"tag": "z"})
_VALUE = encode_value(_RECORD, Record)


@_FUZZ
@given(data=mutated(_ARGS))
def test_ecall_arguments(data: bytes) -> None:
    _typed(_SIGNATURE.decode_args, data)


@_FUZZ
@given(data=mutated(_VALUE))
def test_ecall_values(data: bytes) -> None:
    _typed(decode_value, data, Record)


# --- protected-file records ------------------------------------------------------------

_PF_KEY = bytes(range(32))


@functools.cache
def _protected_sample() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sample.pf")
        with files.open(path, "wb", key=_PF_KEY, name="fuzz", chunk_size=4096) as handle:
            handle.write(os.urandom(3 * 4096 + 100))
        return Path(path).read_bytes()


def _read_protected(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sample.pf")
        Path(path).write_bytes(data)
        with files.open(path, "rb", key=_PF_KEY, name="fuzz") as handle:
            handle.read()


@_FIXTURE_OK
@given(data=st.data())
def test_protected_file_records(data: st.DataObject) -> None:
    _typed(_read_protected, data.draw(mutated(_protected_sample())))


def test_the_samples_themselves_parse() -> None:
    """The mutations start from inputs the parsers accept (else the fuzzing proves little)."""
    Quote.parse(QUOTE)
    _sigstruct(SIGSTRUCT)
    _sgxs(SGXS)
    TcbInfo.from_json(TCB_INFO)
    QeIdentity.from_json(QE_IDENTITY)
    parse_policy(DEFAULT_SGX_POLICY)
    parse_release_policy(RELEASE_POLICY, require_debug_pin=False)
    verifier, token = _kms_verifier()
    verifier.verify(token)  # type: ignore[attr-defined]
    _maa_service().set_policy("SgxEnclave", _policy_jws(), "http://maa.test")  # type: ignore
    assert _SIGNATURE.decode_args(_ARGS).kwargs["record"] == _RECORD
    assert decode_value(_VALUE, Record) == _RECORD
    _read_protected(_protected_sample())
    assert json.loads(RELEASE_POLICY)


def _jwt(text: str) -> None:
    _kms_verifier()[0].verify(text)  # type: ignore[attr-defined]


def _policy_jws_intake(text: str) -> None:
    _maa_service().set_policy("SgxEnclave", text, "http://maa.test")  # type: ignore[attr-defined]


TARGETS: dict[str, tuple[Callable[[], bytes], Callable[[bytes], object]]] = {
    "quote": (lambda: QUOTE, Quote.parse),
    "sigstruct": (lambda: SIGSTRUCT, _sigstruct),
    "sgxs": (lambda: SGXS, _sgxs),
    "tcb_info": (lambda: TCB_INFO, TcbInfo.from_json),
    "qe_identity": (lambda: QE_IDENTITY, QeIdentity.from_json),
    "attestation_policy": (lambda: DEFAULT_SGX_POLICY.encode(),
                           lambda b: parse_policy(b.decode("utf-8", "replace"))),
    "release_policy": (lambda: RELEASE_POLICY,
                       functools.partial(parse_release_policy, require_debug_pin=False)),
    "jwt": (lambda: _kms_verifier()[1].encode(), lambda b: _jwt(b.decode("utf-8", "replace"))),
    "policy_jws": (lambda: _policy_jws().encode(),
                   lambda b: _policy_jws_intake(b.decode("utf-8", "replace"))),
    "ecall_arguments": (lambda: _ARGS, _SIGNATURE.decode_args),
    "ecall_values": (lambda: _VALUE, lambda b: decode_value(b, Record)),
    "protected_file": (_protected_sample, _read_protected),
}
"""Each fuzzed parser: its valid sample and the call that parses bytes like it (text parsers
decode leniently); ``python -m tests.reliability.fuzz_long`` runs them at length."""

