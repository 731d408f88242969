"""The provisioning certification enclave: holds the PCK key, certifies quoting enclaves.

Its PCK private key is derived, never stored: EGETKEY(PROVISION) with exactly
:func:`enclavekit.dcap.arch.pck_key_request` at this enclave's own CPUSVN and ISVSVN (the
platform's PCESVN), then :func:`enclavekit.dcap.arch.pck_private_key` — the same key the
emulated manufacturer certified in the VM's PCK certificate. It signs a REPORT body only
after checking, by local attestation, that the REPORT is a quoting enclave's made for this
PCE on this platform: MAC valid, same MRSIGNER, ISVPRODID ``QE_ISVPRODID``, not DEBUG.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from enclavekit.dcap.arch import QE_ISVPRODID, pck_key_request, pck_private_key
from enclavekit.dcap.ecdsa import public_key_to_raw, sign_raw
from enclavekit.enclave import ecall, get_key, identity, report, target_info, verify_report
from enclavekit.errors import IntegrityError, QuotingError
from enclavekit.sgx.structs import Report

_key: ec.EllipticCurvePrivateKey | None = None


def _pck_key() -> ec.EllipticCurvePrivateKey:
    global _key
    if _key is None:
        cpusvn = Report.from_bytes(report(target_info(), b"")).body.cpusvn
        request = pck_key_request(cpusvn, identity().isvsvn)
        provision_key = get_key(
            request.keyname, request.keypolicy, keyid=request.keyid, isvsvn=request.isvsvn,
            cpusvn=request.cpusvn, attributemask=request.attributemask.flags,
            miscmask=request.miscmask)
        _key = pck_private_key(provision_key)
    return _key


@ecall
def target() -> bytes:
    """This PCE's TARGETINFO, for the quoting enclave's REPORT."""
    return target_info()


@ecall
def pck_public_key() -> bytes:
    """The PCK public key (raw x ‖ y) this PCE signs with at the platform's current TCB."""
    return public_key_to_raw(_pck_key().public_key())


@ecall
def certify(qe_report: bytes) -> bytes:
    """The PCK signature (raw r ‖ s) over the 384-byte REPORT body of a quoting enclave.

    Raises:
        QuotingError: the REPORT was not made for this PCE on this platform, or it is not
            a production quoting enclave signed by the PCE's own signer.
    """
    try:
        peer = verify_report(qe_report)
    except IntegrityError:
        raise QuotingError("PCE: the REPORT was not made for this PCE on this platform "
                           "(its MAC does not verify); refused") from None
    me = identity()
    if peer.mrsigner != me.mrsigner:
        raise QuotingError(f"PCE: the REPORT's MRSIGNER {peer.mrsigner.hex()[:16]}… is not "
                           "the architectural signer; only the quoting enclave is certified")
    if peer.isvprodid != QE_ISVPRODID:
        raise QuotingError(f"PCE: the REPORT's ISVPRODID {peer.isvprodid} is not the quoting "
                           f"enclave's ({QE_ISVPRODID}); refused")
    if peer.debug:
        raise QuotingError("PCE: the quoting enclave is a DEBUG build; refused")
    return sign_raw(_pck_key(), qe_report[:384])
