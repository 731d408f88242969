"""Replicated enclave actors: N replicas of a stateless enclave service behind one handle.

A call goes to the next live replica (round robin); if that replica's actor is gone (its
node died, its enclave was lost) the call is retried on the next one, and the dead replica
is dropped. Only when every replica is gone does the call fail, with :class:`EnclaveLost`.
An error the enclave itself raised (bad input, refused) is not retried: it is the answer.
Use it for stateless ecalls only: a retried call may have run on the lost replica too.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import EnclaveLost
from .actor import EnclaveHandle, get

__all__ = ["Replicated"]


class Replicated:
    """One handle over replicas of the same enclave (``replicas`` from :func:`place_spread`)."""

    def __init__(self, replicas: list[EnclaveHandle], *, timeout: float | None = 60.0) -> None:
        if not replicas:
            raise ValueError("a replicated service needs at least one replica")
        if len({r.info["mrenclave"] for r in replicas}) != 1:
            raise ValueError("replicas must be the same enclave (one MRENCLAVE)")
        self.live = list(replicas)
        self.lost: list[tuple[EnclaveHandle, str]] = []
        self.timeout = timeout
        self._next = 0
        self._lock = threading.Lock()

    def _pick(self) -> EnclaveHandle:
        with self._lock:
            if not self.live:
                why = "; ".join(reason for _, reason in self.lost[-3:])
                raise EnclaveLost(f"all {len(self.lost)} replicas are gone ({why})")
            handle = self.live[self._next % len(self.live)]
            self._next += 1
            return handle

    def _drop(self, handle: EnclaveHandle, reason: str) -> None:
        with self._lock:
            if handle in self.live:
                self.live.remove(handle)
                self.lost.append((handle, reason))

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Ecall ``name`` on a live replica, failing over until one answers."""
        while True:
            handle = self._pick()
            try:
                return get(handle.ecalls.__getattr__(name).remote(*args, **kwargs),
                           timeout=self.timeout, where=handle.where)
            except EnclaveLost as exc:
                self._drop(handle, str(exc))

    def close(self) -> None:
        """Close every replica."""
        for handle in [*self.live, *(h for h, _ in self.lost)]:
            handle.close()
