"""SIGSTRUCT creation, signing and verification (SDM Vol. 3D "SIGSTRUCT", sgx-spec.md §3).

Signing in one step::

    sig = sign(build_sigstruct(mrenclave, isvprodid=1, isvsvn=2), SigningKey.load("key.pem"))

or in two, for a key that lives in an HSM::

    unsigned = build_sigstruct(mrenclave)
    message = signing_data(unsigned)          # 256 bytes; the HSM signs PKCS#1 v1.5 SHA-256
    sig = attach_signature(unsigned, VerifyingKey.load("key.pub.pem"), hsm_signature)

``verify`` makes the checks EINIT makes on SIGSTRUCT alone, in the SDM's order.
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import InvalidSignature, InvalidSigStruct, InvalidStructure, SigningKeyError
from .consts import (
    RSA_MODULUS_BYTES,
    SIGSTRUCT_EXPONENT,
    SIGSTRUCT_HEADER,
    SIGSTRUCT_HEADER2,
    SIGSTRUCT_VENDORS,
    XFRM_LEGACY,
    AttributeFlags,
)
from .signing import SigningKey, VerifyingKey
from .structs import SIGSTRUCT_SIGNED_RANGES, Attributes, SigStruct

_U64 = 0xFFFF_FFFF_FFFF_FFFF

DEFAULT_ATTRIBUTES = Attributes(flags=int(AttributeFlags.MODE64BIT), xfrm=XFRM_LEGACY)
"""ATTRIBUTES that Fortanix's ``sgxs-sign`` writes by default: MODE64BIT, XFRM x87|SSE."""

DEFAULT_ATTRIBUTEMASK = Attributes(flags=~int(AttributeFlags.DEBUG) & _U64, xfrm=~0xE4 & _U64)
"""ATTRIBUTEMASK: every FLAGS bit except DEBUG is enforced (one SIGSTRUCT serves debug and
production loads, as with ``sgxs-sign`` and the Intel SDK); XFRM bits AVX (2) and AVX-512
(5–7) are not enforced, i.e. ``sgxs-sign -x 3/0xe4`` (stored mask 0xFFFFFFFFFFFFFF1B)."""

DEFAULT_MISCMASK = 0xFFFF_FFFF
"""MISCMASK: every MISCSELECT bit enforced."""

_TYPE_DEBUG = 0x8000_0000
"""SDK "TYPE" bit 31 (bytes 12–15 of HEADER), set by sgx_sign only for ReleaseType=1."""

_RESERVED = ("reserved1", "reserved2", "reserved3", "reserved4")


# --------------------------------------------------------------------------- DATE


def bcd_date(date: datetime.date) -> int:
    """SIGSTRUCT.DATE for a calendar date: the u32 whose hex digits spell YYYYMMDD."""
    return int(f"{date.year:04d}{date.month:02d}{date.day:02d}", 16)


def date_from_bcd(value: int) -> datetime.date:
    """The calendar date a SIGSTRUCT.DATE value spells.

    Raises:
        InvalidStructure: the value is not a BCD YYYYMMDD date (e.g. 0, which some tools write).
    """
    digits = f"{value:08x}"
    try:
        if len(digits) != 8 or not digits.isdigit():
            raise ValueError(digits)
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as exc:
        raise InvalidStructure(
            "SIGSTRUCT", f"DATE {value:#010x} is not a BCD YYYYMMDD date"
        ) from exc


# --------------------------------------------------------------------------- building


def build_sigstruct(
    enclavehash: bytes,
    *,
    vendor: int = 0,
    date: datetime.date | int | None = None,
    swdefined: int = 0,
    miscselect: int = 0,
    miscmask: int = DEFAULT_MISCMASK,
    attributes: Attributes = DEFAULT_ATTRIBUTES,
    attributemask: Attributes = DEFAULT_ATTRIBUTEMASK,
    isvprodid: int = 0,
    isvsvn: int = 0,
    isvfamilyid: bytes = bytes(16),
    isvextprodid: bytes = bytes(16),
    cet_attributes: int = 0,
    cet_attributes_mask: int = 0,
) -> SigStruct:
    """An unsigned SIGSTRUCT with the HEADER/HEADER2 constants and EXPONENT 3 filled in.

    Args:
        enclavehash: the expected MRENCLAVE (32 bytes).
        date: a calendar date, an already-BCD u32 (0 is allowed), or ``None`` for today (UTC).
        Other arguments are the SIGSTRUCT fields of the same name; defaults follow
        ``sgxs-sign`` (see ``DEFAULT_ATTRIBUTES``/``DEFAULT_ATTRIBUTEMASK``).

    Raises:
        InvalidStructure: a field does not fit (wrong length, out of range, bad VENDOR).
    """
    if len(enclavehash) != 32:
        raise InvalidStructure(
            "SIGSTRUCT", f"ENCLAVEHASH must be 32 bytes, found {len(enclavehash)}"
        )
    if vendor not in SIGSTRUCT_VENDORS:
        raise InvalidStructure("SIGSTRUCT", f"VENDOR must be 0 or 0x8086, found {vendor:#x}")
    if date is None:
        date = datetime.datetime.now(datetime.UTC).date()
    sig = SigStruct(
        header=SIGSTRUCT_HEADER,
        vendor=vendor,
        date=bcd_date(date) if isinstance(date, datetime.date) else date,
        header2=SIGSTRUCT_HEADER2,
        swdefined=swdefined,
        exponent=SIGSTRUCT_EXPONENT,
        miscselect=miscselect,
        miscmask=miscmask,
        cet_attributes=cet_attributes,
        cet_attributes_mask=cet_attributes_mask,
        isvfamilyid=bytes(isvfamilyid),
        attributes=attributes,
        attributemask=attributemask,
        enclavehash=bytes(enclavehash),
        isvextprodid=bytes(isvextprodid),
        isvprodid=isvprodid,
        isvsvn=isvsvn,
    )
    sig.to_bytes()  # raises InvalidStructure now rather than at signing time
    return sig


def signing_data(sig: SigStruct) -> bytes:
    """The 256 bytes the SIGSTRUCT signature covers: bytes 0–127 ‖ 900–1027 (§3.2)."""
    raw = sig.to_bytes()
    return b"".join(raw[start:end] for start, end in SIGSTRUCT_SIGNED_RANGES)


def mrsigner(sig: SigStruct) -> bytes:
    """MRSIGNER: SHA-256 of the 384-byte MODULUS exactly as stored (little-endian, §2.6)."""
    return hashlib.sha256(sig.modulus).digest()


def q1q2(signature: int, modulus: int) -> tuple[int, int]:
    """Q1 = S² // N and Q2 = ((S² mod N)·S) // N, the helpers EINIT uses (§3.4)."""
    q1, rem = divmod(signature * signature, modulus)
    return q1, (rem * signature) // modulus


def _with_signature(sig: SigStruct, modulus: int, signature: int) -> SigStruct:
    q1, q2 = q1q2(signature, modulus)

    def le(value: int) -> bytes:
        return value.to_bytes(RSA_MODULUS_BYTES, "little")

    return sig.replace(
        modulus=le(modulus),
        exponent=SIGSTRUCT_EXPONENT,
        signature=le(signature),
        q1=le(q1),
        q2=le(q2),
    )


def sign(sig: SigStruct, key: SigningKey) -> SigStruct:
    """Sign a SIGSTRUCT: fill MODULUS, EXPONENT, SIGNATURE, Q1 and Q2.

    Raises:
        InvalidSigStruct: the signed fields are not a well-formed SIGSTRUCT (header, vendor,
            reserved), which EINIT would refuse whatever the signature.
    """
    check_structure(sig.replace(exponent=SIGSTRUCT_EXPONENT), leaf="SIGSTRUCT")
    signature = key.sign_pkcs1_sha256(signing_data(sig))
    return _with_signature(
        sig, key.key.public_key().public_numbers().n, int.from_bytes(signature, "big")
    )


def attach_signature(
    sig: SigStruct,
    public: VerifyingKey | rsa.RSAPublicKey | bytes,
    signature: bytes,
) -> SigStruct:
    """Second step of HSM signing: put an externally made signature into a SIGSTRUCT.

    Args:
        sig: the SIGSTRUCT whose ``signing_data`` was signed.
        public: the signer's public key, or its 384-byte big-endian modulus.
        signature: the 384-byte big-endian PKCS#1 v1.5 SHA-256 signature.

    Returns:
        The signed SIGSTRUCT, verified with ``verify``.

    Raises:
        SigningKeyError: the public key is not RSA-3072 with exponent 3.
        InvalidSignature: the signature does not verify over ``signing_data(sig)``.
        InvalidSigStruct: the SIGSTRUCT itself is malformed.
    """
    if isinstance(public, bytes):
        public = VerifyingKey.from_modulus(public, byteorder="big")
    elif not isinstance(public, VerifyingKey):
        public = VerifyingKey(public)
    if len(signature) != RSA_MODULUS_BYTES:
        raise InvalidSignature(
            "SIGSTRUCT",
            f"external signature is {len(signature)} bytes, expected {RSA_MODULUS_BYTES}",
        )
    n = public.key.public_numbers().n
    s = int.from_bytes(signature, "big")
    if s >= n:
        raise InvalidSignature("SIGSTRUCT", "external signature is not below the modulus")
    signed = _with_signature(sig, n, s)
    verify(signed, leaf="SIGSTRUCT")
    return signed


# --------------------------------------------------------------------------- verification


def check_structure(sig: SigStruct, *, leaf: str = "EINIT", allow_type_bit: bool = False) -> None:
    """EINIT's first check: HEADER, VENDOR, HEADER2, EXPONENT and reserved fields.

    ``allow_type_bit`` tolerates the SDK's TYPE bit 31 in HEADER bytes 12–15 (the SDM
    requires the full 16-byte constant; whether hardware tolerates it is unconfirmed).

    Raises:
        InvalidSigStruct: the first field that is not as SGX requires.
    """
    header = sig.header
    if allow_type_bit and header[12:] == _TYPE_DEBUG.to_bytes(4, "little"):
        header = header[:12] + bytes(4)
    if header != SIGSTRUCT_HEADER:
        raise InvalidSigStruct(
            leaf, f"HEADER is {sig.header.hex()}, expected {SIGSTRUCT_HEADER.hex()}"
        )
    if sig.vendor not in SIGSTRUCT_VENDORS:
        raise InvalidSigStruct(leaf, f"VENDOR is {sig.vendor:#x}, expected 0 or 0x8086")
    if sig.header2 != SIGSTRUCT_HEADER2:
        raise InvalidSigStruct(
            leaf, f"HEADER2 is {sig.header2.hex()}, expected {SIGSTRUCT_HEADER2.hex()}"
        )
    if sig.exponent != SIGSTRUCT_EXPONENT:
        raise InvalidSigStruct(
            leaf, f"EXPONENT is {sig.exponent}, SGX requires {SIGSTRUCT_EXPONENT}"
        )
    for name in _RESERVED:
        value: bytes = getattr(sig, name)
        if any(value):
            start = SigStruct.OFFSETS[name]
            raise InvalidSigStruct(
                leaf, f"reserved bytes {start}–{start + len(value) - 1} are not zero"
            )


def _public_key(sig: SigStruct, leaf: str) -> tuple[rsa.RSAPublicKey, int]:
    try:
        key = VerifyingKey.from_modulus(sig.modulus, byteorder="little").key
    except SigningKeyError as exc:
        raise InvalidSignature(leaf, "MODULUS is not an odd 3072-bit RSA modulus") from exc
    return key, key.public_numbers().n


def verify_rsa(sig: SigStruct, *, leaf: str = "EINIT") -> None:
    """EINIT's signature check: PKCS#1 v1.5 SHA-256 over ``signing_data`` with MODULUS, e = 3.

    Raises:
        InvalidSignature: the signature does not verify with the embedded MODULUS.
    """
    key, n = _public_key(sig, leaf)
    s = int.from_bytes(sig.signature, "little")
    if s >= n:
        raise InvalidSignature(leaf, "SIGNATURE is not below the MODULUS")
    try:
        key.verify(
            s.to_bytes(RSA_MODULUS_BYTES, "big"),
            signing_data(sig),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except CryptoInvalidSignature as exc:
        raise InvalidSignature(
            leaf, "SIGNATURE does not verify over the signed bytes with the embedded MODULUS"
        ) from exc


def verify_q1q2(sig: SigStruct, *, leaf: str = "EINIT") -> None:
    """Check Q1/Q2 against SIGNATURE and MODULUS (real EINIT fails when they are wrong).

    Raises:
        InvalidSignature: "Q1/Q2 do not match the signature".
    """
    n = int.from_bytes(sig.modulus, "little")
    if n == 0:
        raise InvalidSignature(leaf, "Q1/Q2 do not match the signature (MODULUS is zero)")
    q1, q2 = q1q2(int.from_bytes(sig.signature, "little"), n)
    if (int.from_bytes(sig.q1, "little"), int.from_bytes(sig.q2, "little")) != (q1, q2):
        raise InvalidSignature(leaf, "Q1/Q2 do not match the signature")


def verify(sig: SigStruct, *, leaf: str = "EINIT", allow_type_bit: bool = False) -> None:
    """Check a SIGSTRUCT as EINIT does before looking at the enclave (SDM EINIT, §3.6).

    Order: HEADER, VENDOR, HEADER2, EXPONENT, reserved (→ ``InvalidSigStruct``), then the
    RSA signature and Q1/Q2 (→ ``InvalidSignature``). Nothing is returned: it raises.

    Raises:
        InvalidSigStruct: a constant, EXPONENT or reserved field is wrong.
        InvalidSignature: the signature or Q1/Q2 do not verify.
    """
    check_structure(sig, leaf=leaf, allow_type_bit=allow_type_bit)
    verify_rsa(sig, leaf=leaf)
    verify_q1q2(sig, leaf=leaf)


def is_valid(sig: SigStruct) -> bool:
    """Whether ``verify`` accepts the SIGSTRUCT."""
    try:
        verify(sig)
    except (InvalidSigStruct, InvalidSignature):
        return False
    return True
