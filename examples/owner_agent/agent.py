"""The owner agent: holds the data owners' keys and releases them only to the enclave they named.

Each owner deposits its AES-256-GCM data key together with the identity it expects of
the compute enclave (MRENCLAVE and MRSIGNER, which the owner computed from the signed
file itself). The agent attests the compute enclave locally (REPORTs targeted at each
other, verified with the REPORT key; a DEBUG enclave is refused) and only then releases
the keys, each wrapped under the session key. The host relays bytes and learns nothing.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enclavekit.enclave import ecall
from enclavekit.enclave.local import LocalAttestation, PeerPolicy

NONCE = 12
CONTEXT = b"joint-stats/v1"

_keys: dict[str, bytes] = {}
_expected: dict[str, tuple[bytes, bytes]] = {}
_exchange: LocalAttestation | None = None
_session_key: bytes | None = None


def session_fingerprint(key: bytes) -> bytes:
    """A short public fingerprint of a session key, for the two sides to compare."""
    return hashlib.sha256(b"joint-stats/v1/fingerprint/" + key).digest()[:8]


@ecall
def deposit_key(owner: str, data_key: bytes, mrenclave: bytes, mrsigner: bytes) -> None:
    """Hold ``owner``'s data key, to be released only to an enclave with this identity."""
    if len(data_key) != 32:
        raise ValueError(f"data key of {owner} is {len(data_key)} bytes, expected 32")
    if len(mrenclave) != 32 or len(mrsigner) != 32:
        raise ValueError("expected MRENCLAVE and MRSIGNER must be 32 bytes each")
    if owner in _keys:
        raise PermissionError(f"{owner} already deposited a key; it cannot be replaced")
    _keys[owner] = data_key
    _expected[owner] = (mrenclave, mrsigner)


@ecall
def attest_start() -> bytes:
    """Local attestation step 1: our TARGETINFO and a fresh nonce, for the compute enclave.

    The policy is the identity the owners named: every owner must name the same one.
    """
    global _exchange, _session_key
    identities = set(_expected.values())
    if len(identities) != 1:
        raise PermissionError(f"the owners must name exactly one compute enclave; they named "
                              f"{len(identities)}")
    ((mrenclave, mrsigner),) = identities
    _exchange = LocalAttestation(PeerPolicy(mrenclave=mrenclave, mrsigner=mrsigner,
                                            allow_debug=False), context=CONTEXT)
    _session_key = None
    return _exchange.start()


@ecall
def attest_respond(peer_hello: bytes) -> bytes:
    """Step 2: a REPORT for the compute enclave binding our key-exchange key to its nonce."""
    if _exchange is None:
        raise RuntimeError("attest_start must come first")
    return _exchange.respond(peer_hello)


@ecall
def attest_finish(peer_offer: bytes) -> bytes:
    """Step 3: check the compute enclave against the owners' policy; derive the session key.

    Returns a fingerprint of the key, for the host to see that both sides agree.
    """
    global _session_key
    if _exchange is None:
        raise RuntimeError("attest_start must come first")
    _session_key, _ = _exchange.finish(peer_offer)
    return session_fingerprint(_session_key)


@ecall
def release_keys() -> dict[str, bytes]:
    """Each owner's data key wrapped under the attested session key (AES-GCM)."""
    if _session_key is None:
        raise PermissionError("the compute enclave is not attested: keys stay here")
    out: dict[str, bytes] = {}
    for owner, key in _keys.items():
        nonce = os.urandom(NONCE)
        aad = f"joint-stats/v1/key/{owner}/".encode()
        out[owner] = nonce + AESGCM(_session_key).encrypt(nonce, key, aad)
    return out
