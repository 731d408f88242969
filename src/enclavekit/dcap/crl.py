"""A CRL as the verifier reads it: every field its checks use, decoded once per distinct DER.

:func:`load_crl` parses a DER CRL (pyca), checks its outer envelope as certificates are
checked (:func:`~enclavekit.dcap.quote.check_certificate_envelope`) and decodes the issuer,
the two required extensions' presence, the signed bytes, the update times and the revoked
serial numbers. Nothing is verified here: the issuer's signature, freshness and revocation
lookups are the verifier's, on every call. Parses are kept by content (:mod:`.memo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import SignatureAlgorithmOID

from ..errors import CollateralFormatError
from .memo import ContentCache
from .quote import check_certificate_envelope

__all__ = ["Crl", "load_crl"]


@dataclass(frozen=True)
class Crl:
    """A parsed CRL with the fields every check reads."""

    crl: x509.CertificateRevocationList
    issuer: bytes
    """The issuer Name as DER (compared byte for byte, as QVL does)."""
    missing_extension: str | None
    """The first of CRLNumber, AuthorityKeyIdentifier that is absent (the verifier refuses)."""
    tbs: bytes
    signature: bytes
    ecdsa_sha256: bool
    this_update: datetime
    next_update: datetime | None
    revoked: frozenset[int]
    """Serial numbers the CRL lists."""

    @classmethod
    def parse(cls, der: bytes, what: str = "CRL") -> Crl:
        """Parse a DER CRL (no cache; see :func:`load_crl`).

        Raises:
            CollateralFormatError: the DER, its envelope or a field does not parse.
        """
        try:
            crl = x509.load_der_x509_crl(der)
            check_certificate_envelope(der)  # the same outer shape: tbs, algorithm, BIT STRING
            missing = None
            for ext in (x509.CRLNumber, x509.AuthorityKeyIdentifier):
                try:
                    crl.extensions.get_extension_for_class(ext)
                except x509.ExtensionNotFound:
                    missing = missing or ext.__name__
            return cls(
                crl=crl, issuer=crl.issuer.public_bytes(), missing_extension=missing,
                tbs=crl.tbs_certlist_bytes, signature=crl.signature,
                ecdsa_sha256=crl.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256,
                this_update=crl.last_update_utc, next_update=crl.next_update_utc,
                revoked=frozenset(entry.serial_number for entry in crl))
        except (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension) as exc:
            raise CollateralFormatError(f"{what} does not parse: {exc}") from exc

    def revokes(self, serial: int) -> bool:
        """Whether the CRL lists ``serial``."""
        return serial in self.revoked


load_crl: ContentCache[Crl] = ContentCache(Crl.parse, entries=64)
"""``load_crl(der, what)``: :meth:`Crl.parse`, kept per distinct DER."""
