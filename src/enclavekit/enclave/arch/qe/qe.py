"""The quoting enclave: turns application REPORTs into DCAP ECDSA quotes (v3, v4).

At start it makes a P-256 attestation key that never leaves it. ``certify_request(PCE
TARGETINFO)`` returns a REPORT for the PCE whose REPORTDATA is SHA-256(attestation public
key ‖ QE auth data) ‖ 32 zero bytes; the host carries it to the PCE and brings back the
PCK signature (``install``). ``quote(report, pck_chain, version)`` checks the application
REPORT's MAC with this QE's report key (so it was made for this QE on this platform),
checks that the PCK leaf of ``pck_chain`` is the key that certified this QE, and returns
the quote: header (ECDSA-P256 key type, SGX, QE SVN, PCE SVN, QE vendor id, QE id ‖ 4 zero
bytes), the application's REPORT body, the attestation key's signature over both, this QE's
REPORT body, its PCK signature, the auth data and certification data type 5 (the PEM chain;
wrapped in type 6 for v4).
"""

from __future__ import annotations

import hashlib
import hmac
import threading

from cryptography import x509
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import algorithms

from enclavekit.dcap.arch import QE_AUTH_DATA
from enclavekit.dcap.ecdsa import public_key_to_raw, sign_raw, verify_raw
from enclavekit.dcap.quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_TYPE_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_SGX,
    CertificationData,
    Quote,
    QuoteHeader,
)
from enclavekit.enclave import ecall, get_key, identity, report
from enclavekit.errors import QuotingError
from enclavekit.sgx.consts import KeyName, KeyPolicy

_QE_ID_KEYID = hashlib.sha256(b"enclavekit QE_ID v1").digest()
_lock = threading.Lock()
_att_key = ec.generate_private_key(ec.SECP256R1())
_att_public = public_key_to_raw(_att_key.public_key())
_pending: bytes | None = None
_qe_report: bytes | None = None
_qe_signature = b""
_pce_svn = 0
_qe_id = b""
_trusted_chain = b""
_report_keys: dict[bytes, bytes] = {}


def _report_data() -> bytes:
    return hashlib.sha256(_att_public + QE_AUTH_DATA).digest() + bytes(32)


@ecall
def target() -> bytes:
    """This QE's TARGETINFO, for application enclaves' REPORTs."""
    from enclavekit.enclave import target_info

    return target_info()


@ecall
def attestation_key() -> bytes:
    """The attestation public key (raw x ‖ y)."""
    return _att_public


@ecall
def certify_request(pce_target_info: bytes) -> bytes:
    """A REPORT for the PCE binding the attestation key (to be signed with the PCK key)."""
    global _pending
    made = report(pce_target_info, _report_data())
    with _lock:
        _pending = made[:384]
    return made


@ecall
def install(qe_report_signature: bytes, pce_svn: int) -> None:
    """Accept the PCE's signature over the REPORT of :func:`certify_request`.

    The signature is checked against the PCK certificate at the first quote (this QE does
    not know the PCK public key before the host hands over the chain).
    """
    global _qe_report, _qe_signature, _pce_svn, _qe_id, _trusted_chain
    if len(qe_report_signature) != 64:
        raise QuotingError(f"QE: a PCK signature is 64 bytes (r || s), found "
                           f"{len(qe_report_signature)}")
    if not 0 <= pce_svn <= 0xFFFF:
        raise QuotingError(f"QE: PCE SVN {pce_svn} is outside 0..65535")
    qe_id = get_key(KeyName.SEAL, KeyPolicy.MRSIGNER, keyid=_QE_ID_KEYID)
    with _lock:
        if _pending is None:
            raise QuotingError("QE: install() before certify_request(); nothing to certify")
        _qe_report, _qe_signature, _pce_svn, _qe_id = (_pending, qe_report_signature, pce_svn,
                                                       qe_id)
        _trusted_chain = b""


def _check_chain(chain: bytes, qe_report: bytes, signature: bytes) -> None:
    """The chain's leaf key must be the PCK key that signed this QE's REPORT body."""
    global _trusted_chain
    if hmac.compare_digest(chain, _trusted_chain):
        return
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError:
        raise QuotingError("QE: the PCK certificate chain is not PEM certificates") from None
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not verify_raw(key, signature,
                                                                        qe_report):
        raise QuotingError("QE: the PCK certificate's key did not sign this QE's REPORT (a "
                           "chain of another platform or TCB); refused")
    _trusted_chain = chain


def _verify_app_report(app_report: bytes) -> None:
    """EGETKEY(REPORT) (cached per KEYID) and the AES-CMAC over the REPORT body."""
    if type(app_report) is not bytes or len(app_report) != 432:
        raise QuotingError("QE: a REPORT is 432 bytes")
    keyid = app_report[384:416]
    key = _report_keys.get(keyid)
    if key is None:
        key = get_key(KeyName.REPORT, 0, keyid=keyid)
        if len(_report_keys) > 64:
            _report_keys.clear()
        _report_keys[keyid] = key
    mac = cmac.CMAC(algorithms.AES128(key))
    mac.update(app_report[:384])
    if not hmac.compare_digest(mac.finalize(), app_report[416:]):
        raise QuotingError("QE: the REPORT was not made for this quoting enclave on this "
                           "platform (its MAC does not verify); refused")


@ecall
def quote(app_report: bytes, pck_chain: bytes, version: int) -> bytes:
    """A DCAP quote (v3, or v4 with type-6 certification data) for ``app_report``."""
    if version not in (3, 4):
        raise QuotingError(f"QE: quote version {version} is not produced (3 or 4)")
    with _lock:
        qe_report, signature, pce_svn, qe_id = _qe_report, _qe_signature, _pce_svn, _qe_id
    if qe_report is None:
        raise QuotingError("QE: not certified by the PCE yet; the host must run "
                           "certify_request and install first")
    _verify_app_report(app_report)
    with _lock:
        _check_chain(pck_chain, qe_report, signature)
    header = QuoteHeader(version=version, att_key_type=ATT_KEY_TYPE_ECDSA_P256,
                         tee_type=TEE_TYPE_SGX, qe_svn=identity().isvsvn, pce_svn=pce_svn,
                         qe_vendor_id=INTEL_QE_VENDOR_ID, user_data=qe_id + bytes(4))
    body = app_report[:384]
    made = Quote(header=header, report_body=body,
                 signature=sign_raw(_att_key, header.to_bytes() + body),
                 attestation_key=_att_public, qe_report=qe_report,
                 qe_report_signature=signature, qe_auth_data=QE_AUTH_DATA,
                 certification_data=CertificationData(CERT_TYPE_PCK_CHAIN, pck_chain))
    return made.to_bytes()
