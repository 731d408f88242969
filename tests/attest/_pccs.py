"""Helpers for the collateral-service tests: a controllable clock and chain/signature checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from enclavekit.dcap.ecdsa import verify_raw

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def chain_from_header(value: str) -> list[x509.Certificate]:
    """The certificates of a URL-encoded PEM issuer-chain header."""
    return x509.load_pem_x509_certificates(unquote(value).encode())


def signed_by(cert: x509.Certificate, signature_hex: str, text: str) -> bool:
    """Whether ``signature_hex`` (raw r ‖ s) over ``text`` verifies with ``cert``'s key."""
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return verify_raw(key, bytes.fromhex(signature_hex), text.encode())
