"""The joint-statistics enclave: statistics over two owners' records, seen only in here.

Flow (the host only relays bytes between the owners, the services and this enclave):

1. ``fetch_keys(attest_url, kms_url, kms_cert_pem, keys)``: secure key release, the path
   ``enclavekit demo`` takes. The owners put their data keys in a Key-Vault-compatible
   key-release service with a release policy naming this enclave's MRSIGNER, product id,
   minimum SVN and not debuggable. This enclave attests through an Azure-Attestation-
   compatible service (its quote's REPORTDATA binds an RSA key pair made in here), sends
   the token to the key service for each owner's key and unwraps the answer in here; the
   answer must be signed by the pinned key-service certificate.
2. Alternatives to 1: ``quote_for(owner, nonce)`` + ``receive_key(owner, owner_public,
   wrapped)``: each owner verifies a DCAP quote binding a fresh X25519 key to its nonce
   (:func:`quote_binding`), then wraps its key under a key agreed with it
   (:func:`wrap_key`); or ``attest_start/respond/finish`` + ``receive_keys``: local
   attestation with the owner agent enclave on the same VM (same MRSIGNER, not DEBUG),
   keys under its session key.
3. ``add_records``: record batches encrypted by their owner (AES-GCM, batch number in
   the associated data; a batch number is accepted once).
4. ``compute``: count, mean, min and max of each numeric field over both owners'
   records, returned as JSON encrypted under each owner's own key.

``checkpoint`` seals the intermediate state (keys, records, batches seen) to this very
build (MRENCLAVE policy) for the host to keep; after a power loss (``vm restart``) a
fresh instance of the same build takes it back with ``resume``.
"""

from __future__ import annotations

import hashlib
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enclavekit.enclave import SealPolicy, ecall, get_quote, identity, seal, unseal
from enclavekit.enclave.keyrelease import attest, release_key
from enclavekit.enclave.local import LocalAttestation, PeerPolicy

FIELDS = ("age", "income")
CONTEXT = b"joint-stats/v1"
STATE_AAD = b"joint-stats/v1/state"
NONCE = 12

_exchange: LocalAttestation | None = None
_session_key: bytes | None = None
_keys: dict[str, bytes] = {}
_records: dict[str, list[dict[str, int]]] = {}
_batches: set[tuple[str, int]] = set()
_offers: dict[str, X25519PrivateKey] = {}


def quote_binding(owner: str, public: bytes, nonce: bytes) -> bytes:
    """REPORTDATA of the quote for ``owner``: SHA-256(label ‖ owner ‖ X25519 public key ‖
    the owner's nonce) ‖ 32 zero bytes (the owner computes the same to check it)."""
    label = f"joint-stats/v1/quote/{owner}/".encode()
    return hashlib.sha256(label + public + nonce).digest() + bytes(32)


def wrap_key(secret: bytes, owner: str, enclave_public: bytes, owner_public: bytes) -> bytes:
    """The AES-256 key an owner wraps its data key under: HKDF-SHA256 over the X25519 secret."""
    info = f"joint-stats/v1/wrap/{owner}/".encode() + enclave_public + owner_public
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def session_fingerprint(key: bytes) -> bytes:
    """A short public fingerprint of a session key, for the two sides to compare."""
    return hashlib.sha256(b"joint-stats/v1/fingerprint/" + key).digest()[:8]


def _aad(kind: str, owner: str, extra: str = "") -> bytes:
    return f"joint-stats/v1/{kind}/{owner}/{extra}".encode()


def _open(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    if len(blob) < NONCE + 16:
        raise ValueError(f"{what}: {len(blob)} bytes is too short for nonce and tag")
    try:
        return AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], aad)
    except InvalidTag:
        raise ValueError(f"{what}: authentication failed (wrong key or tampered)") from None


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


@ecall
def quote_for(owner: str, nonce: bytes) -> bytes:
    """Remote attestation for ``owner``: a quote binding a fresh X25519 key to the owner's
    nonce, followed by that 32-byte public key."""
    if not 16 <= len(nonce) <= 64:
        raise ValueError(f"the owner's nonce must be 16-64 bytes, found {len(nonce)}")
    key = X25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    _offers[owner] = key
    return get_quote(quote_binding(owner, public, nonce)) + public


@ecall
def receive_key(owner: str, owner_public: bytes, wrapped: bytes) -> list[str]:
    """Unwrap ``owner``'s data key with the key agreed for the quote of ``quote_for``
    (used once); return the owners whose keys this enclave holds."""
    if owner in _keys:
        raise PermissionError(f"{owner} already gave its key; it cannot be replaced")
    key = _offers.pop(owner, None)
    if key is None:
        raise PermissionError(f"no quote was made for {owner!r}: call quote_for first")
    if len(owner_public) != 32:
        raise ValueError(f"owner public key must be 32 bytes, found {len(owner_public)}")
    secret = key.exchange(X25519PublicKey.from_public_bytes(owner_public))
    wrapping = wrap_key(secret, owner, key.public_key().public_bytes_raw(), owner_public)
    data_key = _open(wrapping, wrapped, _aad("key", owner), f"data key of {owner}")
    if len(data_key) != 32:
        raise ValueError(f"data key of {owner} is {len(data_key)} bytes, expected 32")
    _keys[owner] = data_key
    _records.setdefault(owner, [])
    return sorted(_keys)


@ecall
def fetch_keys(attest_url: str, kms_url: str, kms_cert_pem: bytes,
               keys: dict[str, str]) -> list[str]:
    """Attest through the attestation service, then have each owner's data key (``keys``:
    owner → key name in the key-release service) released to this enclave and unwrapped in
    here; return the owners whose keys this enclave holds. The host relays the requests
    (``enclavekit_http``) and sees the token and the wrapped keys only."""
    taken = sorted(owner for owner in keys if owner in _keys)
    if taken:
        raise PermissionError(f"{', '.join(taken)} already gave a key; it cannot be replaced")
    token = attest(attest_url)
    released: dict[str, bytes] = {}
    for owner, name in keys.items():
        data_key = release_key(kms_url, name, token, kms_certificate=kms_cert_pem,
                               nonce=os.urandom(16).hex())
        if len(data_key) != 32:
            raise ValueError(f"data key of {owner} is {len(data_key)} bytes, expected 32")
        released[owner] = data_key
    for owner, data_key in released.items():
        _keys[owner] = data_key
        _records.setdefault(owner, [])
    return sorted(_keys)


@ecall
def attest_start() -> bytes:
    """Local attestation step 1: our TARGETINFO and a fresh nonce, for the owner agent."""
    global _exchange, _session_key
    _exchange = LocalAttestation(PeerPolicy(mrsigner=identity().mrsigner, allow_debug=False),
                                 context=CONTEXT)
    _session_key = None
    return _exchange.start()


@ecall
def attest_respond(peer_hello: bytes) -> bytes:
    """Step 2: a REPORT for the owner agent binding our key-exchange key to its nonce."""
    if _exchange is None:
        raise RuntimeError("attest_start must come first")
    return _exchange.respond(peer_hello)


@ecall
def attest_finish(peer_offer: bytes) -> bytes:
    """Step 3: check the agent's REPORT (same MRSIGNER, not DEBUG); derive the session key.

    Returns a fingerprint of the key, for the host to see that both sides agree.
    """
    global _session_key
    if _exchange is None:
        raise RuntimeError("attest_start must come first")
    _session_key, _ = _exchange.finish(peer_offer)
    return session_fingerprint(_session_key)


@ecall
def receive_keys(wrapped: dict[str, bytes]) -> list[str]:
    """Unwrap each owner's data key with the session key; return the owners accepted."""
    if _session_key is None:
        raise PermissionError("no attested session: run attest_begin/attest_finish first")
    for owner, blob in wrapped.items():
        key = _open(_session_key, blob, _aad("key", owner), f"data key of {owner}")
        if len(key) != 32:
            raise ValueError(f"data key of {owner} is {len(key)} bytes, expected 32")
        _keys[owner] = key
        _records.setdefault(owner, [])
    return sorted(_keys)


@ecall
def add_records(owner: str, batch: int, blob: bytes) -> int:
    """Decrypt one record batch of ``owner``; return the owner's record count so far."""
    if owner not in _keys:
        raise PermissionError(f"no data key for owner {owner!r}")
    if (owner, batch) in _batches:
        raise ValueError(f"batch {batch} of {owner} was already added (replay refused)")
    rows = json.loads(_open(_keys[owner], blob, _aad("records", owner, str(batch)),
                            f"batch {batch} of {owner}"))
    if not isinstance(rows, list):
        raise ValueError(f"batch {batch} of {owner} is not a list of records")
    for row in rows:
        if not isinstance(row, dict) or any(
                type(row.get(f)) is not int for f in FIELDS):
            raise ValueError(f"batch {batch} of {owner}: each record needs integer "
                             f"{' and '.join(FIELDS)}")
    _batches.add((owner, batch))
    _records[owner].extend({f: row[f] for f in FIELDS} for row in rows)
    return len(_records[owner])


def joint_statistics(records: list[dict[str, int]]) -> dict[str, dict[str, float]]:
    """Count, mean (2 decimals), min and max of each field."""
    out: dict[str, dict[str, float]] = {}
    for f in FIELDS:
        values = [r[f] for r in records]
        out[f] = {"count": len(values), "mean": round(sum(values) / len(values), 2),
                  "min": min(values), "max": max(values)}
    return out


@ecall
def compute() -> dict[str, bytes]:
    """Joint statistics over every owner's records, encrypted for each owner."""
    if len(_keys) < 2:
        raise PermissionError(f"joint statistics need two owners, have {sorted(_keys)}")
    empty = [o for o in _keys if not _records[o]]
    if empty:
        raise ValueError(f"no records from {', '.join(sorted(empty))}")
    everyone = [r for owner in sorted(_records) for r in _records[owner]]
    result = {"owners": {o: len(_records[o]) for o in sorted(_records)},
              "stats": joint_statistics(everyone)}
    plain = json.dumps(result, sort_keys=True).encode()
    return {owner: _seal(key, plain, _aad("result", owner)) for owner, key in _keys.items()}


@ecall
def checkpoint() -> bytes:
    """The intermediate state, sealed to this build on this platform (MRENCLAVE policy)."""
    state = {"keys": {owner: key.hex() for owner, key in _keys.items()},
             "records": _records, "batches": sorted([owner, n] for owner, n in _batches)}
    return seal(json.dumps(state, sort_keys=True).encode(), SealPolicy.MRENCLAVE, STATE_AAD)


@ecall
def resume(blob: bytes) -> dict[str, int]:
    """Take back a checkpoint (only this build on this platform can); records per owner."""
    if _keys or _batches:
        raise PermissionError("resume only into a fresh instance (state already present)")
    data, aad = unseal(blob)
    if aad != STATE_AAD:
        raise ValueError("not a joint-stats checkpoint")
    state = json.loads(data)
    _keys.update({owner: bytes.fromhex(key) for owner, key in state["keys"].items()})
    _records.update(state["records"])
    _batches.update((owner, n) for owner, n in state["batches"])
    return {owner: len(rows) for owner, rows in sorted(_records.items())}
