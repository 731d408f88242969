"""The PCK certificate SGX extension: published values, real quotes, round trip, strictness."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.dcap.pckext import SGX_EXTENSION_OID, PckExtension
from enclavekit.dcap.quote import Quote
from enclavekit.errors import CollateralFormatError
from tests.vectors import cases, vector


def _raw_ext(cert: x509.Certificate) -> bytes:
    value = cert.extensions.get_extension_for_oid(SGX_EXTENSION_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


@pytest.mark.parametrize("v", cases("pck_extension_vectors", "cert"))
def test_published_pck_certs(v: dict[str, Any]) -> None:
    cert = x509.load_der_x509_certificate(vector(v["cert"]).read_bytes())
    ext = PckExtension.from_certificate(cert)
    assert ext.fmspc.hex() == v["fmspc"]
    assert ext.pcesvn == v["pcesvn"]
    assert ext.pceid.hex() == v["pceid"]
    assert list(ext.tcb_components) == v["tcb_comps"]
    assert (ext.platform_instance_id is not None) == v["multi_package"]
    assert (ext.sgx_type == 1) == v["multi_package"]
    assert ext.to_der() == _raw_ext(cert)


REAL_QUOTES = {
    "phala_dcap_qvl/sgx_quote": ("00a067110000", [11, 11, 2, 2, 255, 1] + [0] * 10, 13, 0),
    "mobilecoin_attestation/hw_quote.dat": ("00906ed50000", [20, 20, 2, 4, 1, 128, 14] + [0] * 9,
                                            13, 0),
    "automata_onchain_v3/sgx_quote_v3.bin": ("00606a000000", [14, 14, 3, 3, 255, 255, 1]
                                             + [0] * 9, 13, 1),
    "automata_dcap_rs/sgx_quote_v3.bin": ("00606a000000", [12, 12, 3, 3, 255, 255, 1] + [0] * 9,
                                          13, 1),
}


@pytest.mark.parametrize("path", sorted(REAL_QUOTES))
def test_pck_cert_in_real_quotes(path: str) -> None:
    fmspc, comps, pcesvn, sgx_type = REAL_QUOTES[path]
    quote = Quote.parse(vector(path).read_bytes())
    cert = quote.certification_data.pck_chain()[0]
    ext = PckExtension.from_certificate(cert)
    assert (ext.fmspc.hex(), list(ext.tcb_components), ext.pcesvn, ext.sgx_type) == (
        fmspc, comps, pcesvn, sgx_type)
    assert ext.pceid == b"\x00\x00"
    assert ext.to_der() == _raw_ext(cert)


def test_automata_ppid_matches_readme() -> None:
    quote = Quote.parse(vector("automata_onchain_v3/sgx_quote_v3.bin").read_bytes())
    ext = PckExtension.from_certificate(quote.certification_data.pck_chain()[0])
    assert ext.ppid.hex() == "186950b6d8d014d89f0c144d1d90ebad"


_b = st.binary
extensions = st.builds(
    PckExtension,
    ppid=_b(min_size=16, max_size=16),
    tcb_components=st.tuples(*[st.integers(0, 255)] * 16),
    pcesvn=st.integers(0, 0xFFFF),
    cpusvn=_b(min_size=16, max_size=16),
    pceid=_b(min_size=2, max_size=2),
    fmspc=_b(min_size=6, max_size=6),
    sgx_type=st.integers(0, 2),
) | st.builds(
    PckExtension,
    ppid=_b(min_size=16, max_size=16),
    tcb_components=st.tuples(*[st.integers(0, 255)] * 16),
    pcesvn=st.integers(0, 0xFFFF),
    cpusvn=_b(min_size=16, max_size=16),
    pceid=_b(min_size=2, max_size=2),
    fmspc=_b(min_size=6, max_size=6),
    sgx_type=st.integers(0, 2),
    platform_instance_id=_b(min_size=16, max_size=16),
    configuration=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)


@given(extensions)
def test_round_trip(ext: PckExtension) -> None:
    assert PckExtension.from_der(ext.to_der()) == ext


SINGLE = PckExtension(ppid=bytes(16), tcb_components=(1,) * 16, pcesvn=5, cpusvn=bytes(16),
                      pceid=bytes(2), fmspc=bytes(6))
GOOD = SINGLE.to_der()


def _swap(old: str, new: str) -> bytes:
    assert bytes.fromhex(old) in GOOD
    return GOOD.replace(bytes.fromhex(old), bytes.fromhex(new), 1)


@pytest.mark.parametrize(
    "der, match",
    [
        (b"", "truncated"),
        (GOOD[:-1], "runs past"),
        (GOOD + b"\x00", "trailing"),
        (b"\x04" + GOOD[1:], "expected tag"),
        # indefinite length
        (b"\x30\x80" + GOOD[2:], "indefinite|bad length|non-minimal|not DER"),
    ],
)
def test_malformed_der_refused(der: bytes, match: str) -> None:
    with pytest.raises(CollateralFormatError, match=match):
        PckExtension.from_der(der)


def _ext_with_top(entries: list[bytes]) -> bytes:
    from enclavekit.dcap import pckext as p

    return p._tlv(0x30, b"".join(entries))


def _top_entries() -> list[bytes]:
    from enclavekit.dcap import pckext as p

    body = p._read_one(GOOD, 0x30, "x")
    out, pos = [], 0
    while pos < len(body):
        _, _, end = p._read_tlv(body, pos)
        out.append(body[pos:end])
        pos = end
    return out


def test_duplicate_oid_refused() -> None:
    entries = _top_entries()
    with pytest.raises(CollateralFormatError, match="duplicate OID"):
        PckExtension.from_der(_ext_with_top([*entries, entries[3]]))


def test_missing_and_unknown_oid_refused() -> None:
    from enclavekit.dcap import pckext as p

    entries = _top_entries()
    with pytest.raises(CollateralFormatError, match="FMSPC missing"):
        PckExtension.from_der(_ext_with_top(entries[:3] + entries[4:]))
    extra = p._pair("9", p._tlv(0x04, b"x"))
    with pytest.raises(CollateralFormatError, match="unknown OID"):
        PckExtension.from_der(_ext_with_top([*entries, extra]))


def test_wrong_lengths_and_ranges_refused() -> None:
    from enclavekit.dcap import pckext as p

    entries = _top_entries()
    short_fmspc = p._pair("4", p._tlv(0x04, bytes(5)))
    with pytest.raises(CollateralFormatError, match="FMSPC must be 6 bytes"):
        PckExtension.from_der(_ext_with_top([*entries[:3], short_fmspc, *entries[4:]]))
    bad_type = p._pair("5", p._tlv(0x0A, b"\x03"))
    with pytest.raises(CollateralFormatError, match="SGX Type"):
        PckExtension.from_der(_ext_with_top([*entries[:4], bad_type]))
    # component SVN 256 and a negative / non-minimal INTEGER
    for value, match in ((b"\x01\x00", "exceeds 255"), (b"\x80", "negative"),
                         (b"\x00\x05", "non-minimal")):
        old = p._pair("2.1", p._tlv(0x02, b"\x01"))
        new = p._pair("2.1", p._tlv(0x02, value))
        tcb = p._read_tlv(entries[1], 0)[1]
        tcb_seq = p._read_all(tcb)[1][1]
        assert old in tcb_seq
        tcb_entry = p._pair("2", p._tlv(0x30, tcb_seq.replace(old, new, 1)))
        with pytest.raises(CollateralFormatError, match=match):
            PckExtension.from_der(_ext_with_top([entries[0], tcb_entry, *entries[2:]]))


def test_platform_fields_must_come_together_and_booleans_are_der() -> None:
    from enclavekit.dcap import pckext as p

    entries = _top_entries()
    instance = p._pair("6", p._tlv(0x04, bytes(16)))
    with pytest.raises(CollateralFormatError, match="Configuration missing"):
        PckExtension.from_der(_ext_with_top([*entries, instance]))
    conf = p._pair("7", p._tlv(0x30, b"".join(
        p._pair(f"7.{i}", p._tlv(0x01, b"\x01")) for i in (1, 2, 3))))
    with pytest.raises(CollateralFormatError, match="BOOLEAN"):
        PckExtension.from_der(_ext_with_top([*entries, instance, conf]))


def test_certificate_without_extension_refused() -> None:
    der = vector("intel_root_ca/Intel_SGX_Root_CA.der").read_bytes()
    root = x509.load_der_x509_certificate(der)
    with pytest.raises(CollateralFormatError, match="no SGX extension"):
        PckExtension.from_certificate(root)


@given(st.binary(max_size=200))
def test_garbage_never_raises_untyped(data: bytes) -> None:
    with contextlib.suppress(CollateralFormatError):
        PckExtension.from_der(data)


@given(st.integers(0, len(GOOD) * 8 - 1))
def test_bit_flips_refused_or_still_valid(bit: int) -> None:
    der = bytearray(GOOD)
    der[bit // 8] ^= 1 << (bit % 8)
    try:
        ext = PckExtension.from_der(bytes(der))
    except CollateralFormatError:
        return
    assert ext.to_der() == bytes(der)  # a flip inside a value gives another valid extension


def test_every_encoding_der_forbids_in_the_review_is_refused() -> None:
    # the encodings tests/dcap/der_review.py shows general ASN.1 libraries accepting
    from tests.dcap.der_review import CASES, GOOD

    assert PckExtension.from_der(GOOD).to_der() == GOOD
    refused = {name: der for name, der in CASES.items() if der != GOOD}
    assert len(refused) == 11
    for der in refused.values():
        with pytest.raises(CollateralFormatError, match="PCK SGX extension: "):
            PckExtension.from_der(der)
