"""The built-in Intel SGX Root CA and trust-root loading."""

from __future__ import annotations

import pytest
from cryptography import x509

from enclavekit.dcap.roots import (
    INTEL_SGX_ROOT_CA_SHA256,
    fingerprint,
    intel_sgx_root_ca,
    load_pem_chain,
    load_roots,
)
from enclavekit.errors import CollateralFormatError
from tests.vectors import vector


def test_builtin_root_is_the_published_one() -> None:
    published = x509.load_der_x509_certificate(
        vector("intel_root_ca/Intel_SGX_Root_CA.der").read_bytes())
    assert fingerprint(intel_sgx_root_ca()) == INTEL_SGX_ROOT_CA_SHA256
    assert INTEL_SGX_ROOT_CA_SHA256.startswith("44a0196b")
    assert intel_sgx_root_ca() == published


def test_legacy_root_shares_the_key_but_not_the_fingerprint() -> None:
    legacy = load_roots(vector("intel_root_ca/Intel_SGX_Root_CA_legacy_notAfter2033.pem")
                        .read_bytes())[0]
    assert legacy.public_key() == intel_sgx_root_ca().public_key()
    assert fingerprint(legacy) != INTEL_SGX_ROOT_CA_SHA256


def test_load_roots_der_and_pem() -> None:
    der = load_roots(vector("intel_root_ca/Intel_SGX_Root_CA.der").read_bytes())
    pem = load_roots(vector("intel_root_ca/Intel_SGX_Root_CA.pem").read_text())
    assert der == pem == [intel_sgx_root_ca()]


def test_non_self_signed_root_refused() -> None:
    ca = vector("mobilecoin_attestation/processor_ca.pem").read_bytes()
    with pytest.raises(CollateralFormatError, match="not self-signed"):
        load_roots(ca)


@pytest.mark.parametrize("data, match", [
    (b"", "no PEM certificate"),
    (b"hello", "no PEM certificate"),
    (b"\x30\x03\x02\x01\x01", "DER does not parse"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse"),
])
def test_garbled_roots_refused(data: bytes, match: str) -> None:
    with pytest.raises(CollateralFormatError, match=match):
        load_roots(data)


def test_pem_chain_refuses_stray_text() -> None:
    pem = vector("intel_root_ca/Intel_SGX_Root_CA.pem").read_bytes()
    assert len(load_pem_chain(pem + pem)) == 2
    with pytest.raises(CollateralFormatError, match="stray text"):
        load_pem_chain(pem + b"junk")
