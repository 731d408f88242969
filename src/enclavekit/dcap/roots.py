"""Trust anchors: Intel's production SGX Root CA, built in (sgx-spec.md §6.5).

The PEM is public data. A chain is trusted only when its root is *byte-identical* to a pinned
root (QVL pins by signature; the same key under another issuance — e.g. the legacy 2033 root —
is not enough). Emulation roots are never trusted unless a caller passes them explicitly.
"""

from __future__ import annotations

import functools
import hashlib
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import CollateralFormatError
from .quote import check_certificate_envelope

__all__ = [
    "INTEL_SGX_ROOT_CA_PEM", "INTEL_SGX_ROOT_CA_SHA256", "fingerprint", "intel_sgx_root_ca",
    "load_pem_chain", "load_roots",
]

INTEL_SGX_ROOT_CA_PEM = b"""\
-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
"""SHA-256 of the production root's DER."""

_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----"
)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of a certificate's DER, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@functools.cache
def intel_sgx_root_ca() -> x509.Certificate:
    """The production Intel SGX Root CA (checked against its pinned fingerprint)."""
    cert = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM)
    if fingerprint(cert) != INTEL_SGX_ROOT_CA_SHA256:  # pragma: no cover - constant data
        raise RuntimeError("built-in Intel SGX Root CA does not match its fingerprint")
    return cert


def load_pem_chain(data: bytes | str, what: str = "certificate chain") -> list[x509.Certificate]:
    """Every certificate in a PEM text, in order.

    Raises:
        CollateralFormatError: no certificate, stray text between blocks, or a block that does
            not parse.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    raw = raw.rstrip(b"\x00")
    blocks = _PEM_BLOCK.findall(raw)
    if not blocks:
        raise CollateralFormatError(f"{what}: no PEM certificate found")
    if _PEM_BLOCK.sub(b"", raw).strip():
        raise CollateralFormatError(f"{what}: stray text outside the PEM blocks")
    certs: list[x509.Certificate] = []
    for i, block in enumerate(blocks):
        try:
            cert = x509.load_pem_x509_certificate(block)
            check_certificate_envelope(cert.public_bytes(Encoding.DER))
            certs.append(cert)
        except (ValueError, x509.InvalidVersion) as exc:
            raise CollateralFormatError(f"{what}: certificate {i} does not parse: {exc}") from exc
    return certs


def load_roots(data: bytes | str) -> list[x509.Certificate]:
    """Trust anchors from PEM (or one DER certificate); each must be a valid self-signed CA.

    Raises:
        CollateralFormatError: not a certificate, or not self-signed.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw[:1] == b"\x30":
        try:
            certs = [x509.load_der_x509_certificate(raw)]
        except (ValueError, x509.InvalidVersion) as exc:
            raise CollateralFormatError(f"trust root: DER does not parse: {exc}") from exc
    else:
        certs = load_pem_chain(raw, "trust root")
    for cert in certs:
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CollateralFormatError(
                f"trust root {cert.subject.rfc4514_string()} is not self-signed"
            ) from exc
    return certs
