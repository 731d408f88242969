"""ECDSA-P256 in DCAP's raw encodings: keys x ‖ y, signatures r ‖ s (32 bytes each, big-endian).

Quotes, QE reports, TCB info and QE identity carry raw values (sgx-spec.md §6.1); pyca wants
SEC1 points and DER signatures, so this module converts at the edge and adds the range checks a
DER decoder would not make: r and s must lie in [1, n-1] (CVE-2022-21449, QV-9).
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from ..errors import QuoteFormatError

__all__ = ["P256_ORDER", "public_key_from_raw", "public_key_to_raw", "sign_raw", "verify_raw",
           "verify_sha256"]

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""n, the order of the P-256 base point."""

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
"""ECDSA over a SHA-256 digest computed by the caller (``hashlib``): the same check, without
pyca setting up a digest context per verification."""


def public_key_from_raw(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its 64-byte raw form x ‖ y.

    Raises:
        QuoteFormatError: not 64 bytes, or the point is not on the curve.
    """
    if len(raw) != 64:
        raise QuoteFormatError(f"P-256 public key must be 64 bytes (x || y), found {len(raw)}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + bytes(raw))
    except ValueError as exc:
        raise QuoteFormatError("P-256 public key: the point is not on the curve") from exc


def public_key_to_raw(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 64-byte raw form x ‖ y of a P-256 public key."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise QuoteFormatError(f"expected a P-256 key, found {key.curve.name}")
    numbers = key.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256 over SHA-256(``data``), as the 64-byte raw signature r ‖ s."""
    r, s = decode_dss_signature(key.sign(data, _ECDSA_SHA256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_raw(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` (r ‖ s) is a valid ECDSA-P256/SHA-256 signature of ``data``.

    Never raises for a bad signature: a wrong length or r, s outside [1, n-1] is simply False.
    """
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
        return False
    try:
        key.verify(encode_dss_signature(r, s), hashlib.sha256(data).digest(), _ECDSA_PREHASHED)
    except InvalidSignature:
        return False
    return True


def verify_sha256(key: ec.EllipticCurvePublicKey, signature_der: bytes, data: bytes) -> None:
    """Verify an ECDSA/SHA-256 signature in DER (certificates, CRLs) over ``data``.

    Raises:
        InvalidSignature: it does not verify.
    """
    key.verify(signature_der, hashlib.sha256(data).digest(), _ECDSA_PREHASHED)
