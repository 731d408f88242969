"""What a general ASN.1 library accepts in a PCK SGX extension that ``dcap.pckext`` refuses.

``python -m tests.dcap.der_review`` builds one non-DER (or otherwise refused) encoding of a
valid extension per rule and prints, for each, whether ``PckExtension.from_der``,
asn1crypto and pyasn1's DER decoder accept it. The libraries decode generically (no schema:
the extension is SEQUENCE OF SEQUENCE {OID, ANY}, so a schema would add nothing at the
encoding level) and every value is forced (asn1crypto ``.native``; pyasn1 decodes eagerly;
pyasn1-fasder, which needs a schema, gets SEQUENCE OF SEQUENCE {OID, ANY} and each value
decoded by its tag).
Trailing bytes are counted as accepted when the library returns them instead of refusing.
The libraries are not project dependencies; install them to run this
(``pip install asn1crypto==1.5.1 pyasn1==0.6.5 pyasn1-fasder==0.1.3``); the figures are in
pckext's docstring.
"""

from __future__ import annotations

from collections.abc import Callable

from enclavekit.dcap import pckext as p
from enclavekit.dcap.pckext import PckExtension
from enclavekit.errors import CollateralFormatError

_FMSPC = bytes.fromhex("00906ed50000")
_OID = 0x06


def _tlv(tag: int, content: bytes, style: str = "der") -> bytes:
    """A TLV with its length as DER writes it, or in one of BER's other forms."""
    if style == "indefinite":
        return bytes([tag, 0x80]) + content + b"\x00\x00"
    if style == "long-zero":  # a leading zero length byte
        raw = len(content).to_bytes(2, "big")
        return bytes([tag, 0x83, 0]) + raw + content
    if style == "long-short":  # long form for a length below 128
        assert len(content) < 0x80
        return bytes([tag, 0x81, len(content)]) + content
    return p._tlv(tag, content)


def build(values: dict[str, bytes] | None = None, oids: dict[str, bytes] | None = None,
          styles: dict[str, str] | None = None) -> bytes:
    """The extension of a Platform-CA PCK certificate (every OID of sgx-spec.md §6.6), with
    the value TLV, the OID TLV or the length form of chosen entries replaced; every enclosing
    length is recomputed, so only the named rule is broken."""
    values, oids, styles = values or {}, oids or {}, styles or {}

    def pair(suffix: str, value: bytes) -> bytes:
        oid = oids.get(suffix, p._tlv(_OID, p._enc_oid(f"{p._BASE}.{suffix}")))
        return _tlv(0x30, oid + values.get(suffix, value), styles.get(suffix, "der"))

    tcb = b"".join(pair(f"2.{i}", p._tlv(0x02, b"\x05")) for i in range(1, 17))
    tcb += pair("2.17", p._tlv(0x02, b"\x0d")) + pair("2.18", p._tlv(0x04, bytes(16)))
    conf = b"".join(pair(f"7.{i}", p._tlv(0x01, b"\xff")) for i in (1, 2, 3))
    body = (pair("1", p._tlv(0x04, bytes(16))) + pair("2", p._tlv(0x30, tcb))
            + pair("3", p._tlv(0x04, bytes(2))) + pair("4", p._tlv(0x04, _FMSPC))
            + pair("5", p._tlv(0x0A, b"\x01")) + pair("6", p._tlv(0x04, bytes(16)))
            + pair("7", p._tlv(0x30, conf)))
    return _tlv(0x30, body, styles.get("", "der"))


GOOD = build()
assert PckExtension.from_der(GOOD).to_der() == GOOD


def _padded_oid(suffix: str) -> bytes:
    arcs = p._enc_oid(f"{p._BASE}.{suffix}")
    at = arcs.index(bytes([0x86, 0xF8, 0x4D]))  # 113741: pad its first byte with 0x80
    return p._tlv(_OID, arcs[:at] + b"\x80" + arcs[at:])


CASES: dict[str, bytes] = {
    "valid DER (control)": GOOD,
    "indefinite length (BER)": build(styles={"": "indefinite"}),
    "long-form length with a leading zero byte": build(styles={"": "long-zero"}),
    "long-form length for a length below 128": build(styles={"4": "long-short"}),
    "INTEGER with a redundant leading zero": build(values={"2.17": b"\x02\x02\x00\x0d"}),
    "empty INTEGER": build(values={"2.17": b"\x02\x00"}),
    "BOOLEAN TRUE as 0x01 (BER)": build(values={"7.1": b"\x01\x01\x01"}),
    "OID arc with a leading 0x80": build(oids={"4": _padded_oid("4")}),
    "constructed OCTET STRING (BER)": build(values={"4": p._tlv(0x24, p._tlv(0x04, _FMSPC[:3])
                                                                + p._tlv(0x04, _FMSPC[3:]))}),
    "high-tag-number form of tag 4": build(values={"4": b"\x1f\x04\x06" + _FMSPC}),
    "one trailing byte": GOOD + b"\x00",
    "truncated by one byte": GOOD[:-1],
}


def _ours(der: bytes) -> bool:
    try:
        PckExtension.from_der(der)
    except CollateralFormatError:
        return False
    return True


def _asn1crypto() -> Callable[[bytes], bool] | None:
    try:
        from asn1crypto import core
    except ImportError:
        return None

    class Children(core.SequenceOf):
        _child_spec = core.Any

    def walk(der: bytes) -> None:
        value = core.load(der, strict=True)
        if value.tag == 16:  # SEQUENCE: each child, by its own bytes
            for child in Children.load(der, strict=True):
                walk(child.dump())
        elif value.tag == 10:  # ENUMERATED has no generic .native: read it as an INTEGER
            _ = core.Integer.load(b"\x02" + der[1:], strict=True).native
        else:
            _ = value.native

    def accepts(der: bytes) -> bool:
        try:
            walk(der)
        except (ValueError, TypeError):
            return False
        return True
    return accepts


def _pyasn1() -> Callable[[bytes], bool] | None:
    try:
        from pyasn1.codec.der import decoder
        from pyasn1.error import PyAsn1Error
    except ImportError:
        return None

    def accepts(der: bytes) -> bool:
        try:
            decoder.decode(der)  # returns (value, rest): rest is left to the caller
        except PyAsn1Error:
            return False
        return True
    return accepts


def _fasder() -> Callable[[bytes], bool] | None:
    try:
        from pyasn1.error import PyAsn1Error
        from pyasn1.type import namedtype, univ
        from pyasn1_fasder import decode_der
    except ImportError:
        return None

    class Entry(univ.Sequence):
        componentType = namedtype.NamedTypes(
            namedtype.NamedType("oid", univ.ObjectIdentifier()),
            namedtype.NamedType("value", univ.Any()))

    class Entries(univ.SequenceOf):
        componentType = Entry()

    leaf = {0x01: univ.Boolean, 0x02: univ.Integer, 0x04: univ.OctetString,
            0x0A: univ.Enumerated}

    def walk(der: bytes) -> None:
        entries, rest = decode_der(der, asn1Spec=Entries())
        if rest:
            raise ValueError("trailing bytes")
        for entry in entries:
            raw = bytes(entry["value"])
            if raw[:1] == b"\x30":
                walk(raw)
            else:
                _, rest = decode_der(raw, asn1Spec=leaf.get(raw[0], univ.OctetString)())
                if rest:
                    raise ValueError("trailing bytes")

    def accepts(der: bytes) -> bool:
        try:
            walk(der)
        except (PyAsn1Error, ValueError):  # Pyasn1FasderError is a PyAsn1Error
            return False
        return True
    return accepts


def main() -> None:
    libraries = {"pckext": _ours, "asn1crypto 1.5.1": _asn1crypto(), "pyasn1 0.6.5": _pyasn1(),
                 "pyasn1-fasder 0.1.3": _fasder()}
    print(f"{'encoding':45} " + " ".join(f"{name:>19}" for name in libraries))
    accepted = dict.fromkeys(libraries, 0)
    for name, der in CASES.items():
        cells = []
        for lib, accepts in libraries.items():
            if accepts is None:
                cells.append(f"{'not installed':>19}")
                continue
            ok = accepts(der)
            accepted[lib] += ok and name != "valid DER (control)"
            cells.append(f"{'accepts' if ok else 'refuses':>19}")
        print(f"{name:45} " + " ".join(cells))
    print(f"{'non-DER encodings accepted (of ' + str(len(CASES) - 1) + ')':45} "
          + " ".join(f"{accepted[lib] if libraries[lib] else '-':>19}" for lib in libraries))


if __name__ == "__main__":
    main()
