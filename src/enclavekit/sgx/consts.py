"""Architectural constants: leaf numbers, page types, SECINFO, ATTRIBUTES, key names and policy.

Values from the Intel SDM Vol. 3D (SGX chapters) as restated in ``sgx-spec.md`` §0–§4.
"""

from __future__ import annotations

import enum

PAGE_SIZE = 4096
"""One EPC page."""

EEXTEND_CHUNK = 256
"""EEXTEND measures 256 bytes at a time; a page is 16 chunks."""


class Encls(enum.IntEnum):
    """ENCLS leaf numbers (EAX), SDM Vol. 3D "ENCLS" table."""

    ECREATE = 0x00
    EADD = 0x01
    EINIT = 0x02
    EREMOVE = 0x03
    EDBGRD = 0x04
    EDBGWR = 0x05
    EEXTEND = 0x06
    ELDB = 0x07
    ELDU = 0x08
    EBLOCK = 0x09
    EPA = 0x0A
    EWB = 0x0B
    ETRACK = 0x0C


class Enclu(enum.IntEnum):
    """ENCLU leaf numbers (EAX)."""

    EREPORT = 0
    EGETKEY = 1
    EENTER = 2
    ERESUME = 3
    EEXIT = 4


class PageType(enum.IntEnum):
    """EPCM page types (SECINFO.FLAGS bits 15:8)."""

    PT_SECS = 0
    PT_TCS = 1
    PT_REG = 2
    PT_VA = 3
    PT_TRIM = 4
    PT_SS_FIRST = 5
    PT_SS_REST = 6


class SecInfoFlags(enum.IntFlag):
    """SECINFO.FLAGS permission and state bits (the page type lives in bits 15:8)."""

    R = 0x1
    W = 0x2
    X = 0x4
    PENDING = 0x8
    MODIFIED = 0x10
    PR = 0x20


SECINFO_PT_SHIFT = 8
SECINFO_RWX = 0x7


def secinfo_flags(page_type: PageType, perms: int = 0) -> int:
    """SECINFO.FLAGS for a page type and R/W/X bits, e.g. ``(PT_REG, R|W)`` → 0x203."""
    return (int(page_type) << SECINFO_PT_SHIFT) | (perms & SECINFO_RWX)


def secinfo_page_type(flags: int) -> int:
    """The page-type field of a SECINFO.FLAGS value."""
    return (flags >> SECINFO_PT_SHIFT) & 0xFF


class AttributeFlags(enum.IntFlag):
    """ATTRIBUTES.FLAGS bits (SDM "ATTRIBUTES" table)."""

    INIT = 0x001
    DEBUG = 0x002
    MODE64BIT = 0x004
    PROVISIONKEY = 0x010
    EINITTOKEN_KEY = 0x020
    CET = 0x040
    KSS = 0x080
    AEXNOTIFY = 0x400


ATTRIBUTES_RESERVED_FLAGS = ~(
    AttributeFlags.INIT | AttributeFlags.DEBUG | AttributeFlags.MODE64BIT
    | AttributeFlags.PROVISIONKEY | AttributeFlags.EINITTOKEN_KEY | AttributeFlags.CET
    | AttributeFlags.KSS | AttributeFlags.AEXNOTIFY
) & 0xFFFF_FFFF_FFFF_FFFF
"""FLAGS bits with no architectural meaning."""

XFRM_LEGACY = 0x3
"""x87 and SSE: both must be set in every enclave's XFRM."""


class MiscSelect(enum.IntFlag):
    """MISCSELECT bits: extra information saved in the SSA on an exit."""

    EXINFO = 0x1
    CPINFO = 0x2


class KeyName(enum.IntEnum):
    """KEYREQUEST.KEYNAME values."""

    EINITTOKEN = 0
    PROVISION = 1
    PROVISION_SEAL = 2
    REPORT = 3
    SEAL = 4


class KeyPolicy(enum.IntFlag):
    """KEYREQUEST.KEYPOLICY bits; bits 15:6 are reserved."""

    MRENCLAVE = 0x01
    MRSIGNER = 0x02
    NOISVPRODID = 0x04
    CONFIGID = 0x08
    ISVFAMILYID = 0x10
    ISVEXTPRODID = 0x20


KEYPOLICY_KSS_ONLY = 0x3C
"""KEYPOLICY bits that need ATTRIBUTES.KSS."""
KEYPOLICY_RESERVED = 0xFFC0
"""KEYPOLICY bits that must be zero."""
ALWAYS_BOUND_FLAGS = AttributeFlags.INIT | AttributeFlags.DEBUG
"""EGETKEY always binds INIT and DEBUG, whatever ATTRIBUTEMASK says."""

SIGSTRUCT_HEADER = bytes.fromhex("06000000e10000000000010000000000")
SIGSTRUCT_HEADER2 = bytes.fromhex("01010000600000006000000001000000")
SIGSTRUCT_VENDORS = (0x0000_0000, 0x0000_8086)
SIGSTRUCT_EXPONENT = 3
RSA_MODULUS_BYTES = 384

PKCS1_SHA256_PADDING = (
    b"\x00\x01" + b"\xff" * 330 + bytes.fromhex("003031300d060960864801650304020105000420")
)
"""The top 352 bytes of a PKCS#1 v1.5 SHA-256 block for a 3072-bit key: what a valid SIGSTRUCT
leaves in SECS.PADDING and the constant EGETKEY uses for REPORT and EINITTOKEN keys."""
if len(PKCS1_SHA256_PADDING) != 352:  # pragma: no cover - a typo guard that survives -O
    raise TypeError("PKCS1_SHA256_PADDING must be 352 bytes")

VA_SLOTS_PER_PAGE = 512
"""A Version Array page holds 512 eight-byte slots."""
