"""MRENCLAVE: the SHA-256 of the ECREATE / EADD / EEXTEND record stream (SDM, sgx-spec.md §2).

Every build instruction appends 64-byte records to one running SHA-256; EINIT
finalises it. Hashing the concatenated stream with any SHA-256 gives the same
digest as the processor, which is what the SGXS format (``sgxs.py``) stores.
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
