"""The key hierarchy: fused secrets, EGETKEY derivation and the EREPORT MAC (sgx-spec.md §4).

Real hardware derives every key with an undisclosed PRF keyed by fused secrets; only the
*dependency structure* is architectural (§4.5, §7.2). Here::

    key = AES-128-CMAC(FusedSecrets.root, KEYDEPENDENCIES)

where KEYDEPENDENCIES is the fixed 672-byte little-endian record below. Each key name fills
exactly the fields the SDM binds for it (EGETKEY / EREPORT / EINIT pseudocode) and leaves the
rest zero; the leading tag and KEYNAME keep the key names apart, and the fixed length makes the
encoding injective, so equal records give equal keys and any differing bound input a different
key.

====== ==== ================ =====================================================
Offset Size Field            Bound for
====== ==== ================ =====================================================
0      16   TAG              always ``b"enclavekit.KDEP1"`` (domain and version)
16     2    KEYNAME          always
18     2    KEYPOLICY        SEAL, PROVISION_SEAL (the request's)
20     2    ISVPRODID        SEAL/PROVISION_SEAL unless NOISVPRODID; EINITTOKEN, PROVISION
22     2    ISVSVN           the request's, except REPORT
24     2    CONFIGSVN        REPORT (SECS); SEAL/PROVISION_SEAL with CONFIGID (request's)
26     1    CET_ATTRIBUTES   REPORT (SECS)
27     5    reserved         0
32     4    MISCSELECT       tmp_misc = MISCMASK & SECS.MISCSELECT; REPORT: SECS.MISCSELECT
36     4    MISCMASK         ~MISCMASK for SEAL, PROVISION, PROVISION_SEAL
40     8    reserved         0
48     16   ATTRIBUTES       tmp_attr = (ATTRIBUTEMASK | INIT | DEBUG) & SECS.ATTRIBUTES;
                             REPORT: SECS.ATTRIBUTES
64     16   ATTRIBUTEMASK    the request's for SEAL, PROVISION, PROVISION_SEAL
80     16   CPUSVN           the request's; REPORT: the current CPUSVN
96     16   OWNEREPOCH       SEAL, REPORT, EINITTOKEN
112    16   SEAL_FUSES       every key except PROVISION
128    32   KEYID            SEAL, REPORT, EINITTOKEN
160    32   MRENCLAVE        REPORT; SEAL with policy MRENCLAVE
192    32   MRSIGNER         EINITTOKEN, PROVISION, PROVISION_SEAL; SEAL with policy MRSIGNER
224    64   CONFIGID         REPORT; SEAL/PROVISION_SEAL with policy CONFIGID
288    16   ISVFAMILYID      SEAL/PROVISION_SEAL with policy ISVFAMILYID
304    16   ISVEXTPRODID     SEAL/PROVISION_SEAL with policy ISVEXTPRODID
320    352  PADDING          SECS.PADDING; REPORT and EINIT: the PKCS#1 constant
====== ==== ================ =====================================================
"""

from __future__ import annotations

import dataclasses
import os
import struct
from dataclasses import dataclass
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from ..errors import (
    IntegrityError,
    InvalidAttribute,
    InvalidCPUSVN,
    InvalidISVSVN,
    InvalidKeyname,
    InvalidStructure,
    SGXFault,
)
from ._layout import U8, U16, U32, Structure, structure
from .consts import (
    ALWAYS_BOUND_FLAGS,
    KEYPOLICY_KSS_ONLY,
    KEYPOLICY_RESERVED,
    PKCS1_SHA256_PADDING,
    AttributeFlags,
    KeyName,
    KeyPolicy,
)
from .structs import Attributes, KeyRequest, Report, ReportBody, TargetInfo

KEY_SIZE = 16
"""Every derived key is 128 bits."""
CPUSVN_SIZE = 16
KEYID_SIZE = 32
REPORTDATA_SIZE = 64

KDF_TAG = b"enclavekit.KDEP1"
"""Domain-separation tag and version at the start of every KEYDEPENDENCIES record."""

_MASK32 = 0xFFFF_FFFF


@structure(size=672)
class KeyDependencies(Structure):
    """KEYDEPENDENCIES: the emulator's canonical record of everything a derived key binds."""

    tag: Annotated[bytes, 16] = KDF_TAG
    keyname: U16 = 0
    keypolicy: U16 = 0
    isvprodid: U16 = 0
    isvsvn: U16 = 0
    configsvn: U16 = 0
    cet_attributes: U8 = 0
    reserved1: Annotated[bytes, 5] = bytes(5)
    miscselect: U32 = 0
    miscmask: U32 = 0
    reserved2: Annotated[bytes, 8] = bytes(8)
    attributes: Attributes = Attributes()
    attributemask: Attributes = Attributes()
    cpusvn: Annotated[bytes, 16] = bytes(16)
    owner_epoch: Annotated[bytes, 16] = bytes(16)
    seal_fuses: Annotated[bytes, 16] = bytes(16)
    keyid: Annotated[bytes, 32] = bytes(32)
    mrenclave: Annotated[bytes, 32] = bytes(32)
    mrsigner: Annotated[bytes, 32] = bytes(32)
    configid: Annotated[bytes, 64] = bytes(64)
    isvfamilyid: Annotated[bytes, 16] = bytes(16)
    isvextprodid: Annotated[bytes, 16] = bytes(16)
    padding: Annotated[bytes, 352] = bytes(352)


# --------------------------------------------------------------------------- platform secrets

_FUSED_MAGIC = b"EKFUSED\0"
_FUSED_VERSION = 1
_FUSED = struct.Struct("<8sH6s16s16s16s")


def _check_len(structure_name: str, field: str, value: object, size: int) -> None:
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidStructure(
            structure_name, f"{field} must be bytes, found {type(value).__name__}"
        )
    if len(value) != size:
        raise InvalidStructure(
            structure_name, f"{field} must be {size} bytes, found {len(value)}"
        )


@dataclass(frozen=True)
class FusedSecrets:
    """A platform's fused secrets: the key-derivation root, SEAL_FUSES and OWNEREPOCH.

    Random at platform creation; every derived key depends on ``root``, so keys never
    match across platforms. ``repr`` never shows the secret bytes.
    """

    root: bytes = dataclasses.field(repr=False)
    seal_fuses: bytes = dataclasses.field(repr=False)
    owner_epoch: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        for name in ("root", "seal_fuses", "owner_epoch"):
            _check_len("FusedSecrets", name, getattr(self, name), 16)

    @classmethod
    def generate(cls) -> FusedSecrets:
        """Fresh random secrets for a new platform."""
        return cls(root=os.urandom(16), seal_fuses=os.urandom(16), owner_epoch=os.urandom(16))

    def to_bytes(self) -> bytes:
        """Persistent form (64 B): ``EKFUSED\\0``, version u16 = 1, 6 zero bytes, the secrets."""
        return _FUSED.pack(
            _FUSED_MAGIC, _FUSED_VERSION, bytes(6), self.root, self.seal_fuses, self.owner_epoch
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> FusedSecrets:
        """Parse :meth:`to_bytes` output.

        Raises:
            InvalidStructure: wrong length, magic, version or non-zero reserved bytes.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidStructure(
                "FusedSecrets", f"expected bytes, found {type(data).__name__}"
            )
        if len(data) != _FUSED.size:
            raise InvalidStructure(
                "FusedSecrets", f"expected {_FUSED.size} bytes, found {len(data)}"
            )
        magic, version, reserved, root, fuses, epoch = _FUSED.unpack(bytes(data))
        if magic != _FUSED_MAGIC:
            raise InvalidStructure(
                "FusedSecrets",
                f"bad magic {magic!r}, expected {_FUSED_MAGIC!r}; not a fused-secrets file",
            )
        if version != _FUSED_VERSION:
            raise InvalidStructure(
                "FusedSecrets", f"unsupported version {version}, expected {_FUSED_VERSION}"
            )
        if any(reserved):
            raise InvalidStructure("FusedSecrets", "reserved bytes 10-15 must be zero")
        return cls(root=root, seal_fuses=fuses, owner_epoch=epoch)


# --------------------------------------------------------------------------- enclave identity


@dataclass(frozen=True)
class EnclaveIdentity:
    """What an initialised enclave's SECS holds that EREPORT and EGETKEY read (set by EINIT)."""

    mrenclave: bytes
    mrsigner: bytes
    attributes: Attributes
    miscselect: int
    isvprodid: int
    isvsvn: int
    configid: bytes = bytes(64)
    configsvn: int = 0
    isvfamilyid: bytes = bytes(16)
    isvextprodid: bytes = bytes(16)
    cet_attributes: int = 0
    padding: bytes = PKCS1_SHA256_PADDING

    def __post_init__(self) -> None:
        for name, size in (
            ("mrenclave", 32), ("mrsigner", 32), ("configid", 64),
            ("isvfamilyid", 16), ("isvextprodid", 16), ("padding", 352),
        ):
            _check_len("EnclaveIdentity", name, getattr(self, name), size)
        for name, limit in (
            ("miscselect", _MASK32), ("isvprodid", 0xFFFF), ("isvsvn", 0xFFFF),
            ("configsvn", 0xFFFF), ("cet_attributes", 0xFF),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= limit:
                raise InvalidStructure(
                    "EnclaveIdentity", f"{name}={value!r} is not an integer in 0..{limit:#x}"
                )

    def target_info(self) -> TargetInfo:
        """The TARGETINFO that addresses this enclave (for EREPORT in another enclave)."""
        return TargetInfo(
            measurement=self.mrenclave,
            attributes=self.attributes,
            cet_attributes=self.cet_attributes,
            configsvn=self.configsvn,
            miscselect=self.miscselect,
            configid=self.configid,
        )


# --------------------------------------------------------------------------- derivation


def _derive(secrets: FusedSecrets, deps: KeyDependencies) -> bytes:
    mac = cmac.CMAC(algorithms.AES128(secrets.root))
    mac.update(deps.to_bytes())
    return mac.finalize()


def cpusvn_beyond(requested: bytes, current: bytes) -> bool:
    """Whether a requested CPUSVN is beyond the current one: any of its 16 bytes is greater."""
    _check_len("CPUSVN", "requested", requested, CPUSVN_SIZE)
    _check_len("CPUSVN", "current", current, CPUSVN_SIZE)
    return any(r > c for r, c in zip(requested, current, strict=True))


def _check_cpusvn(leaf: str, requested: bytes, current: bytes) -> None:
    if cpusvn_beyond(requested, current):
        first = next(i for i in range(CPUSVN_SIZE) if requested[i] > current[i])
        raise InvalidCPUSVN(
            leaf,
            f"requested CPUSVN {requested.hex()} is beyond the platform's CPUSVN "
            f"{current.hex()} (byte {first}: {requested[first]} > {current[first]}); "
            "request a CPUSVN no newer than the current one",
        )


def _check_isvsvn(leaf: str, requested: int, own: int) -> None:
    if requested > own:
        raise InvalidISVSVN(
            leaf,
            f"requested ISVSVN {requested} is above the enclave's ISVSVN {own}; "
            f"request a key for an ISVSVN ≤ {own}",
        )


def _check_configsvn(leaf: str, requested: int, own: int) -> None:
    if requested > own:
        raise InvalidISVSVN(
            leaf,
            f"requested CONFIGSVN {requested} is above the enclave's CONFIGSVN {own}; "
            f"request a key for a CONFIGSVN ≤ {own}",
        )


def _precheck(identity: EnclaveIdentity, request: KeyRequest) -> None:
    """EGETKEY's #GP checks: reserved bytes and KEYPOLICY bits, KSS gating."""
    for name in ("reserved1", "reserved2"):
        if any(getattr(request, name)):
            raise SGXFault(
                "EGETKEY", "#GP",
                f"KEYREQUEST.{name} (offset {KeyRequest.OFFSETS[name]}) must be zero",
            )
    policy = request.keypolicy
    if policy & KEYPOLICY_RESERVED:
        raise SGXFault(
            "EGETKEY", "#GP",
            f"KEYREQUEST.KEYPOLICY {policy:#06x} sets reserved bits "
            f"{policy & KEYPOLICY_RESERVED:#06x}; only bits 0-5 are defined",
        )
    if not identity.attributes.flags & AttributeFlags.KSS:
        if policy & KEYPOLICY_KSS_ONLY:
            raise SGXFault(
                "EGETKEY", "#GP",
                f"KEYREQUEST.KEYPOLICY {policy:#06x} sets KSS-only bits "
                f"{policy & KEYPOLICY_KSS_ONLY:#06x} but the enclave lacks ATTRIBUTES.KSS; "
                "drop NOISVPRODID/CONFIGID/ISVFAMILYID/ISVEXTPRODID or sign with KSS",
            )
        if request.configsvn:
            raise SGXFault(
                "EGETKEY", "#GP",
                f"KEYREQUEST.CONFIGSVN {request.configsvn} needs ATTRIBUTES.KSS, which the "
                "enclave lacks; request CONFIGSVN 0",
            )


def _need_attribute(identity: EnclaveIdentity, flag: AttributeFlags, keyname: KeyName) -> None:
    if not identity.attributes.flags & flag:
        raise InvalidAttribute(
            "EGETKEY",
            f"the {keyname.name} key needs ATTRIBUTES.{flag.name}, which this enclave lacks; "
            "set it in the SIGSTRUCT ATTRIBUTES and re-sign",
        )


def _policy_fields(
    identity: EnclaveIdentity, request: KeyRequest
) -> dict[str, bytes | int]:
    """The identity fields SEAL and PROVISION_SEAL bind according to KEYPOLICY."""
    policy = request.keypolicy
    fields: dict[str, bytes | int] = {}
    if not policy & KeyPolicy.NOISVPRODID:
        fields["isvprodid"] = identity.isvprodid
    if policy & KeyPolicy.ISVFAMILYID:
        fields["isvfamilyid"] = identity.isvfamilyid
    if policy & KeyPolicy.ISVEXTPRODID:
        fields["isvextprodid"] = identity.isvextprodid
    if policy & KeyPolicy.CONFIGID:
        fields["configid"] = identity.configid
        fields["configsvn"] = request.configsvn
    return fields


def egetkey(
    secrets: FusedSecrets, cpusvn: bytes, identity: EnclaveIdentity, request: KeyRequest
) -> bytes:
    """EGETKEY: the 16-byte key ``request`` names, for the enclave ``identity`` on this platform.

    ``cpusvn`` is the platform's current CPUSVN. Checks follow the SDM order.

    Raises:
        SGXFault: ``#GP`` for non-zero reserved bytes or KEYPOLICY bits, or KSS-only
            inputs without ATTRIBUTES.KSS.
        InvalidKeyname: KEYNAME is not 0-4.
        InvalidAttribute: PROVISION/PROVISION_SEAL without PROVISIONKEY, EINITTOKEN without
            EINITTOKEN_KEY.
        InvalidCPUSVN: the requested CPUSVN is beyond ``cpusvn``.
        InvalidISVSVN: the requested ISVSVN or CONFIGSVN is above the enclave's.
    """
    leaf = "EGETKEY"
    _check_len("CPUSVN", "current", cpusvn, CPUSVN_SIZE)
    _precheck(identity, request)
    flags = (request.attributemask.flags | ALWAYS_BOUND_FLAGS) & identity.attributes.flags
    tmp_attr = Attributes(flags=flags, xfrm=request.attributemask.xfrm & identity.attributes.xfrm)
    tmp_misc = request.miscmask & identity.miscselect
    not_miscmask = ~request.miscmask & _MASK32
    try:
        keyname = KeyName(request.keyname)
    except ValueError:
        raise InvalidKeyname(
            leaf,
            f"KEYNAME {request.keyname} is not a key name; expected 0 EINITTOKEN, "
            "1 PROVISION, 2 PROVISION_SEAL, 3 REPORT or 4 SEAL",
        ) from None

    if keyname is KeyName.REPORT:
        return _report_key(secrets, cpusvn, identity.target_info(), request.keyid)
    if keyname is KeyName.EINITTOKEN:
        _need_attribute(identity, AttributeFlags.EINITTOKEN_KEY, keyname)
        _check_cpusvn(leaf, request.cpusvn, cpusvn)
        _check_isvsvn(leaf, request.isvsvn, identity.isvsvn)
        return einittoken_key(
            secrets, cpusvn=request.cpusvn, isvsvn=request.isvsvn,
            isvprodid=identity.isvprodid, mrsigner=identity.mrsigner,
            masked_attributes=tmp_attr, masked_miscselect=tmp_misc, keyid=request.keyid,
            padding=identity.padding,
        )
    if keyname in (KeyName.PROVISION, KeyName.PROVISION_SEAL):
        _need_attribute(identity, AttributeFlags.PROVISIONKEY, keyname)
    _check_cpusvn(leaf, request.cpusvn, cpusvn)
    _check_isvsvn(leaf, request.isvsvn, identity.isvsvn)
    common = KeyDependencies(
        keyname=keyname, isvsvn=request.isvsvn, attributes=tmp_attr,
        attributemask=request.attributemask, cpusvn=request.cpusvn, miscselect=tmp_misc,
        miscmask=not_miscmask, padding=identity.padding,
    )
    if keyname is KeyName.PROVISION:
        deps = common.replace(isvprodid=identity.isvprodid, mrsigner=identity.mrsigner)
        return _derive(secrets, deps)
    _check_configsvn(leaf, request.configsvn, identity.configsvn)
    deps = common.replace(
        keypolicy=request.keypolicy,
        seal_fuses=secrets.seal_fuses,
        **_policy_fields(identity, request),
    )
    if keyname is KeyName.PROVISION_SEAL:
        deps = deps.replace(mrsigner=identity.mrsigner)
        return _derive(secrets, deps)
    # SEAL
    deps = deps.replace(owner_epoch=secrets.owner_epoch, keyid=request.keyid)
    if request.keypolicy & KeyPolicy.MRENCLAVE:
        deps = deps.replace(mrenclave=identity.mrenclave)
    if request.keypolicy & KeyPolicy.MRSIGNER:
        deps = deps.replace(mrsigner=identity.mrsigner)
    return _derive(secrets, deps)


def einittoken_key(
    secrets: FusedSecrets,
    *,
    cpusvn: bytes,
    isvsvn: int,
    isvprodid: int,
    mrsigner: bytes,
    masked_attributes: Attributes,
    masked_miscselect: int,
    keyid: bytes,
    padding: bytes = PKCS1_SHA256_PADDING,
) -> bytes:
    """The EINITTOKEN key: what a launch enclave's EGETKEY(EINITTOKEN) derives to MAC a token
    and what EINIT recomputes from the token's CPUSVNLE, ISVSVNLE, ISVPRODIDLE, MASKED*LE and
    KEYID with MRSIGNER = IA32_SGXLEPUBKEYHASH. ``padding`` is SECS.PADDING in EGETKEY and the
    PKCS#1 constant in EINIT (equal for any enclave EINIT accepted)."""
    _check_len("EINITTOKEN", "CPUSVN", cpusvn, CPUSVN_SIZE)
    _check_len("EINITTOKEN", "KEYID", keyid, KEYID_SIZE)
    deps = KeyDependencies(
        keyname=KeyName.EINITTOKEN, isvprodid=isvprodid, isvsvn=isvsvn,
        owner_epoch=secrets.owner_epoch, attributes=masked_attributes, mrsigner=mrsigner,
        keyid=keyid, seal_fuses=secrets.seal_fuses, cpusvn=cpusvn, padding=padding,
        miscselect=masked_miscselect,
    )
    return _derive(secrets, deps)


def _report_key(secrets: FusedSecrets, cpusvn: bytes, target: TargetInfo, keyid: bytes) -> bytes:
    """The REPORT key of the enclave ``target`` names (EREPORT) or of the caller (EGETKEY)."""
    deps = KeyDependencies(
        keyname=KeyName.REPORT, owner_epoch=secrets.owner_epoch,
        seal_fuses=secrets.seal_fuses, cpusvn=cpusvn, keyid=keyid,
        mrenclave=target.measurement, attributes=target.attributes,
        miscselect=target.miscselect, configid=target.configid, configsvn=target.configsvn,
        cet_attributes=target.cet_attributes, padding=PKCS1_SHA256_PADDING,
    )
    return _derive(secrets, deps)


# --------------------------------------------------------------------------- EREPORT


def report_mac(key: bytes, body: ReportBody) -> bytes:
    """The REPORT MAC: AES-128-CMAC under ``key`` over the 384 REPORTBODY bytes."""
    _check_len("REPORT", "key", key, KEY_SIZE)
    mac = cmac.CMAC(algorithms.AES128(key))
    mac.update(body.to_bytes())
    return mac.finalize()


def ereport(
    secrets: FusedSecrets,
    cpusvn: bytes,
    identity: EnclaveIdentity,
    target: TargetInfo,
    reportdata: bytes,
    keyid: bytes,
) -> Report:
    """EREPORT: a REPORT of ``identity`` carrying ``reportdata``, MACed for ``target`` only.

    ``cpusvn`` is the platform's current CPUSVN and ``keyid`` its per-boot CR_REPORT_KEYID.

    Raises:
        SGXFault: ``#GP`` when a TARGETINFO reserved field is not zero.
        InvalidStructure: REPORTDATA is not 64 bytes, KEYID not 32 or CPUSVN not 16.
    """
    for name in ("reserved1", "reserved2", "reserved3"):
        if any(getattr(target, name)):
            raise SGXFault(
                "EREPORT", "#GP",
                f"TARGETINFO.{name} (offset {TargetInfo.OFFSETS[name]}) must be zero",
            )
    _check_len("REPORTDATA", "REPORTDATA", reportdata, REPORTDATA_SIZE)
    _check_len("REPORT", "KEYID", keyid, KEYID_SIZE)
    _check_len("CPUSVN", "current", cpusvn, CPUSVN_SIZE)
    body = ReportBody(
        cpusvn=bytes(cpusvn), miscselect=identity.miscselect,
        cet_attributes=identity.cet_attributes, isvextprodid=identity.isvextprodid,
        attributes=identity.attributes, mrenclave=identity.mrenclave,
        mrsigner=identity.mrsigner, configid=identity.configid, isvprodid=identity.isvprodid,
        isvsvn=identity.isvsvn, configsvn=identity.configsvn,
        isvfamilyid=identity.isvfamilyid, reportdata=bytes(reportdata),
    )
    key = _report_key(secrets, bytes(cpusvn), target, bytes(keyid))
    return Report(body=body, keyid=bytes(keyid), mac=report_mac(key, body))


def verify_report(
    secrets: FusedSecrets, cpusvn: bytes, identity: EnclaveIdentity, report: Report
) -> None:
    """Check, as the enclave ``identity``, that ``report`` was made for it on this platform.

    Derives EGETKEY(REPORT, KEYID = report.KEYID) and compares the MAC in constant time.

    Raises:
        IntegrityError: the MAC does not verify.
    """
    key = egetkey(
        secrets, cpusvn, identity, KeyRequest(keyname=KeyName.REPORT, keyid=report.keyid)
    )
    mac = cmac.CMAC(algorithms.AES128(key))
    mac.update(report.body.to_bytes())
    try:
        mac.verify(report.mac)
    except InvalidSignature:
        raise IntegrityError(
            "REPORT: MAC does not verify: it was not made for this enclave on this platform "
            "and boot, or it was modified"
        ) from None
