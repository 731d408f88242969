"""Every SGX structure: size, offsets from the SDM tables, round trips, typed parse errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import InvalidStructure
from enclavekit.sgx.structs import (
    ALL_STRUCTURES,
    PCMD,
    SECS,
    TCS,
    Attributes,
    EInitToken,
    KeyRequest,
    PageInfo,
    Report,
    ReportBody,
    SecInfo,
    SigStruct,
    TargetInfo,
)
from tests.vectors import vector

SIZES = {
    Attributes: 16,
    SECS: 4096,
    TCS: 4096,
    SecInfo: 64,
    PageInfo: 32,
    PCMD: 128,
    SigStruct: 1808,
    EInitToken: 304,
    ReportBody: 384,
    Report: 432,
    TargetInfo: 512,
    KeyRequest: 512,
}

# (structure, field, offset) typed from the SDM tables restated in sgx-spec.md §1–§5.
OFFSETS = [
    (SECS, "size", 0),
    (SECS, "baseaddr", 8),
    (SECS, "ssaframesize", 16),
    (SECS, "miscselect", 20),
    (SECS, "attributes", 48),
    (SECS, "mrenclave", 64),
    (SECS, "mrsigner", 128),
    (SECS, "configid", 192),
    (SECS, "isvprodid", 256),
    (SECS, "isvsvn", 258),
    (SECS, "configsvn", 260),
    (SECS, "reserved4", 262),
    (TCS, "flags", 8),
    (TCS, "ossa", 16),
    (TCS, "cssa", 24),
    (TCS, "nssa", 28),
    (TCS, "oentry", 32),
    (TCS, "aep", 40),
    (TCS, "ofsbasgx", 48),
    (TCS, "ogsbasgx", 56),
    (TCS, "fslimit", 64),
    (TCS, "gslimit", 68),
    (PCMD, "enclaveid", 64),
    (PCMD, "reserved", 72),
    (PCMD, "mac", 112),
    (SigStruct, "vendor", 16),
    (SigStruct, "date", 20),
    (SigStruct, "header2", 24),
    (SigStruct, "swdefined", 40),
    (SigStruct, "modulus", 128),
    (SigStruct, "exponent", 512),
    (SigStruct, "signature", 516),
    (SigStruct, "miscselect", 900),
    (SigStruct, "miscmask", 904),
    (SigStruct, "isvfamilyid", 912),
    (SigStruct, "attributes", 928),
    (SigStruct, "attributemask", 944),
    (SigStruct, "enclavehash", 960),
    (SigStruct, "isvextprodid", 1008),
    (SigStruct, "isvprodid", 1024),
    (SigStruct, "isvsvn", 1026),
    (SigStruct, "q1", 1040),
    (SigStruct, "q2", 1424),
    (EInitToken, "attributes", 48),
    (EInitToken, "mrenclave", 64),
    (EInitToken, "mrsigner", 128),
    (EInitToken, "cpusvnle", 192),
    (EInitToken, "isvprodidle", 208),
    (EInitToken, "maskedmiscselectle", 236),
    (EInitToken, "maskedattributesle", 240),
    (EInitToken, "keyid", 256),
    (EInitToken, "mac", 288),
    (ReportBody, "miscselect", 16),
    (ReportBody, "isvextprodid", 32),
    (ReportBody, "attributes", 48),
    (ReportBody, "mrenclave", 64),
    (ReportBody, "mrsigner", 128),
    (ReportBody, "configid", 192),
    (ReportBody, "isvprodid", 256),
    (ReportBody, "isvsvn", 258),
    (ReportBody, "configsvn", 260),
    (ReportBody, "isvfamilyid", 304),
    (ReportBody, "reportdata", 320),
    (Report, "keyid", 384),
    (Report, "mac", 416),
    (TargetInfo, "attributes", 32),
    (TargetInfo, "configsvn", 50),
    (TargetInfo, "miscselect", 52),
    (TargetInfo, "configid", 64),
    (TargetInfo, "reserved3", 128),
    (KeyRequest, "keypolicy", 2),
    (KeyRequest, "isvsvn", 4),
    (KeyRequest, "cpusvn", 8),
    (KeyRequest, "attributemask", 24),
    (KeyRequest, "keyid", 40),
    (KeyRequest, "miscmask", 72),
    (KeyRequest, "configsvn", 76),
    (KeyRequest, "reserved2", 78),
]


def test_every_structure_is_listed_with_its_architectural_size() -> None:
    assert set(ALL_STRUCTURES) == set(SIZES)
    for cls, size in SIZES.items():
        assert size == cls.SIZE
        assert len(cls().to_bytes()) == size


@pytest.mark.parametrize(
    ("cls", "name", "offset"), OFFSETS, ids=lambda v: getattr(v, "__name__", str(v))
)
def test_field_offsets_match_the_sdm(cls: type, name: str, offset: int) -> None:
    assert cls.OFFSETS[name] == offset  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", ALL_STRUCTURES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip_of_random_contents(cls: type, data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.binary(min_size=cls.SIZE, max_size=cls.SIZE)))  # type: ignore[attr-defined]
    parsed = cls.from_bytes(bytes(raw), strict=False)  # type: ignore[attr-defined]
    assert parsed.to_bytes() == bytes(raw)
    assert cls.from_bytes(parsed.to_bytes(), strict=False) == parsed  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", ALL_STRUCTURES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("delta", [-1, 1, -4096])
def test_wrong_size_is_a_typed_error_naming_the_structure(cls: type, delta: int) -> None:
    size = max(0, cls.SIZE + delta)  # type: ignore[attr-defined]
    with pytest.raises(
        InvalidStructure, match=rf"^{cls.__name__}: expected {cls.SIZE} bytes, found {size}$"
    ):  # type: ignore[attr-defined]
        cls.from_bytes(bytes(size))  # type: ignore[attr-defined]


def test_non_zero_reserved_field_is_refused_when_strict() -> None:
    raw = bytearray(KeyRequest().to_bytes())
    raw[100] = 1  # inside reserved2 (offset 78)
    with pytest.raises(InvalidStructure, match=r"KeyRequest: reserved2 \(offset 78\) must be zero"):
        KeyRequest.from_bytes(bytes(raw))
    assert KeyRequest.from_bytes(bytes(raw), strict=False).reserved2[22] == 1


def test_reserved_check_reaches_nested_structures() -> None:
    raw = bytearray(PCMD().to_bytes())
    raw[10] = 0xFF  # SECINFO.reserved inside PCMD
    with pytest.raises(InvalidStructure, match="SecInfo: reserved"):
        PCMD.from_bytes(bytes(raw))


def test_values_that_do_not_fit_are_refused_on_pack() -> None:
    with pytest.raises(InvalidStructure, match="isvsvn=65536 does not fit"):
        KeyRequest(isvsvn=65536).to_bytes()
    with pytest.raises(InvalidStructure, match="keyid must be 32 bytes, found 3"):
        KeyRequest(keyid=b"abc").to_bytes()


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(InvalidStructure, match="expected bytes, found str"):
        SecInfo.from_bytes("x" * 64)  # type: ignore[arg-type]


def test_published_sigstruct_parses_strictly_and_round_trips() -> None:
    raw = vector("enarx_sgx/encl.ss").read_bytes()
    sig = SigStruct.from_bytes(raw)
    assert sig.to_bytes() == raw
    assert (
        sig.enclavehash.hex() == "b999536238fcf4e9d360ef6cd3e0c20ef8a684c7b93f74a9c4a4c6d517d61fc0"
    )
    assert sig.attributes == Attributes(flags=0x4, xfrm=0x3)
    assert sig.exponent == 3


def test_report_body_of_a_real_quote_parses() -> None:
    quote = vector("phala_dcap_qvl/sgx_quote").read_bytes()
    body = ReportBody.from_bytes(quote[48:432])
    assert (
        body.mrenclave.hex() == "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    )
    assert body.reportdata.rstrip(b"\0") == b"Hello, world!"
    assert TargetInfo.from_report(body).measurement == body.mrenclave


def test_to_dict_gives_hex_and_nested_views() -> None:
    d = Report(body=ReportBody(isvsvn=7, mrenclave=b"\x01" * 32)).to_dict()
    assert d["body"]["isvsvn"] == 7
    assert d["body"]["mrenclave"] == "01" * 32
    assert d["body"]["attributes"] == {"flags": 0, "xfrm": 0}
