"""Quote certification data: types 1-7 (Intel's ECDSA quote library API, sgx-spec.md §6.3).

=====  ==========================  ==============================================================
type   name                        bytes
=====  ==========================  ==============================================================
1      PPID_CLEARTEXT              PPID (16) ‖ CPUSVN (16) ‖ PCESVN (u16) ‖ PCE-ID (u16)
2      PPID_RSA2048_ENCRYPTED      encrypted PPID (256) ‖ CPUSVN ‖ PCESVN ‖ PCE-ID
3      PPID_RSA3072_ENCRYPTED      encrypted PPID (384) ‖ CPUSVN ‖ PCESVN ‖ PCE-ID
4      PCK_CLEARTEXT               the PCK leaf certificate (PEM or DER)
5      PCK_CERT_CHAIN              PEM: PCK leaf, PCK CA, root
6      QE_REPORT_CERTIFICATION     v4/v5 wrapper: QE report, signature, auth data, inner data
7      PLATFORM_MANIFEST           the platform manifest (multi-package platforms), opaque here
=====  ==========================  ==============================================================

Older QEs omit the PCE-ID of types 1-3 (18 bytes after the PPID instead of 20).

**The type-5 chain is read as RFC 7468 PEM** (any base64 line length, LF or CRLF line ends,
one trailing NUL, certificates in any order), because real quote generators differ and the
chain is unsigned transport: what a verifier checks is each certificate's DER and signature,
and the same DER in another PEM wrapping is the same evidence. The certificates are linked
leaf → CA → root by issuer and subject (DER names compared byte for byte), not by position.
What stays refused is what is not PEM of certificates: bytes outside the blocks (line ends
between them aside), characters outside base64, base64 that is not canonical (non-zero
padding bits: RFC 4648 §3.5), a certificate that does not parse or whose unsigned envelope
is not canonical DER, more than one leaf, and a chain that does not link (the message names
the certificate that breaks it).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

from cryptography import x509

from ..errors import QuoteFormatError

__all__ = [
    "CERTIFICATION_DATA_TYPES",
    "CERT_TYPE_PCK_CHAIN",
    "CERT_TYPE_PCK_LEAF",
    "CERT_TYPE_PLATFORM_MANIFEST",
    "CERT_TYPE_PPID_CLEARTEXT",
    "CERT_TYPE_QE_REPORT",
    "PPID_SIZES",
    "CertificationData",
    "PpidData",
    "check_certificate_envelope",
]

CERT_TYPE_PPID_CLEARTEXT = 1
CERT_TYPE_PCK_LEAF = 4
"""Certification data type 4: the PCK leaf certificate alone."""
CERT_TYPE_PCK_CHAIN = 5
"""Certification data type 5: PEM chain PCK leaf, PCK CA, root (in any order)."""
CERT_TYPE_QE_REPORT = 6
"""Certification data type 6 (v4/v5): QE report, its signature, auth data and inner cert data."""
CERT_TYPE_PLATFORM_MANIFEST = 7
CERTIFICATION_DATA_TYPES = {
    1: "PPID_CLEARTEXT", 2: "PPID_RSA2048_ENCRYPTED", 3: "PPID_RSA3072_ENCRYPTED",
    4: "PCK_CLEARTEXT", 5: "PCK_CERT_CHAIN", 6: "QE_REPORT_CERTIFICATION_DATA",
    7: "PLATFORM_MANIFEST",
}
PPID_SIZES = {1: 16, 2: 256, 3: 384}
"""Certification data types 1-3: the size of the PPID (clear, RSA-2048 or RSA-3072 OAEP)."""

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"
_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]*)-----END CERTIFICATE-----")
_LINE_ENDS = re.compile(rb"(?:\r?\n)*")


@dataclass(frozen=True)
class PpidData:
    """Types 1-3: the PPID (clear or encrypted) and the platform's CPUSVN, PCESVN and PCE-ID."""

    ppid: bytes
    cpusvn: bytes
    pcesvn: int
    pceid: bytes | None

    def to_dict(self, cert_type: int) -> dict[str, object]:
        key = "ppid" if cert_type == CERT_TYPE_PPID_CLEARTEXT else "encrypted_ppid"
        return {key: self.ppid.hex(), "cpusvn": self.cpusvn.hex(), "pcesvn": self.pcesvn,
                "pceid": None if self.pceid is None else self.pceid.hex()}


@dataclass(frozen=True)
class CertificationData:
    """Certification data: a type (1-7) and its bytes, decoded on demand."""

    type: int
    data: bytes

    @property
    def type_name(self) -> str:
        return CERTIFICATION_DATA_TYPES.get(self.type, "unknown")

    def ppid_data(self) -> PpidData:
        """Types 1-3 decoded.

        Raises:
            QuoteFormatError: another type, or a size that is not PPID + 18 or PPID + 20.
        """
        size = PPID_SIZES.get(self.type)
        if size is None:
            raise QuoteFormatError(f"certification data type {self.type} ({self.type_name}) "
                                   "carries no PPID")
        if len(self.data) not in (size + 18, size + 20):
            raise QuoteFormatError(
                f"type {self.type} certification data is {len(self.data)} bytes, expected "
                f"{size + 20} (or {size + 18} without PCE-ID)")
        (pcesvn,) = struct.unpack_from("<H", self.data, size + 16)
        return PpidData(ppid=self.data[:size], cpusvn=self.data[size : size + 16],
                        pcesvn=pcesvn, pceid=self.data[size + 18 :] or None)

    def pck_leaf(self) -> x509.Certificate:
        """Type 4: the PCK leaf certificate (one PEM block, or DER).

        Raises:
            QuoteFormatError: another type, or not exactly one certificate that parses.
        """
        if self.type != CERT_TYPE_PCK_LEAF:
            raise QuoteFormatError(f"certification data is type {self.type} ({self.type_name}),"
                                   " not 4 (PCK_CLEARTEXT)")
        if self.data[:1] == b"\x30":
            return _certificate(self.data, "type 4 PCK certificate")
        text = self.data[:-1] if self.data.endswith(b"\x00") else self.data
        ders = _pem_ders(text, "type 4")
        if len(ders) != 1:
            raise QuoteFormatError(f"certification data type 4 holds {len(ders)} certificates, "
                                   "expected the PCK leaf only")
        return _certificate(ders[0], "type 4 PCK certificate")

    def pck_chain_pem(self) -> list[bytes]:
        """The PEM blocks of a type-5 chain, as they appear (a trailing NUL is tolerated).

        Raises:
            QuoteFormatError: not type 5, no certificate, bytes outside the PEM blocks
                (line ends between them aside), or a block that is not canonical base64.
        """
        self._require_chain()
        text = self.data[:-1] if self.data.endswith(b"\x00") else self.data
        return [block for block, _ in _pem_blocks(text, "type 5")]

    def pck_chain(self) -> list[x509.Certificate]:
        """The type-5 chain as certificates, linked leaf first by issuer and subject.

        Raises:
            QuoteFormatError: see :meth:`pck_chain_pem`; a block that is not a valid
                certificate; more than one leaf; a chain that does not link.
        """
        self._require_chain()
        text = self.data[:-1] if self.data.endswith(b"\x00") else self.data
        certs = [_certificate(der, f"PCK chain certificate {i}")
                 for i, der in enumerate(_pem_ders(text, "type 5"))]
        return link_chain(certs)

    def to_dict(self) -> dict[str, object]:
        """The decoded fields for ``quote show --json`` (type 5: the PEM blocks)."""
        out: dict[str, object] = {"type": self.type, "type_name": self.type_name,
                                  "size": len(self.data)}
        if self.type in PPID_SIZES:
            out.update(self.ppid_data().to_dict(self.type))
        elif self.type == CERT_TYPE_PCK_CHAIN:
            out["pem"] = [b.decode("ascii") for b in self.pck_chain_pem()]
        elif self.type == CERT_TYPE_PCK_LEAF:
            out["certificate"] = certificate_view(self.pck_leaf())
        else:
            out["data"] = self.data.hex()
        return out

    def _require_chain(self) -> None:
        if self.type != CERT_TYPE_PCK_CHAIN:
            raise QuoteFormatError(
                f"certification data is type {self.type} ({self.type_name}), not 5 "
                "(PCK_CERT_CHAIN); supply the PCK chain separately")

    def _wire(self) -> bytes:
        return struct.pack("<HI", self.type, len(self.data)) + self.data


def certificate_view(cert: x509.Certificate) -> dict[str, str]:
    """Subject, issuer, serial and validity of a certificate, as ``quote show`` prints them.

    Raises:
        QuoteFormatError: a name that does not decode (pyca decodes names lazily).
    """
    try:
        return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "serial": format(cert.serial_number, "x"),
                "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
    except (ValueError, TypeError) as exc:
        raise QuoteFormatError(f"PCK certificate does not decode: {exc}") from exc


def _pem_blocks(text: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """(block, DER) of each PEM certificate block in ``text``, which must hold nothing else."""
    blocks: list[tuple[bytes, bytes]] = []
    pos = _skip_line_ends(text, 0)
    while pos < len(text):
        match = _PEM_BLOCK.match(text, pos)
        if match is None:
            label = f"certification data {what}"
            if text.startswith(_BEGIN, pos):
                after = pos + len(_BEGIN)
                if not text.startswith((b"\n", b"\r\n"), after):
                    why = "has a BEGIN line not ended by LF or CRLF"
                elif text.find(_END, after) < 0:
                    why = "has no END CERTIFICATE line"
                else:
                    why = "is not valid base64 (a character other than A-Z a-z 0-9 + / = CR LF)"
                raise QuoteFormatError(f"{label}: certificate {len(blocks)} {why}")
            if not blocks and _BEGIN not in text:
                raise QuoteFormatError(f"{label} holds no PEM certificate")
            raise QuoteFormatError(f"{label}: {len(text) - pos} stray bytes outside PEM "
                                   f"blocks at offset {pos}")
        blocks.append((match.group(0), _base64(match.group(1), f"{what}: certificate "
                                                               f"{len(blocks)}")))
        pos = _skip_line_ends(text, match.end())
    if not blocks:
        raise QuoteFormatError(f"certification data {what} holds no PEM certificate")
    return blocks


def _skip_line_ends(text: bytes, pos: int) -> int:
    match = _LINE_ENDS.match(text, pos)
    return match.end() if match else pos


def _pem_ders(text: bytes, what: str) -> list[bytes]:
    return [der for _, der in _pem_blocks(text, what)]


def _base64(body: bytes, what: str) -> bytes:
    """The DER of a block's base64 lines (any length, each ended by LF or CRLF)."""
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] or not all(lines[:-1]) or b"\r" in body.replace(b"\r\n", b""):
        raise QuoteFormatError(f"certification data {what} has a base64 line that is empty, "
                               "not ended by LF or CRLF, or holds a stray CR")
    joined = b"".join(lines)
    try:
        der = base64.b64decode(joined, validate=True)
    except binascii.Error as exc:
        raise QuoteFormatError(f"certification data {what} is not valid base64") from exc
    # One base64 text per DER (RFC 4648 §3.5): non-zero padding bits decode to the same bytes.
    if base64.b64encode(der) != joined:
        raise QuoteFormatError(f"certification data {what} is not canonical base64 "
                               "(non-zero padding bits or misplaced padding)")
    return der


def _certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        check_certificate_envelope(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise QuoteFormatError(f"{what} does not parse: {exc}") from exc
    return cert


def _label(certs: list[x509.Certificate], i: int) -> str:
    try:
        return f"certificate {i} ({certs[i].subject.rfc4514_string()})"
    except (ValueError, TypeError):
        return f"certificate {i}"


def link_chain(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Order certificates leaf → CA → root by issuer and subject (DER names, byte for byte).

    Indices in messages are the certificates' positions as given.

    Raises:
        QuoteFormatError: no certificate, a name that does not encode, more than one leaf, a
            certificate whose issuer is missing while others are left over, two candidates for
            one issuer, or a certificate off the chain.
    """
    if not certs:
        raise QuoteFormatError("PCK chain holds no certificate")
    try:
        names = [_raw_names(c.tbs_certificate_bytes) for c in certs]
    except (ValueError, IndexError) as exc:
        raise QuoteFormatError(f"PCK chain: a certificate name does not decode: {exc}") from exc
    count = len(certs)
    # a leaf issues no other certificate of the chain; a root that issues none is a break
    leaves = [i for i in range(count)
              if not any(names[j][0] == names[i][1] for j in range(count) if j != i)]
    inner = [i for i in leaves if names[i][0] != names[i][1]]
    if len(inner) > 1 or (not inner and len(leaves) > 1):
        many = inner if len(inner) > 1 else leaves
        raise QuoteFormatError(
            f"PCK chain has more than one leaf: {_label(certs, many[0])} and "
            f"{_label(certs, many[1])} issue no other certificate of the chain")
    if not leaves:
        raise QuoteFormatError("PCK chain has no leaf: every certificate issues another")
    current = (inner or leaves)[0]
    order, left = [current], [i for i in range(count) if i != current]
    while names[current][0] != names[current][1]:
        issuers = [j for j in left if names[j][1] == names[current][0]]
        if len(issuers) > 1:
            raise QuoteFormatError(f"PCK chain: {_label(certs, issuers[0])} and "
                                   f"{_label(certs, issuers[1])} have the same subject")
        if not issuers:
            if left:
                raise QuoteFormatError(
                    f"PCK chain does not link: the issuer of {_label(certs, current)} is not "
                    "in the chain")
            break
        current = issuers[0]
        order.append(current)
        left.remove(current)
    if left:
        raise QuoteFormatError(f"PCK chain does not link: {_label(certs, left[0])} is not on the "
                               f"chain from the leaf ({_label(certs, order[0])})")
    return [certs[i] for i in order]


def _raw_names(tbs: bytes) -> tuple[bytes, bytes]:
    """(issuer, subject) of a tbsCertificate as their DER bytes, exactly as signed."""
    _, pos, end = _der_item(tbs, 0)
    items: list[bytes] = []
    while pos < end and len(items) < 6:
        after = _der_item(tbs, pos)[2]
        items.append(tbs[pos:after])
        pos = after
    offset = 1 if items and items[0][0] == 0xA0 else 0  # [0] version is optional
    if len(items) < offset + 5:
        raise ValueError("tbsCertificate is too short")
    return items[offset + 2], items[offset + 4]


def _der_item(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at ``pos`` (definite lengths only)."""
    tag, first = der[pos], der[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if not 0 < count <= 4:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > len(der):
        raise ValueError("DER item runs past the end")
    return tag, pos, pos + length


def check_certificate_envelope(der: bytes) -> None:
    """Refuse a certificate (or CRL) whose unsigned outer DER is not the one canonical shape.

    pyca accepts a signatureValue BIT STRING with a non-zero unused-bits count (and ignores
    it). A PCK chain travels unsigned inside a quote, so one encoding only is accepted:
    SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE, BIT STRING 00 || sig }
    (a CRL has the same outer shape with tbsCertList).

    Raises:
        ValueError: any other shape (callers turn it into their typed error).
    """
    try:
        tag, start, end = _der_item(der, 0)
        if tag != 0x30 or end != len(der):
            raise ValueError("certificate is not one DER SEQUENCE")
        tags = []
        pos = start
        while pos < end:
            tag, body, pos = _der_item(der, pos)
            tags.append((tag, body, pos))
    except IndexError as exc:
        raise ValueError("certificate DER is truncated") from exc
    if [t for t, _, _ in tags] != [0x30, 0x30, 0x03]:
        raise ValueError("certificate is not SEQUENCE {tbs, algorithm, BIT STRING}")
    _, body, body_end = tags[2]
    if body == body_end or der[body] != 0:
        raise ValueError("certificate signature BIT STRING has unused bits")
