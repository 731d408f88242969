"""Incoming JWS (policy documents, policy-management certificate changes) and base64 helpers.

Accepted (maa-skr.md §1.5–1.6): compact JWS with ``alg`` ``none`` (empty signature) or
``RS256`` / ``RSA256`` (the name Microsoft's Python client writes; both mean RSASSA-PKCS1-v1_5
with SHA-256), the signer's certificate in ``jwk.x5c[0]`` or ``x5c[0]``. Anything else —
another algorithm, a ``crit`` header, a signature on an unsecured JWS, a signature that does not
verify — is refused with :class:`AttestationRequestError` (code ``InvalidOperation``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..._codec import b64url, strict_json
from ...errors import AttestationRequestError

__all__ = ["Jws", "b64decode_any", "b64url", "b64url_json", "parse_jws", "std_b64", "strict_json"]

_B64_RE = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")
_SIGNED_ALGS = ("RS256", "RSA256")
_MIN_RSA_BITS = 2048


def b64url_json(value: Any) -> str:
    """Unpadded base64url of compact JSON."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def std_b64(data: bytes) -> str:
    """Standard (padded) base64, as in ``x5c``."""
    return base64.b64encode(data).decode("ascii")


def b64decode_any(text: object, what: str, code: str = "InvalidParameter") -> bytes:
    """Decode base64 in either alphabet, padded or not (the clients send every variant).

    Raises:
        AttestationRequestError: ``text`` is not a string or not base64.
    """
    if not isinstance(text, str):
        raise AttestationRequestError(f"{what} must be a base64url string, "
                                      f"not {type(text).__name__}", code)
    if not _B64_RE.match(text):
        raise AttestationRequestError(f"{what} is not base64 (bad character)", code)
    core = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(core) % 4 == 1:
        raise AttestationRequestError(f"{what} is not base64 (impossible length)", code)
    try:
        return base64.b64decode(core + "=" * (-len(core) % 4), validate=True)
    except binascii.Error as exc:
        raise AttestationRequestError(f"{what} is not base64 ({exc})", code) from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = strict_json(raw)
    except (UnicodeDecodeError, ValueError):
        raise AttestationRequestError(f"{what} is not JSON", "InvalidOperation") from None
    if not isinstance(value, dict):
        raise AttestationRequestError(f"{what} is not a JSON object", "InvalidOperation")
    return value


def load_x5c_cert(entry: object, what: str) -> x509.Certificate:
    """A certificate from an ``x5c`` entry (standard base64 of DER)."""
    der = b64decode_any(entry, what, "InvalidOperation")
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.public_key()  # an unsupported key type must fail here, not later
        return cert
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm):
        raise AttestationRequestError(f"{what} is not a DER X.509 certificate",
                                      "InvalidOperation") from None


@dataclass(frozen=True)
class Jws:
    """A parsed (and, when signed, verified) compact JWS."""

    text: str
    header: dict[str, Any]
    payload: bytes
    signer: x509.Certificate | None
    """The certificate whose key verified the signature; ``None`` for ``alg: none``."""

    @property
    def signed(self) -> bool:
        return self.signer is not None

    def claims(self) -> dict[str, Any]:
        """The payload as a JSON object (``{}`` for an empty payload)."""
        return {} if not self.payload else _json_object(self.payload, "JWS payload")


def _signer_cert(header: dict[str, Any]) -> x509.Certificate:
    jwk = header.get("jwk")
    x5c = jwk.get("x5c") if isinstance(jwk, dict) else header.get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise AttestationRequestError("signed JWS has no signer certificate (jwk.x5c or x5c)",
                                      "InvalidOperation")
    return load_x5c_cert(x5c[0], "JWS signer certificate x5c[0]")


def parse_jws(text: str, *, what: str = "JWS") -> Jws:
    """Parse a compact JWS and verify its signature with the certificate it carries.

    Whether that certificate is *trusted* is for the caller to decide (:attr:`Jws.signer`).

    Raises:
        AttestationRequestError: not three base64url parts, header not a JSON object, an
            algorithm other than none/RS256/RSA256, a ``crit`` header, a non-RSA or short key,
            or a signature that does not verify.
    """
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise AttestationRequestError(f"{what} must have three dot-separated parts, "
                                      f"found {len(parts)}", "InvalidOperation")
    head_b64, body_b64, sig_b64 = parts
    header = _json_object(b64decode_any(head_b64, f"{what} header", "InvalidOperation"),
                          f"{what} header")
    payload = b64decode_any(body_b64, f"{what} payload", "InvalidOperation")
    signature = b64decode_any(sig_b64, f"{what} signature", "InvalidOperation")
    if "crit" in header:
        raise AttestationRequestError(f"{what} header has crit parameters this service does "
                                      "not understand", "InvalidOperation")
    alg = header.get("alg")
    if alg == "none":
        if signature:
            raise AttestationRequestError(f"{what} says alg none but carries a signature",
                                          "InvalidOperation")
        return Jws(text.strip(), header, payload, None)
    if alg not in _SIGNED_ALGS:
        raise AttestationRequestError(f"{what} alg {alg!r} is not supported (use RS256 or none)",
                                      "InvalidOperation")
    cert = _signer_cert(header)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < _MIN_RSA_BITS:
        raise AttestationRequestError(f"{what} signer must have an RSA key of at least "
                                      f"{_MIN_RSA_BITS} bits", "InvalidOperation")
    try:
        key.verify(signature, f"{head_b64}.{body_b64}".encode("ascii"), padding.PKCS1v15(),
                   hashes.SHA256())
    except InvalidSignature:
        raise AttestationRequestError(f"{what} signature does not verify with its signer "
                                      "certificate", "InvalidOperation") from None
    return Jws(text.strip(), header, payload, cert)
