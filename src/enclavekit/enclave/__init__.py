"""The enclave runtime's trusted API (usable inside an enclave process).

Declare the interface with :func:`ecall` / :func:`ocall`; ask the platform with
:func:`identity`, :func:`target_info`, :func:`report`, :func:`verify_report` and
:func:`get_key`; prove itself to a remote party with :func:`get_quote`; attest a peer
enclave with :mod:`enclavekit.enclave.local`. Importing this package on the host is fine;
the channel functions raise ``EnclaveKitError`` "not inside an enclave" there.
"""

from __future__ import annotations

from . import counters
from .api import Identity, ReportInfo, get_key, identity, report, target_info, verify_report
from .dispatch import ecall, ocall
from .importer import trusted_file
from .local import LocalAttestation, PeerPolicy
from .quote import get_quote
from .seal import SealPolicy, Unsealed, seal, unseal

__all__ = [
    "Identity",
    "LocalAttestation",
    "PeerPolicy",
    "ReportInfo",
    "SealPolicy",
    "Unsealed",
    "counters",
    "ecall",
    "get_key",
    "get_quote",
    "identity",
    "ocall",
    "report",
    "seal",
    "target_info",
    "trusted_file",
    "unseal",
    "verify_report",
]
