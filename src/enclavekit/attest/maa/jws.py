"""Incoming JWS (policy documents, policy-management certificate changes) on
:mod:`enclavekit.jose`, and the base64 helpers of the service's requests.

Accepted (maa-skr.md §1.5–1.6): compact JWS with ``alg`` ``none`` (empty signature) or
``RS256`` / ``RSA256`` (the name Microsoft's Python client writes; both mean RSASSA-PKCS1-v1_5
with SHA-256), the signer's certificate in ``jwk.x5c[0]`` or ``x5c[0]``. Everything
:func:`enclavekit.jose.decode` refuses (not strict base64url, duplicate JSON keys, ``crit``),
another algorithm, a signature on an unsecured JWS, a signer that is not an RSA key of 2048
bits or more, a signature that does not verify — is refused with
:class:`AttestationRequestError` (code ``InvalidOperation``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509

from ... import jose
from ...errors import AttestationRequestError, InvalidToken

__all__ = ["Jws", "b64decode_any", "load_x5c_cert", "parse_jws", "std_b64"]

_B64_RE = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")
_SIGNED_ALGS: Final = ("RS256", "RSA256")
_MAX_JWS: Final = 1 << 20
"""Longest JWS accepted: the service's request-body limit."""


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


def load_x5c_cert(entry: object, what: str) -> x509.Certificate:
    """A certificate from an ``x5c`` entry (standard base64 of DER)."""
    try:
        return jose.x5c_certificate(entry, what)
    except InvalidToken as exc:
        raise AttestationRequestError(str(exc), "InvalidOperation") from None


@dataclass(frozen=True)
class Jws:
    """A parsed (and, when signed, verified) compact JWS."""

    text: str
    header: Mapping[str, Any]
    payload: bytes
    signer: x509.Certificate | None
    """The certificate whose key verified the signature; ``None`` for ``alg: none``."""

    @property
    def signed(self) -> bool:
        return self.signer is not None

    def claims(self) -> dict[str, Any]:
        """The payload as a JSON object (``{}`` for an empty payload)."""
        try:
            return jose.payload_claims(self.payload)
        except InvalidToken as exc:
            raise AttestationRequestError(f"JWS {exc}", "InvalidOperation") from None


def _signer_cert(header: Mapping[str, Any]) -> x509.Certificate:
    jwk = header.get("jwk")
    x5c = jwk.get("x5c") if isinstance(jwk, dict) else header.get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise InvalidToken("signed JWS has no signer certificate (jwk.x5c or x5c)")
    return jose.x5c_certificate(x5c[0], "JWS signer certificate x5c[0]")


def parse_jws(text: str, *, what: str = "JWS") -> Jws:
    """Parse a compact JWS and verify its signature with the certificate it carries.

    Whether that certificate is *trusted* is for the caller to decide (:attr:`Jws.signer`).

    Raises:
        AttestationRequestError: the JWS fails a check of :mod:`enclavekit.jose`, its
            algorithm is not none/RS256/RSA256, or it is unsecured and carries a signature.
    """
    try:
        jws = jose.decode(text.strip(), max_size=_MAX_JWS)
        if jws.alg == "none":
            if jws.signature:
                raise InvalidToken("says alg none but carries a signature")
            return Jws(jws.text, jws.header, jws.payload, None)
        jose.check_alg(jws, _SIGNED_ALGS)
        cert = _signer_cert(jws.header)
        jose.verify_signature(jws, cert.public_key(), algorithms=_SIGNED_ALGS,
                              key_name="its signer certificate")
    except InvalidToken as exc:
        raise AttestationRequestError(f"{what}: {exc}", "InvalidOperation") from None
    return Jws(jws.text, jws.header, jws.payload, cert)
