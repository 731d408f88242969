"""Minting the emulated provisioning PKI: root CA, PCK CA, TCB signing, PCK leaves, CRLs.

Pure functions over pyca ``cryptography.x509`` (EC P-256, ecdsa-with-SHA256) that give
certificates Intel's shape (sgx-spec.md §6.5, §6.9): the same key usages, basic
constraints, AKI/SKI, CRL distribution points and, for PCK leaves, the SGX extension
(OID 1.2.840.113741.1.13.1, §6.6). Their names say plainly that they are an enclavekit
emulation (``O=enclavekit emulation``, ``... (not Intel)``) while keeping the substrings
DCAP verifiers look for ("SGX Root CA", "SGX PCK Processor CA", "SGX PCK Certificate",
"SGX TCB Signing"), so an unmodified verifier accepts them only when it is given the
emulated root as its trust anchor — never against Intel's root (QV-12).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .pckext import SGX_EXTENSION_OID, PckExtension

__all__ = [
    "ORGANIZATION", "PCCS_BASE", "PCK_CA_CN", "PCK_CN", "ROOT_CN", "TCB_SIGNING_CN",
    "make_crl", "make_pck_ca", "make_pck_certificate", "make_root", "make_tcb_signing",
    "new_key",
]

ORGANIZATION = "enclavekit emulation"
"""O= of every emulated certificate and CRL issuer."""
ROOT_CN = "enclavekit Emulated SGX Root CA (not Intel)"
PCK_CA_CN = "enclavekit Emulated SGX PCK Processor CA (not Intel)"
PCK_CN = "enclavekit Emulated SGX PCK Certificate (not Intel)"
TCB_SIGNING_CN = "enclavekit Emulated SGX TCB Signing (not Intel)"
PCCS_BASE = "https://pccs.enclavekit.invalid/sgx/certification/v4"
"""CRL distribution points live under a reserved ``.invalid`` host: nothing resolves it."""

FAR_FUTURE = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
"""notAfter of the CAs (Intel's root uses the same date)."""
PCK_VALIDITY = timedelta(days=7 * 365)
"""Validity of a PCK leaf (Intel issues PCK certificates for seven years)."""
BACKDATE = timedelta(days=1)
"""notBefore is set this long before the issue time (clocks of relying parties drift)."""


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


_CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False)
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=True, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False)


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             serial: int | None, not_before: datetime, not_after: datetime,
             ) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(_name(subject)).issuer_name(issuer).public_key(public_key)
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False))


def _issued(builder: x509.CertificateBuilder, issuer_cert: x509.Certificate,
            issuer_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer_cert))
    return builder.add_extension(aki, critical=False).sign(issuer_key, hashes.SHA256())


def make_root(key: ec.EllipticCurvePrivateKey, *, issued: datetime,
              not_after: datetime = FAR_FUTURE, base: str = PCCS_BASE) -> x509.Certificate:
    """The self-signed emulated SGX Root CA (CA:TRUE, pathlen 1; keyCertSign, cRLSign)."""
    public = key.public_key()
    builder = (_builder(ROOT_CN, _name(ROOT_CN), public, None, issued - BACKDATE, not_after)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                              critical=False)
               .add_extension(_crl_dp(f"{base}/rootcacrl"), critical=False)
               .add_extension(_CA_USAGE, critical=True)
               .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True))
    return builder.sign(key, hashes.SHA256())


def make_pck_ca(public_key: ec.EllipticCurvePublicKey, root_cert: x509.Certificate,
                root_key: ec.EllipticCurvePrivateKey, *, issued: datetime,
                not_after: datetime = FAR_FUTURE, base: str = PCCS_BASE) -> x509.Certificate:
    """The emulated SGX PCK Processor CA, issued by the root (CA:TRUE, pathlen 0)."""
    builder = (_builder(PCK_CA_CN, root_cert.subject, public_key, None, issued - BACKDATE,
                        not_after)
               .add_extension(_crl_dp(f"{base}/rootcacrl"), critical=False)
               .add_extension(_CA_USAGE, critical=True)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True))
    return _issued(builder, root_cert, root_key)


def make_tcb_signing(public_key: ec.EllipticCurvePublicKey, root_cert: x509.Certificate,
                     root_key: ec.EllipticCurvePrivateKey, *, issued: datetime,
                     not_after: datetime = FAR_FUTURE, base: str = PCCS_BASE,
                     ) -> x509.Certificate:
    """The emulated SGX TCB Signing certificate (signs TCB info and QE identity; CA:FALSE)."""
    builder = (_builder(TCB_SIGNING_CN, root_cert.subject, public_key, None,
                        issued - BACKDATE, not_after)
               .add_extension(_crl_dp(f"{base}/rootcacrl"), critical=False)
               .add_extension(_LEAF_USAGE, critical=True)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    return _issued(builder, root_cert, root_key)


def make_pck_certificate(public_key: ec.EllipticCurvePublicKey, extension: PckExtension,
                         ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
                         issued: datetime, serial: int | None = None,
                         validity: timedelta = PCK_VALIDITY, base: str = PCCS_BASE,
                         ) -> x509.Certificate:
    """A PCK leaf for ``public_key`` carrying the SGX extension, issued by the PCK CA."""
    not_after = min(issued + validity, ca_cert.not_valid_after_utc)
    builder = (_builder(PCK_CN, ca_cert.subject, public_key, serial, issued - BACKDATE,
                        not_after)
               .add_extension(_crl_dp(f"{base}/pckcrl?ca=processor&encoding=der"),
                              critical=False)
               .add_extension(_LEAF_USAGE, critical=True)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.UnrecognizedExtension(SGX_EXTENSION_OID, extension.to_der()),
                              critical=False))
    return _issued(builder, ca_cert, ca_key)


def make_crl(issuer_cert: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
             revoked: Iterable[int | tuple[int, datetime]], *, this_update: datetime,
             next_update: datetime, number: int) -> x509.CertificateRevocationList:
    """A CRL by ``issuer_cert`` listing ``revoked`` serials (with CRL Number and AKI).

    An entry is a serial (revoked at ``this_update``) or ``(serial, revocation date)``.
    """
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer_cert.subject)
               .last_update(this_update).next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                   _ski(issuer_cert)), critical=False))
    for entry in revoked:
        serial, when = entry if isinstance(entry, tuple) else (entry, this_update)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            .build())
    return builder.sign(issuer_key, hashes.SHA256())
