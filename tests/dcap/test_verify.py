"""The verifier on every real quote in the vectors, and their published negatives."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from enclavekit.dcap.collateral import Collateral
from enclavekit.dcap.verify import CHECKS, Verifier, verify_quote
from enclavekit.errors import (
    CertificateChainError,
    CollateralExpired,
    VerificationFailed,
)
from tests.dcap._collateral_sets import (
    MOBILECOIN_AT,
    MOBILECOIN_GRACE,
    Case,
    cases,
    mobilecoin_collateral,
)
from tests.vectors import expected, vector

CASES = cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_vector_verifies_with_expected_status(name: str) -> None:
    case = CASES[name]
    result = verify_quote(case.quote, case.collateral, trusted_roots=case.roots, at=case.at,
                          crl_grace=case.crl_grace)
    assert result.status == case.status
    assert result.advisory_ids == case.advisories
    assert result.qe_status == "UpToDate"
    summary = {e["id"]: e for e in expected()["dcap_quote_vectors"]}.get(name)
    if summary is not None:
        assert result.status == summary["expected_status"]
        assert list(result.advisory_ids) == summary.get("expected_advisories", [])
        if "mrenclave" in summary:
            assert result.mrenclave.hex() == summary["mrenclave"]
            assert result.mrsigner.hex() == summary["mrsigner"]
    # the cached verifier gives the same verdict, twice
    verifier = Verifier(case.roots, crl_grace=case.crl_grace)
    assert verifier.verify(case.quote, case.collateral, at=case.at) == result
    assert verifier.verify(case.quote, case.collateral, at=case.at) == result


def test_phala_result_fields() -> None:
    case = CASES["phala_sgx_2025"]
    r = verify_quote(case.quote, case.collateral, at=case.at)
    assert r.report_data == b"Hello, world!".ljust(64, b"\x00")
    assert (r.isvprodid, r.isvsvn, r.debug, r.mode64bit) == (0, 0, False, True)
    assert r.fmspc.hex() == "00a067110000" and r.pceid == b"\x00\x00"
    assert r.tcb_components == (11, 11, 2, 2, 255, 1) + (0,) * 10 and r.pcesvn == 13
    assert r.tcb_date == datetime(2024, 3, 13, tzinfo=UTC)
    assert r.platform_status == "ConfigurationAndSWHardeningNeeded"
    j = r.to_json()
    for key in ("status", "advisory_ids", "mrenclave", "mrsigner", "isvprodid", "isvsvn",
                "debug", "report_data", "fmspc", "tcb_date"):
        assert key in j
    assert j["tcb_date"] == "2024-03-13T00:00:00Z"
    assert j["attributes"] == "0500000000000000e700000000000000"


def test_phala_window_edges() -> None:
    case = CASES["phala_sgx_2025"]
    start = datetime(2025, 6, 19, 10, 56, 11, tzinfo=UTC)
    end = datetime(2025, 7, 19, 10, 1, 18, tzinfo=UTC)
    verify_quote(case.quote, case.collateral, at=start)
    verify_quote(case.quote, case.collateral, at=end - timedelta(seconds=1))
    with pytest.raises(CollateralExpired) as before:
        verify_quote(case.quote, case.collateral, at=start - timedelta(seconds=1))
    assert before.value.check == "tcb_info_expired"
    with pytest.raises(CollateralExpired) as after:
        verify_quote(case.quote, case.collateral, at=end)
    assert after.value.check == "qe_identity_expired"


def test_phala_2023_strict_time_refused() -> None:
    """dcap-qvl of 2023 verified at 1699301000, before the collateral was issued."""
    case = CASES["phala_sgx_2023"]
    with pytest.raises(CollateralExpired, match="not valid before"):
        verify_quote(case.quote, case.collateral,
                     at=datetime.fromtimestamp(1699301000, UTC))


def test_mobilecoin_stale_pck_crl_refused_without_grace() -> None:
    case = CASES["mobilecoin_sgx_2023"]
    with pytest.raises(CollateralExpired) as err:
        verify_quote(case.quote, case.collateral, at=MOBILECOIN_AT)
    assert err.value.check == "crl_expired"
    assert "PCK CRL expired at 2023-05-21" in str(err.value)


@pytest.mark.parametrize("at, check", [
    (datetime(2023, 8, 11, 19, 56, 44, tzinfo=UTC), "tcb_info_expired"),  # == nextUpdate
    (datetime(2023, 7, 12, 19, 56, 44, tzinfo=UTC), "qe_identity_expired"),  # before issueDate
])
def test_mobilecoin_time_negatives(at: datetime, check: str) -> None:
    case = CASES["mobilecoin_sgx_2023"]
    with pytest.raises(CollateralExpired) as err:
        verify_quote(case.quote, case.collateral, at=at, crl_grace=MOBILECOIN_GRACE)
    assert err.value.check == check


def test_mobilecoin_byte_2_incremented_is_refused() -> None:
    """Upstream expects a quote-signature failure; the key type 3 is refused even earlier."""
    data = bytearray(CASES["mobilecoin_sgx_2023"].quote)
    data[2] += 1
    with pytest.raises(VerificationFailed) as err:
        verify_quote(bytes(data), mobilecoin_collateral(), at=MOBILECOIN_AT,
                     crl_grace=MOBILECOIN_GRACE)
    assert err.value.check == "unsupported_quote"
    assert "attestation key type 3 (ECDSA-384-with-P-384)" in str(err.value)


def test_mobilecoin_example_tcb_refused() -> None:
    """Intel's documentation example is not signed by the TCB signing key: in QVL order the
    signature check (B) refuses it before the FMSPC binding (D) is reached."""
    coll = mobilecoin_collateral("example_tcb.json")
    with pytest.raises(VerificationFailed) as err:
        verify_quote(CASES["mobilecoin_sgx_2023"].quote, coll, at=MOBILECOIN_AT,
                     crl_grace=MOBILECOIN_GRACE)
    assert err.value.check == "tcb_info_signature"


def test_genuine_tcb_info_for_another_fmspc_refused() -> None:
    """The mobilecoin quote (FMSPC 00906ED50000) with Intel-signed collateral for 00A067110000."""
    phala = CASES["phala_sgx_2023"]
    with pytest.raises(VerificationFailed) as err:
        verify_quote(CASES["mobilecoin_sgx_2023"].quote, phala.collateral, at=phala.at)
    assert err.value.check == "fmspc_mismatch"
    assert "00a067110000" in str(err.value) and "00906ed50000" in str(err.value)


def test_qvl_sample_needs_its_root_and_expires() -> None:
    case = CASES["intel_qvl_sample_testroot"]
    with pytest.raises(CertificateChainError) as untrusted:
        verify_quote(case.quote, case.collateral, at=case.at)
    assert untrusted.value.check == "root_untrusted"
    with pytest.raises(CollateralExpired) as late:
        verify_quote(case.quote, case.collateral, trusted_roots=case.roots,
                     at=datetime(2026, 11, 1, tzinfo=UTC))
    assert late.value.check == "pck_cert_expired"


def test_qvl_sample_without_separate_chain_is_unsupported() -> None:
    case = CASES["intel_qvl_sample_testroot"]
    bare = dataclasses.replace(case.collateral, pck_certificate_chain=None)
    with pytest.raises(VerificationFailed) as err:
        verify_quote(case.quote, bare, trusted_roots=case.roots, at=case.at)
    assert err.value.check == "unsupported_quote"


def test_tdx_quotes_refused_clearly() -> None:
    coll = Collateral.from_json(vector("phala_dcap_qvl/tdx_quote_collateral.json").read_bytes())
    data = vector("phala_dcap_qvl/tdx_quote").read_bytes()
    from enclavekit.dcap.quote import Quote

    for quote in (data, Quote.parse(data, allow_trailing=True)):
        with pytest.raises(VerificationFailed) as err:
            verify_quote(quote, coll, at=datetime.fromtimestamp(1752919234, UTC))
        assert err.value.check == "unsupported_quote"
        assert "TEE type 0x81 (TDX) is not SGX" in str(err.value)


def test_legacy_root_chain_is_refused_unless_pinned() -> None:
    """The Azure SDK quote carries the 2033 issuance of Intel's root: same key, other cert."""
    phala = CASES["phala_sgx_2025"]
    data = vector("azure_sdk_python_maa/sgx_quote.bin").read_bytes()
    with pytest.raises(CertificateChainError) as err:
        verify_quote(data, phala.collateral, at=phala.at)
    assert err.value.check == "root_untrusted"


def test_cache_rechecks_time_windows() -> None:
    case = CASES["phala_sgx_2025"]
    verifier = Verifier()
    verifier.verify(case.quote, case.collateral, at=case.at)
    with pytest.raises(CollateralExpired):
        verifier.verify(case.quote, case.collateral, at=case.at + timedelta(days=1))
    assert verifier.verify(case.quote, case.collateral, at=case.at).status == case.status


def test_cache_keyed_by_content_not_identity() -> None:
    case = CASES["phala_sgx_2025"]
    verifier = Verifier()
    verifier.verify(case.quote, case.collateral, at=case.at)
    forged = dataclasses.replace(case.collateral, tcb_info=case.collateral.tcb_info.replace(
        b'"tcbStatus":"ConfigurationAndSWHardeningNeeded"', b'"tcbStatus":"UpToDate"'))
    assert forged.tcb_info != case.collateral.tcb_info
    with pytest.raises(VerificationFailed) as err:
        verifier.verify(case.quote, forged, at=case.at)
    assert err.value.check == "tcb_info_signature"


def test_check_names_are_documented() -> None:
    assert all(name == name.lower() and " " not in name for name in CHECKS)
    assert {"pck_chain", "root_untrusted", "pck_revoked", "crl", "tcb_info_signature",
            "tcb_info_expired", "qe_identity_signature", "qe_identity_expired", "fmspc_mismatch",
            "qe_report_signature", "qe_report_data", "qe_identity_mismatch", "quote_signature",
            "tcb_not_supported", "unsupported_quote"} <= set(CHECKS)


def _case_ids() -> list[str]:
    return sorted(CASES)


def test_cases_cover_the_readme() -> None:
    ids = {e["id"] for e in expected()["dcap_quote_vectors"] if e.get("expected_status")}
    sgx = {i for i in ids if "tdx" not in i}
    assert sgx <= set(CASES), sgx - set(CASES)
    assert isinstance(CASES["phala_sgx_2025"], Case)


@pytest.mark.parametrize("version", [3, 4, 5])
def test_sgx_quote_versions_verify(version: int) -> None:
    """QVL accepts SGX quotes as v3, v4 (type-6 wrapper) and v5 (body descriptor signed)."""
    from enclavekit.dcap.quote import Quote
    from tests.dcap._forge import forge

    f = forge(version=version)
    q = Quote.parse(f.quote)
    assert q.header.version == version
    r = verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at)
    assert r.status == "UpToDate" and r.quote.version == version
    if version == 5:  # the descriptor is inside the signed region
        assert q.signed_bytes() == f.quote[: 48 + 6 + 384]
    # flips inside the v4/v5 QE block are refused by the check that covers them
    start = len(q.signed_bytes()) + 4 + 128 + (6 if version >= 4 else 0)
    for offset, check in ((start + 10, "qe_report_signature"),
                          (start + 384 + 5, "qe_report_signature"),
                          (start + 384 + 64 + 2 + 3, "qe_report_data")):
        data = bytearray(f.quote)
        data[offset] ^= 0x40
        with pytest.raises(VerificationFailed) as err:
            verify_quote(bytes(data), f.collateral, trusted_roots=f.roots, at=f.at)
        assert err.value.check == check


def test_verifier_is_safe_across_threads() -> None:
    import threading

    case = CASES["phala_sgx_2025"]
    verifier = Verifier(cache_size=2)
    other = CASES["phala_sgx_2023"]
    errors: list[BaseException] = []

    def work(c: Case) -> None:
        try:
            for _ in range(20):
                assert verifier.verify(c.quote, c.collateral, at=c.at).status == c.status
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in (case, other, case, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_trusted_roots_must_be_self_signed_cas() -> None:
    from enclavekit.errors import CollateralFormatError
    from tests.dcap._forge import pki

    with pytest.raises(CollateralFormatError, match="self-signed CA"):
        Verifier([pki().ca])  # issued by the test root, not self-signed
    with pytest.raises(CollateralFormatError, match="at least one"):
        Verifier([])
    Verifier([pki().root])


def test_type_1_certification_data_must_describe_the_pck_platform() -> None:
    """The QVL sample carries PPID ‖ CPUSVN ‖ PCESVN (34 bytes) and a separate PCK chain: a
    change to those bytes (unsigned) or to their type is refused, not ignored."""
    from enclavekit.dcap.quote import Quote

    case = CASES["intel_qvl_sample_testroot"]
    q = Quote.parse(case.quote)
    data = q.certification_data.data
    for offset in (0, 15, 16, 31, 32, 33):  # PPID, CPUSVN, PCESVN
        flipped = bytearray(data)
        flipped[offset] ^= 1
        bad = dataclasses.replace(q, certification_data=dataclasses.replace(
            q.certification_data, data=bytes(flipped)))
        with pytest.raises(VerificationFailed) as err:
            verify_quote(bad, case.collateral, trusted_roots=case.roots, at=case.at)
        assert err.value.check == "certification_data", offset
    for cert_type, check in ((2, "certification_data"), (3, "certification_data"),
                             (4, "certification_data"), (7, "unsupported_quote")):
        retyped = dataclasses.replace(q, certification_data=dataclasses.replace(
            q.certification_data, type=cert_type))
        with pytest.raises(VerificationFailed) as err:
            verify_quote(retyped, case.collateral, trusted_roots=case.roots, at=case.at)
        assert err.value.check == check, cert_type


@pytest.mark.parametrize("version", [3, 4, 5])
def test_quote_signature_is_checked_over_the_bytes_that_arrived(version: int) -> None:
    """The signed region is sliced from the quote bytes: it is what re-encoding the parsed
    header (and v5 descriptor) and body gives, and a quote whose signed region differs in one
    byte is refused by the quote signature."""
    from enclavekit.dcap.quote import Quote
    from enclavekit.dcap.verify import _signed_region
    from tests.dcap._forge import forge

    f = forge(version=version)
    q = Quote.parse(f.quote)
    assert _signed_region(f.quote, q) == q.signed_bytes() == _signed_region(q, q)
    assert verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at).status
    data = bytearray(f.quote)
    data[len(q.signed_bytes()) - 1] ^= 1  # the body's last byte
    with pytest.raises(VerificationFailed) as err:
        verify_quote(bytes(data), f.collateral, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "quote_signature"
