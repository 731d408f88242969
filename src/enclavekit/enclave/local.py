"""Local attestation between two enclaves on one VM, ending in a shared 32-byte key.

The host only relays bytes. Each side runs the same three steps::

    a = LocalAttestation(PeerPolicy(mrenclave=B_MRENCLAVE, mrsigner=SIGNER))
    hello = a.start()                # TARGETINFO (512) ‖ fresh nonce (32)  → peer
    offer = a.respond(peer_hello)    # REPORT for the peer (432) ‖ X25519 public key (32) → peer
    key, peer = a.finish(peer_offer) # verify the peer's REPORT, check policy, derive the key

The peer's REPORTDATA must be SHA-256("enclavekit-local-v1" ‖ context ‖ its public key ‖
our nonce) ‖ 32 zero bytes, so an old REPORT (another nonce) or a swapped key is refused.
The key is HKDF-SHA256 over the X25519 secret with ``info`` = both REPORT bodies, sorted.
Refusals (RT-7): MAC (forged, or targeted at another enclave) → ``IntegrityError``;
nonce/key binding → ``IntegrityError``; DEBUG, MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN →
``PolicyError``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from ..errors import EnclaveKitError, IntegrityError, InvalidStructure, PolicyError
from .api import ReportInfo, report, target_info, verify_report

__all__ = ["KeyExchange", "LocalAttestation", "PeerPolicy"]

_LABEL = b"enclavekit-local-v1"
HELLO_SIZE = 512 + 32
OFFER_SIZE = 432 + 32


@dataclass(frozen=True)
class PeerPolicy:
    """What the peer must be: None means "any"; DEBUG peers only if ``allow_debug``."""

    mrenclave: bytes | None = None
    mrsigner: bytes | None = None
    isvprodid: int | None = None
    min_isvsvn: int = 0
    allow_debug: bool = False

    def check(self, peer: ReportInfo) -> None:
        """Raise PolicyError if ``peer`` is not acceptable."""
        if peer.debug and not self.allow_debug:
            raise PolicyError("peer enclave is a DEBUG build (its memory is readable); "
                              "refused (set allow_debug only for development)")
        if self.mrenclave is not None and peer.mrenclave != self.mrenclave:
            raise PolicyError(f"peer MRENCLAVE {peer.mrenclave.hex()[:16]}… is not the expected "
                              f"{self.mrenclave.hex()[:16]}…")
        if self.mrsigner is not None and peer.mrsigner != self.mrsigner:
            raise PolicyError(f"peer MRSIGNER {peer.mrsigner.hex()[:16]}… is not the expected "
                              f"{self.mrsigner.hex()[:16]}…")
        if self.isvprodid is not None and peer.isvprodid != self.isvprodid:
            raise PolicyError(f"peer ISVPRODID {peer.isvprodid} is not the expected "
                              f"{self.isvprodid}")
        if peer.isvsvn < self.min_isvsvn:
            raise PolicyError(f"peer ISVSVN {peer.isvsvn} is below the minimum {self.min_isvsvn}")


class LocalAttestation:
    """One side of a mutual local attestation and key exchange (start, respond, finish)."""

    def __init__(self, policy: PeerPolicy, context: bytes = b"") -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self.policy = policy
        self.context = bytes(context)
        self._nonce = os.urandom(32)
        self._key = X25519PrivateKey.generate()
        self._public = self._key.public_key().public_bytes_raw()
        self._report: bytes | None = None
        self._done = False

    def _binding(self, public: bytes, nonce: bytes) -> bytes:
        return hashlib.sha256(_LABEL + len(self.context).to_bytes(4, "little") + self.context
                              + public + nonce).digest() + bytes(32)

    def start(self) -> bytes:
        """Step 1: this enclave's TARGETINFO and a fresh nonce, for the peer."""
        return target_info() + self._nonce

    def respond(self, peer_hello: bytes) -> bytes:
        """Step 2: a REPORT for the peer binding our public key to its nonce, and the key."""
        if type(peer_hello) is not bytes or len(peer_hello) != HELLO_SIZE:
            raise InvalidStructure("local attestation hello", f"expected {HELLO_SIZE} bytes")
        if self._report is not None:
            raise EnclaveKitError("local attestation: respond() was already called")
        self._report = report(peer_hello[:512], self._binding(self._public, peer_hello[512:]))
        return self._report + self._public

    def finish(self, peer_offer: bytes) -> tuple[bytes, ReportInfo]:
        """Step 3: verify the peer's REPORT and policy; the shared 32-byte key and the peer."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        if type(peer_offer) is not bytes or len(peer_offer) != OFFER_SIZE:
            raise InvalidStructure("local attestation offer", f"expected {OFFER_SIZE} bytes")
        if self._report is None or self._done:
            raise EnclaveKitError("local attestation: call respond() once before finish()")
        peer_report, peer_public = peer_offer[:432], peer_offer[432:]
        peer = verify_report(peer_report)
        if peer.report_data != self._binding(peer_public, self._nonce):
            raise IntegrityError("local attestation: the peer's REPORTDATA does not bind its "
                                 "key to our nonce (replayed or altered REPORT)")
        self.policy.check(peer)
        self._done = True
        secret = self._key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        bodies = sorted([self._report[:384], peer_report[:384]])
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=_LABEL + self.context + bodies[0] + bodies[1]).derive(secret)
        return key, peer


_seen_nonces: set[bytes] = set()


class KeyExchange:
    """Two-message form: ``offer(peer TARGETINFO)`` → REPORT ‖ public key; ``finish`` → key.

    REPORTDATA = SHA-256(label ‖ context ‖ public key) ‖ a fresh 32-byte nonce; a nonce
    already accepted by this enclave is refused (replay), as are the checks of
    :class:`LocalAttestation`. The key is HKDF-SHA256 over the X25519 secret with both
    REPORT bodies, sorted, as ``info``. Prefer :class:`LocalAttestation` when a round trip
    more is affordable: its nonce comes from the verifier, so freshness does not rest on
    this enclave's memory.
    """

    def __init__(self, policy: PeerPolicy, context: bytes = b"") -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self.policy = policy
        self.context = bytes(context)
        self._key = X25519PrivateKey.generate()
        self._public = self._key.public_key().public_bytes_raw()
        self._report: bytes | None = None
        self.peer: ReportInfo | None = None

    def _binding(self, public: bytes) -> bytes:
        return hashlib.sha256(_LABEL + len(self.context).to_bytes(4, "little") + self.context
                              + public).digest()

    def offer(self, peer_target_info: bytes) -> bytes:
        """Our REPORT for the peer (binding our public key) and the public key."""
        if self._report is not None:
            raise EnclaveKitError("key exchange: offer() was already called")
        self._report = report(peer_target_info, self._binding(self._public) + os.urandom(32))
        return self._report + self._public

    def finish(self, peer_offer: bytes) -> bytes:
        """Verify the peer's REPORT, key binding, freshness and policy; the 32-byte key."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        if type(peer_offer) is not bytes or len(peer_offer) != OFFER_SIZE:
            raise InvalidStructure("key exchange offer", f"expected {OFFER_SIZE} bytes")
        if self._report is None or self.peer is not None:
            raise EnclaveKitError("key exchange: call offer() once before finish()")
        peer_report, peer_public = peer_offer[:432], peer_offer[432:]
        peer = verify_report(peer_report)
        if peer.report_data[:32] != self._binding(peer_public):
            raise IntegrityError("key exchange: the peer's REPORTDATA does not bind the "
                                 "public key it sent (altered offer)")
        nonce = peer.report_data[32:]
        if nonce in _seen_nonces:
            raise IntegrityError("key exchange: the peer's REPORT was already used "
                                 "(replayed nonce)")
        self.policy.check(peer)
        _seen_nonces.add(nonce)
        self.peer = peer
        secret = self._key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        bodies = sorted([self._report[:384], peer_report[:384]])
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=_LABEL + self.context + bodies[0] + bodies[1]).derive(secret)
