"""Quote parsing: every real quote in the vectors round-trips byte-identical; bad input refused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.dcap.quote import (
    INTEL_QE_VENDOR_ID,
    QUOTE_MIN_SIZE,
    CertificationData,
    Quote,
    QuoteHeader,
    unwrap_oe_report,
)
from enclavekit.errors import QuoteFormatError
from tests.vectors import vector

RAW_QUOTES = [
    "phala_dcap_qvl/sgx_quote",
    "mobilecoin_attestation/hw_quote.dat",
    "automata_onchain_v3/sgx_quote_v3.bin",
    "automata_dcap_rs/sgx_quote_v3.bin",
    "azure_sdk_python_maa/sgx_quote.bin",
    "azure_sdk_python_maa/maa_signing_cert_embedded_quote.bin",
    "azure_samples_maa/post_attest_sgx_quote.bin",
    "intel_qvl_sample_testroot/quote.dat",
    "phala_dcap_qvl/tdx_quote_outdated",
]
HEX_QUOTES = [
    f"azure_samples_maa/{kind}_quotes/enclave.info.{name}.json"
    for kind in ("intel_sdk", "oe_sdk")
    for name in ("debug", "release", "prodid", "securityversion")
]


def _load(rel: str) -> bytes:
    if rel.endswith(".json"):
        return unwrap_oe_report(bytes.fromhex(json.loads(vector(rel).read_text())["QuoteHex"]))
    return vector(rel).read_bytes()


@pytest.mark.parametrize("rel", RAW_QUOTES + HEX_QUOTES)
def test_real_quotes_round_trip(rel: str) -> None:
    data = _load(rel)
    quote = Quote.parse(data)
    assert quote.to_bytes() == data
    assert quote.header.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert quote.header.att_key_type == 2
    assert Quote.parse(quote.to_bytes()) == quote
    if quote.certification_data.type == 5:
        assert len(quote.certification_data.pck_chain()) == 3


def test_phala_fields_match_appendix_d() -> None:
    data = vector("phala_dcap_qvl/sgx_quote").read_bytes()
    assert hashlib.sha256(data).hexdigest() == (
        "f8b81014b6e443609746822194910f5dc1c92c322fa0584298d1e33e505ca3b5")
    q = Quote.parse(data)
    h = q.header
    assert (h.version, h.tee_type, h.qe_svn, h.pce_svn) == (3, 0, 10, 15)
    assert q.header.user_data.hex() == "3987622ee6968a54977c8626ef471235" + "00" * 4
    assert q.signed_bytes() == data[:432]
    assert q.attestation_key == data[500:564] and q.attestation_key[:4].hex() == "dce2b91f"
    assert q.qe_report == data[564:948]
    assert q.qe_auth_data == bytes(range(32))
    assert q.certification_data.type == 5 and len(q.certification_data.data) == 3548
    assert q.certification_data.data.endswith(b"\x00")
    assert len(q.certification_data.pck_chain()) == 3
    body = q.body
    assert body.mrenclave.hex() == (
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")
    assert body.mrsigner.hex() == (
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6")
    assert body.reportdata == b"Hello, world!".ljust(64, b"\x00")
    assert body.cpusvn.hex() == "0b0b1a18ffff04000000000000000000"
    qe = q.qe_body
    assert (qe.isvprodid, qe.isvsvn) == (1, 10)
    assert qe.reportdata[:32] == hashlib.sha256(q.attestation_key + q.qe_auth_data).digest()
    assert qe.reportdata[32:] == bytes(32)


def test_qvl_sample_has_cert_type_1() -> None:
    q = Quote.parse(vector("intel_qvl_sample_testroot/quote.dat").read_bytes())
    assert q.certification_data.type == 1
    assert len(q.certification_data.data) == 34
    assert q.qe_auth_data == b""
    with pytest.raises(QuoteFormatError, match=r"type 1 .*not 5"):
        q.certification_data.pck_chain_pem()


def test_tdx_v4_with_trailing_zeros() -> None:
    data = vector("phala_dcap_qvl/tdx_quote").read_bytes()
    with pytest.raises(QuoteFormatError, match="70 trailing bytes"):
        Quote.parse(data)
    q = Quote.parse(data, allow_trailing=True)
    assert q.header.version == 4 and q.header.tee_type == 0x81 and not q.is_sgx
    assert len(q.report_body) == 584
    assert q.to_bytes() == data[:-70]
    with pytest.raises(QuoteFormatError, match="TD report"):
        _ = q.body


def test_tdx_v5_descriptor_in_signed_region() -> None:
    data = vector("phala_dcap_qvl/tdx_quote_outdated").read_bytes()
    q = Quote.parse(data)
    assert q.header.version == 5 and len(q.report_body) == 648
    assert q.signed_bytes() == data[: 48 + 6 + 648]


def test_oe_report_unwrapping() -> None:
    raw = bytes.fromhex(json.loads(vector(HEX_QUOTES[4]).read_text())["QuoteHex"])
    assert raw[:4] == b"\x01\x00\x00\x00"
    assert unwrap_oe_report(raw) == raw[16:]
    plain = vector("phala_dcap_qvl/sgx_quote").read_bytes()
    assert unwrap_oe_report(plain) == plain


PHALA = vector("phala_dcap_qvl/sgx_quote").read_bytes()


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    "data, match",
    [
        (PHALA[:QUOTE_MIN_SIZE - 1], "shorter than the minimum"),
        (PHALA[:-1], "runs past the end"),
        (PHALA + b"\x00", "1 trailing bytes"),
        (_patch(PHALA, 0, "<H", 2), "version 2 is not supported"),
        (_patch(PHALA, 0, "<H", 6), "version 6 is not supported"),
        (_patch(PHALA, 2, "<H", 3), "attestation key type 3"),
        (_patch(PHALA, 4, "<I", 0x81), "v3 quote with TEE type 0x81"),
        (_patch(PHALA, 432, "<I", 4163), "1 trailing bytes .*signature_data_len 4163"),
        (_patch(PHALA, 432, "<I", 4165), "runs past the end"),
        (_patch(PHALA, 1012, "<H", 33), "certification data type 56320"),
        (_patch(PHALA, 1012, "<H", 0xFFFF), "QE auth data: needs"),
        (_patch(PHALA, 1046, "<H", 6), "certification data type 6 is not supported"),
        (_patch(PHALA, 1046, "<H", 0), "certification data type 0"),
        (_patch(PHALA, 1048, "<I", 3547), "disagrees"),
        (_patch(PHALA, 1048, "<I", 3549), "needs 3549 bytes|disagrees"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_quotes_refused(data: bytes, match: str) -> None:
    with pytest.raises(QuoteFormatError, match=match):
        Quote.parse(data)


def test_v4_outer_type_must_be_6_and_v5_descriptor_consistent() -> None:
    tdx = vector("phala_dcap_qvl/tdx_quote").read_bytes()
    outer = 48 + 584 + 4 + 128
    with pytest.raises(QuoteFormatError, match="must be 6"):
        Quote.parse(_patch(tdx, outer, "<H", 5), allow_trailing=True)
    v5 = vector("phala_dcap_qvl/tdx_quote_outdated").read_bytes()
    with pytest.raises(QuoteFormatError, match="body type 1 with body size 648"):
        Quote.parse(_patch(v5, 48, "<H", 1))
    with pytest.raises(QuoteFormatError, match="unknown TEE type"):
        Quote.parse(_patch(v5, 4, "<I", 0x82))


def test_non_bytes_and_garbled_pem() -> None:
    with pytest.raises(QuoteFormatError, match="must be bytes"):
        Quote.parse("not bytes")  # type: ignore[arg-type]
    bad = CertificationData(5, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(QuoteFormatError, match="does not parse"):
        bad.pck_chain()
    with pytest.raises(QuoteFormatError, match="no PEM certificate"):
        CertificationData(5, b"garbage").pck_chain_pem()
    q = Quote.parse(PHALA)
    stray = CertificationData(5, q.certification_data.data[:-1] + b"junk")
    with pytest.raises(QuoteFormatError, match="stray bytes"):
        stray.pck_chain_pem()


def test_sgx_v4_v5_round_trip_and_signed_region() -> None:
    """An SGX quote re-expressed as v4 and v5 keeps its fields; v5 signs the descriptor too."""
    import dataclasses

    q3 = Quote.parse(PHALA)
    for version, signed_len in ((4, 432), (5, 438)):
        q = dataclasses.replace(q3, header=q3.header.replace(version=version))
        wire = q.to_bytes()
        assert Quote.parse(wire) == q
        assert len(q.signed_bytes()) == signed_len
        assert struct.unpack_from("<H", wire, signed_len + 4 + 128)[0] == 6


_b = st.binary
quotes = st.builds(
    Quote,
    header=st.builds(QuoteHeader, version=st.sampled_from([3, 4, 5]),
                     qe_svn=st.integers(0, 0xFFFF), pce_svn=st.integers(0, 0xFFFF),
                     qe_vendor_id=_b(min_size=16, max_size=16),
                     user_data=_b(min_size=20, max_size=20)),
    report_body=_b(min_size=384, max_size=384),
    signature=_b(min_size=64, max_size=64),
    attestation_key=_b(min_size=64, max_size=64),
    qe_report=_b(min_size=384, max_size=384),
    qe_report_signature=_b(min_size=64, max_size=64),
    qe_auth_data=_b(max_size=80),
    certification_data=st.builds(CertificationData, type=st.integers(1, 5),
                                 data=_b(max_size=200)),
)


@given(quotes)
def test_round_trip(q: Quote) -> None:
    assert Quote.parse(q.to_bytes()) == q


@given(st.binary(min_size=0, max_size=1400))
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(QuoteFormatError):
        Quote.parse(data)


@given(st.integers(0, 1100), st.integers(0, 255))
def test_mutated_real_quote_parses_or_is_typed(offset: int, value: int) -> None:
    data = bytearray(PHALA)
    data[offset] = value
    with contextlib.suppress(QuoteFormatError):
        Quote.parse(bytes(data))


def test_certificate_with_an_invalid_version_is_a_format_error() -> None:
    """pyca raises InvalidVersion (not a ValueError) for an X.509 version outside v1..v3."""
    import base64

    pem = Quote.parse(PHALA).certification_data.pck_chain_pem()[0]
    der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
    assert b"\xa0\x03\x02\x01\x02" in der
    bad = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x46", 1)
    b64 = base64.b64encode(bad)
    bad_pem = (b"-----BEGIN CERTIFICATE-----\n"
               + b"".join(b64[i:i + 64] + b"\n" for i in range(0, len(b64), 64))
               + b"-----END CERTIFICATE-----\n")
    with pytest.raises(QuoteFormatError, match="does not parse"):
        CertificationData(5, bad_pem).pck_chain()
    from enclavekit.dcap.roots import load_pem_chain, load_roots
    from enclavekit.errors import CollateralFormatError

    with pytest.raises(CollateralFormatError, match="does not parse"):
        load_pem_chain(bad_pem)
    with pytest.raises(CollateralFormatError, match="does not parse"):
        load_roots(bad)


def test_certificate_envelope_check() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from enclavekit.dcap.quote import check_certificate_envelope

    der = Quote.parse(PHALA).certification_data.pck_chain()[0].public_bytes(Encoding.DER)
    check_certificate_envelope(der)
    bit_string = der.rindex(b"\x03\x47\x00\x30")  # the signature: BIT STRING, 0 unused bits
    unused = der[:bit_string + 2] + b"\x03" + der[bit_string + 3:]
    for bad, match in ((unused, "unused bits"), (der[:-1], "runs past|truncated"),
                       (der + b"\x00", "one DER SEQUENCE"), (b"\x30\x00", "not SEQUENCE"),
                       (b"\x30", "truncated"), (b"\x30\x80", "bad DER length")):
        with pytest.raises(ValueError, match=match):
            check_certificate_envelope(bad)
