"""EREPORT: the body states the reporter, the MAC verifies only in the target on this platform."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import IntegrityError, InvalidStructure, SGXFault
from enclavekit.sgx.consts import AttributeFlags, KeyName
from enclavekit.sgx.keys import (
    EnclaveIdentity,
    FusedSecrets,
    egetkey,
    ereport,
    report_mac,
    verify_report,
)
from enclavekit.sgx.structs import Attributes, KeyRequest, Report, ReportBody, TargetInfo

F = AttributeFlags
CPUSVN = bytes(range(1, 17))
KEYID = b"\x5a" * 32
SECRETS = FusedSecrets(root=b"R" * 16, seal_fuses=b"F" * 16, owner_epoch=b"E" * 16)

REPORTER = EnclaveIdentity(
    mrenclave=b"\x01" * 32,
    mrsigner=b"\x02" * 32,
    attributes=Attributes(flags=F.INIT | F.MODE64BIT | F.KSS, xfrm=0x7),
    miscselect=1,
    isvprodid=10,
    isvsvn=4,
    configid=b"\x03" * 64,
    configsvn=5,
    isvfamilyid=b"\x04" * 16,
    isvextprodid=b"\x06" * 16,
    cet_attributes=2,
)
TARGET = EnclaveIdentity(
    mrenclave=b"\xa1" * 32,
    mrsigner=b"\xa2" * 32,
    attributes=Attributes(flags=F.INIT | F.MODE64BIT | F.KSS, xfrm=0x3),
    miscselect=0,
    isvprodid=1,
    isvsvn=1,
    configid=b"\xa3" * 64,
    configsvn=9,
)


def make(
    target: TargetInfo | None = None,
    reportdata: bytes = b"\x77" * 64,
    secrets: FusedSecrets = SECRETS,
) -> Report:
    info = TARGET.target_info() if target is None else target
    return ereport(secrets, CPUSVN, REPORTER, info, reportdata, KEYID)


hash32 = st.binary(min_size=32, max_size=32)
identities = st.builds(
    EnclaveIdentity,
    mrenclave=hash32,
    mrsigner=hash32,
    attributes=st.builds(
        Attributes,
        flags=st.sampled_from([F.INIT | F.MODE64BIT, F.INIT | F.DEBUG | F.MODE64BIT]),
        xfrm=st.sampled_from([0x3, 0x7, 0xE7]),
    ),
    miscselect=st.integers(0, 3),
    isvprodid=st.integers(0, 0xFFFF),
    isvsvn=st.integers(0, 0xFFFF),
)


@given(reporter=identities, target=identities, data=st.binary(min_size=64, max_size=64))
def test_report_verifies_in_its_target(
    reporter: EnclaveIdentity, target: EnclaveIdentity, data: bytes
) -> None:
    report = ereport(SECRETS, CPUSVN, reporter, target.target_info(), data, KEYID)
    verify_report(SECRETS, CPUSVN, target, Report.from_bytes(report.to_bytes()))


def test_body_states_the_reporter_and_reportdata() -> None:
    data = bytes(range(64))
    report = make(reportdata=data)
    body = report.body
    assert body.reportdata == data
    assert body.cpusvn == CPUSVN
    assert report.keyid == KEYID
    for field in (
        "mrenclave", "mrsigner", "attributes", "miscselect", "isvprodid", "isvsvn",
        "configid", "configsvn", "isvfamilyid", "isvextprodid", "cet_attributes",
    ):
        assert getattr(body, field) == getattr(REPORTER, field), field


def test_mac_is_cmac_under_the_targets_egetkey_report_key() -> None:
    report = make()
    target_key = egetkey(
        SECRETS, CPUSVN, TARGET, KeyRequest(keyname=KeyName.REPORT, keyid=KEYID)
    )
    assert report.mac == report_mac(target_key, report.body)
    own_key = egetkey(
        SECRETS, CPUSVN, REPORTER, KeyRequest(keyname=KeyName.REPORT, keyid=KEYID)
    )
    assert report.mac != report_mac(own_key, report.body)


def test_report_does_not_verify_in_another_enclave() -> None:
    with pytest.raises(IntegrityError, match="REPORT: MAC does not verify"):
        verify_report(SECRETS, CPUSVN, REPORTER, make())


@pytest.mark.parametrize(
    "change",
    [
        {"measurement": b"\xa0" * 32},
        {"attributes": Attributes(flags=F.MODE64BIT | F.KSS, xfrm=0x3)},  # INIT missing
        {"attributes": Attributes(flags=F.INIT | F.MODE64BIT | F.KSS, xfrm=0x7)},
        {"miscselect": 1},
        {"configid": b"\xa4" * 64},
        {"configsvn": 8},
        {"cet_attributes": 1},
    ],
    ids=lambda c: next(iter(c)),
)
def test_wrong_targetinfo_makes_a_report_the_target_refuses(change: dict[str, object]) -> None:
    report = make(TARGET.target_info().replace(**change))
    with pytest.raises(IntegrityError):
        verify_report(SECRETS, CPUSVN, TARGET, report)


@given(bit=st.integers(0, 384 * 8 - 1))
def test_any_body_bit_flip_is_refused(bit: int) -> None:
    report = make()
    raw = bytearray(report.to_bytes())
    raw[bit // 8] ^= 1 << (bit % 8)
    tampered = Report(
        body=ReportBody.from_bytes(raw[:384], strict=False), keyid=report.keyid, mac=report.mac
    )
    with pytest.raises(IntegrityError):
        verify_report(SECRETS, CPUSVN, TARGET, tampered)


@given(bit=st.integers(384 * 8, 432 * 8 - 1))
def test_any_keyid_or_mac_bit_flip_is_refused(bit: int) -> None:
    raw = bytearray(make().to_bytes())
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        verify_report(SECRETS, CPUSVN, TARGET, Report.from_bytes(raw))


def test_report_from_another_platform_or_boot_is_refused() -> None:
    foreign = make(secrets=FusedSecrets.generate())
    with pytest.raises(IntegrityError):
        verify_report(SECRETS, CPUSVN, TARGET, foreign)
    new_owner = FusedSecrets(SECRETS.root, SECRETS.seal_fuses, b"O" * 16)
    with pytest.raises(IntegrityError):
        verify_report(new_owner, CPUSVN, TARGET, make())
    with pytest.raises(IntegrityError):
        verify_report(SECRETS, bytes(16), TARGET, make())


def test_report_key_ignores_the_targets_signer_and_svn() -> None:
    resigned = dataclasses.replace(TARGET, mrsigner=b"\x00" * 32, isvsvn=0)
    verify_report(SECRETS, CPUSVN, resigned, make())


@pytest.mark.parametrize(
    ("field", "size"), [("reserved1", 1), ("reserved2", 8), ("reserved3", 384)]
)
def test_targetinfo_reserved_bytes_fault(field: str, size: int) -> None:
    garbled = TARGET.target_info().replace(**{field: b"\x01" + bytes(size - 1)})
    with pytest.raises(SGXFault, match=f"TARGETINFO.{field}") as info:
        make(garbled)
    assert info.value.vector == "#GP"


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_reportdata_must_be_64_bytes(size: int) -> None:
    with pytest.raises(InvalidStructure, match=f"must be 64 bytes, found {size}"):
        make(reportdata=bytes(size))


def test_keyid_and_cpusvn_sizes_are_checked() -> None:
    with pytest.raises(InvalidStructure, match="KEYID must be 32 bytes"):
        ereport(SECRETS, CPUSVN, REPORTER, TARGET.target_info(), bytes(64), bytes(16))
    with pytest.raises(InvalidStructure, match="CPUSVN"):
        ereport(SECRETS, bytes(8), REPORTER, TARGET.target_info(), bytes(64), KEYID)
    with pytest.raises(InvalidStructure, match="key must be 16 bytes"):
        report_mac(bytes(32), ReportBody())
