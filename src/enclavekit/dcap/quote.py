"""DCAP ECDSA quotes: v3 (SGX) and v4/v5 (SGX, TDX tolerated), sgx-spec.md §6.2–6.4.

Wire layout (all little-endian)::

    header (48) | [v5: body_type u16, body_size u32] | body (384 SGX / 584, 648 TDX)
    | signature_data_len u32 | signature (64) | attestation_key (64)
    | v3:    QE report (384) | QE sig (64) | auth size u16 | auth | cert type u16 | u32 | data
    | v4/v5: cert type 6 u16 | size u32 | { QE report | sig | auth size | auth | type | size | data}

Parsing is strict: every length must agree with what follows, nothing may trail (unless asked),
and a :class:`QuoteFormatError` names the field at fault. :meth:`Quote.to_bytes` gives back the
exact wire bytes, so signatures checked over :meth:`Quote.signed_bytes` are over what arrived.
Certification data (types 1-7, and how the type-5 PEM chain is read) is :mod:`.certdata`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Annotated

from ..errors import InvalidStructure, QuoteFormatError
from ..sgx._layout import U16, U32, Structure, structure
from ..sgx.structs import ReportBody
from .certdata import (
    CERT_TYPE_PCK_CHAIN,
    CERT_TYPE_PPID_CLEARTEXT,
    CERT_TYPE_QE_REPORT,
    CERTIFICATION_DATA_TYPES,
    CertificationData,
    check_certificate_envelope,
)

__all__ = [
    "ATT_KEY_TYPE_ECDSA_P256",
    "BODY_SIZES",
    "CERTIFICATION_DATA_TYPES",
    "CERT_TYPE_PCK_CHAIN",
    "CERT_TYPE_PPID_CLEARTEXT",
    "CERT_TYPE_QE_REPORT",
    "INTEL_QE_VENDOR_ID",
    "OE_REPORT_HEADER_SIZE",
    "QUOTE_MIN_SIZE",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "CertificationData",
    "Quote",
    "QuoteHeader",
    "check_certificate_envelope",
    "unwrap_oe_report",
]

INTEL_QE_VENDOR_ID = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")
"""QE vendor id of Intel's quoting enclave."""
ATT_KEY_TYPE_ECDSA_P256 = 2
"""Attestation key type ECDSA-256-with-P-256 curve (the only one DCAP verifiers accept)."""
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
BODY_SIZES = {1: 384, 2: 584, 3: 648}
"""v5 body_type → body size: 1 SGX REPORTBODY, 2 TD report 1.0, 3 TD report 1.5."""
QUOTE_MIN_SIZE = 1020
"""QVL's QUOTE_MIN_BYTE_LEN: a v3 quote with empty auth and certification data."""
OE_REPORT_HEADER_SIZE = 16

_QE_REPORT_SIZE = ReportBody.SIZE
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_CERT_HEAD = struct.Struct("<HI")
_V5_DESC = struct.Struct("<HI")


@structure(size=48)
class QuoteHeader(Structure):
    """The 48-byte quote header (DCAP ``sgx_quote_header_t`` / v4 header, §6.2)."""

    version: U16 = 3
    att_key_type: U16 = ATT_KEY_TYPE_ECDSA_P256
    tee_type: U32 = TEE_TYPE_SGX
    qe_svn: U16 = 0
    pce_svn: U16 = 0
    qe_vendor_id: Annotated[bytes, 16] = INTEL_QE_VENDOR_ID
    user_data: Annotated[bytes, 20] = bytes(20)


@dataclass(frozen=True)
class Quote:
    """A parsed DCAP quote; every field as on the wire (the QE data of v4/v5 unwrapped)."""

    header: QuoteHeader
    report_body: bytes
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data: CertificationData

    def __post_init__(self) -> None:
        for name, size in (("signature", 64), ("attestation_key", 64),
                           ("qe_report", _QE_REPORT_SIZE), ("qe_report_signature", 64)):
            if len(getattr(self, name)) != size:
                raise QuoteFormatError(f"{name} must be {size} bytes, found "
                                       f"{len(getattr(self, name))}")
        if len(self.report_body) not in BODY_SIZES.values():
            raise QuoteFormatError(f"report body of {len(self.report_body)} bytes is no known body")
        if len(self.qe_auth_data) > 0xFFFF:
            raise QuoteFormatError("qe_auth_data longer than 65535 bytes")

    # --- views ---------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def is_sgx(self) -> bool:
        """Whether the quote is for an SGX enclave (TEE type 0, 384-byte REPORTBODY)."""
        return self.header.tee_type == TEE_TYPE_SGX

    @property
    def body(self) -> ReportBody:
        """The ISV enclave's REPORTBODY (SGX quotes only).

        Raises:
            QuoteFormatError: a TDX quote (its body is a TD report).
        """
        if not self.is_sgx:
            raise QuoteFormatError(
                f"TEE type {self.header.tee_type:#x} quote has a TD report, not an SGX REPORTBODY"
            )
        return ReportBody.from_bytes(self.report_body, strict=False)

    @property
    def qe_body(self) -> ReportBody:
        """The quoting enclave's REPORTBODY."""
        return ReportBody.from_bytes(self.qe_report, strict=False)

    def _body_type(self) -> int:
        for body_type, size in BODY_SIZES.items():
            if size == len(self.report_body):
                return body_type
        raise QuoteFormatError("unknown body size")  # unreachable: checked at construction

    # --- wire ----------------------------------------------------------------------------

    def signed_bytes(self) -> bytes:
        """The bytes the attestation key signs: header (+ v5 descriptor) + body."""
        head = self.header.to_bytes()
        if self.header.version >= 5:
            head += _V5_DESC.pack(self._body_type(), len(self.report_body))
        return head + self.report_body

    def _qe_block(self) -> bytes:
        return (self.qe_report + self.qe_report_signature + _U16.pack(len(self.qe_auth_data))
                + self.qe_auth_data + self.certification_data._wire())

    def to_bytes(self) -> bytes:
        """The exact wire bytes (v3: certification data direct; v4/v5: in a type-6 record)."""
        qe = self._qe_block()
        if self.header.version >= 4:
            qe = _CERT_HEAD.pack(CERT_TYPE_QE_REPORT, len(qe)) + qe
        sig_data = self.signature + self.attestation_key + qe
        return self.signed_bytes() + _U32.pack(len(sig_data)) + sig_data

    @classmethod
    def parse(cls, data: bytes, *, allow_trailing: bool = False) -> Quote:
        """Parse a quote strictly.

        Args:
            data: the quote bytes (an OE report must be unwrapped first: :func:`unwrap_oe_report`).
            allow_trailing: accept bytes after the declared signature data (some tools pad).

        Raises:
            QuoteFormatError: truncation, unknown version, key type, TEE type or certification
                data type, or any length that disagrees with the bytes; the message names the field.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise QuoteFormatError(f"quote must be bytes, found {type(data).__name__}")
        data = bytes(data)
        if len(data) < QUOTE_MIN_SIZE:
            raise QuoteFormatError(
                f"quote is {len(data)} bytes, shorter than the minimum {QUOTE_MIN_SIZE}"
            )
        try:
            header = QuoteHeader.from_bytes(data[:48])
        except InvalidStructure as exc:  # pragma: no cover - 48 bytes always parse
            raise QuoteFormatError(f"quote header: {exc}") from exc
        if header.version not in (3, 4, 5):
            raise QuoteFormatError(f"quote version {header.version} is not supported (3, 4, 5)")
        if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
            raise QuoteFormatError(
                f"attestation key type {header.att_key_type} is not 2 (ECDSA-256-with-P-256)"
            )
        if header.version == 3 and header.tee_type != TEE_TYPE_SGX:
            raise QuoteFormatError(f"v3 quote with TEE type {header.tee_type:#x} (must be 0, SGX)")
        if header.tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
            raise QuoteFormatError(f"unknown TEE type {header.tee_type:#x}")
        pos = 48
        if header.version == 5:
            body_type, body_size = _V5_DESC.unpack_from(data, pos)
            pos += _V5_DESC.size
            if BODY_SIZES.get(body_type) != body_size:
                raise QuoteFormatError(f"v5 body type {body_type} with body size {body_size}")
            if (body_type == 1) != (header.tee_type == TEE_TYPE_SGX):
                raise QuoteFormatError(
                    f"v5 body type {body_type} does not match TEE type {header.tee_type:#x}"
                )
        else:
            body_size = 384 if header.tee_type == TEE_TYPE_SGX else 584
        reader = _Reader(data, pos)
        report_body = reader.take(body_size, "report body")
        sig_len = reader.u32("signature_data_len")
        end = reader.pos + sig_len
        if end > len(data):
            raise QuoteFormatError(
                f"signature_data_len {sig_len} runs past the end of the quote "
                f"({len(data) - reader.pos} bytes follow)"
            )
        if end < len(data) and not allow_trailing:
            raise QuoteFormatError(
                f"{len(data) - end} trailing bytes after the signature data "
                f"(signature_data_len {sig_len})"
            )
        reader = _Reader(data[:end], reader.pos)
        signature = reader.take(64, "quote signature")
        attestation_key = reader.take(64, "attestation key")
        if header.version >= 4:
            outer_type = reader.u16("certification data type")
            if outer_type != CERT_TYPE_QE_REPORT:
                raise QuoteFormatError(
                    f"v{header.version} certification data type {outer_type}, must be 6"
                )
            _certification_size(reader)
        qe_report = reader.take(_QE_REPORT_SIZE, "QE report")
        qe_report_signature = reader.take(64, "QE report signature")
        auth_size = reader.u16("QE auth data size")
        qe_auth_data = reader.take(auth_size, "QE auth data")
        cert_type = reader.u16("certification data type")
        if cert_type not in CERTIFICATION_DATA_TYPES or cert_type == CERT_TYPE_QE_REPORT:
            raise QuoteFormatError(
                f"certification data type {cert_type} is not supported here (1-5 or 7"
                f"{'' if header.version == 3 else ' inside type 6'})"
            )
        cert = reader.take(_certification_size(reader), "certification data")
        return cls(header=header, report_body=report_body, signature=signature,
                   attestation_key=attestation_key, qe_report=qe_report,
                   qe_report_signature=qe_report_signature, qe_auth_data=qe_auth_data,
                   certification_data=CertificationData(cert_type, cert))

    def to_dict(self) -> dict[str, object]:
        """Every field decoded, for ``quote show --json`` (bytes as lowercase hex)."""
        header = self.header.to_dict()
        header["tee"] = "SGX" if self.is_sgx else "TDX"
        header["qe_vendor_is_intel"] = self.header.qe_vendor_id == INTEL_QE_VENDOR_ID
        return {
            "version": self.version,
            "header": header,
            "report_body": self.body.to_dict() if self.is_sgx else self.report_body.hex(),
            "signature": self.signature.hex(),
            "attestation_key": self.attestation_key.hex(),
            "qe_report": self.qe_body.to_dict(),
            "qe_report_signature": self.qe_report_signature.hex(),
            "qe_auth_data": self.qe_auth_data.hex(),
            "certification_data": self.certification_data.to_dict(),
        }


class _Reader:
    """Sequential little-endian reads that name the field when the bytes run out."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise QuoteFormatError(
                f"{what}: needs {size} bytes at offset {self.pos}, only {self.remaining()} left"
            )
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def u16(self, what: str) -> int:
        value: int = _U16.unpack(self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = _U32.unpack(self.take(4, what))[0]
        return value


def _certification_size(reader: _Reader) -> int:
    """A certification data size, which must cover exactly the signature data left."""
    size = reader.u32("certification data size")
    if size != reader.remaining():
        raise QuoteFormatError(
            f"certification data size {size} disagrees with the "
            f"{reader.remaining()} bytes of signature data left"
        )
    return size


def unwrap_oe_report(data: bytes) -> bytes:
    """The SGX quote inside an Open Enclave remote report, or ``data`` unchanged.

    An OE report is a 16-byte header (version u32 = 1, report type u32 = 2 for remote,
    report size u64 = the rest) followed by the quote. Bytes that do not start with that exact
    header are returned as they are.
    """
    if len(data) > OE_REPORT_HEADER_SIZE:
        version, report_type, size = struct.unpack_from("<IIQ", data)
        if version == 1 and report_type == 2 and size == len(data) - OE_REPORT_HEADER_SIZE:
            return bytes(data[OE_REPORT_HEADER_SIZE:])
    return bytes(data)
