"""The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1, sgx-spec.md §6.6).

The extension value is a DER SEQUENCE of SEQUENCE {OID, value} pairs; TCB (.2) and
Configuration (.7) nest the same way. A small strict DER reader and writer lives here (no
ASN.1 dependency): definite minimal lengths, minimal INTEGERs, DER BOOLEANs, no trailing bytes,
every OID known and present once. Anything else is a :class:`CollateralFormatError`.

Why not a general ASN.1 library: the strict subset is the point. The extension decides the
platform's FMSPC and TCB, so the verifier must read the signed bytes one way only, as DER
defines them (QV-9/QV-10: one byte string, one meaning), and a library that decodes BER's other
spellings needs every DER rule re-added around it. Measured (``python -m
tests.dcap.der_review``: eleven encodings of a valid extension that DER forbids, each library
decoding generically): asn1crypto 1.5.1 accepts 8 (indefinite and non-minimal lengths, INTEGERs
with a redundant leading zero or no octet, BOOLEAN 0x01, an OID arc padded with 0x80, a
constructed OCTET STRING); pyasn1 0.6.5's DER decoder accepts 6 (non-minimal lengths, both
INTEGER forms, the high-tag-number form; trailing bytes are handed back); pyasn1-fasder 0.1.3
(a strict DER decoder for pyasn1) accepts 1, the padded OID arc. This reader refuses all 11.
With any of them the schema rules (every OID known and present once, tags, sizes, ranges) would
stay here as well, so a library would add a dependency without removing the checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509

from ..errors import CollateralFormatError

__all__ = ["SGX_EXTENSION_OID", "SGX_TYPES", "PckExtension"]

SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
"""The PCK certificate extension that carries the platform's SGX identity and TCB."""

SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}
"""SGX Type (.5) values."""

_T_BOOLEAN, _T_INTEGER, _T_OCTETS, _T_OID, _T_ENUM, _T_SEQ = 0x01, 0x02, 0x04, 0x06, 0x0A, 0x30
_MAX_DEPTH = 4

T = TypeVar("T")


def _fail(what: str) -> CollateralFormatError:
    return CollateralFormatError(f"PCK SGX extension: {what}")



# --- DER -------------------------------------------------------------------------------------


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One TLV at ``pos``: (tag, content, next position)."""
    if pos + 2 > len(data):
        raise _fail(f"truncated DER at offset {pos}")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _fail(f"high-tag-number form at offset {pos}")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise _fail("indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > 4 or pos + count > len(data):
            raise _fail(f"bad length of length {count}")
        raw = data[pos : pos + count]
        if raw[0] == 0:
            raise _fail("non-minimal length encoding")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise _fail("long-form length below 128 is not DER")
        pos += count
    if pos + length > len(data):
        raise _fail(f"length {length} at offset {pos} runs past the end ({len(data)} bytes)")
    return tag, data[pos : pos + length], pos + length


def _read_all(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, content, pos = _read_tlv(data, pos)
        out.append((tag, content))
    return out


def _read_one(data: bytes, tag: int, what: str) -> bytes:
    got, content, end = _read_tlv(data, 0)
    if got != tag:
        raise _fail(f"{what}: expected tag {tag:#04x}, found {got:#04x}")
    if end != len(data):
        raise _fail(f"{what}: {len(data) - end} trailing bytes")
    return content


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def _enc_uint(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def _dec_uint(content: bytes, what: str, limit: int) -> int:
    if not content:
        raise _fail(f"{what}: empty INTEGER")
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise _fail(f"{what}: non-minimal INTEGER")
    if content[0] & 0x80:
        raise _fail(f"{what}: negative INTEGER")
    value = int.from_bytes(content, "big")
    if value > limit:
        raise _fail(f"{what}: {value} exceeds {limit}")
    return value


def _enc_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _dec_oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise _fail("malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    start = True
    for byte in content:
        if start and byte == 0x80:
            raise _fail("non-minimal OBJECT IDENTIFIER arc")
        value = (value << 7) | (byte & 0x7F)
        start = not byte & 0x80
        if start:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


_BASE = SGX_EXTENSION_OID.dotted_string


def _pairs(content: bytes, prefix: str, what: str) -> dict[str, tuple[int, bytes]]:
    """SEQUENCE OF SEQUENCE {OID, value} → {suffix: (tag, content)}; duplicates refused."""
    out: dict[str, tuple[int, bytes]] = {}
    for tag, item in _read_all(content):
        if tag != _T_SEQ:
            raise _fail(f"{what}: entry is not a SEQUENCE (tag {tag:#04x})")
        parts = _read_all(item)
        if len(parts) != 2 or parts[0][0] != _T_OID:
            raise _fail(f"{what}: entry is not {{OID, value}}")
        oid = _dec_oid(parts[0][1])
        if not oid.startswith(prefix + "."):
            raise _fail(f"{what}: unexpected OID {oid}")
        suffix = oid[len(prefix) + 1 :]
        if suffix in out:
            raise _fail(f"{what}: duplicate OID {oid}")
        out[suffix] = parts[1]
    return out


def _take(pairs: dict[str, tuple[int, bytes]], key: str, tag: int, what: str,
          convert: Callable[[bytes], T]) -> T:
    if key not in pairs:
        raise _fail(f"{what} missing")
    got, content = pairs.pop(key)
    if got != tag:
        raise _fail(f"{what}: expected tag {tag:#04x}, found {got:#04x}")
    return convert(content)


def _octets(size: int, what: str) -> Callable[[bytes], bytes]:
    def convert(content: bytes) -> bytes:
        if len(content) != size:
            raise _fail(f"{what} must be {size} bytes, found {len(content)}")
        return bytes(content)
    return convert


def _uint(what: str, limit: int) -> Callable[[bytes], int]:
    def convert(content: bytes) -> int:
        return _dec_uint(content, what, limit)
    return convert


def _boolean(what: str) -> Callable[[bytes], bool]:
    def convert(content: bytes) -> bool:
        if content not in (b"\x00", b"\xff"):
            raise _fail(f"{what}: BOOLEAN must be 00 or FF in DER")
        return content == b"\xff"
    return convert


def _no_more(pairs: dict[str, tuple[int, bytes]], prefix: str) -> None:
    if pairs:
        raise _fail(f"unknown OID {prefix}.{sorted(pairs)[0]}")


def _pair(suffix: str, value_tlv: bytes) -> bytes:
    return _tlv(_T_SEQ, _tlv(_T_OID, _enc_oid(f"{_BASE}.{suffix}")) + value_tlv)


# --- the extension ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PckExtension:
    """The SGX identity a PCK certificate certifies: PPID, certified TCB, PCE-ID, FMSPC, type."""

    ppid: bytes
    tcb_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pceid: bytes
    fmspc: bytes
    sgx_type: int = 0
    platform_instance_id: bytes | None = None
    configuration: tuple[bool, bool, bool] | None = None

    def __post_init__(self) -> None:
        for name, size in (("ppid", 16), ("cpusvn", 16), ("pceid", 2), ("fmspc", 6)):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise _fail(f"{name} must be {size} bytes")
        if len(self.tcb_components) != 16 or not all(
            isinstance(c, int) and 0 <= c <= 255 for c in self.tcb_components
        ):
            raise _fail("tcb_components must be 16 integers 0..255")
        if not 0 <= self.pcesvn <= 0xFFFF:
            raise _fail(f"pcesvn {self.pcesvn} outside 0..65535")
        if self.sgx_type not in SGX_TYPES:
            raise _fail(f"unknown SGX type {self.sgx_type}")
        if (self.platform_instance_id is None) != (self.configuration is None):
            raise _fail("platform_instance_id and configuration come together (Platform CA)")
        if self.platform_instance_id is not None and len(self.platform_instance_id) != 16:
            raise _fail("platform_instance_id must be 16 bytes")
        if self.configuration is not None and len(self.configuration) != 3:
            raise _fail("configuration must be three booleans")

    def to_der(self) -> bytes:
        """The DER extension value, in Intel's order (.1 … .5, then .6, .7 when present)."""
        tcb = b"".join(
            _pair(f"2.{i + 1}", _tlv(_T_INTEGER, _enc_uint(c)))
            for i, c in enumerate(self.tcb_components)
        )
        tcb += _pair("2.17", _tlv(_T_INTEGER, _enc_uint(self.pcesvn)))
        tcb += _pair("2.18", _tlv(_T_OCTETS, self.cpusvn))
        body = (
            _pair("1", _tlv(_T_OCTETS, self.ppid))
            + _pair("2", _tlv(_T_SEQ, tcb))
            + _pair("3", _tlv(_T_OCTETS, self.pceid))
            + _pair("4", _tlv(_T_OCTETS, self.fmspc))
            + _pair("5", _tlv(_T_ENUM, _enc_uint(self.sgx_type)))
        )
        if self.platform_instance_id is not None and self.configuration is not None:
            body += _pair("6", _tlv(_T_OCTETS, self.platform_instance_id))
            conf = b"".join(
                _pair(f"7.{i + 1}", _tlv(_T_BOOLEAN, b"\xff" if flag else b"\x00"))
                for i, flag in enumerate(self.configuration)
            )
            body += _pair("7", _tlv(_T_SEQ, conf))
        return _tlv(_T_SEQ, body)

    @classmethod
    def from_der(cls, der: bytes) -> PckExtension:
        """Parse the DER extension value strictly.

        Raises:
            CollateralFormatError: malformed DER, unknown or duplicate OIDs, wrong types or sizes.
        """
        top = _pairs(_read_one(bytes(der), _T_SEQ, "extension"), _BASE, "extension")
        ppid = _take(top, "1", _T_OCTETS, "PPID", _octets(16, "PPID"))
        tcb_pairs = _pairs(_take(top, "2", _T_SEQ, "TCB", bytes), _BASE + ".2", "TCB")
        comps = tuple(
            _take(tcb_pairs, f"{i}", _T_INTEGER, f"TCB comp {i:02d} SVN",
                  _uint(f"TCB comp {i:02d} SVN", 255))
            for i in range(1, 17)
        )
        pcesvn = _take(tcb_pairs, "17", _T_INTEGER, "PCESVN", _uint("PCESVN", 0xFFFF))
        cpusvn = _take(tcb_pairs, "18", _T_OCTETS, "CPUSVN", _octets(16, "CPUSVN"))
        _no_more(tcb_pairs, _BASE + ".2")
        pceid = _take(top, "3", _T_OCTETS, "PCE-ID", _octets(2, "PCE-ID"))
        fmspc = _take(top, "4", _T_OCTETS, "FMSPC", _octets(6, "FMSPC"))
        sgx_type = _take(top, "5", _T_ENUM, "SGX Type", _uint("SGX Type", 2))
        instance: bytes | None = None
        config: tuple[bool, bool, bool] | None = None
        if "6" in top or "7" in top:
            instance = _take(top, "6", _T_OCTETS, "PlatformInstanceID",
                             _octets(16, "PlatformInstanceID"))
            conf_pairs = _pairs(_take(top, "7", _T_SEQ, "Configuration", bytes),
                                _BASE + ".7", "Configuration")
            names = ("dynamicPlatform", "cachedKeys", "SMTEnabled")
            flags = [_take(conf_pairs, str(i + 1), _T_BOOLEAN, n, _boolean(n))
                     for i, n in enumerate(names)]
            _no_more(conf_pairs, _BASE + ".7")
            config = (flags[0], flags[1], flags[2])
        _no_more(top, _BASE)
        return cls(ppid=ppid, tcb_components=comps, pcesvn=pcesvn, cpusvn=cpusvn, pceid=pceid,
                   fmspc=fmspc, sgx_type=sgx_type, platform_instance_id=instance,
                   configuration=config)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> PckExtension:
        """The SGX extension of a PCK certificate.

        Raises:
            CollateralFormatError: the certificate has no (or a malformed) SGX extension.
        """
        try:
            ext = cert.extensions.get_extension_for_oid(SGX_EXTENSION_OID)
        except x509.ExtensionNotFound as exc:
            raise _fail("the certificate has no SGX extension") from exc
        except (ValueError, x509.DuplicateExtension) as exc:  # malformed extension block
            raise _fail(f"certificate extensions do not parse: {exc}") from exc
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise _fail("unexpected decoded extension type")
        return cls.from_der(value.value)

    def to_dict(self) -> dict[str, object]:
        """A plain view for JSON (bytes as lowercase hex)."""
        return {
            "ppid": self.ppid.hex(), "tcb_components": list(self.tcb_components),
            "pcesvn": self.pcesvn, "cpusvn": self.cpusvn.hex(), "pceid": self.pceid.hex(),
            "fmspc": self.fmspc.hex(), "sgx_type": SGX_TYPES[self.sgx_type],
            "platform_instance_id": (None if self.platform_instance_id is None
                                     else self.platform_instance_id.hex()),
            "configuration": (None if self.configuration is None else dict(zip(
                ("dynamic_platform", "cached_keys", "smt_enabled"), self.configuration,
                strict=True))),
        }
