"""Device-held monotonic counters against rollback (SE-3) and cloning (SE-7) of sealed state.

Each counter belongs to one MRSIGNER: the identity of the private channel the request
came on, never a field of the request (RT-2). ``increment`` is compare-and-increment: it
adds 1 only if the counter still holds the value the caller expects, so of two instances
restored from the same state only the first advances it. Every change is written with
:func:`enclavekit._fs.atomic_write` before the reply leaves, so an acknowledged value
survives ``kill -9`` of the device and restarts. A counter may carry a 32-byte ``tag``
(set by each increment) so that a caller can bind the exact state it committed.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from .._fs import atomic_write, remove_stale_temps
from ..errors import CounterError, CounterMismatch, InvalidStructure
from ..wire import decode_value, encode_value
from . import protocol as p

__all__ = ["COUNTER_MESSAGES", "MAX_PER_SIGNER", "CounterStore", "serve_counter"]

MAX_PER_SIGNER = 256
"""How many counters one MRSIGNER may hold on a VM."""
ID_SIZE = 16
TAG_SIZE = 32
COUNTER_MESSAGES = frozenset({p.Msg.COUNTER_CREATE, p.Msg.COUNTER_READ,
                              p.Msg.COUNTER_INCREMENT, p.Msg.COUNTER_DESTROY})
_FORMAT = 1


class CounterStore:
    """Monotonic counters per MRSIGNER, persisted atomically in ``path`` (None: in memory)."""

    def __init__(self, path: Path | None = None, *, max_per_signer: int = MAX_PER_SIGNER) -> None:
        self.path = path
        self.max_per_signer = max_per_signer
        self._lock = threading.Lock()
        self._counters: dict[bytes, dict[bytes, tuple[int, bytes]]] = {}
        if path is not None:
            remove_stale_temps(path.parent, path.name)  # of a write a kill interrupted
        if path is not None and path.exists():
            self._counters = _parse(path.read_bytes(), str(path))

    def create(self, mrsigner: bytes) -> p.CounterValue:
        """A new counter at 0 owned by ``mrsigner``."""
        with self._lock:
            mine = self._counters.setdefault(mrsigner, {})
            if len(mine) >= self.max_per_signer:
                raise CounterError(f"this signer already holds {len(mine)} counters, the limit "
                                   f"is {self.max_per_signer}: destroy one it no longer needs")
            cid = os.urandom(ID_SIZE)
            mine[cid] = (0, b"")
            self._save()
            return p.CounterValue(cid, 0, b"")

    def read(self, mrsigner: bytes, counter_id: bytes) -> p.CounterValue:
        """The counter's value and tag."""
        with self._lock:
            value, tag = self._get(mrsigner, counter_id)
            return p.CounterValue(counter_id, value, tag)

    def increment(self, mrsigner: bytes, counter_id: bytes, expected: int,
                  tag: bytes = b"") -> p.CounterValue:
        """Add 1 if the counter holds ``expected``; record ``tag``; the new state."""
        if tag and len(tag) != TAG_SIZE:
            raise CounterError(f"counter tag: expected {TAG_SIZE} bytes or none, "
                               f"found {len(tag)}")
        with self._lock:
            value, _ = self._get(mrsigner, counter_id)
            if value != expected:
                raise CounterMismatch(f"counter {counter_id.hex()} is at {value}, the caller "
                                      f"expected {expected}: another instance advanced this "
                                      "state (a clone or a stale copy); restore the newest state")
            self._counters[mrsigner][counter_id] = (value + 1, tag)
            self._save()
            return p.CounterValue(counter_id, value + 1, tag)

    def destroy(self, mrsigner: bytes, counter_id: bytes) -> None:
        """Remove the counter (its value is gone: states bound to it can no longer load)."""
        with self._lock:
            self._get(mrsigner, counter_id)
            del self._counters[mrsigner][counter_id]
            if not self._counters[mrsigner]:
                del self._counters[mrsigner]
            self._save()

    def _get(self, mrsigner: bytes, counter_id: bytes) -> tuple[int, bytes]:
        got = self._counters.get(mrsigner, {}).get(counter_id)
        if got is None:
            raise CounterError(f"no counter {counter_id.hex()} belongs to this enclave's "
                               "signer on this VM (never created, destroyed, or another "
                               "signer's)")
        return got

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"format": _FORMAT, "signers": {
            signer.hex(): {cid.hex(): [value, tag.hex()] for cid, (value, tag) in mine.items()}
            for signer, mine in self._counters.items()}}
        atomic_write(self.path, json.dumps(doc, sort_keys=True).encode(), mode=0o600)


def _parse(data: bytes, where: str) -> dict[bytes, dict[bytes, tuple[int, bytes]]]:
    try:
        doc = json.loads(data)
        if doc.get("format") != _FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {_FORMAT}")
        out: dict[bytes, dict[bytes, tuple[int, bytes]]] = {}
        for signer, mine in doc["signers"].items():
            out[bytes.fromhex(signer)] = {
                bytes.fromhex(cid): (int(value), bytes.fromhex(tag))
                for cid, (value, tag) in mine.items()}
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidStructure("counter store", f"{where} does not parse ({exc}); restore it "
                               "from a backup: counters cannot be rebuilt") from None


def serve_counter(store: CounterStore, mrsigner: bytes, msg_type: int, payload: bytes) -> bytes:
    """Serve one COUNTER_* request of an enclave whose channel says it is ``mrsigner``."""
    if msg_type == p.Msg.COUNTER_CREATE:
        decode_value(payload, p.Empty)
        reply = store.create(mrsigner)
    elif msg_type == p.Msg.COUNTER_READ:
        reply = store.read(mrsigner, decode_value(payload, p.CounterRef).counter_id)
    elif msg_type == p.Msg.COUNTER_INCREMENT:
        req = decode_value(payload, p.CounterIncrement)
        reply = store.increment(mrsigner, req.counter_id, req.expected, req.tag)
    elif msg_type == p.Msg.COUNTER_DESTROY:
        ref = decode_value(payload, p.CounterRef)
        store.destroy(mrsigner, ref.counter_id)
        reply = p.CounterValue(ref.counter_id, 0, b"")
    else:
        raise CounterError(f"message {msg_type} is not a counter request")
    return encode_value(reply, p.CounterValue)
