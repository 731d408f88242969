"""What the service publishes is what the DCAP side reads: Intel's TCB info / QE identity
parsers accept it, the verifier's fetcher gets the same bytes over HTTP, the TCB level a PCK
certificate selects is the one the operator published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enclavekit.attest.pccs.app import create_app
from enclavekit.attest.pccs.operator import Operator
from enclavekit.attest.pccs.serve import running
from enclavekit.dcap.collateral import Collateral, fetch
from enclavekit.dcap.pckext import PckExtension
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning

from ._pccs import Clock


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    PlatformStore(tmp_path).create("a", "Standard_DC1s_v2")
    return tmp_path


def test_exported_collateral_parses_as_intels_formats(data_dir: Path) -> None:
    op = Operator(data_dir, Clock())
    coll = Collateral.from_json(json.dumps(op.collateral("a")))
    tcb = coll.parse_tcb_info()
    assert (tcb.id, tcb.version, tcb.pce_id) == ("SGX", 3, b"\0\0")
    assert tcb.fmspc == bytes.fromhex("00ee0a000000")
    qe = coll.parse_qe_identity()
    assert qe.mrsigner == Provisioning.open(data_dir).arch_signer().mrsigner()
    assert (qe.id, qe.isvprodid) == ("QE", 1)
    assert qe.attributes_mask.hex() == "fbffffffffffffff0000000000000000"
    ext = PckExtension.from_certificate(Provisioning.open(data_dir).pck_certificate("a"))
    level = tcb.match(ext.tcb_components, ext.pcesvn)  # VM a is a development platform
    assert level is not None and level.status == "ConfigurationNeeded"
    assert level.advisory_ids == ("EK-DEV-0001",)


def test_after_recovery_the_old_pck_selects_out_of_date(data_dir: Path) -> None:
    op = Operator(data_dir, Clock())
    old = PckExtension.from_certificate(Provisioning.open(data_dir).pck_certificate("a"))
    op.recover("a", pcesvn=old.pcesvn + 1, advisory="ENCLAVEKIT-SA-0007")
    tcb = Collateral.from_json(json.dumps(op.collateral("a"))).parse_tcb_info()
    level = tcb.match(old.tcb_components, old.pcesvn)
    assert level is not None and level.status == "OutOfDateConfigurationNeeded"
    assert level.advisory_ids == ("EK-DEV-0001", "ENCLAVEKIT-SA-0007")
    new = PckExtension.from_certificate(Provisioning.open(data_dir).pck_certificate("a"))
    top = tcb.match(new.tcb_components, new.pcesvn)
    assert top is not None and top.status == "ConfigurationNeeded"


def test_fetching_from_the_service_gives_the_exported_bytes(data_dir: Path) -> None:
    op = Operator(data_dir)
    exported = Collateral.from_json(json.dumps(op.collateral("a")))
    with running(create_app(op.publisher)) as url:
        fetched = fetch(url, PlatformStore(data_dir).load("a").fmspc)
    assert fetched.to_dict() == exported.to_dict()
