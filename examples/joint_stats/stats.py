"""The joint-statistics enclave: statistics over two owners' records, seen only in here.

Flow (the host only relays bytes between the owner agent and this enclave):

1. ``attest_start/respond/finish``: mutual local attestation with the owner agent
   (same MRSIGNER as this enclave, not DEBUG), giving a 32-byte session key.
2. ``receive_keys``: each owner's AES-256-GCM data key, wrapped under the session key.
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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enclavekit.enclave import SealPolicy, ecall, identity, seal, unseal
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
