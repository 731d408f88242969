"""The EPC: page frames, their EPCM entries and the memory-encryption engine's DRAM view.

Every EPC page lives in "DRAM" only as AES-GCM ciphertext and tag under a per-boot
memory-encryption key. The nonce binds the page index and a per-page version that
the processor keeps in trusted state (``sgx-spec.md`` §7.2: the MEE is emulator-defined),
so a page that a host modified, moved from another frame or replayed from an older
write fails its integrity check on the next use. The processor alone sees plaintext.

Pages the processor marks ``cached`` (SECS and VA pages, touched by every paging leaf)
are kept in an on-die write-back cache, as a CPU keeps hot lines in its caches: reads
hit the cache, writes reach DRAM when the host looks (``dram_read``) or writes the
page (``dram_write`` first flushes, then overwrites and drops the cached line, so the
next use re-reads DRAM and detects the change). What a host observes is the same as
with write-through.
"""

from __future__ import annotations

import heapq
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import EnclaveLost, SGXFault
from .consts import PAGE_SIZE

_NONCE = struct.Struct("<IQ")
"""MEE nonce: EPC page index (u32) and the page's write version (u64), 12 bytes."""

DRAM_PAGE_SIZE = PAGE_SIZE + 16
"""What the DRAM holds for one EPC page: 4096 bytes of ciphertext and a 16-byte GCM tag."""


class EPCMEntry:
    """One EPCM entry: VALID, page type, SECINFO flags, owner, ENCLAVEADDRESS, BLOCKED.

    ``owner`` is the trusted state of the owning enclave (its SECS side-object) for SECS,
    REG and TCS pages and ``None`` for VA pages. ``blocked_at`` is the tracking tick of
    the EBLOCK and ``last_used`` the tick of the last access (for victim choice).
    """

    __slots__ = ("blocked", "blocked_at", "flags", "last_used", "linaddr", "owner",
                 "page_type", "valid")

    def __init__(self) -> None:
        self.valid = False
        self.page_type = 0
        self.flags = 0
        self.owner: Any = None
        self.linaddr = 0
        self.blocked = False
        self.blocked_at = 0
        self.last_used = 0

    def clear(self) -> None:
        """Mark the page free (EPCM.VALID := 0)."""
        self.valid = False
        self.owner = None
        self.blocked = False
        self.linaddr = 0
        self.flags = 0
        self.page_type = 0


class EPC:
    """``size`` EPC page frames with their EPCM entries, stored encrypted and versioned."""

    __slots__ = ("_cache", "_dirty", "_dram", "_free", "_free_heap", "_gcm", "_next_version",
                 "_version", "entries", "size")

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or not 1 <= size < 1 << 32:
            raise SGXFault("EPC", "#GP", f"EPC size must be 1..2^32-1 pages, found {size!r}")
        self.size = size
        self.entries = [EPCMEntry() for _ in range(size)]
        self._dram: list[bytes] = [b""] * size
        self._version = [0] * size
        self._next_version = 1
        self._gcm = AESGCM(os.urandom(16))
        self._free = set(range(size))
        self._free_heap = list(range(size))  # lazily pruned min-heap over ``_free``
        self._cache: dict[int, bytes] = {}
        self._dirty: set[int] = set()

    # ------------------------------------------------------------------ allocation

    def free_count(self) -> int:
        """How many EPC pages are free."""
        return len(self._free)

    def first_free(self) -> int | None:
        """The lowest free EPC page, or ``None`` when the EPC is full."""
        heap, free = self._free_heap, self._free
        while heap and heap[0] not in free:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def claim(self, page: int, page_type: int, flags: int, owner: Any, linaddr: int) -> EPCMEntry:
        """Fill the EPCM entry of a free page (the caller checked it is free)."""
        entry = self.entries[page]
        entry.valid = True
        entry.page_type = page_type
        entry.flags = flags
        entry.owner = owner
        entry.linaddr = linaddr
        entry.blocked = False
        self._free.discard(page)
        return entry

    def release(self, page: int) -> None:
        """Free a page. Its stale ciphertext stays in DRAM, as on hardware."""
        self._flush(page)
        self._cache.pop(page, None)
        self.entries[page].clear()
        if page not in self._free:
            self._free.add(page)
            heapq.heappush(self._free_heap, page)

    # ------------------------------------------------------------------ MEE

    def store(self, page: int, plaintext: bytes, *, cached: bool = False) -> None:
        """Write a page's contents through the MEE (new version, fresh ciphertext).

        ``cached``: keep the page in the on-die cache and write DRAM lazily.
        """
        if cached:
            self._cache[page] = plaintext
            self._dirty.add(page)
            return
        self._cache.pop(page, None)
        self._dirty.discard(page)
        self._write(page, plaintext)

    def _write(self, page: int, plaintext: bytes) -> None:
        version = self._next_version
        self._next_version = version + 1
        self._version[page] = version
        self._dram[page] = self._gcm.encrypt(_NONCE.pack(page, version), plaintext, None)

    def load(self, page: int) -> bytes:
        """Read a page's contents through the MEE.

        Raises:
            EnclaveLost: the DRAM copy was modified or replayed since the processor wrote it.
        """
        hit = self._cache.get(page)
        if hit is not None:
            return hit
        try:
            return self._gcm.decrypt(
                _NONCE.pack(page, self._version[page]), self._dram[page], None
            )
        except InvalidTag:
            raise EnclaveLost(f"EPC integrity check failed on page {page}") from None

    def dram_read(self, page: int) -> bytes:
        """What a host or physical attacker reads at this page: ciphertext and tag."""
        self._check_index(page, "DRAM read")
        self._flush(page)
        return self._dram[page]

    def dram_write(self, page: int, data: bytes) -> None:
        """What a host or physical attacker can do: overwrite the page's DRAM bytes."""
        self._check_index(page, "DRAM write")
        self._flush(page)
        self._cache.pop(page, None)
        self._dram[page] = bytes(data)

    def _flush(self, page: int) -> None:
        if page in self._dirty:
            self._dirty.discard(page)
            self._write(page, self._cache[page])

    def _check_index(self, page: int, what: str) -> None:
        if not isinstance(page, int) or not 0 <= page < self.size:
            raise SGXFault(
                what, "#GP", f"page {page!r} is not an EPC page (the EPC has {self.size})"
            )
