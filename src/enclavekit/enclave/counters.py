"""Device-held monotonic counters and rollback-protected sealed state (SE-3, SE-7).

Sealing gives no freshness: the host can always hand back an older blob. A counter the
device holds for this enclave's MRSIGNER (identity from the private channel) fixes that:
:func:`create`, :func:`read`, :func:`increment` (compare-and-increment) and
:func:`destroy`.

:class:`CountedState` is the pattern built on them. Each version of the state is sealed
together with the counter id, its version number ``v`` and a random 32-byte commit tag;
the device's counter holds the committed version and tag. Saving is two steps:

1. ``blob = state.seal(data)`` — seals version ``v + 1``; the host stores it durably
   *next to* the previous blob (do not overwrite the previous one yet);
2. ``state.commit()`` — ``increment(id, expected=v, tag)``: the new blob is now the
   current one and the previous blob is stale.

:meth:`CountedState.restore` accepts only the blob whose version and tag equal the
device's counter, or the one prepared right after it (version + 1, a crash between
storing it and committing it): that one is committed then (roll forward). A ``kill -9``
anywhere therefore leaves either the previous committed blob or the new one loadable —
never neither, and never an older one: every blob below the counter is refused as
``stale``. Two instances restored from one state (a clone) cannot both advance it: the
second ``commit`` meets the first's value and raises :class:`CounterMismatch`, and its
prepared blob carries a tag the counter never recorded, so it is refused as ``stale``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from ..errors import CounterError, SealRuleError
from ..vm.protocol import CounterIncrement, CounterRef, CounterValue, Empty, Msg
from ..wire import decode_value, encode_value
from . import api
from .seal import SealPolicy, seal, unseal

__all__ = ["CountedState", "create", "destroy", "increment", "read"]

_MAGIC = b"EKCSTAT1"
_HEAD = struct.Struct("<8s16sQ32s")


def _call(msg: Msg, payload: bytes) -> CounterValue:
    return decode_value(api._chan().call(msg, payload), CounterValue, what=f"{msg.name} reply")


def create() -> bytes:
    """A new counter at 0 owned by this enclave's MRSIGNER; returns its 16-byte id."""
    return _call(Msg.COUNTER_CREATE, encode_value(Empty(), Empty)).counter_id


def read(counter_id: bytes) -> int:
    """The counter's current value."""
    return _read(counter_id).value


def _read(counter_id: bytes) -> CounterValue:
    return _call(Msg.COUNTER_READ, encode_value(CounterRef(counter_id), CounterRef))


def increment(counter_id: bytes, expected: int, tag: bytes = b"") -> int:
    """Add 1 if the counter holds ``expected`` (else ``CounterMismatch``); the new value."""
    req = CounterIncrement(counter_id, expected, tag)
    return _call(Msg.COUNTER_INCREMENT, encode_value(req, CounterIncrement)).value


def destroy(counter_id: bytes) -> None:
    """Remove the counter."""
    _call(Msg.COUNTER_DESTROY, encode_value(CounterRef(counter_id), CounterRef))


class CountedState:
    """Sealed state that cannot be rolled back or forked (see the module docstring)."""

    def __init__(self, counter_id: bytes, version: int, tag: bytes,
                 policy: SealPolicy = SealPolicy.MRSIGNER) -> None:
        self.counter_id = counter_id
        self.version = version
        self.tag = tag
        self.policy = policy
        self._pending: tuple[int, bytes] | None = None

    @classmethod
    def new(cls, policy: SealPolicy = SealPolicy.MRSIGNER) -> CountedState:
        """A fresh state bound to a new device counter (version 0, nothing sealed yet)."""
        return cls(create(), 0, b"", policy)

    def seal(self, data: bytes) -> bytes:
        """Seal ``data`` as the next version; store the blob, then call :meth:`commit`."""
        version, tag = self.version + 1, os.urandom(32)
        self._pending = (version, tag)
        head = _HEAD.pack(_MAGIC, self.counter_id, version, tag)
        return seal(head + data, self.policy)

    def commit(self) -> int:
        """Make the last sealed version current on the device (``CounterMismatch`` if a
        clone advanced the state first); returns the version."""
        if self._pending is None:
            raise CounterError("nothing to commit: seal a new version first")
        version, tag = self._pending
        increment(self.counter_id, version - 1, tag)
        self.version, self.tag, self._pending = version, tag, None
        return version

    @classmethod
    def restore(cls, blobs: Iterable[bytes],
                policy: SealPolicy = SealPolicy.MRSIGNER) -> tuple[CountedState, bytes]:
        """The newest committed state among ``blobs`` (the current and, if kept, the
        previous blob), rolling forward one that was stored but not committed.

        Raises:
            SealRuleError: ``stale`` — no blob is the device's current version (a rollback
                or a fork); or any unseal rule.
        """
        found: list[tuple[bytes, int, bytes, bytes]] = []
        for blob in blobs:
            plain = unseal(blob).data
            magic, cid, version, tag = _HEAD.unpack_from(plain)
            if magic != _MAGIC:
                raise SealRuleError("format", "the blob is not a counted state")
            found.append((cid, version, tag, plain[_HEAD.size:]))
        if not found:
            raise SealRuleError("stale", "no sealed state was given")
        cid = found[0][0]
        if any(f[0] != cid for f in found):
            raise SealRuleError("format", "the blobs belong to different counters")
        now = _read(cid)
        for _, version, tag, data in found:
            if version == now.value + 1:
                state = cls(cid, now.value, now.tag, policy)
                state._pending = (version, tag)
                state.commit()  # roll forward: stored before a crash, never committed
                return state, data
        for _, version, tag, data in found:
            if version == now.value and tag == now.tag:
                return cls(cid, version, tag, policy), data
        newest = max(f[1] for f in found)
        raise SealRuleError("stale", f"the device's counter is at version {now.value}; the "
                            f"given state is version {newest}"
                            + (" with another commit tag (a fork)" if newest == now.value
                               else "") + ": an older or forked copy; restore the newest blob")
