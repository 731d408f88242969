"""Appraisal policy: what a relying party accepts from a verified quote (QV-6, QV-7, QV-8).

:func:`~enclavekit.dcap.verify.verify_quote` proves *what* the quote says; an
:class:`AppraisalPolicy` decides whether that is good enough. Defaults are strict:

* TCB status: only ``UpToDate``. Any other status must be named in ``allowed_statuses`` and,
  when the platform has advisories, every advisory id must be named in
  ``allowed_advisory_ids``. ``Revoked`` can never be allowed.
* ``DEBUG`` enclaves are refused; ``MODE64BIT`` is required.
* MRSIGNERs of published sample/test signing keys (:data:`SAMPLE_MRSIGNERS`) are refused.
* Optional expectations: MRENCLAVE / MRSIGNER sets, ISVPRODID, minimum ISVSVN, REPORTDATA.

Every refusal is a :class:`VerificationFailed` whose ``check`` names the rule.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import PolicyError, VerificationFailed
from .tcbinfo import TCB_STATUSES
from .verify import VerificationResult

__all__ = ["POLICY_CHECKS", "SAMPLE_MRSIGNERS", "AppraisalPolicy"]

SAMPLE_MRSIGNERS: dict[bytes, str] = {
    bytes.fromhex("2f9f8fd4fe12d77232f1d87571ca8252ca27714efe7705e46222cffd5a22e8c4"):
        "enarx/sgx test key (tests/encl.pem)",
    bytes.fromhex("83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"):
        "Fortanix rust-sgx sgxs-tools test key (sig1.key.pem)",
    bytes.fromhex("fb4bab3d6036ac1d730fa83d7366df1dd2dfeac194ef335d6854d8a6c6475542"):
        "Fortanix rust-sgx test enclave signer",
    bytes.fromhex("62ba6bcab59700c340bdbcd36bf74c6e0d6892cdf91671dca93bcbfff81ef9f2"):
        "Azure attestation sample (Open Enclave) private.pem",
}
"""MRSIGNERs of signing keys whose private half is published: anyone can sign as them."""

POLICY_CHECKS = {
    "tcb_status": "the TCB status is not accepted (only UpToDate unless allowed; never Revoked)",
    "advisory_ids": "an advisory id of the platform is not in the allowed list",
    "debug": "the enclave is a DEBUG enclave",
    "mode64bit": "the enclave is not a 64-bit enclave",
    "mrsigner_denied": "the enclave is signed by a published sample/test key",
    "mrenclave": "MRENCLAVE is not one of the expected values",
    "mrsigner": "MRSIGNER is not one of the expected values",
    "isvprodid": "ISVPRODID is not the expected one",
    "isvsvn": "ISVSVN is below the minimum",
    "report_data": "REPORTDATA is not the expected value (binding / freshness)",
}


def _hexset(values: Iterable[bytes | str] | None, size: int, name: str) -> frozenset[bytes] | None:
    if values is None:
        return None
    out = set()
    for v in values:
        raw = bytes.fromhex(v) if isinstance(v, str) else bytes(v)
        if len(raw) != size:
            raise PolicyError(f"{name} values must be {size} bytes, found {len(raw)}")
        out.add(raw)
    return frozenset(out)


@dataclass(frozen=True)
class AppraisalPolicy:
    """The relying party's rules over a :class:`VerificationResult` (strict by default)."""

    allowed_statuses: frozenset[str] = frozenset({"UpToDate"})
    allowed_advisory_ids: frozenset[str] = frozenset()
    allow_debug: bool = False
    require_mode64bit: bool = True
    denied_mrsigners: frozenset[bytes] = frozenset(SAMPLE_MRSIGNERS)
    mrenclave: frozenset[bytes] | None = None
    mrsigner: frozenset[bytes] | None = None
    isvprodid: int | None = None
    min_isvsvn: int | None = None
    report_data: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.allowed_statuses) - set(TCB_STATUSES)
        if unknown:
            raise PolicyError(f"unknown TCB status {sorted(unknown)[0]!r}")
        if "Revoked" in self.allowed_statuses:
            raise PolicyError("a Revoked TCB can never be accepted")
        if self.report_data is not None and len(self.report_data) != 64:
            raise PolicyError(f"report_data must be 64 bytes, found {len(self.report_data)}")

    @classmethod
    def build(cls, *, allowed_statuses: Iterable[str] = ("UpToDate",),
              allowed_advisory_ids: Iterable[str] = (), allow_debug: bool = False,
              require_mode64bit: bool = True,
              extra_denied_mrsigners: Iterable[bytes | str] = (),
              mrenclave: Iterable[bytes | str] | None = None,
              mrsigner: Iterable[bytes | str] | None = None, isvprodid: int | None = None,
              min_isvsvn: int | None = None,
              report_data: bytes | None = None) -> AppraisalPolicy:
        """A policy from plain values (hex strings accepted for measurements).

        Raises:
            PolicyError: an unknown status, Revoked allowed, or a value of the wrong size.
        """
        denied = frozenset(SAMPLE_MRSIGNERS) | (
            _hexset(extra_denied_mrsigners, 32, "denied MRSIGNER") or frozenset())
        return cls(allowed_statuses=frozenset(allowed_statuses),
                   allowed_advisory_ids=frozenset(allowed_advisory_ids), allow_debug=allow_debug,
                   require_mode64bit=require_mode64bit, denied_mrsigners=denied,
                   mrenclave=_hexset(mrenclave, 32, "MRENCLAVE"),
                   mrsigner=_hexset(mrsigner, 32, "MRSIGNER"), isvprodid=isvprodid,
                   min_isvsvn=min_isvsvn, report_data=report_data)

    def check(self, result: VerificationResult) -> VerificationResult:
        """Apply the policy; returns ``result`` when every rule holds.

        Raises:
            VerificationFailed: the first rule that refuses (``check`` in :data:`POLICY_CHECKS`).
        """
        if result.status == "Revoked" or result.status not in self.allowed_statuses:
            raise VerificationFailed(
                "tcb_status", f"TCB status {result.status} is not accepted (allowed: "
                              f"{', '.join(sorted(self.allowed_statuses))})")
        missing = [a for a in result.advisory_ids if a not in self.allowed_advisory_ids]
        if result.status != "UpToDate" and missing:
            raise VerificationFailed(
                "advisory_ids", f"status {result.status} with advisories not allowed: "
                                f"{', '.join(missing)}")
        if result.debug and not self.allow_debug:
            raise VerificationFailed("debug", "the enclave is a DEBUG enclave (its memory "
                                              "is readable by a debugger)")
        if self.require_mode64bit and not result.mode64bit:
            raise VerificationFailed("mode64bit", "the enclave is not a 64-bit enclave")
        if result.mrsigner in self.denied_mrsigners:
            name = SAMPLE_MRSIGNERS.get(result.mrsigner, "a denied key")
            raise VerificationFailed("mrsigner_denied",
                                     f"MRSIGNER {result.mrsigner.hex()} is {name}")
        if self.mrenclave is not None and result.mrenclave not in self.mrenclave:
            raise VerificationFailed("mrenclave",
                                     f"MRENCLAVE {result.mrenclave.hex()} is not expected")
        if self.mrsigner is not None and result.mrsigner not in self.mrsigner:
            raise VerificationFailed("mrsigner",
                                     f"MRSIGNER {result.mrsigner.hex()} is not expected")
        if self.isvprodid is not None and result.isvprodid != self.isvprodid:
            raise VerificationFailed("isvprodid",
                                     f"ISVPRODID {result.isvprodid}, expected {self.isvprodid}")
        if self.min_isvsvn is not None and result.isvsvn < self.min_isvsvn:
            raise VerificationFailed("isvsvn",
                                     f"ISVSVN {result.isvsvn} is below {self.min_isvsvn}")
        if self.report_data is not None and not hmac.compare_digest(result.report_data,
                                                                     self.report_data):
            raise VerificationFailed("report_data", "REPORTDATA is not the expected value")
        return result
