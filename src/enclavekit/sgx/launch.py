"""EINIT's checks in SDM order and the launch-control model (``sgx-spec.md`` §3.5–§3.6).

Launch control is Flexible Launch Control: IA32_SGXLEPUBKEYHASH is written by the OS
before each EINIT (by default to the enclave's own MRSIGNER), an EINITTOKEN with
VALID = 0 is accepted when MRSIGNER equals it, and a platform may restrict launch to
an allow-list of MRSIGNER values (refused with SGX_INVALID_EINITTOKEN).
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from ..errors import (
    InvalidAttribute,
    InvalidCPUSVN,
    InvalidEInitToken,
    InvalidMeasurement,
    InvalidSigStruct,
)
from . import sigstruct as sigstruct_mod
from .consts import AttributeFlags
from .keys import FusedSecrets, cpusvn_beyond, einittoken_key
from .structs import SECS, Attributes, EInitToken, SigStruct

_TOKEN_MACED = 192
"""EINITTOKEN bytes 0–191 are covered by its MAC."""
_TOKEN_RESERVED = ("reserved1", "reserved2", "reserved3", "reserved4")


def _masked(a: Attributes, mask: Attributes) -> tuple[int, int]:
    return a.flags & mask.flags, a.xfrm & mask.xfrm


def check_einit(
    secs: SECS,
    measured: bytes,
    sig: SigStruct,
    token: EInitToken,
    *,
    secrets: FusedSecrets,
    cpusvn: bytes,
    lepubkeyhash: bytes | None,
    allowlist: frozenset[bytes] | None,
) -> bytes:
    """Run EINIT's checks for an enclave whose SECS is ``secs`` and MRENCLAVE ``measured``.

    Returns the enclave's MRSIGNER. ``lepubkeyhash`` ``None`` means the OS wrote the
    enclave's own MRSIGNER into IA32_SGXLEPUBKEYHASH (the Linux driver's behaviour).

    Raises:
        InvalidSigStruct, InvalidSignature: from the SIGSTRUCT checks (``sigstruct.verify``).
        InvalidMeasurement: ENCLAVEHASH (or a token's MRENCLAVE/MRSIGNER) differs.
        InvalidAttribute: masked ATTRIBUTES / MISCSELECT / CET_ATTRIBUTES differ, or a
            controlled attribute without the launch key hash.
        InvalidEInitToken: the signer may not launch, or a VALID token does not verify.
        InvalidCPUSVN: a token's CPUSVNLE is beyond the platform's CPUSVN.
    """
    sigstruct_mod.verify(sig, leaf="EINIT")
    kss = bool(secs.attributes.flags & AttributeFlags.KSS)
    if not kss and (any(sig.isvfamilyid) or any(sig.isvextprodid)):
        raise InvalidSigStruct(
            "EINIT", "ISVFAMILYID/ISVEXTPRODID are set but the enclave has no KSS attribute"
        )
    if measured != sig.enclavehash:
        raise InvalidMeasurement(
            "EINIT",
            f"SIGSTRUCT.ENCLAVEHASH {sig.enclavehash.hex()} differs from the built MRENCLAVE "
            f"{measured.hex()}; sign what was built, or build what was signed",
        )
    mrsigner = sigstruct_mod.mrsigner(sig)
    lehash = mrsigner if lepubkeyhash is None else lepubkeyhash
    if secs.attributes.flags & AttributeFlags.EINITTOKEN_KEY and mrsigner != lehash:
        raise InvalidAttribute(
            "EINIT", "EINITTOKEN_KEY is set but MRSIGNER is not IA32_SGXLEPUBKEYHASH"
        )
    have, want = _masked(secs.attributes, sig.attributemask), _masked(
        sig.attributes, sig.attributemask
    )
    if have != want:
        raise InvalidAttribute(
            "EINIT",
            f"SECS.ATTRIBUTES & ATTRIBUTEMASK = flags {have[0]:#x} xfrm {have[1]:#x}, "
            f"SIGSTRUCT requires flags {want[0]:#x} xfrm {want[1]:#x}; "
            "create the enclave with the signed attributes (e.g. DEBUG) or re-sign it",
        )
    if secs.miscselect & sig.miscmask != sig.miscselect & sig.miscmask:
        raise InvalidAttribute(
            "EINIT",
            f"SECS.MISCSELECT & MISCMASK = {secs.miscselect & sig.miscmask:#x}, SIGSTRUCT "
            f"requires {sig.miscselect & sig.miscmask:#x}",
        )
    cet_mask = sig.cet_attributes_mask
    if secs.cet_attributes & cet_mask != sig.cet_attributes & cet_mask:
        raise InvalidAttribute("EINIT", "SECS.CET_ATTRIBUTES do not match SIGSTRUCT under mask")
    if allowlist is not None and mrsigner not in allowlist:
        raise InvalidEInitToken(
            "EINIT",
            f"MRSIGNER {mrsigner.hex()} is not in this platform's launch allow-list; "
            "sign with an allowed key or add this MRSIGNER to the allow-list",
        )
    if not token.valid:
        if mrsigner != lehash:
            raise InvalidEInitToken(
                "EINIT",
                f"EINITTOKEN.VALID = 0 needs IA32_SGXLEPUBKEYHASH = MRSIGNER "
                f"({mrsigner.hex()}), found {lehash.hex()}",
            )
        return mrsigner
    _check_token(secs, measured, mrsigner, token, secrets=secrets, cpusvn=cpusvn, lehash=lehash)
    return mrsigner


def _check_token(
    secs: SECS, measured: bytes, mrsigner: bytes, token: EInitToken, *,
    secrets: FusedSecrets, cpusvn: bytes, lehash: bytes,
) -> None:
    """SDM EINIT step 12: a VALID launch token made by a launch enclave."""
    if token.valid != 1 or any(any(getattr(token, n)) for n in _TOKEN_RESERVED):
        raise InvalidEInitToken("EINIT", "EINITTOKEN VALID bits 31:1 or reserved bytes are set")
    if token.maskedattributesle.flags & AttributeFlags.DEBUG and not (
        secs.attributes.flags & AttributeFlags.DEBUG
    ):
        raise InvalidEInitToken(
            "EINIT", "a token from a DEBUG launch enclave cannot launch a production enclave"
        )
    if cpusvn_beyond(token.cpusvnle, cpusvn):
        raise InvalidCPUSVN(
            "EINIT", f"EINITTOKEN.CPUSVNLE {token.cpusvnle.hex()} is beyond this CPU's "
            f"{cpusvn.hex()}"
        )
    key = einittoken_key(
        secrets, cpusvn=token.cpusvnle, isvsvn=token.isvsvnle, isvprodid=token.isvprodidle,
        mrsigner=lehash, masked_attributes=token.maskedattributesle,
        masked_miscselect=token.maskedmiscselectle, keyid=token.keyid,
    )
    mac = cmac.CMAC(algorithms.AES128(key))
    mac.update(token.to_bytes()[:_TOKEN_MACED])
    if not hmac.compare_digest(mac.finalize(), token.mac):
        raise InvalidEInitToken(
            "EINIT", "EINITTOKEN.MAC does not verify; get a fresh token from the launch enclave"
        )
    if token.mrenclave != measured or token.mrsigner != mrsigner:
        raise InvalidMeasurement(
            "EINIT", "EINITTOKEN.MRENCLAVE/MRSIGNER do not name this enclave"
        )
    if token.attributes != secs.attributes:
        raise InvalidAttribute("EINIT", "EINITTOKEN.ATTRIBUTES differ from SECS.ATTRIBUTES")
