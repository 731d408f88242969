"""A data owner's side of the ``examples/joint_stats`` app: its records encrypted in
batches under its own AES-256-GCM key, the result decrypted, the direct key transfer by
quote (``quote_binding`` / ``wrap_for``) and a DCAP verifier that trusts one emulated root.

The associated data and key derivations are those of ``examples/joint_stats/stats.py``
(``joint-stats/v1/...``): a batch moved to another owner or number does not open.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..dcap.collateral import Collateral
from ..dcap.policy import AppraisalPolicy
from ..dcap.verify import VerificationResult, verify_quote
from ..errors import EnclaveKitError, IntegrityError
from .data import records

__all__ = ["BATCH", "NONCE", "RemoteVerifier", "encrypt_records", "open_result",
           "quote_binding", "wrap_for"]

BATCH = 60
"""Records per encrypted batch."""
NONCE = 12


def _aad(kind: str, owner: str, extra: str = "") -> bytes:
    return f"joint-stats/v1/{kind}/{owner}/{extra}".encode()


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def encrypt_records(owner: str, key: bytes,
                    rows: list[dict[str, int]] | None = None) -> list[bytes]:
    """``owner``'s records (default: :func:`~enclavekit.jointstats.data.records`) as JSON
    batches of :data:`BATCH`, each AES-256-GCM under ``key`` with its owner and number in
    the associated data (what ``add_records(owner, number, blob)`` takes)."""
    rows = records(owner) if rows is None else rows
    return [_seal(key, json.dumps(rows[i : i + BATCH]).encode(),
                  _aad("records", owner, str(i // BATCH)))
            for i in range(0, len(rows), BATCH)]


def open_result(owner: str, key: bytes, blob: bytes) -> dict[str, Any]:
    """The owner's copy of the result (``compute()[owner]``), decrypted with its key.

    Raises:
        IntegrityError: the blob does not open under the owner's key (altered, or another
            owner's).
    """
    try:
        value = json.loads(AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:],
                                               _aad("result", owner)))
    except (InvalidTag, ValueError):
        raise IntegrityError(f"the result for {owner} does not open under its key") from None
    if not isinstance(value, dict):
        raise IntegrityError(f"the result for {owner} is not a JSON object")
    return value


def quote_binding(owner: str, public: bytes, nonce: bytes) -> bytes:
    """The REPORTDATA the owner expects (``examples/joint_stats``: ``quote_binding``)."""
    label = f"joint-stats/v1/quote/{owner}/".encode()
    return hashlib.sha256(label + public + nonce).digest() + bytes(32)


def wrap_for(owner: str, data_key: bytes, enclave_public: bytes) -> tuple[bytes, bytes]:
    """The owner's side of the direct key transfer: an X25519 key of its own and the data key
    wrapped under HKDF-SHA256 of the shared secret (``examples/joint_stats``: ``wrap_key``);
    returns (the owner's public key, the wrapped key) for ``receive_key``."""
    mine = X25519PrivateKey.generate()
    public = mine.public_key().public_bytes_raw()
    secret = mine.exchange(X25519PublicKey.from_public_bytes(enclave_public))
    info = f"joint-stats/v1/wrap/{owner}/".encode() + enclave_public + public
    wrapping = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
    return public, _seal(wrapping, data_key, _aad("key", owner))


@dataclass
class RemoteVerifier:
    """The owners' DCAP verifier: one emulated root as the only trust root, the platform's
    collateral, a strict appraisal."""

    root: x509.Certificate
    collateral: Collateral
    allowed_advisories: tuple[str, ...] = ()
    """Advisory ids accepted by name on a ConfigurationNeeded platform (``EK-DEV-0001``: a
    development platform); none means UpToDate only."""

    def check(self, quote: bytes, mrenclave: bytes, mrsigner: bytes,
              report_data: bytes) -> VerificationResult:
        """Verify ``quote`` and appraise it: UpToDate (or only the allowed advisories), this
        MRENCLAVE and MRSIGNER, not DEBUG, REPORTDATA as given.

        Raises:
            VerificationFailed: the appraisal refused it (or a format or chain error).
        """
        result = verify_quote(quote, self.collateral, trusted_roots=[self.root])
        statuses = ("UpToDate", "ConfigurationNeeded") if self.allowed_advisories else (
            "UpToDate",)
        policy = AppraisalPolicy.build(mrenclave=[mrenclave], mrsigner=[mrsigner],
                                       allowed_statuses=statuses,
                                       allowed_advisory_ids=self.allowed_advisories,
                                       report_data=report_data)
        return policy.check(result)

    def refused_under_intel_root(self, quote: bytes) -> str:
        """The refusal of a verifier that trusts only Intel's root (QV-12), as one line.

        Raises:
            EnclaveKitError: that verifier accepted the emulated quote.
        """
        try:
            verify_quote(quote, self.collateral)
        except EnclaveKitError as exc:
            return f"{type(exc).__name__}: {exc}"
        raise EnclaveKitError("a verifier pinned to Intel's root accepted an emulated quote")
