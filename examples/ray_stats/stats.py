"""Joint statistics over partitioned data, spread over enclaves on several Ray nodes.

Flow (``enclavekit.ray.jointstats`` drives it; the host only relays ciphertext):

1. ``join(context, roots_pem, mrenclaves, advisories)``: this enclave's hello — a DCAP quote
   binding an ECDH key made in here to the job (``enclavekit.enclave.peer``).
2. ``accept(peer, hello, collateral)``: verify a peer's quote in here (the job's trust roots,
   UpToDate or only the named advisories, not DEBUG, an admitted MRENCLAVE) and key the
   channel with it.
3. ``provision(sender_public, wrapped)``: the data owner's key, wrapped to the hello key
   after the owner verified the quote.
4. ``add_partition(batch, blob)``: a record batch encrypted under the owner's key.
5. ``partial(to)``: count/sum/min/max of this partition, sealed for the aggregator ``to``
   under the attested channel (sequence-numbered AES-GCM).
6. ``combine(parts)``: the aggregator opens every worker's partial and returns the joint
   statistics encrypted under the owner's key.

Also ``digest`` (a stateless service for replicated actors), ``checkpoint``/``resume``
(state sealed to MRSIGNER) and ``relay`` (re-seal a channel payload, for the benchmark).
"""

from __future__ import annotations

import hashlib
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enclavekit.enclave import SealPolicy, ecall, seal, trusted_file, unseal
from enclavekit.enclave.peer import Peers, unwrap_secret

FIELDS = ("age", "income")
STATE_AAD = b"ray-stats/v1/state"
_peers: Peers | None = None
_key: bytes | None = None
_rows: list[dict[str, int]] = []
_batches: set[int] = set()


def _job() -> Peers:
    if _peers is None:
        raise PermissionError("join the job first")
    return _peers


def _aad(kind: str, extra: str = "") -> bytes:
    return f"ray-stats/v1/{kind}/{extra}".encode()


def _roots(offered: bytes) -> bytes:
    """The job's trust roots: the measured ``job_roots.pem`` when the build pins one (the host
    cannot change them then), else what the host offered."""
    try:
        pinned = trusted_file("job_roots.pem")
    except FileNotFoundError:
        return offered
    if offered and offered != pinned:
        raise PermissionError("this build pins its job's trust roots (job_roots.pem); the "
                              "host offered other roots: refused")
    return pinned


@ecall
def join(context: bytes, roots_pem: bytes, mrenclaves: list[bytes],
         advisories: list[str]) -> bytes:
    """Start this enclave's part of the job; returns its hello. ``roots_pem`` may be empty
    when the build pins ``job_roots.pem``; ``advisories`` are the TCB advisory ids the job
    accepts from a peer's platform (``EK-DEV-0001`` on development platforms), empty for
    UpToDate only."""
    global _peers
    _peers = Peers(context, _roots(roots_pem), mrenclaves=mrenclaves or None,
                   advisories=advisories)
    return _peers.hello()


@ecall
def accept(peer: str, hello: bytes, collateral: str) -> bytes:
    """Verify ``peer``'s hello; returns the channel fingerprint."""
    return _job().accept(peer, hello, collateral)


@ecall
def provision(sender_public: bytes, wrapped: bytes) -> int:
    """Take the owner's data key (wrapped to this enclave's hello key)."""
    global _key
    key = unwrap_secret(_job(), sender_public, wrapped)
    if len(key) != 32:
        raise ValueError(f"the data key is {len(key)} bytes, expected 32")
    _key = key
    return len(_rows)


@ecall
def add_partition(batch: int, blob: bytes) -> int:
    """Decrypt one record batch of this partition; returns the partition's record count."""
    if _key is None:
        raise PermissionError("no data key: provision first")
    if batch in _batches:
        raise ValueError(f"batch {batch} was already added (replay refused)")
    try:
        plain = AESGCM(_key).decrypt(blob[:12], blob[12:], _aad("records", str(batch)))
    except InvalidTag:
        raise ValueError(f"batch {batch}: authentication failed (tampered)") from None
    rows = json.loads(plain)
    for row in rows:
        if not isinstance(row, dict) or any(type(row.get(f)) is not int for f in FIELDS):
            raise ValueError(f"batch {batch}: each record needs integer age and income")
    _batches.add(batch)
    _rows.extend({f: row[f] for f in FIELDS} for row in rows)
    return len(_rows)


def _partial(rows: list[dict[str, int]]) -> dict[str, list[int]]:
    return {f: [len(rows), sum(r[f] for r in rows), min(r[f] for r in rows),
                max(r[f] for r in rows)] for f in FIELDS}


@ecall
def partial(to: str) -> bytes:
    """This partition's count/sum/min/max per field, sealed for the aggregator ``to``."""
    if not _rows:
        raise ValueError("this partition holds no records")
    return _job().seal(to, json.dumps(_partial(_rows)).encode())


@ecall
def combine(parts: dict[str, bytes]) -> bytes:
    """The joint statistics over every worker's partial, encrypted under the owner's key."""
    if _key is None:
        raise PermissionError("no data key: provision first")
    job = _job()
    missing = sorted(set(job.peers()) - set(parts))
    if missing:
        raise ValueError(f"no partial from {', '.join(missing)}: the job is incomplete")
    total: dict[str, list[int]] = {}
    for peer in sorted(parts):
        got = json.loads(job.open(peer, parts[peer]))
        for f in FIELDS:
            n, s, lo, hi = got[f]
            if f in total:
                t = total[f]
                total[f] = [t[0] + n, t[1] + s, min(t[2], lo), max(t[3], hi)]
            else:
                total[f] = [n, s, lo, hi]
    stats = {f: {"count": n, "mean": round(s / n, 2), "min": lo, "max": hi}
             for f, (n, s, lo, hi) in total.items()}
    nonce = os.urandom(12)
    return nonce + AESGCM(_key).encrypt(nonce, json.dumps(stats, sort_keys=True).encode(),
                                        _aad("result"))


@ecall
def relay(source: str, to: str, payload: bytes) -> bytes:
    """Open a payload from ``source`` and seal it again for ``to`` (channel benchmark)."""
    job = _job()
    return job.seal(to, job.open(source, payload))


@ecall
def send(to: str, size: int) -> bytes:
    """``size`` random bytes sealed for ``to`` (channel benchmark)."""
    return _job().seal(to, os.urandom(size))


@ecall
def receive(source: str, payload: bytes) -> int:
    """Open a payload from ``source``; its length."""
    return len(_job().open(source, payload))


@ecall
def digest(data: bytes) -> bytes:
    """SHA-256 of ``data`` (a stateless service for replicated actors)."""
    return hashlib.sha256(b"ray-stats/v1/digest/" + data).digest()


@ecall
def count(values: list[int]) -> int:
    """Add ``values`` to this enclave's running total; returns the total (stateful)."""
    _rows.extend({"age": v, "income": v} for v in values)
    return sum(r["age"] for r in _rows)


@ecall
def checkpoint() -> bytes:
    """The running state sealed to this signer (MRSIGNER policy) on this platform."""
    return seal(json.dumps(_rows).encode(), SealPolicy.MRSIGNER, STATE_AAD)


@ecall
def resume(blob: bytes) -> int:
    """Take back a checkpoint of this signer sealed on this platform; records held."""
    if _rows:
        raise PermissionError("resume only into a fresh instance")
    data, aad = unseal(blob)
    if aad != STATE_AAD:
        raise ValueError("not a ray-stats checkpoint")
    _rows.extend(json.loads(data))
    return len(_rows)
