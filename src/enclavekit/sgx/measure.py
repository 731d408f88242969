"""MRENCLAVE: the SHA-256 of the ECREATE / EADD / EEXTEND record stream (SDM, sgx-spec.md §2).

Every build instruction appends 64-byte records to one running SHA-256; EINIT
finalises it. Hashing the concatenated stream with any SHA-256 gives the same
digest as the processor, which is what the SGXS format (``sgxs.py``) stores.

``Measurement.add_pages`` is the bulk path for many contiguous pages: it lays out
the EADD / EEXTEND records and the page data of a batch with numpy (no per-chunk
Python work) and hashes the batch in one call.
"""

from __future__ import annotations

import hashlib
import struct

from ..errors import SGXFault
from .consts import EEXTEND_CHUNK, PAGE_SIZE, SECINFO_RWX, PageType, secinfo_page_type

_ECREATE = struct.Struct("<8sIQ44s")
_EADD = struct.Struct("<8sQQ40s")
_EEXTEND = struct.Struct("<8sQ48s")

ECREATE_TAG = b"ECREATE\0"
EADD_TAG = b"EADD\0\0\0\0"
EEXTEND_TAG = b"EEXTEND\0"
RECORD_SIZE = 64
CHUNKS_PER_PAGE = PAGE_SIZE // EEXTEND_CHUNK

_MAX_OFFSET = 1 << 64
_EEXTEND_RECORD = RECORD_SIZE + EEXTEND_CHUNK
_PAGE_RECORDS = RECORD_SIZE + CHUNKS_PER_PAGE * _EEXTEND_RECORD
"""Bytes one fully measured page adds to the stream: EADD + 16 × (EEXTEND header + chunk)."""
_BATCH_PAGES = 128
"""Pages laid out per hash update in the bulk path (about 650 KiB: stays in cache)."""

PageData = bytes | bytearray | memoryview
"""Page contents accepted by the bulk path (any contiguous byte buffer)."""


def ecreate_record(ssaframesize: int, size: int) -> bytes:
    """The 64-byte record ECREATE hashes: tag, SSAFRAMESIZE (u32), SIZE (u64, unaligned at 12)."""
    return _ECREATE.pack(ECREATE_TAG, ssaframesize, size, bytes(44))


def eadd_record(offset: int, flags: int) -> bytes:
    """The 64-byte record EADD hashes; a TCS always contributes its flags with R/W/X cleared."""
    if secinfo_page_type(flags) == PageType.PT_TCS:
        flags &= ~SECINFO_RWX
    return _EADD.pack(EADD_TAG, offset, flags, bytes(40))


def eextend_record(offset: int) -> bytes:
    """The 64-byte header EEXTEND hashes before the 256 measured bytes."""
    return _EEXTEND.pack(EEXTEND_TAG, offset, bytes(48))


class Measurement:
    """An incremental MRENCLAVE, fed in the order the loader issues the instructions.

    Offsets are relative to SECS.BASEADDR. ``digest()`` may be called at any time
    (it does not finalise the running hash).
    """

    __slots__ = ("_hash", "_started")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._started = False

    def ecreate(self, ssaframesize: int, size: int) -> None:
        """Start the stream with the ECREATE record."""
        if self._started:
            raise SGXFault("ECREATE", "#GP", "the measurement has already been started")
        self._hash.update(ecreate_record(ssaframesize, size))
        self._started = True

    def eadd(self, offset: int, flags: int) -> None:
        """Append the EADD record of one page (its offset and SECINFO.FLAGS)."""
        self._require_started("EADD")
        self._hash.update(eadd_record(offset, flags))

    def eextend(self, offset: int, chunk: bytes) -> None:
        """Append an EEXTEND header and the 256 bytes it measures."""
        self._require_started("EEXTEND")
        if len(chunk) != EEXTEND_CHUNK or offset % EEXTEND_CHUNK:
            raise SGXFault("EEXTEND", "#GP", "EEXTEND measures 256 aligned bytes at a time")
        self._hash.update(eextend_record(offset))
        self._hash.update(chunk)

    def add_page(self, offset: int, flags: int, data: bytes, *, measured: bool = True) -> None:
        """EADD one 4 KiB page and, if ``measured``, EEXTEND its 16 chunks in ascending order."""
        self._require_started("EADD")
        if len(data) != PAGE_SIZE:
            raise SGXFault("EADD", "#GP", f"a page is {PAGE_SIZE} bytes, found {len(data)}")
        parts = [eadd_record(offset, flags)]
        if measured:
            for i in range(0, PAGE_SIZE, EEXTEND_CHUNK):
                parts.append(eextend_record(offset + i))
                parts.append(data[i : i + EEXTEND_CHUNK])
        self._hash.update(b"".join(parts))

    def add_pages(
        self, first_offset: int, flags: int, data: PageData, *, measured: bool = True
    ) -> None:
        """EADD contiguous pages with one SECINFO.FLAGS and, if ``measured``, EEXTEND each fully.

        Gives exactly the digest of calling :meth:`add_page` for each page in ascending
        order, at close to the speed of SHA-256 over the page data.
        """
        self._require_started("EADD")
        view = memoryview(data).cast("B")
        if len(view) % PAGE_SIZE:
            raise SGXFault("EADD", "#GP", f"page data must be a multiple of {PAGE_SIZE} bytes, "
                           f"found {len(view)}")
        if first_offset % PAGE_SIZE or first_offset < 0:
            raise SGXFault("EADD", "#GP", f"page offset {first_offset:#x} is not page aligned")
        if first_offset + len(view) > _MAX_OFFSET:
            raise SGXFault("EADD", "#GP", "pages run past the end of the 64-bit address space")
        if secinfo_page_type(flags) == PageType.PT_TCS:
            flags &= ~SECINFO_RWX
        if view:
            _hash_pages(self._hash, first_offset, flags, view, measured)

    def digest(self) -> bytes:
        """The 32-byte MRENCLAVE of the stream so far."""
        return self._hash.copy().digest()

    def hexdigest(self) -> str:
        """MRENCLAVE as lowercase hex."""
        return self.digest().hex()

    def copy(self) -> Measurement:
        """An independent copy of the running measurement."""
        other = Measurement()
        other._hash = self._hash.copy()
        other._started = self._started
        return other

    def _require_started(self, leaf: str) -> None:
        if not self._started:
            raise SGXFault(leaf, "#GP", "no ECREATE record starts this measurement")


def _hash_pages(
    h: hashlib._Hash, first_offset: int, flags: int, data: memoryview, measured: bool
) -> None:
    """Feed the records of contiguous pages to ``h``, laid out in numpy batches."""
    import numpy as np  # imported here: only the bulk path needs it

    pages = len(data) // PAGE_SIZE
    page_step = np.uint64(PAGE_SIZE)
    if not measured:
        eadd = np.zeros((pages, RECORD_SIZE), np.uint8)
        eadd[:, :8] = np.frombuffer(EADD_TAG, np.uint8)
        words = eadd.view("<u8")
        words[:, 1] = np.uint64(first_offset) + np.arange(pages, dtype=np.uint64) * page_step
        words[:, 2] = np.uint64(flags)
        h.update(eadd.data)
        return

    batch = min(pages, _BATCH_PAGES)
    buf = np.zeros((batch, _PAGE_RECORDS), np.uint8)
    buf[:, :8] = np.frombuffer(EADD_TAG, np.uint8)
    words = buf.view("<u8")  # 648 little-endian u64 words per page row
    words[:, 2] = np.uint64(flags)
    chunks = buf[:, RECORD_SIZE:].reshape(batch, CHUNKS_PER_PAGE, _EEXTEND_RECORD)
    chunks[:, :, :8] = np.frombuffer(EEXTEND_TAG, np.uint8)
    chunk_offsets = words[:, RECORD_SIZE // 8 :].reshape(batch, CHUNKS_PER_PAGE, -1)[:, :, 1]
    chunk_steps = np.arange(CHUNKS_PER_PAGE, dtype=np.uint64) * np.uint64(EEXTEND_CHUNK)
    source = np.frombuffer(data, np.uint8).reshape(pages, CHUNKS_PER_PAGE, EEXTEND_CHUNK)
    for start in range(0, pages, batch):
        n = min(batch, pages - start)
        offsets = np.uint64(first_offset) + np.arange(start, start + n, dtype=np.uint64) * page_step
        words[:n, 1] = offsets
        chunk_offsets[:n] = offsets[:, None] + chunk_steps
        chunks[:n, :, RECORD_SIZE:] = source[start : start + n]
        h.update(buf[:n].data)
