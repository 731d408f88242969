"""What ``import enclavekit`` gives is deliberate: the list is pinned here."""

from __future__ import annotations

import enclavekit
from enclavekit import errors

EXPECTED = {
    "SKU", "SigningKey", "__version__", "VM", "Enclave", "EnclaveFile", "build",
    "AttestationError", "CertificateChainError", "CollateralExpired", "DeviceError",
    "DeviceUnavailable", "EPCExhausted", "EcallArgumentError", "EcallError", "EnclaveKitError",
    "EnclaveLost", "IntegrityError", "InvalidStructure", "KeyNotFound", "KeyReleaseError",
    "ManifestError", "PolicyError", "ProtocolError", "QuoteFormatError",
    "ReleasePolicyNotSatisfied", "SGXError", "SGXFault", "SigningKeyError", "UnknownEcall",
    "UnknownVMSize", "VMError", "VMExists", "VMNotFound",
}


def test_all_is_pinned_without_duplicates() -> None:
    assert set(enclavekit.__all__) == EXPECTED
    assert len(enclavekit.__all__) == len(EXPECTED)


def test_every_exported_name_exists() -> None:
    for name in enclavekit.__all__:
        assert hasattr(enclavekit, name), name


def test_every_error_derives_from_the_base() -> None:
    for name in dir(errors):
        obj = getattr(errors, name)
        ours = isinstance(obj, type) and obj.__module__ == errors.__name__
        if ours and issubclass(obj, Exception):
            assert issubclass(obj, errors.EnclaveKitError), name


def test_hazmat_is_not_reexported() -> None:
    assert "sgx" not in enclavekit.__all__
    assert not hasattr(enclavekit, "Processor")
