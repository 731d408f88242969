"""The emulated PKI's certificates have Intel's shape and names that are plainly not Intel's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from enclavekit.dcap import pki
from enclavekit.dcap.pckext import SGX_EXTENSION_OID, PckExtension

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

INTEL_ROOT_SUBJECT = "CN=Intel SGX Root CA,O=Intel Corporation,L=Santa Clara,ST=CA,C=US"


def _ext(**kw: object) -> PckExtension:
    base: dict[str, object] = dict(
        ppid=bytes(range(16)), tcb_components=(7, 9, 3, 3, 255, 255, 1) + (0,) * 9, pcesvn=13,
        cpusvn=bytes([7, 9, 3, 3, 255, 255, 1] + [0] * 9), pceid=bytes(2),
        fmspc=bytes.fromhex("00ee0a000000"))
    base.update(kw)
    return PckExtension(**base)  # type: ignore[arg-type]


class Chain(NamedTuple):
    root: x509.Certificate
    ca: x509.Certificate
    tcb: x509.Certificate
    leaf: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    ca_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def chain() -> Chain:
    root_key, ca_key, tcb_key, leaf_key = (pki.new_key() for _ in range(4))
    root = pki.make_root(root_key, issued=NOW)
    ca = pki.make_pck_ca(ca_key.public_key(), root, root_key, issued=NOW)
    tcb = pki.make_tcb_signing(tcb_key.public_key(), root, root_key, issued=NOW)
    leaf = pki.make_pck_certificate(leaf_key.public_key(), _ext(), ca, ca_key, issued=NOW,
                                    serial=0x1234)
    return Chain(root=root, ca=ca, tcb=tcb, leaf=leaf, root_key=root_key, ca_key=ca_key,
                 leaf_key=leaf_key)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _bc(cert: x509.Certificate) -> x509.BasicConstraints:
    ext = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ext.critical
    return ext.value


def _ku(cert: x509.Certificate) -> x509.KeyUsage:
    ext = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ext.critical
    return ext.value


def test_names_keep_the_qvl_substrings_but_say_emulation_not_intel(chain: Chain) -> None:
    for key, needle in (("root", "SGX Root CA"), ("ca", "SGX PCK Processor CA"),
                        ("leaf", "SGX PCK Certificate"), ("tcb", "SGX TCB Signing")):
        cert = getattr(chain, key)
        cn = _cn(cert)
        assert needle in cn
        assert "enclavekit" in cn and "not Intel" in cn
        assert not cn.startswith("Intel")
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert [o.value for o in orgs] == ["enclavekit emulation"]
        assert "Intel Corporation" not in cert.subject.rfc4514_string()
    assert chain.root.subject.rfc4514_string() != INTEL_ROOT_SUBJECT


def test_shapes_match_intels(chain: Chain) -> None:
    root, ca, tcb, leaf = chain.root, chain.ca, chain.tcb, chain.leaf
    for cert in (root, ca, tcb, leaf):
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert isinstance(public.curve, ec.SECP256R1)
        assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert ".invalid/" in str(dp[0].full_name[0].value)  # never resolves anywhere
    assert root.issuer == root.subject
    assert _bc(root) == x509.BasicConstraints(ca=True, path_length=1)
    assert _bc(ca) == x509.BasicConstraints(ca=True, path_length=0)
    assert _bc(leaf).ca is False and _bc(tcb).ca is False
    assert _ku(root).key_cert_sign and _ku(root).crl_sign and not _ku(root).digital_signature
    assert _ku(ca).key_cert_sign and _ku(ca).crl_sign
    assert _ku(leaf).digital_signature and _ku(leaf).content_commitment
    assert not _ku(leaf).key_cert_sign
    # AKI of each issued certificate is its issuer's SKI
    for cert, issuer in ((ca, root), (tcb, root), (leaf, ca), (root, root)):
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
    assert leaf.serial_number == 0x1234
    assert leaf.not_valid_before_utc == NOW - pki.BACKDATE
    assert leaf.not_valid_after_utc == NOW + pki.PCK_VALIDITY


def test_pck_extension_parses_back(chain: Chain) -> None:
    leaf = chain.leaf
    ext = leaf.extensions.get_extension_for_oid(SGX_EXTENSION_OID)
    assert not ext.critical
    assert PckExtension.from_certificate(leaf) == _ext()


def test_chain_verifies_and_a_foreign_root_does_not(chain: Chain) -> None:
    chain.root.verify_directly_issued_by(chain.root)
    chain.ca.verify_directly_issued_by(chain.root)
    chain.tcb.verify_directly_issued_by(chain.root)
    chain.leaf.verify_directly_issued_by(chain.ca)
    other_key = pki.new_key()
    other = pki.make_root(other_key, issued=NOW)
    # same subject, different key: the signature is refused
    with pytest.raises(InvalidSignature):
        chain.ca.verify_directly_issued_by(other)
    with pytest.raises(ValueError):
        chain.leaf.verify_directly_issued_by(chain.root)


def test_crl_has_number_aki_and_revoked_serials(chain: Chain) -> None:
    later = NOW + timedelta(days=30)
    crl = pki.make_crl(chain.ca, chain.ca_key, [0x1234, (99, NOW - timedelta(days=1))],
                       this_update=NOW, next_update=later, number=7)
    assert crl.issuer == chain.ca.subject
    assert crl.is_signature_valid(chain.ca_key.public_key())
    assert not crl.is_signature_valid(chain.root_key.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = chain.ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert crl.last_update_utc == NOW and crl.next_update_utc == later
    revoked = crl.get_revoked_certificate_by_serial_number(0x1234)
    assert revoked is not None and revoked.revocation_date_utc == NOW
    old = crl.get_revoked_certificate_by_serial_number(99)
    assert old is not None and old.revocation_date_utc == NOW - timedelta(days=1)
    assert crl.get_revoked_certificate_by_serial_number(5) is None
    empty = pki.make_crl(chain.root, chain.root_key, [], this_update=NOW,
                         next_update=later, number=1)
    assert len(empty) == 0 and empty.is_signature_valid(chain.root_key.public_key())


def test_pck_leaf_never_outlives_its_ca(chain: Chain) -> None:
    key = pki.new_key()
    ca = pki.make_pck_ca(key.public_key(), chain.root, chain.root_key, issued=NOW,
                         not_after=NOW + timedelta(days=10))
    leaf = pki.make_pck_certificate(pki.new_key().public_key(), _ext(), ca, key, issued=NOW)
    assert leaf.not_valid_after_utc == ca.not_valid_after_utc
