"""Operator actions: TCB recovery (platform file, PCK re-issue, new level, OutOfDate below,
evaluation number), revocation of every PCK a VM held, collateral export."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from enclavekit.attest.pccs.operator import Operator
from enclavekit.attest.pccs.state import StateStore
from enclavekit.dcap.pckext import PckExtension
from enclavekit.errors import ProvisioningError, VMNotFound
from enclavekit.vm.platform import DEFAULT_CPUSVN, DEFAULT_PCESVN, PlatformStore
from enclavekit.vm.provisioning import Provisioning
from tests.vectors import vector

from ._pccs import Clock, signed_by


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    PlatformStore(tmp_path).create("a", "Standard_DC1s_v2")
    return tmp_path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def op(data_dir: Path, clock: Clock) -> Operator:
    return Operator(data_dir, clock)


def _tcb_levels(op: Operator) -> list[tuple[list[int], int, str, list[str]]]:
    text = op.collateral("a")["tcb_info"]
    return [([c["svn"] for c in lv["tcb"]["sgxtcbcomponents"]], lv["tcb"]["pcesvn"],
             lv["tcbStatus"], lv.get("advisoryIDs", [])) for lv in json.loads(text)["tcbLevels"]]


def test_recovery_raises_the_platform_reissues_its_pck_and_publishes(op: Operator,
                                                                     data_dir: Path) -> None:
    prov = Provisioning.open(data_dir)
    old_cert = prov.pck_certificate("a")
    before = op.status().publication
    done = op.recover("a", pcesvn=DEFAULT_PCESVN + 1, advisory="ENCLAVEKIT-SA-0001")
    ident = PlatformStore(data_dir).load("a")
    assert (ident.cpusvn, ident.pcesvn) == (DEFAULT_CPUSVN, DEFAULT_PCESVN + 1)
    new_cert = Provisioning.open(data_dir).pck_certificate("a")
    assert new_cert.serial_number == done.pck_serial != old_cert.serial_number
    ext = PckExtension.from_certificate(new_cert)
    assert (ext.pcesvn, ext.tcb_components) == (DEFAULT_PCESVN + 1, tuple(DEFAULT_CPUSVN))
    base = list(DEFAULT_CPUSVN)
    # VM "a" is a development platform: its levels are published with EK-DEV-0001
    assert _tcb_levels(op) == [
        (base, DEFAULT_PCESVN + 1, "ConfigurationNeeded", ["EK-DEV-0001"]),
        (base, DEFAULT_PCESVN, "OutOfDateConfigurationNeeded",
         ["EK-DEV-0001", "ENCLAVEKIT-SA-0001"])]
    after = op.status()
    assert after.state.tcb_evaluation_data_number == done.tcb_evaluation_data_number == 2
    assert json.loads(op.collateral("a")["tcb_info"])["tcbEvaluationDataNumber"] == 2
    assert json.loads(op.collateral("a")["qe_identity"])["tcbEvaluationDataNumber"] == 2
    assert after.publication.crl_number > before.crl_number
    assert set(after.state.pck_serials["a"]) == {old_cert.serial_number, new_cert.serial_number}


def test_recovery_of_cpusvn_components(op: Operator, data_dir: Path) -> None:
    raised = bytearray(DEFAULT_CPUSVN)
    raised[0] += 2
    raised[6] += 1
    op.recover("a", cpusvn=bytes(raised), advisory="EK-2")
    ext = PckExtension.from_certificate(Provisioning.open(data_dir).pck_certificate("a"))
    assert ext.cpusvn == bytes(raised) and ext.tcb_components == tuple(raised)
    levels = _tcb_levels(op)
    assert levels[0] == (list(raised), DEFAULT_PCESVN, "ConfigurationNeeded", ["EK-DEV-0001"])
    assert levels[1][2:] == ("OutOfDateConfigurationNeeded", ["EK-DEV-0001", "EK-2"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pcesvn": DEFAULT_PCESVN - 1}, "PCESVN would go from 13 to 12"),
    ({"cpusvn": bytes([6]) + DEFAULT_CPUSVN[1:]}, "CPUSVN component 1 would go from 7 to 6"),
    ({"pcesvn": DEFAULT_PCESVN}, "already at CPUSVN"),
    ({}, "already at CPUSVN"),
    ({"cpusvn": bytes(15)}, "CPUSVN must be 16 bytes"),
    ({"pcesvn": 70000}, "PCESVN must be in 0..65535"),
    ({"pcesvn": DEFAULT_PCESVN + 1, "advisory": "bad id"}, "advisory id 'bad id'"),
])
def test_refused_recoveries_change_nothing(op: Operator, data_dir: Path,
                                           kwargs: dict[str, object], message: str) -> None:
    before_state = StateStore(data_dir).load()
    before_ident = PlatformStore(data_dir).load("a")
    with pytest.raises(ProvisioningError, match=message):
        op.recover("a", **{"advisory": "EK-1", **kwargs})  # type: ignore[arg-type]
    assert StateStore(data_dir).load().tcb_levels == before_state.tcb_levels
    assert PlatformStore(data_dir).load("a") == before_ident


def test_unknown_vm(op: Operator) -> None:
    with pytest.raises(VMNotFound):
        op.recover("nope", pcesvn=20, advisory="EK-1")
    with pytest.raises(VMNotFound):
        op.revoke("nope")
    with pytest.raises(VMNotFound):
        op.collateral("nope")


def test_a_recovery_interrupted_after_publishing_can_be_finished(
        op: Operator, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: PlatformStore, identity: object) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(PlatformStore, "save", crash)
    with pytest.raises(OSError, match="power lost"):
        op.recover("a", pcesvn=DEFAULT_PCESVN + 1, advisory="EK-1")
    monkeypatch.undo()
    assert PlatformStore(data_dir).load("a").pcesvn == DEFAULT_PCESVN  # the platform is not raised
    op.recover("a", pcesvn=DEFAULT_PCESVN + 1, advisory="EK-1")  # the same command finishes it
    assert PlatformStore(data_dir).load("a").pcesvn == DEFAULT_PCESVN + 1
    ext = PckExtension.from_certificate(Provisioning.open(data_dir).pck_certificate("a"))
    assert ext.pcesvn == DEFAULT_PCESVN + 1
    assert [lv[1:3] for lv in _tcb_levels(op)] == [
        (DEFAULT_PCESVN + 1, "ConfigurationNeeded"),
        (DEFAULT_PCESVN, "OutOfDateConfigurationNeeded")]


def test_revocation_lists_every_pck_the_vm_held(op: Operator, data_dir: Path) -> None:
    first = Provisioning.open(data_dir).pck_certificate("a").serial_number
    op.recover("a", pcesvn=DEFAULT_PCESVN + 1, advisory="EK-1")
    second = Provisioning.open(data_dir).pck_certificate("a").serial_number
    assert op.revoke("a") == sorted([first, second])
    crl = x509.load_der_x509_crl(bytes.fromhex(op.collateral("a")["pck_crl"]))
    assert {r.serial_number for r in crl} == {first, second}
    assert op.revoke("a") == []  # already revoked: nothing new, no error
    assert [(r.serial, r.vm) for r in op.status().state.revoked] == [
        (s, "a") for s in (first, second)]


def test_revocation_of_one_vm_leaves_another(op: Operator, data_dir: Path) -> None:
    PlatformStore(data_dir).create("b", "Standard_DC1s_v2")
    prov = Provisioning.open(data_dir)
    op.revoke("a")
    crl = x509.load_der_x509_crl(bytes.fromhex(op.collateral("b")["pck_crl"]))
    assert crl.get_revoked_certificate_by_serial_number(
        prov.pck_certificate("b").serial_number) is None
    assert crl.get_revoked_certificate_by_serial_number(
        prov.pck_certificate("a").serial_number) is not None


def test_collateral_export_is_the_one_object_layout_and_verifies(op: Operator,
                                                                 data_dir: Path) -> None:
    doc = op.collateral("a")
    intel = json.loads(vector("phala_dcap_qvl/sgx_quote_collateral.json").read_text())
    assert list(doc) == list(intel)
    prov = Provisioning.open(data_dir)
    assert signed_by(prov.tcb_signing_certificate, doc["tcb_info_signature"], doc["tcb_info"])
    assert signed_by(prov.tcb_signing_certificate, doc["qe_identity_signature"],
                     doc["qe_identity"])
    ident = PlatformStore(data_dir).load("a")
    assert json.loads(doc["tcb_info"])["fmspc"] == ident.fmspc.hex().upper()
    chain = x509.load_pem_x509_certificates(doc["pck_crl_issuer_chain"].encode())
    assert chain == [prov.pck_ca_certificate, prov.root_certificate]


def test_export_after_the_window_ended_is_freshly_signed(op: Operator, clock: Clock) -> None:
    first = json.loads(op.collateral("a")["tcb_info"])
    clock.advance(timedelta(days=31))
    second = json.loads(op.collateral("a")["tcb_info"])
    assert second["issueDate"] > first["nextUpdate"]
