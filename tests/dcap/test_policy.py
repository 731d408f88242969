"""Appraisal policy: strict defaults, explicit opt-ins, Revoked never."""

from __future__ import annotations

import dataclasses

import pytest

from enclavekit.dcap.policy import POLICY_CHECKS, SAMPLE_MRSIGNERS, AppraisalPolicy
from enclavekit.dcap.verify import VerificationResult, verify_quote
from enclavekit.errors import PolicyError, VerificationFailed
from enclavekit.sgx.structs import Attributes
from tests.dcap._collateral_sets import cases
from tests.dcap._forge import forge


def _result(**changes: object) -> VerificationResult:
    f = forge()
    base = verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_default_accepts_a_clean_up_to_date_enclave() -> None:
    r = _result()
    assert AppraisalPolicy().check(r) is r


@pytest.mark.parametrize("status", ["SWHardeningNeeded", "ConfigurationNeeded",
                                    "ConfigurationAndSWHardeningNeeded", "OutOfDate",
                                    "OutOfDateConfigurationNeeded", "Revoked"])
def test_default_refuses_every_other_status(status: str) -> None:
    with pytest.raises(VerificationFailed) as err:
        AppraisalPolicy().check(_result(status=status))
    assert err.value.check == "tcb_status"


def test_opt_in_must_name_status_and_advisories() -> None:
    r = _result(status="SWHardeningNeeded", advisory_ids=("INTEL-SA-00615", "INTEL-SA-00334"))
    only_status = AppraisalPolicy.build(allowed_statuses=["UpToDate", "SWHardeningNeeded"])
    with pytest.raises(VerificationFailed) as err:
        only_status.check(r)
    assert err.value.check == "advisory_ids" and "INTEL-SA-00615" in str(err.value)
    partial = AppraisalPolicy.build(allowed_statuses=["SWHardeningNeeded"],
                                    allowed_advisory_ids=["INTEL-SA-00615"])
    with pytest.raises(VerificationFailed, match="INTEL-SA-00334"):
        partial.check(r)
    full = AppraisalPolicy.build(allowed_statuses=["SWHardeningNeeded"],
                                 allowed_advisory_ids=["INTEL-SA-00615", "INTEL-SA-00334"])
    assert full.check(r) is r


def test_revoked_can_never_be_allowed() -> None:
    with pytest.raises(PolicyError, match="Revoked"):
        AppraisalPolicy.build(allowed_statuses=["UpToDate", "Revoked"])
    with pytest.raises(PolicyError, match="unknown TCB status"):
        AppraisalPolicy.build(allowed_statuses=["Fine"])
    sneaky = AppraisalPolicy.__new__(AppraisalPolicy)
    object.__setattr__(sneaky, "allowed_statuses", frozenset({"Revoked"}))
    with pytest.raises(VerificationFailed):
        AppraisalPolicy.check(sneaky, _result(status="Revoked"))


def test_debug_mode64_and_sample_signers() -> None:
    with pytest.raises(VerificationFailed) as dbg:
        AppraisalPolicy().check(_result(attributes=Attributes(flags=0x7, xfrm=3)))
    assert dbg.value.check == "debug"
    assert AppraisalPolicy(allow_debug=True).check(_result(attributes=Attributes(flags=0x7)))
    with pytest.raises(VerificationFailed) as m64:
        AppraisalPolicy().check(_result(attributes=Attributes(flags=0x1, xfrm=3)))
    assert m64.value.check == "mode64bit"
    for mrsigner, name in SAMPLE_MRSIGNERS.items():
        with pytest.raises(VerificationFailed, match=r"test|sample|signer") as err:
            AppraisalPolicy().check(_result(mrsigner=mrsigner))
        assert err.value.check == "mrsigner_denied", name


def test_expected_identity_values() -> None:
    r = _result()
    policy = AppraisalPolicy.build(mrenclave=[r.mrenclave.hex()], mrsigner=[r.mrsigner],
                                   isvprodid=r.isvprodid, min_isvsvn=r.isvsvn,
                                   report_data=r.report_data)
    assert policy.check(r) is r
    for change, check in [({"mrenclave": bytes(32)}, "mrenclave"),
                          ({"mrsigner": bytes(32)}, "mrsigner"),
                          ({"isvprodid": r.isvprodid + 1}, "isvprodid"),
                          ({"isvsvn": r.isvsvn - 1}, "isvsvn"),
                          ({"report_data": bytes(64)}, "report_data")]:
        with pytest.raises(VerificationFailed) as err:
            policy.check(dataclasses.replace(r, **change))  # type: ignore[arg-type]
        assert err.value.check == check
    assert set(POLICY_CHECKS) >= {"tcb_status", "debug", "mode64bit", "mrsigner_denied"}


def test_bad_policy_values() -> None:
    with pytest.raises(PolicyError, match="32 bytes"):
        AppraisalPolicy.build(mrenclave=["00"])
    with pytest.raises(PolicyError, match="64 bytes"):
        AppraisalPolicy.build(report_data=b"short")


def test_real_vectors_under_the_default_policy() -> None:
    """No real quote passes the default policy: all but one are not UpToDate, and the QVL
    sample (UpToDate) has an all-zero report body, so not even MODE64BIT."""
    for name, case in cases().items():
        r = verify_quote(case.quote, case.collateral, trusted_roots=case.roots, at=case.at,
                         crl_grace=case.crl_grace)
        with pytest.raises(VerificationFailed) as err:
            AppraisalPolicy().check(r)
        expected = "mode64bit" if name == "intel_qvl_sample_testroot" else "tcb_status"
        assert err.value.check == expected, name
