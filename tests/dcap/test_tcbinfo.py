"""TCB info / QE identity parsing (Open Enclave vectors), level matching and status merging."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.dcap.tcbinfo import (
    QeIdentity,
    TcbInfo,
    TcbLevel,
    converge_qe_status,
    split_signed_body,
)
from enclavekit.dcap.verify import verify_quote
from enclavekit.errors import CollateralFormatError
from tests.dcap._forge import forge
from tests.vectors import available, names, vector

OE = "openenclave_tcbinfo_parsing"
GOOD = ["data/tcbInfo.json", "data/tcbInfo_with_pceid.json", "data_v2/tcbInfo.json",
        "data_v2/tcbInfo_with_pceid.json", "data_v3/tcbinfo_sgx.json", "data_v3/tcbinfo_tdx.json"]
NEGATIVE = names(OE, "*/*Negative*")


def _load(rel: str) -> TcbInfo:
    return TcbInfo.from_json(vector(f"{OE}/{rel}").read_bytes())


def test_negative_vectors_exist() -> None:
    if not available():
        vector(OE)  # skipped without the vectors (fails under CI)
    assert len(NEGATIVE) == 37


@pytest.mark.parametrize("rel", GOOD)
def test_good_files_parse_with_asserted_values(rel: str) -> None:
    info = _load(rel)
    assert info.issue_date == datetime(2018, 6, 6, 10, 12, 17, tzinfo=UTC)
    assert info.next_update == datetime(2019, 6, 6, 10, 12, 17, tzinfo=UTC)
    assert info.fmspc.hex() == "00906ea10000"
    assert info.signature.hex().startswith("62d181c4ba863213")
    assert info.signature.hex().endswith("cbfd7b")
    if "pceid" in rel.lower() or rel.startswith("data_v3"):
        assert info.pce_id == b"\x00\x00"
    if info.version >= 2:
        assert info.levels[0].tcb_date == datetime(2018, 1, 4, 1, 2, 3, tzinfo=UTC)


@pytest.mark.parametrize("rel", NEGATIVE)
def test_negative_files_refused(rel: str) -> None:
    with pytest.raises(CollateralFormatError):
        _load(rel)


V1_COMPS = [4, 4, 2, 4, 1, 128, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
V3_COMPS = [7, 9, 3, 3, 255, 255, 1] + [0] * 9


@pytest.mark.parametrize("rel, comps, pcesvn, status", [
    ("data/tcbInfo.json", V1_COMPS, 8, "UpToDate"),
    ("data/tcbInfo.json", V1_COMPS, 4, "ConfigurationNeeded"),
    ("data/tcbInfo.json", V1_COMPS, 3, "OutOfDate"),
    ("data/tcbInfo.json", V1_COMPS, 2, "Revoked"),
    ("data_v2/tcbInfo.json", V1_COMPS, 9, "UpToDate"),
    ("data_v2/tcbInfo.json", V1_COMPS, 7, "SWHardeningNeeded"),
    ("data_v2/tcbInfo.json", V1_COMPS, 6, "ConfigurationAndSWHardeningNeeded"),
    ("data_v2/tcbInfo.json", V1_COMPS, 5, "OutOfDateConfigurationNeeded"),
    ("data_v2/tcbInfo.json", V1_COMPS, 4, "ConfigurationNeeded"),
    ("data_v2/tcbInfo.json", V1_COMPS, 3, "OutOfDate"),
    ("data_v2/tcbInfo.json", V1_COMPS, 2, "Revoked"),
    ("data_v3/tcbinfo_sgx.json", V3_COMPS, 9, "UpToDate"),
    ("data_v3/tcbinfo_sgx.json", V3_COMPS, 7, "SWHardeningNeeded"),
    ("data_v3/tcbinfo_sgx.json", V3_COMPS, 6, "ConfigurationAndSWHardeningNeeded"),
    ("data_v3/tcbinfo_sgx.json", V3_COMPS, 5, "OutOfDateConfigurationNeeded"),
    ("data_v3/tcbinfo_sgx.json", V3_COMPS, 4, "OutOfDate"),
    ("data_v3/tcbinfo_tdx.json", V3_COMPS, 9, "UpToDate"),
    ("data_v3/tcbinfo_tdx.json", V3_COMPS, 4, "OutOfDate"),
])
def test_level_matching_as_asserted(rel: str, comps: list[int], pcesvn: int, status: str) -> None:
    level = _load(rel).match(comps, pcesvn)
    assert level is not None and level.status == status


@pytest.mark.parametrize("rel, comps", [("data/tcbInfo.json", V1_COMPS),
                                        ("data_v2/tcbInfo.json", V1_COMPS)])
def test_any_component_lowered_to_zero_matches_nothing(rel: str, comps: list[int]) -> None:
    info = _load(rel)
    for i in range(16):
        if comps[i] == 0:
            continue
        lowered = list(comps)
        lowered[i] = 0
        assert info.match(lowered, 9) is None, i


def test_advisory_ids_kept_in_order() -> None:
    level = _load("data_v2/tcbInfoAdvisoryIds.json").match(V1_COMPS, 9)
    assert level is not None and level.status == "UpToDate"
    assert level.advisory_ids == ("INTEL-SA-00079", "INTEL-SA-00076")


def _info(levels: list[TcbLevel]) -> TcbInfo:
    return TcbInfo(raw=b"", signature=bytes(64), id="SGX", version=3,
                   issue_date=datetime(2020, 1, 1, tzinfo=UTC),
                   next_update=datetime(2021, 1, 1, tzinfo=UTC), fmspc=bytes(6),
                   pce_id=bytes(2), tcb_type=0, tcb_evaluation_data_number=1,
                   levels=tuple(levels))


def test_lexicographic_trap_is_component_wise() -> None:
    """QV-5: [2,0,...] is not reached by [1,255,...] although it sorts above it."""
    high = TcbLevel((2, 0) + (0,) * 14, 0, "UpToDate")
    low = TcbLevel((1, 255) + (0,) * 14, 0, "OutOfDate")
    info = _info([high, low])
    assert info.match([1, 255] + [0] * 14, 0) == low
    assert info.match([2, 0] + [0] * 14, 0) == high
    assert info.match([2, 255] + [0] * 14, 0) == high
    assert info.match([1, 254] + [0] * 14, 0) is None
    assert _info([low, high]).match([2, 255] + [0] * 14, 0) == high  # JSON order irrelevant


def test_pcesvn_one_below_and_component_one_below() -> None:
    level = TcbLevel((5,) * 16, 10, "UpToDate")
    info = _info([level])
    assert info.match([5] * 16, 10) == level
    assert info.match([5] * 16, 9) is None
    for i in range(16):
        comps = [5] * 16
        comps[i] = 4
        assert info.match(comps, 10) is None
    with pytest.raises(ValueError, match="16"):
        info.match([5] * 15, 10)


levels_st = st.lists(
    st.builds(TcbLevel, st.tuples(*[st.integers(0, 3)] * 16), st.integers(0, 3),
              st.just("UpToDate")), min_size=1, max_size=6)


@given(levels_st, st.tuples(*[st.integers(0, 3)] * 16), st.integers(0, 3))
def test_match_is_the_highest_level_reached(levels: list[TcbLevel], comps: tuple[int, ...],
                                            pcesvn: int) -> None:
    def reached(lv: TcbLevel) -> bool:
        return pcesvn >= lv.pcesvn and all(a >= b for a, b in zip(comps, lv.components,
                                                                    strict=True))

    chosen = _info(levels).match(comps, pcesvn)
    candidates = [lv for lv in levels if reached(lv)]
    if not candidates:
        assert chosen is None
    else:
        assert chosen is not None and reached(chosen)
        assert (chosen.components, chosen.pcesvn) == max(
            (lv.components, lv.pcesvn) for lv in candidates)


def test_v3_truncated_component_list_refused() -> None:
    body = json.loads(vector(f"{OE}/data_v3/tcbinfo_sgx.json").read_text())
    body["tcbInfo"]["tcbLevels"][0]["tcb"]["sgxtcbcomponents"].pop()
    with pytest.raises(CollateralFormatError, match="15 entries, not 16"):
        TcbInfo.from_json(json.dumps(body))


def test_duplicate_keys_refused_at_every_level() -> None:
    """QV-10: a body with two tcbInfo keys or two tcbLevels keys is refused."""
    raw = vector(f"{OE}/data_v2/tcbInfo.json").read_text()
    two_bodies = raw.replace('"signature"', '"tcbInfo": {}, "signature"', 1)
    with pytest.raises(CollateralFormatError, match="duplicate key 'tcbInfo'"):
        TcbInfo.from_json(two_bodies)
    two_levels = raw.replace('"tcbLevels"', '"tcbLevels": [], "tcbLevels"', 1)
    with pytest.raises(CollateralFormatError, match="duplicate key 'tcbLevels'"):
        TcbInfo.from_json(two_levels)
    two_svns = raw.replace('"pcesvn":8', '"pcesvn":8, "pcesvn":9', 1)
    with pytest.raises(CollateralFormatError, match="duplicate key 'pcesvn'"):
        TcbInfo.from_json(two_svns)


def test_raw_bytes_are_the_exact_span() -> None:
    body = vector("mobilecoin_attestation/fmspc_00906ED50000_2023_07_12.json").read_bytes()
    raw, sig = split_signed_body(body, "tcbInfo")
    assert body.startswith(b'{"tcbInfo":' + raw + b',"signature":"')
    info = TcbInfo.parse(raw, sig)
    assert info.to_json() == body.strip()
    assert info.version == 3 and info.fmspc.hex() == "00906ed50000"


@pytest.mark.parametrize("body, match", [
    (b"", "not a JSON object"),
    (b"[]", "not a JSON object"),
    (b'{"tcbInfo": {}}', "keys must be"),
    (b'{"tcbInfo": {}, "signature": "00", "x": 1}', "keys must be"),
    (b'{"tcbInfo": {}, "signature": 5}', "hex string"),
    (b'{"tcbInfo": {}, "signature": "' + b"zz" * 64 + b'"}', "not hex"),
    (b'{"tcbInfo": {} "signature": "00"}', "expected ','"),
    (b'{"tcbInfo": {}, "signature": "' + b"00" * 64 + b'"} x', "trailing"),
    (b"\xff\xfe", "UTF-8"),
    (b'{"tcbInfo": [' * 5000, "not JSON|nested"),
])
def test_garbled_bodies_refused(body: bytes, match: str) -> None:
    with pytest.raises(CollateralFormatError, match=match):
        TcbInfo.from_json(body)


@given(st.binary(max_size=300))
def test_garbage_is_always_a_typed_error(data: bytes) -> None:
    with pytest.raises(CollateralFormatError):
        TcbInfo.from_json(b'{"tcbInfo":' + data + b',"signature":"' + b"00" * 64 + b'"}')


QE_FILES = ["mobilecoin_attestation/qe_identity.json", "automata_onchain_v3/sgx_qeidentity_v4.json",
            "automata_dcap_rs/qeidentityv2.json", "intel_qvl_sample_testroot/qeIdentity.json"]


@pytest.mark.parametrize("rel", QE_FILES)
def test_real_qe_identities_parse(rel: str) -> None:
    ident = QeIdentity.from_json(vector(rel).read_bytes())
    assert ident.id == "QE" and ident.version == 2 and ident.isvprodid == 1
    assert ident.to_json() == vector(rel).read_bytes().strip()


def test_qe_identity_fields_and_levels() -> None:
    ident = QeIdentity.from_json(vector(QE_FILES[0]).read_bytes())
    assert ident.mrsigner.hex().startswith("8c4f5775")
    assert ident.miscselect == bytes(4) and ident.miscselect_mask == b"\xff" * 4
    assert ident.attributes.hex() == "11" + "00" * 15
    assert ident.attributes_mask.hex() == "fbffffffffffffff" + "00" * 8
    top = ident.match(9)
    assert top is not None and top.status == "UpToDate" and top.isvsvn == 8
    older = ident.match(7)
    assert older is not None and older.status == "OutOfDate" and older.isvsvn == 6
    assert ident.match(0) is None
    qvl = QeIdentity.from_json(vector(QE_FILES[3]).read_bytes())
    assert qvl.miscselect.hex() == "d182b18c"


def test_qe_identity_refusals() -> None:
    raw = vector(QE_FILES[0]).read_text()
    for old, new, match in [
        ('"version":2', '"version":1', "version 1"),
        ('"id":"QE"', '"id":"XE"', "not QE"),
        ('"isvprodid":1', '"isvprodid":"1"', "must be a JSON integer"),
        ('"mrsigner":"8C', '"mrsigner":"', "64 hex"),
        ('"isvsvn":8', '"isvsvn":6', "same isvsvn"),
        ('"tcbStatus":"UpToDate"', '"tcbStatus":"Fine"', "unknown tcbStatus"),
    ]:
        assert old in raw
        with pytest.raises(CollateralFormatError, match=match):
            QeIdentity.from_json(raw.replace(old, new, 1))


@pytest.mark.parametrize("platform, qe, merged", [
    ("UpToDate", "UpToDate", "UpToDate"),
    ("UpToDate", "OutOfDate", "OutOfDate"),
    ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
    ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
    ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
    ("OutOfDate", "OutOfDate", "OutOfDate"),
    ("OutOfDateConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
    ("Revoked", "OutOfDate", "Revoked"),
    ("UpToDate", "Revoked", "Revoked"),
    ("SWHardeningNeeded", "UpToDate", "SWHardeningNeeded"),
])
def test_qvl_status_convergence(platform: str, qe: str, merged: str) -> None:
    assert converge_qe_status(platform, qe) == merged


def test_real_tcb_infos_parse() -> None:
    for rel in ("automata_dcap_rs/tcbinfov2.json", "intel_qvl_sample_testroot/tcbInfo.json",
                "automata_onchain_v3/sgx_tcbinfov3_00606a000000.json"):
        info = TcbInfo.from_json(vector(rel).read_bytes())
        assert info.id == "SGX" and info.levels
    assert Path(vector("automata_dcap_rs/tcbinfov2.json")).exists()


# --- level order: QVL's, checked on TCB info and QE identities signed with the test PKI -------


def _level(comps: tuple[int, ...], status: str, pcesvn: int = 13) -> dict[str, object]:
    return {"tcb": {"sgxtcbcomponents": [{"svn": c} for c in comps + (0,) * (16 - len(comps))],
                    "pcesvn": pcesvn}, "tcbDate": "2023-08-09T00:00:00Z", "tcbStatus": status}


# Neither level is below the other component by component: [3, 9] and [4, 1].
INCOMPARABLE = [_level((3, 9), "SWHardeningNeeded"), _level((4, 1), "ConfigurationNeeded")]


@pytest.mark.parametrize("signed", [INCOMPARABLE, INCOMPARABLE[::-1]], ids=["A-B", "B-A"])
def test_incomparable_tcb_levels_are_taken_in_qvl_order_not_signed_order(
        signed: list[dict[str, object]]) -> None:
    """QVL orders TCB info levels in a std::set by TcbLevel::operator> (components
    lexicographically, then PCESVN), whatever order Intel signed: a platform at [4, 9] reaches
    both levels and gets [4, 1] (the greater), also when [3, 9] is listed first."""
    f = forge(levels=signed, pck_components=(4, 9) + (0,) * 14, pck_pcesvn=13)
    assert json.loads(f.collateral.tcb_info)["tcbLevels"] == signed  # the signed order
    result = verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at)
    assert result.platform_status == "ConfigurationNeeded"
    tcb = f.collateral.parse_tcb_info()
    assert tcb.match((4, 9) + (0,) * 14, 13).status == "ConfigurationNeeded"
    assert tcb.match((3, 9) + (0,) * 14, 13).status == "SWHardeningNeeded"  # reaches only A
    assert tcb.match((4, 0) + (0,) * 14, 13) is None  # reaches neither


QE_ASCENDING = [
    {"tcb": {"isvsvn": 2}, "tcbDate": "2019-05-15T00:00:00Z", "tcbStatus": "OutOfDate",
     "advisoryIDs": ["INTEL-SA-00615"]},
    {"tcb": {"isvsvn": 8}, "tcbDate": "2023-02-15T00:00:00Z", "tcbStatus": "UpToDate"},
]


def test_qe_identity_levels_are_taken_in_the_signed_order() -> None:
    """QVL's EnclaveIdentityV2::getTcbStatus walks the signed list and takes the first level
    whose ISVSVN is <= the QE's: with [2 OutOfDate, 8 UpToDate] a QE at ISVSVN 8 is OutOfDate
    (sorting first would say UpToDate)."""
    f = forge(qe_levels=QE_ASCENDING, qe_isvsvn=8)
    result = verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at)
    assert (result.qe_status, result.status) == ("OutOfDate", "OutOfDate")
    assert result.advisory_ids == ("INTEL-SA-00615",)
    ident = f.collateral.parse_qe_identity()
    assert ident.match(8) is ident.levels[0] and ident.match(1) is None
    descending = forge(qe_levels=QE_ASCENDING[::-1], qe_isvsvn=8)
    again = verify_quote(descending.quote, descending.collateral, trusted_roots=f.roots, at=f.at)
    assert (again.qe_status, again.status) == ("UpToDate", "UpToDate")
