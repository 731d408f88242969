"""enclavekit: an Intel-SGX-style confidential-computing platform in software.

The public surface grows issue by issue; ``enclavekit.sgx`` is the processor model
(hazmat) and is never re-exported here.
"""

from ._version import __version__
from .errors import (
    AttestationError,
    CertificateChainError,
    CollateralExpired,
    DeviceError,
    DeviceUnavailable,
    EcallArgumentError,
    EcallError,
    EnclaveKitError,
    EnclaveLost,
    EPCExhausted,
    IntegrityError,
    InvalidStructure,
    KeyNotFound,
    KeyReleaseError,
    ManifestError,
    PolicyError,
    ProtocolError,
    QuoteFormatError,
    ReleasePolicyNotSatisfied,
    SGXError,
    SGXFault,
    SigningKeyError,
    UnknownEcall,
    UnknownVMSize,
    VMError,
    VMExists,
    VMNotFound,
)
from .host import VM, Enclave, EnclaveFile, build
from .sgx.signing import SigningKey
from .vm.sku import SKU

__all__ = [
    "SKU",
    "VM",
    "AttestationError",
    "CertificateChainError",
    "CollateralExpired",
    "DeviceError",
    "DeviceUnavailable",
    "EPCExhausted",
    "EcallArgumentError",
    "EcallError",
    "Enclave",
    "EnclaveFile",
    "EnclaveKitError",
    "EnclaveLost",
    "IntegrityError",
    "InvalidStructure",
    "KeyNotFound",
    "KeyReleaseError",
    "ManifestError",
    "PolicyError",
    "ProtocolError",
    "QuoteFormatError",
    "ReleasePolicyNotSatisfied",
    "SGXError",
    "SGXFault",
    "SigningKey",
    "SigningKeyError",
    "UnknownEcall",
    "UnknownVMSize",
    "VMError",
    "VMExists",
    "VMNotFound",
    "__version__",
    "build",
]
