"""ECREATE and EADD input checks: what makes the processor fault with #GP (sgx-spec.md §1.6).

ECREATE validates the SECS the OS supplies; EADD validates SECINFO and, for a TCS, the
page contents (reserved fields zero; DBGOPTIN, CSSA, AEP and STATE are cleared).
"""

from __future__ import annotations

from ..errors import InvalidStructure, SGXFault
from .consts import (
    PAGE_SIZE,
    SECINFO_PT_SHIFT,
    XFRM_LEGACY,
    AttributeFlags,
    MiscSelect,
    PageType,
    SecInfoFlags,
)
from .structs import SECS, TCS, SecInfo

_REG_T = int(PageType.PT_REG)
_TCS_T = int(PageType.PT_TCS)
_STATE_BITS = int(SecInfoFlags.PENDING | SecInfoFlags.MODIFIED | SecInfoFlags.PR)
_SUPPORTED_MISC = int(MiscSelect.EXINFO | MiscSelect.CPINFO)
_KNOWN_FLAGS = int(
    AttributeFlags.INIT | AttributeFlags.DEBUG | AttributeFlags.MODE64BIT
    | AttributeFlags.PROVISIONKEY | AttributeFlags.EINITTOKEN_KEY | AttributeFlags.CET
    | AttributeFlags.KSS | AttributeFlags.AEXNOTIFY
)
_TCS_FLAGS_ALLOWED = 0x3  # DBGOPTIN, AEXNOTIFY
_DBGOPTIN = 0x1


def check_secs(secs: SECS) -> None:
    """ECREATE's #GP checks on the SECS the OS supplies (§1.6)."""

    def bad(detail: str) -> SGXFault:
        return SGXFault("ECREATE", "#GP", detail)

    for name in ("reserved1", "reserved2", "reserved3", "reserved4"):
        if any(getattr(secs, name)):
            raise bad(f"SECS.{name} must be zero")
    size, base = secs.size, secs.baseaddr
    if size < 2 * PAGE_SIZE or size & (size - 1):
        raise bad(f"SECS.SIZE {size:#x} must be a power of two of at least 0x2000")
    if base % size:
        raise bad(f"SECS.BASEADDR {base:#x} must be aligned to SIZE {size:#x}")
    flags, xfrm = secs.attributes.flags, secs.attributes.xfrm
    if flags & AttributeFlags.INIT:
        raise bad("ATTRIBUTES.INIT must be 0 at ECREATE (EINIT sets it)")
    if flags & ~_KNOWN_FLAGS:
        raise bad(f"ATTRIBUTES.FLAGS {flags:#x} sets reserved bits")
    if xfrm & XFRM_LEGACY != XFRM_LEGACY:
        raise bad(f"ATTRIBUTES.XFRM {xfrm:#x} must include x87 and SSE (0x3)")
    limit = 1 << 47 if flags & AttributeFlags.MODE64BIT else 1 << 32
    if base + size > limit:
        raise bad(f"ELRANGE [{base:#x}, {base + size:#x}) is not addressable in this mode")
    if secs.ssaframesize < 1:
        raise bad("SECS.SSAFRAMESIZE must be at least 1 page")
    if secs.miscselect & ~_SUPPORTED_MISC:
        raise bad(f"MISCSELECT {secs.miscselect:#x} asks for unsupported bits")
    if not flags & AttributeFlags.KSS and (any(secs.configid) or secs.configsvn):
        raise bad("CONFIGID/CONFIGSVN need the KSS attribute")


def check_secinfo(leaf: str, secinfo: SecInfo) -> int:
    """EADD's SECINFO checks; returns the FLAGS value."""
    if not isinstance(secinfo, SecInfo):
        raise SGXFault(leaf, "#GP", f"expected a SECINFO, found {type(secinfo).__name__}")
    flags = secinfo.flags
    if any(secinfo.reserved) or flags >> 16 or flags & 0xC0:
        raise SGXFault(leaf, "#GP", "SECINFO reserved bits must be zero")
    if flags & _STATE_BITS:
        raise SGXFault(leaf, "#GP", "SECINFO PENDING/MODIFIED/PR must be zero for EADD")
    ptype = flags >> SECINFO_PT_SHIFT
    if ptype not in (_REG_T, _TCS_T):
        raise SGXFault(leaf, "#GP", f"EADD adds PT_REG or PT_TCS pages, found type {ptype}")
    if ptype == _REG_T and flags & SecInfoFlags.W and not flags & SecInfoFlags.R:
        raise SGXFault(leaf, "#GP", "a PT_REG page cannot be writable without being readable")
    return flags


def check_tcs(leaf: str, content: bytes) -> bytes:
    """EADD of a TCS: reserved fields zero; DBGOPTIN, CSSA, AEP and STATE are cleared."""
    try:
        tcs = TCS.from_bytes(content)
    except InvalidStructure as exc:
        raise SGXFault(leaf, "#GP", f"TCS: {exc.detail}") from None
    if tcs.flags & ~_TCS_FLAGS_ALLOWED:
        raise SGXFault(leaf, "#GP", f"TCS.FLAGS {tcs.flags:#x} sets reserved bits")
    return tcs.replace(state=0, cssa=0, aep=0, flags=tcs.flags & ~_DBGOPTIN).to_bytes()
