"""Hardware-defined SGX structures, one definition each, sizes checked at import.

Layouts follow the Intel SDM Vol. 3D (SGX data-structure tables) as restated in
``sgx-spec.md`` §1 and §3–§5 and Appendix A. Do not put software state here: only
what the architecture defines byte for byte. Field names are the SDM names in
lower case (``mrenclave``, ``isvprodid``, ``ssaframesize``); ``reserved*`` fields
must be zero when parsed strictly.
"""

from __future__ import annotations

from typing import Annotated

from ._layout import U8, U16, U32, U64, Structure, structure
from .consts import PAGE_SIZE


@structure(size=16)
class Attributes(Structure):
    """ATTRIBUTES: FLAGS (INIT, DEBUG, MODE64BIT, …) and XFRM (the XSAVE feature mask)."""

    flags: U64 = 0
    xfrm: U64 = 0


@structure(size=PAGE_SIZE)
class SECS(Structure):
    """SECS: the enclave control structure ECREATE installs (SDM "SECS" table, §1.2)."""

    size: U64 = 0
    baseaddr: U64 = 0
    ssaframesize: U32 = 0
    miscselect: U32 = 0
    cet_leg_bitmap_offset: U64 = 0
    cet_attributes: U8 = 0
    reserved1: Annotated[bytes, 15] = bytes(15)
    attributes: Attributes = Attributes()
    mrenclave: Annotated[bytes, 32] = bytes(32)
    reserved2: Annotated[bytes, 32] = bytes(32)
    mrsigner: Annotated[bytes, 32] = bytes(32)
    reserved3: Annotated[bytes, 32] = bytes(32)
    configid: Annotated[bytes, 64] = bytes(64)
    isvprodid: U16 = 0
    isvsvn: U16 = 0
    configsvn: U16 = 0
    reserved4: Annotated[bytes, 3834] = bytes(3834)


@structure(size=PAGE_SIZE)
class TCS(Structure):
    """TCS: one thread's entry point and SSA stack (SDM "TCS" table, §1.3; CET fields omitted)."""

    state: U64 = 0
    flags: U64 = 0
    ossa: U64 = 0
    cssa: U32 = 0
    nssa: U32 = 0
    oentry: U64 = 0
    aep: U64 = 0
    ofsbasgx: U64 = 0
    ogsbasgx: U64 = 0
    fslimit: U32 = 0
    gslimit: U32 = 0
    reserved: Annotated[bytes, 4024] = bytes(4024)


@structure(size=64)
class SecInfo(Structure):
    """SECINFO: page type and permissions for EADD/ECREATE."""

    flags: U64 = 0
    reserved: Annotated[bytes, 56] = bytes(56)


@structure(size=32)
class PageInfo(Structure):
    """PAGEINFO: operand block of EADD, ECREATE, EWB and ELDU (addresses as integers)."""

    linaddr: U64 = 0
    srcpge: U64 = 0
    secinfo: U64 = 0
    secs: U64 = 0


@structure(size=128)
class PCMD(Structure):
    """PCMD: paging crypto metadata EWB writes beside an evicted page (§5.1)."""

    secinfo: SecInfo = SecInfo()
    enclaveid: U64 = 0
    reserved: Annotated[bytes, 40] = bytes(40)
    mac: Annotated[bytes, 16] = bytes(16)


@structure(size=1808)
class SigStruct(Structure):
    """SIGSTRUCT: the enclave author's signed statement of identity (SDM "SIGSTRUCT", §3.1).

    ``header`` and ``header2`` are constants; ``modulus``, ``signature``, ``q1`` and ``q2``
    are little-endian integers. The signed message is bytes 0–127 and 900–1027.
    """

    header: Annotated[bytes, 16] = bytes(16)
    vendor: U32 = 0
    date: U32 = 0
    header2: Annotated[bytes, 16] = bytes(16)
    swdefined: U32 = 0
    reserved1: Annotated[bytes, 84] = bytes(84)
    modulus: Annotated[bytes, 384] = bytes(384)
    exponent: U32 = 0
    signature: Annotated[bytes, 384] = bytes(384)
    miscselect: U32 = 0
    miscmask: U32 = 0
    cet_attributes: U8 = 0
    cet_attributes_mask: U8 = 0
    reserved2: Annotated[bytes, 2] = bytes(2)
    isvfamilyid: Annotated[bytes, 16] = bytes(16)
    attributes: Attributes = Attributes()
    attributemask: Attributes = Attributes()
    enclavehash: Annotated[bytes, 32] = bytes(32)
    reserved3: Annotated[bytes, 16] = bytes(16)
    isvextprodid: Annotated[bytes, 16] = bytes(16)
    isvprodid: U16 = 0
    isvsvn: U16 = 0
    reserved4: Annotated[bytes, 12] = bytes(12)
    q1: Annotated[bytes, 384] = bytes(384)
    q2: Annotated[bytes, 384] = bytes(384)


SIGSTRUCT_SIGNED_RANGES = ((0, 128), (900, 1028))
"""Byte ranges of SIGSTRUCT covered by the RSA signature (256 bytes in all)."""


@structure(size=304)
class EInitToken(Structure):
    """EINITTOKEN: a launch token (§3.5). With flexible launch control VALID is 0."""

    valid: U32 = 0
    reserved1: Annotated[bytes, 44] = bytes(44)
    attributes: Attributes = Attributes()
    mrenclave: Annotated[bytes, 32] = bytes(32)
    reserved2: Annotated[bytes, 32] = bytes(32)
    mrsigner: Annotated[bytes, 32] = bytes(32)
    reserved3: Annotated[bytes, 32] = bytes(32)
    cpusvnle: Annotated[bytes, 16] = bytes(16)
    isvprodidle: U16 = 0
    isvsvnle: U16 = 0
    reserved4: Annotated[bytes, 24] = bytes(24)
    maskedmiscselectle: U32 = 0
    maskedattributesle: Attributes = Attributes()
    keyid: Annotated[bytes, 32] = bytes(32)
    mac: Annotated[bytes, 16] = bytes(16)


@structure(size=384)
class ReportBody(Structure):
    """REPORTBODY: the identity EREPORT states (§4.1); also the body of a DCAP quote."""

    cpusvn: Annotated[bytes, 16] = bytes(16)
    miscselect: U32 = 0
    cet_attributes: U8 = 0
    reserved1: Annotated[bytes, 11] = bytes(11)
    isvextprodid: Annotated[bytes, 16] = bytes(16)
    attributes: Attributes = Attributes()
    mrenclave: Annotated[bytes, 32] = bytes(32)
    reserved2: Annotated[bytes, 32] = bytes(32)
    mrsigner: Annotated[bytes, 32] = bytes(32)
    reserved3: Annotated[bytes, 32] = bytes(32)
    configid: Annotated[bytes, 64] = bytes(64)
    isvprodid: U16 = 0
    isvsvn: U16 = 0
    configsvn: U16 = 0
    reserved4: Annotated[bytes, 42] = bytes(42)
    isvfamilyid: Annotated[bytes, 16] = bytes(16)
    reportdata: Annotated[bytes, 64] = bytes(64)


@structure(size=432)
class Report(Structure):
    """REPORT: a REPORTBODY, the KEYID used and an AES-128-CMAC over the body (§4.1)."""

    body: ReportBody = ReportBody()
    keyid: Annotated[bytes, 32] = bytes(32)
    mac: Annotated[bytes, 16] = bytes(16)


@structure(size=512)
class TargetInfo(Structure):
    """TARGETINFO: the enclave a REPORT is addressed to (§4.2)."""

    measurement: Annotated[bytes, 32] = bytes(32)
    attributes: Attributes = Attributes()
    cet_attributes: U8 = 0
    reserved1: Annotated[bytes, 1] = bytes(1)
    configsvn: U16 = 0
    miscselect: U32 = 0
    reserved2: Annotated[bytes, 8] = bytes(8)
    configid: Annotated[bytes, 64] = bytes(64)
    reserved3: Annotated[bytes, 384] = bytes(384)

    @classmethod
    def from_report(cls, body: ReportBody) -> TargetInfo:
        """The TARGETINFO addressing the enclave that produced ``body``."""
        return cls(
            measurement=body.mrenclave,
            attributes=body.attributes,
            cet_attributes=body.cet_attributes,
            configsvn=body.configsvn,
            miscselect=body.miscselect,
            configid=body.configid,
        )


@structure(size=512)
class KeyRequest(Structure):
    """KEYREQUEST: which key EGETKEY should derive and what binds it (§4.3)."""

    keyname: U16 = 0
    keypolicy: U16 = 0
    isvsvn: U16 = 0
    reserved1: Annotated[bytes, 2] = bytes(2)
    cpusvn: Annotated[bytes, 16] = bytes(16)
    attributemask: Attributes = Attributes()
    keyid: Annotated[bytes, 32] = bytes(32)
    miscmask: U32 = 0
    configsvn: U16 = 0
    reserved2: Annotated[bytes, 434] = bytes(434)


ALL_STRUCTURES: tuple[type[Structure], ...] = (
    Attributes, SECS, TCS, SecInfo, PageInfo, PCMD, SigStruct, EInitToken,
    ReportBody, Report, TargetInfo, KeyRequest,
)
"""Every hardware structure, for tests and documentation."""
