"""EWB / ELDU cryptography: the MAC header, PCMD packing and the version counter (§5.1).

An evicted page is ``AES-GCM(K_paging, IV = TMP_VER << 32, AAD = MAC header, page)``.
The MAC header binds the owning enclave's EID (0 for SECS and VA pages), the page's
SECINFO, its LINADDR and the PCMD reserved bytes; the 96-bit IV holds the version EWB
writes into a Version Array slot. Byte layout of the (undisclosed) MAC header, as
suggested in ``sgx-spec.md`` §5.1: EID u64 @0, SECINFO 64 B @8, LINADDR u64 @72,
RSVD 40 B @80, zero to 128. PCMD.ENCLAVEID is informational and not authenticated.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import MACCompareFail
from .consts import PAGE_SIZE

MAC_HEADER = struct.Struct("<Q64sQ40s8x")
"""EID, SECINFO, LINADDR, RSVD, padding: 128 bytes."""
PCMD_LAYOUT = struct.Struct("<64sQ40s16s")
"""PCMD: SECINFO, ENCLAVEID, reserved, MAC (the same fields as ``structs.PCMD``)."""
_IV = struct.Struct("<4xQ")
"""IV = TMP_VER << 32 as a 96-bit little-endian value: 4 zero bytes, then the version."""
VA_SLOT = struct.Struct("<Q")

if MAC_HEADER.size != 128 or PCMD_LAYOUT.size != 128 or _IV.size != 12:  # survives -O
    raise TypeError("paging layouts must be 128, 128 and 12 bytes")

TAG_SIZE = 16


class PagingCrypto:
    """The per-boot paging key (CR_BASE_PK) and the never-reused version counter."""

    __slots__ = ("_gcm", "_next")

    def __init__(self) -> None:
        self._gcm = AESGCM(os.urandom(16))
        self._next = 1

    def next_version(self) -> int:
        """A fresh 64-bit version, never handed out twice in this boot (starts at 1)."""
        version = self._next
        self._next = version + 1
        return version

    def seal(
        self, version: int, eid: int, secinfo: bytes, linaddr: int, rsvd: bytes, page: bytes
    ) -> tuple[bytes, bytes]:
        """Encrypt and MAC one page for EWB: ``(ciphertext, tag)``."""
        out = self._gcm.encrypt(
            _IV.pack(version), page, MAC_HEADER.pack(eid, secinfo, linaddr, rsvd)
        )
        return out[:PAGE_SIZE], out[PAGE_SIZE:]

    def open(
        self, leaf: str, version: int, eid: int, secinfo: bytes, linaddr: int, rsvd: bytes,
        ciphertext: bytes, tag: bytes,
    ) -> bytes:
        """Authenticate and decrypt one evicted page for ELDU/ELDB.

        Raises:
            MACCompareFail: ciphertext, PCMD (SECINFO, reserved, MAC), LINADDR, enclave or
                version differ from what EWB wrote.
        """
        try:
            return self._gcm.decrypt(
                _IV.pack(version), ciphertext + tag, MAC_HEADER.pack(eid, secinfo, linaddr, rsvd)
            )
        except InvalidTag:
            raise MACCompareFail(
                leaf,
                f"the evicted page for LINADDR {linaddr:#x} does not authenticate: its "
                "ciphertext, PCMD, LINADDR, enclave or VA slot differ from what EWB wrote "
                "(stale, moved or modified); the page was not loaded and the slot is unchanged",
            ) from None
