"""Attack classes QV-1..QV-12 (attacks.md, quote verification), each attempted against the
DCAP verifier and its appraisal policy and seen refused by name.

Forged evidence comes from ``tests/dcap/_forge.py``: a test PKI whose keys we hold, so that every
attack carries otherwise-valid signatures and only the rule under test can refuse it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.dcap import collateral as collateral_module
from enclavekit.dcap import memo
from enclavekit.dcap import verify as verify_module
from enclavekit.dcap.collateral import Collateral, fetch
from enclavekit.dcap.ecdsa import P256_ORDER
from enclavekit.dcap.pckext import PckExtension
from enclavekit.dcap.policy import SAMPLE_MRSIGNERS, AppraisalPolicy
from enclavekit.dcap.quote import Quote
from enclavekit.dcap.verify import Verifier, verify_quote
from enclavekit.errors import (
    AttestationError,
    CollateralFormatError,
    PolicyError,
    QuoteFormatError,
    VerificationFailed,
)
from tests.dcap._collateral_sets import cases
from tests.dcap._forge import AT, COMPS, FMSPC, Forged, forge, pki
from tests.reliability._mutate import BYTE_EDITS, mutated

TYPED = (QuoteFormatError, CollateralFormatError, VerificationFailed)


def _check(f: Forged, **kw: Any) -> str:
    with pytest.raises(VerificationFailed) as err:
        verify_quote(f.quote, f.collateral, trusted_roots=kw.pop("roots", f.roots),
                     at=kw.pop("at", f.at), **kw)
    return err.value.check


def _ok(f: Forged, **kw: Any) -> verify_module.VerificationResult:
    return verify_quote(f.quote, f.collateral, trusted_roots=kw.pop("roots", f.roots),
                        at=kw.pop("at", f.at), **kw)


def test_forged_baseline_verifies() -> None:
    r = _ok(forge())
    assert r.status == "UpToDate" and AppraisalPolicy().check(r) is r


def test_qv1_chain_to_wrong_anchor() -> None:
    f = forge()
    assert _check(f, roots=None) == "root_untrusted"  # test root vs Intel's pin
    other = forge(seed=2)
    assert _check(f, roots=other.roots) == "root_untrusted"
    assert _check(forge(ca_is_ca=False)) == "pck_chain"  # intermediate without CA flag
    assert _check(forge(pck_not_after=datetime(2024, 1, 10, tzinfo=UTC))) == "pck_cert_expired"
    assert _check(f, at=datetime(2019, 6, 1, tzinfo=UTC)) in ("pck_cert_expired",)
    # a malformed signature on the PCK certificate: flip a byte inside its signature value
    q = Quote.parse(f.quote)
    leaf_pem = q.certification_data.pck_chain_pem()[0]
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificate(leaf_pem)
    der = bytearray(leaf.public_bytes(Encoding.DER))
    der[-5] ^= 0x01
    bad_leaf = x509.load_der_x509_certificate(bytes(der)).public_bytes(Encoding.PEM)
    chain = q.certification_data.data.replace(leaf_pem, bad_leaf)
    bad = dataclasses.replace(q, certification_data=dataclasses.replace(
        q.certification_data, data=chain))
    with pytest.raises(VerificationFailed) as err:
        verify_quote(bad, f.collateral, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "pck_chain"


def test_qv1_root_not_byte_equal_to_the_pin() -> None:
    """Intel's legacy root has the same key but another certificate: refused."""
    from enclavekit.dcap.roots import load_roots
    from tests.vectors import vector

    legacy = load_roots(vector("intel_root_ca/Intel_SGX_Root_CA_legacy_notAfter2033.pem")
                        .read_bytes())
    case = cases()["phala_sgx_2025"]
    with pytest.raises(VerificationFailed) as err:
        verify_quote(case.quote, case.collateral, trusted_roots=legacy, at=case.at)
    assert err.value.check == "root_untrusted"


def test_qv2_revocation_and_crl_binding() -> None:
    assert _check(forge(revoke_pck=True)) == "pck_revoked"
    assert _check(forge(revoke_ca=True)) == "pck_revoked"
    assert _check(forge(pck_crl_next=datetime(2024, 1, 10, tzinfo=UTC))) == "crl_expired"
    assert _check(forge(pck_crl_by_root=True)) == "crl"  # CRL by another CA, issuer != PCK's
    assert _check(forge(crl_aki=False)) == "crl"
    # the root CA CRL swapped for the PCK CRL (right format, wrong issuer)
    f = forge()
    swapped = dataclasses.replace(f.collateral, root_ca_crl=f.collateral.pck_crl)
    with pytest.raises(VerificationFailed) as err:
        verify_quote(f.quote, swapped, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "crl"
    # a stale CRL passes only with an explicit grace period
    stale = forge(pck_crl_next=datetime(2024, 1, 10, tzinfo=UTC))
    assert _ok(stale, crl_grace=timedelta(days=10)).status == "UpToDate"


def test_qv2_real_intermediate_crl_lists_its_serial() -> None:
    """The QVL sample's intermediate CRL revokes one serial, not the sample PCK's."""
    from cryptography import x509

    from tests.vectors import vector

    crl = x509.load_der_x509_crl(vector("intel_qvl_sample_testroot/intermediateCaCrl.der")
                                 .read_bytes())
    revoked = [r.serial_number for r in crl]
    assert len(revoked) == 1
    pck = x509.load_pem_x509_certificate(vector("intel_qvl_sample_testroot/pckCert.pem")
                                         .read_bytes())
    assert pck.serial_number not in revoked
    assert crl.get_revoked_certificate_by_serial_number(revoked[0]) is not None
    case = cases()["intel_qvl_sample_testroot"]
    assert verify_quote(case.quote, case.collateral, trusted_roots=case.roots,
                        at=case.at).status == "UpToDate"


def test_qv3_qe_identity_enforced() -> None:
    f = forge()
    q = Quote.parse(f.quote)
    flipped = bytearray(q.qe_report_signature)
    flipped[10] ^= 1
    bad = dataclasses.replace(q, qe_report_signature=bytes(flipped))
    with pytest.raises(VerificationFailed) as err:
        verify_quote(bad, f.collateral, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "qe_report_signature"
    assert _check(forge(qe_report_data_upper=b"\x01" + bytes(31))) == "qe_report_data"
    assert _check(forge(qe_mrsigner=bytes(32))) == "qe_identity_mismatch"
    assert _check(forge(qe_isvprodid=2)) == "qe_identity_mismatch"
    assert _check(forge(qe_attributes=0x13)) == "qe_identity_mismatch"  # a DEBUG QE
    assert _check(forge(qe_miscselect=1)) == "qe_identity_mismatch"
    assert _check(forge(qe_identity_id="QVE")) == "qe_identity_mismatch"
    assert _check(forge(qe_isvsvn=1)) == "qe_tcb_not_supported"
    revoked_band = _ok(forge(qe_isvsvn=2))
    assert revoked_band.status == "Revoked" and revoked_band.qe_status == "Revoked"
    with pytest.raises(VerificationFailed) as pol:
        AppraisalPolicy().check(revoked_band)
    assert pol.value.check == "tcb_status"
    assert _check(forge(vendor_id=bytes(16))) == "unsupported_quote"
    sig = bytearray(f.collateral.qe_identity_signature)
    sig[0] ^= 1
    bad_id = dataclasses.replace(f.collateral, qe_identity_signature=bytes(sig))
    with pytest.raises(VerificationFailed) as err:
        verify_quote(f.quote, bad_id, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "qe_identity_signature"
    assert _check(forge(revoke_signer=True)) == "tcb_signing_revoked"


def test_qv4_collateral_binding_and_freshness() -> None:
    assert _check(forge(tcb_fmspc=bytes.fromhex("00606A000000"))) == "fmspc_mismatch"
    assert _check(forge(tcb_pceid="0001")) == "pceid_mismatch"
    assert _check(forge(tcb_id="TDX")) == "tcb_info_mismatch"
    f = forge()
    assert _check(f, at=datetime(2024, 2, 1, tzinfo=UTC)) in ("tcb_info_expired", "crl_expired")
    assert _check(forge(pck_crl_next=datetime(2024, 3, 1, tzinfo=UTC)),
                  at=datetime(2024, 2, 1, tzinfo=UTC), crl_grace=timedelta(days=30)) == \
        "tcb_info_expired"
    # collateral signed by a TCB signing cert under another root: untrusted, and even when
    # that root is trusted too, not the PCK chain's root
    other = forge(tcb_chain_seed=2)
    assert _check(other) == "root_untrusted"
    assert _check(other, roots=[other.root, pki(2).root]) == "tcb_info_chain"


def test_qv5_tcb_level_matching() -> None:
    levels = [
        {"tcb": {"sgxtcbcomponents": [{"svn": c} for c in (2, 0) + (0,) * 14], "pcesvn": 5},
         "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": "UpToDate"},
        {"tcb": {"sgxtcbcomponents": [{"svn": c} for c in (1, 255) + (0,) * 14], "pcesvn": 5},
         "tcbDate": "2023-01-01T00:00:00Z", "tcbStatus": "OutOfDate"},
    ]
    # lexicographic trap: [1,255,...] must not select [2,0,...]
    assert _ok(forge(levels=levels, pck_components=(1, 255) + (0,) * 14,
                     pck_pcesvn=5)).status == "OutOfDate"
    assert _ok(forge(levels=levels, pck_components=(2, 0) + (0,) * 14,
                     pck_pcesvn=5)).status == "UpToDate"
    # PCESVN one below every level
    assert _check(forge(levels=levels, pck_components=(2, 0) + (0,) * 14,
                        pck_pcesvn=4)) == "tcb_not_supported"
    # each component one below the top level drops to the lower level (or none)
    for i in range(16):
        comps = list(COMPS)
        if comps[i] == 0:
            continue
        comps[i] -= 1
        r = _ok(forge(pck_components=tuple(comps)))
        assert r.status == "OutOfDate", i
    # a truncated component list in TCB info is refused at parse time
    short = [dict(lv) for lv in levels]
    short[0] = {**short[0], "tcb": {"sgxtcbcomponents": [{"svn": 2}] * 15, "pcesvn": 5}}
    with pytest.raises(CollateralFormatError, match="15 entries"):
        verify_quote(forge(levels=short).quote, forge(levels=short).collateral,
                     trusted_roots=forge().roots, at=AT)


STATUSES = ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
            "ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded",
            "Revoked"]


@pytest.mark.parametrize("status", STATUSES)
def test_qv6_every_status_and_the_default_floor(status: str) -> None:
    level = {"tcb": {"sgxtcbcomponents": [{"svn": c} for c in COMPS], "pcesvn": 13},
             "tcbDate": "2023-08-09T00:00:00Z", "tcbStatus": status}
    if status != "UpToDate":
        level["advisoryIDs"] = ["INTEL-SA-00999"]
    r = _ok(forge(levels=[level]))
    assert r.status == status
    if status == "UpToDate":
        assert AppraisalPolicy().check(r) is r
        return
    with pytest.raises(VerificationFailed) as err:
        AppraisalPolicy().check(r)
    assert err.value.check == "tcb_status"
    if status == "Revoked":
        with pytest.raises(PolicyError):
            AppraisalPolicy.build(allowed_statuses=[status])
        return
    opted = AppraisalPolicy.build(allowed_statuses=[status],
                                  allowed_advisory_ids=["INTEL-SA-00999"])
    assert opted.check(r) is r


def test_qv7_enclave_policy_gaps() -> None:
    policy = AppraisalPolicy.build(min_isvsvn=2)
    specs: list[tuple[dict[str, Any], str]] = [({"isv_flags": 0x07}, "debug"),
                        ({"isv_flags": 0x01}, "mode64bit"),
                        ({"isv_mrsigner": next(iter(SAMPLE_MRSIGNERS))}, "mrsigner_denied"),
                        ({"isvsvn": 1}, "isvsvn")]
    for spec, check in specs:
        r = _ok(forge(**spec))
        with pytest.raises(VerificationFailed) as err:
            policy.check(r)
        assert err.value.check == check, spec


def test_qv8_report_data_binding_and_freshness() -> None:
    nonce = hashlib.sha256(b"channel key" + b"fresh nonce").digest() + bytes(32)
    fresh = _ok(forge(report_data=nonce))
    assert AppraisalPolicy.build(report_data=nonce).check(fresh) is fresh
    old = _ok(forge(report_data=hashlib.sha256(b"channel key" + b"old nonce").digest()
                    + bytes(32)))
    with pytest.raises(VerificationFailed) as err:
        AppraisalPolicy.build(report_data=nonce).check(old)
    assert err.value.check == "report_data"


@pytest.mark.parametrize("mutate, expected", [
    (lambda q: q[:0] + (2).to_bytes(2, "little") + q[2:], "version 2"),
    (lambda q: q[:0] + (6).to_bytes(2, "little") + q[2:], "version 6"),
    (lambda q: q + b"\x00", "trailing"),
    (lambda q: q[:432] + (int.from_bytes(q[432:436], "little") + 1).to_bytes(4, "little")
     + q[436:], "runs past"),
])
def test_qv9_parser_edge_cases(mutate: Callable[[bytes], bytes], expected: str) -> None:
    f = forge()
    with pytest.raises(QuoteFormatError, match=expected):
        verify_quote(mutate(f.quote), f.collateral, trusted_roots=f.roots, at=f.at)


@pytest.mark.parametrize("mutate, expected", [
    (lambda q: q[:2] + (3).to_bytes(2, "little") + q[4:],
     "attestation key type 3 (ECDSA-384-with-P-384) is not supported"),
    (lambda q: q[:2] + (0).to_bytes(2, "little") + q[4:], "attestation key type 0 (EPID)"),
    (lambda q: q[:4] + (0x81).to_bytes(4, "little") + q[8:], "TEE type 0x81 (TDX) is not SGX"),
    (lambda q: q[:4] + (0x82).to_bytes(4, "little") + q[8:], "TEE type 0x82 (unknown)"),
])
def test_qv9_other_key_and_tee_types_are_unsupported_naming_the_type(
        mutate: Callable[[bytes], bytes], expected: str) -> None:
    f = forge()
    with pytest.raises(VerificationFailed) as err:
        verify_quote(mutate(f.quote), f.collateral, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "unsupported_quote" and expected in str(err.value)
    q = Quote.parse(f.quote)  # a parsed quote object is held to the same rule
    p256_tdx = dataclasses.replace(q, header=q.header.replace(tee_type=0x81))
    assert _check(dataclasses.replace(f, quote=p256_tdx.to_bytes())) == "unsupported_quote"


def test_qv9_signature_edge_cases() -> None:
    for r, s in [(0, 0), (0, 1), (1, 0), (P256_ORDER, 1), (1, P256_ORDER)]:
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert _check(forge(quote_signature=sig)) == "quote_signature"
    # an attestation key off the curve, bound correctly by the QE report data
    assert _check(forge(attestation_key=bytes(64))) == "quote_signature"
    # certification data of another type
    f = forge()
    q = Quote.parse(f.quote)
    typed = dataclasses.replace(q, certification_data=dataclasses.replace(
        q.certification_data, type=3))
    with pytest.raises(VerificationFailed) as err:
        verify_quote(typed, f.collateral, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "unsupported_quote"


def test_qv9_duplicate_sgx_extension_oids_refused() -> None:
    ext = PckExtension(ppid=bytes(16), tcb_components=COMPS, pcesvn=13, cpusvn=bytes(16),
                       pceid=bytes(2), fmspc=FMSPC)
    der = ext.to_der()
    from enclavekit.dcap import pckext as p

    body = p._read_one(der, 0x30, "x")
    fmspc_pair = p._pair("4", p._tlv(0x04, FMSPC))
    with pytest.raises(CollateralFormatError, match="duplicate OID"):
        PckExtension.from_der(p._tlv(0x30, body + fmspc_pair))


@settings(max_examples=300)
@given(st.integers(0, 5000), st.integers(0, 255))
def test_qv9_fuzzed_quotes_give_only_typed_errors(offset: int, value: int) -> None:
    f = _FUZZ_BASE
    data = bytearray(f.quote)
    data[offset % len(data)] = value
    with contextlib.suppress(*TYPED):
        _FUZZ_VERIFIER.verify(bytes(data), f.collateral, at=f.at)


_FUZZ_BASE = forge()
_FUZZ_VERIFIER = Verifier(_FUZZ_BASE.roots)


def _mutated() -> st.SearchStrategy[bytes]:
    return mutated(_FUZZ_BASE.quote, edits=BYTE_EDITS, noise=False)


def _fuzz_once(data: bytes) -> None:
    with contextlib.suppress(*TYPED):
        _FUZZ_VERIFIER.verify(data, _FUZZ_BASE.collateral, at=_FUZZ_BASE.at)


@settings(max_examples=300)
@given(_mutated())
def test_qv9_structured_mutations_give_only_typed_errors(data: bytes) -> None:
    _fuzz_once(data)


@pytest.mark.slow
@settings(max_examples=200_000)
@given(_mutated())
def test_qv9_long_fuzz_run(data: bytes) -> None:
    """The long run (``--slow``): 200,000 mutated quotes, typed refusals only."""
    _fuzz_once(data)


def test_qv10_signed_json_checked_on_the_received_bytes() -> None:
    f = forge()
    spaced = dataclasses.replace(f.collateral, tcb_info=f.collateral.tcb_info.replace(
        b'"version":3', b'"version": 3'))
    with pytest.raises(VerificationFailed) as err:
        verify_quote(f.quote, spaced, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "tcb_info_signature"
    reordered = dataclasses.replace(f.collateral, qe_identity=f.collateral.qe_identity.replace(
        b'"id":"QE","version":2', b'"version":2,"id":"QE"'))
    assert reordered.qe_identity != f.collateral.qe_identity
    with pytest.raises(VerificationFailed) as err:
        verify_quote(f.quote, reordered, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "qe_identity_signature"
    doubled = dataclasses.replace(f.collateral, tcb_info=f.collateral.tcb_info.replace(
        b'"tcbLevels":', b'"tcbLevels":[],"tcbLevels":', 1))
    with pytest.raises(CollateralFormatError, match="duplicate key 'tcbLevels'"):
        verify_quote(f.quote, doubled, trusted_roots=f.roots, at=f.at)
    # the status the verifier reports is the one in the signed bytes
    assert _ok(f).status == "UpToDate"


def _fault(*_: object, **__: object) -> Any:
    raise RuntimeError("injected fault")


@pytest.mark.parametrize("target", [
    "_parse_collateral", "_check_chain", "_check_signed", "_signed_times", "_chain_times",
    "_check_quote", "verify_raw", "public_key_from_raw", "load_pem_chain", "load_crl",
    "pem_chain",
])
def test_qv11_faults_never_fail_open(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    f = forge()
    if hasattr(Verifier, target):
        monkeypatch.setattr(Verifier, target, _fault)
    else:
        for module in (verify_module, collateral_module):  # wherever the verifier calls it
            if hasattr(module, target):
                monkeypatch.setattr(module, target, _fault)
    memo.clear()  # a parse kept from an earlier test would not run the faulty parser
    with pytest.raises(Exception) as err:
        verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at)
    assert err.type is not AssertionError


def test_qv11_missing_collateral_and_fetch_timeout_are_refusals() -> None:
    f = forge()
    with pytest.raises(CollateralFormatError):
        verify_quote(f.quote, dataclasses.replace(f.collateral, qe_identity=b""),
                     trusted_roots=f.roots, at=f.at)
    with pytest.raises(CollateralFormatError):
        Collateral.from_json("{}")

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with httpx.Client(transport=httpx.MockTransport(timeout)) as client, \
            pytest.raises(AttestationError, match="timed out"):
        fetch("http://pcs.test", FMSPC, client=client)
    # a non-UpToDate verdict is never "OK with a warning" under the default policy
    r = _ok(forge(qe_isvsvn=7))
    assert r.status == "OutOfDate"
    with pytest.raises(VerificationFailed):
        AppraisalPolicy().check(r)


def test_qv12_emulated_and_real_never_cross() -> None:
    emulated = forge()
    assert "Test" in emulated.root.subject.rfc4514_string()  # a marker Intel's root lacks
    assert _check(emulated, roots=None) == "root_untrusted"
    real = cases()["phala_sgx_2025"]
    with pytest.raises(VerificationFailed) as err:
        verify_quote(real.quote, real.collateral, trusted_roots=emulated.roots, at=real.at)
    assert err.value.check == "root_untrusted"


def test_qv9_fuzz_script_short_form(capsys: pytest.CaptureFixture[str]) -> None:
    """The 1M-input fuzz script (``python -m tests.attack.fuzz_qv9``) in a short form."""
    from tests.attack import fuzz_qv9

    assert fuzz_qv9.main(["--count", "300", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "300 inputs" in out and "ACCEPTED-MUTATED" not in out
