"""The architectural enclaves' fixed identities and the PCK key both sides derive.

The provisioning certification enclave (PCE) derives its PCK private key from its
EGETKEY(PROVISION) key at the platform's certified TCB. The emulated "manufacturer"
(provisioning, which knows the fused secrets as Intel does) derives the same key when a
VM is created, to certify its public half in the PCK certificate. Both sides use
:func:`pck_key_request` and :func:`pck_private_key` from here, so they cannot drift.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..sgx.consts import AttributeFlags, KeyName
from ..sgx.keys import EnclaveIdentity
from ..sgx.structs import Attributes, KeyRequest

__all__ = [
    "ARCH_ATTRIBUTES", "ARCH_XFRM", "PCE_ISVPRODID", "PCK_ATTRIBUTE_MASK", "QE_AUTH_DATA",
    "QE_ISVPRODID", "QE_ISVSVN", "pce_identity", "pck_key_request", "pck_private_key",
]

QE_ISVPRODID = 1
"""ISVPRODID of the quoting enclave (Intel's QE3 uses 1; QE identity JSON names it)."""
QE_ISVSVN = 8
"""ISVSVN of the emulated quoting enclave (the quote header's QE SVN)."""
PCE_ISVPRODID = 3
"""ISVPRODID of the provisioning certification enclave."""
ARCH_ATTRIBUTES = int(AttributeFlags.INIT | AttributeFlags.MODE64BIT | AttributeFlags.PROVISIONKEY)
"""ATTRIBUTES.FLAGS of both architectural enclaves once initialised (never DEBUG)."""
ARCH_XFRM = 0x3
"""ATTRIBUTES.XFRM of both architectural enclaves (x87 | SSE)."""
PCK_ATTRIBUTE_MASK = int(AttributeFlags.INIT | AttributeFlags.DEBUG | AttributeFlags.MODE64BIT
                         | AttributeFlags.PROVISIONKEY)
"""ATTRIBUTEMASK of the PCE's PROVISION key request (XFRM and MISCSELECT not bound)."""
QE_AUTH_DATA = bytes(range(32))
"""The QE authentication data Intel's QE uses by default (0x00, 0x01, ..., 0x1f)."""

_PCK_INFO = b"enclavekit PCK P-256 private key v1"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def pck_key_request(cpusvn: bytes, pcesvn: int) -> KeyRequest:
    """The exact KEYREQUEST the PCE issues for its PCK key at TCB (``cpusvn``, ``pcesvn``)."""
    return KeyRequest(keyname=int(KeyName.PROVISION), keypolicy=0, isvsvn=pcesvn,
                      cpusvn=cpusvn, attributemask=Attributes(flags=PCK_ATTRIBUTE_MASK, xfrm=0),
                      keyid=bytes(32), miscmask=0)


def pce_identity(arch_mrsigner: bytes, pcesvn: int) -> EnclaveIdentity:
    """The PCE's identity as EGETKEY(PROVISION) sees it (MRENCLAVE is not bound by that key)."""
    return EnclaveIdentity(
        mrenclave=hashlib.sha256(b"enclavekit PCE (MRENCLAVE not bound)").digest(),
        mrsigner=arch_mrsigner, attributes=Attributes(flags=ARCH_ATTRIBUTES, xfrm=ARCH_XFRM),
        miscselect=0, isvprodid=PCE_ISVPRODID, isvsvn=pcesvn)


def pck_private_key(provision_key: bytes) -> ec.EllipticCurvePrivateKey:
    """The P-256 PCK key deterministically derived from a 16-byte PROVISION key (HKDF-SHA256)."""
    okm = HKDF(algorithm=hashes.SHA256(), length=40, salt=None,
               info=_PCK_INFO).derive(provision_key)
    scalar = int.from_bytes(okm, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())
