"""The nonces a key service has released keys against: bounded, pruned as tokens expire.

A nonce may release a key once while its token is valid (KR-6). The cache keeps each
``(key, nonce)`` — as a 16-byte BLAKE2b digest, so a long nonce costs no more than a short
one — until its token's ``exp`` and drops it then (a heap ordered by expiry, pruned on every
use), holds at most ``capacity`` unexpired entries (a release beyond that is refused until
some expire: the cache fails closed rather than forgetting), and lives in memory only.
Across a restart the promise holds because a token issued before the service started — in an
earlier second than its start, ``iat`` being whole seconds — is refused for a nonce release:
a token the old process may have seen can never carry a nonce into the new one.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
import time
from collections.abc import Callable
from typing import Final

from ..errors import TokenRejected

__all__ = ["CAPACITY", "NonceCache"]

CAPACITY: Final = 100_000
"""Unexpired nonces held at most (about 20 MB at ~200 bytes each)."""


class NonceCache:
    """Nonces used per key until their tokens expire; ``clock`` gives Unix seconds."""

    def __init__(self, capacity: int = CAPACITY, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self._clock = clock
        self.started = int(clock())
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def use(self, key: str, nonce: str, *, issued: float | None, expires: float) -> None:
        """Record that ``nonce`` releases ``key`` (with a token issued and expiring then).

        Raises:
            TokenRejected: the nonce was used for this key by an unexpired token, the token
                was issued before this service started (or says not when), or the cache
                holds ``capacity`` unexpired nonces.
        """
        if issued is None or issued < self.started:
            raise TokenRejected("a nonce release needs a token issued since the key service "
                                "started; get a fresh token")
        entry = hashlib.blake2b(f"{key}\0{nonce}".encode(), digest_size=16).digest()
        now = self._clock()
        with self._lock:
            self._prune(now)
            if entry in self._expiry:
                raise TokenRejected(f"nonce {nonce[:40]!r} was already used to release this key")
            if len(self._expiry) >= self.capacity:
                raise TokenRejected(f"{self.capacity} unexpired nonces are held; retry when "
                                    "tokens expire")
            self._expiry[entry] = expires
            heapq.heappush(self._heap, (expires, entry))

    def _prune(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires, entry = heapq.heappop(heap)
            if self._expiry.get(entry) == expires:
                del self._expiry[entry]
