"""`enclavekit pccs`: collateral export, recover, revoke and status against a data directory."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner
from cryptography import x509

from enclavekit.cli import main
from enclavekit.host.vm import VM
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def d(tmp_path: Path) -> str:
    PlatformStore(tmp_path).create("a", "Standard_DC1s_v2")
    return str(tmp_path)


def test_collateral_writes_the_one_object_json(d: str, tmp_path: Path) -> None:
    out_file = tmp_path / "c.json"
    code, out, err = run("pccs", "--data-dir", d, "collateral", "--vm", "a", "-o", str(out_file))
    assert code == 0, err
    assert "wrote collateral for VM a" in out
    doc = json.loads(out_file.read_text())
    assert sorted(doc) == sorted([
        "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
        "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature"])
    level = json.loads(doc["tcb_info"])["tcbLevels"][0]  # VM a is a development platform
    assert (level["tcbStatus"], level["advisoryIDs"]) == ("ConfigurationNeeded", ["EK-DEV-0001"])


def test_recover_revoke_status(d: str) -> None:
    code, out, err = run("pccs", "--data-dir", d, "recover", "--vm", "a", "--pcesvn", "14",
                         "--advisory", "ENCLAVEKIT-SA-0001")
    assert code == 0, err
    assert "PCESVN 13 -> 14" in out and "tcbEvaluationDataNumber 2" in out
    assert "the next device started for VM a quotes at the new TCB" in out
    code, out, err = run("pccs", "--data-dir", d, "recover", "--vm", "a",
                         "--cpusvn", "08090303ffff01000000000000000000", "--advisory", "EK-2")
    assert code == 0, err
    assert "CPUSVN 07090303ffff01000000000000000000 -> 08090303ffff01000000000000000000" in out
    code, out, err = run("pccs", "--data-dir", d, "revoke", "--vm", "a")
    assert code == 0 and "revoked PCK serial(s)" in out
    serials = out.split("serial(s) ")[1].strip().split(", ")
    assert len(serials) == 3  # the creation-time PCK and the two re-issued ones
    code, out, _ = run("pccs", "--data-dir", d, "revoke", "--vm", "a")
    assert code == 0 and "already revoked" in out
    code, out, _ = run("pccs", "--data-dir", d, "status", "--json")
    status = json.loads(out)
    assert status["tcbEvaluationDataNumber"] == 3
    dev = [lv for lv in status["tcbLevels"] if lv["fmspc"] == "00EE0A000000"]
    assert [lv["tcbStatus"] for lv in dev] == ["ConfigurationNeeded",
                                               "OutOfDateConfigurationNeeded",
                                               "OutOfDateConfigurationNeeded"]
    assert dev[2]["advisoryIDs"] == ["EK-DEV-0001", "ENCLAVEKIT-SA-0001", "EK-2"]
    platform = [lv for lv in status["tcbLevels"] if lv["fmspc"] == "00EE0B000000"]
    assert [lv["tcbStatus"] for lv in platform] == ["UpToDate"]
    assert sorted(r["serial"] for r in status["revoked"]) == sorted(serials)
    current = Provisioning.open(Path(d)).pck_certificate("a").serial_number
    assert f"{current:x}" in serials
    code, out, _ = run("pccs", "--data-dir", d, "status")
    assert code == 0 and "tcbEvaluationDataNumber 3" in out and "OutOfDate" in out
    assert serials[0] in out


def test_recover_tells_to_stop_and_start_a_running_device(d: str) -> None:
    vm = VM.start("a", d)
    try:
        code, out, err = run("pccs", "--data-dir", d, "recover", "--vm", "a", "--pcesvn", "14",
                             "--advisory", "EK-1")
    finally:
        vm.stop()
    assert code == 0, err
    assert "enclavekit vm restart a" in out


def test_serve_window_days_sets_the_published_window(d: str) -> None:
    with mock.patch("enclavekit.cli.pccs.run") as served:
        code, _, err = run("pccs", "--data-dir", d, "serve", "--port", "0", "--window-days", "7")
    assert code == 0, err
    assert served.called
    _, out, _ = run("pccs", "--data-dir", d, "status", "--json")
    status = json.loads(out)
    issue = datetime.fromisoformat(status["issueDate"].replace("Z", "+00:00"))
    nxt = datetime.fromisoformat(status["nextUpdate"].replace("Z", "+00:00"))
    assert nxt - issue == timedelta(days=7)


def test_status_of_a_fresh_data_directory(tmp_path: Path) -> None:
    code, out, err = run("pccs", "--data-dir", str(tmp_path), "status")
    assert code == 0, err
    assert "UpToDate" in out and "no revoked PCK certificates" in out


@pytest.mark.parametrize(("args", "message"), [
    (["recover", "--vm", "a", "--advisory", "EK-1"], "give --cpusvn and/or --pcesvn"),
    (["recover", "--vm", "a", "--cpusvn", "zz", "--advisory", "EK-1"], "is not hex"),
    (["recover", "--vm", "a", "--cpusvn", "00", "--advisory", "EK-1"], "16 bytes"),
    (["recover", "--vm", "a", "--pcesvn", "70000", "--advisory", "EK-1"], "70000"),
])
def test_usage_errors_exit_2(d: str, args: list[str], message: str) -> None:
    code, _, err = run("pccs", "--data-dir", d, *args)
    assert code == 2 and message in err


@pytest.mark.parametrize(("args", "message"), [
    (["recover", "--vm", "a", "--pcesvn", "12", "--advisory", "EK-1"],
     "ProvisioningError: a TCB recovery never lowers the TCB"),
    (["recover", "--vm", "a", "--pcesvn", "14", "--advisory", "no spaces"],
     "ProvisioningError: advisory id"),
    (["revoke", "--vm", "zz"], "VMNotFound: no VM named 'zz'"),
    (["collateral", "--vm", "zz", "-o", "/dev/null"], "VMNotFound"),
])
def test_refusals_are_one_line_and_exit_1(d: str, args: list[str], message: str) -> None:
    code, _, err = run("pccs", "--data-dir", d, *args)
    assert code == 1 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_revoked_pck_is_in_the_exported_crl(d: str, tmp_path: Path) -> None:
    run("pccs", "--data-dir", d, "revoke", "--vm", "a")
    out_file = tmp_path / "c.json"
    run("pccs", "--data-dir", d, "collateral", "--vm", "a", "-o", str(out_file))
    crl = x509.load_der_x509_crl(bytes.fromhex(json.loads(out_file.read_text())["pck_crl"]))
    serial = Provisioning.open(Path(d)).pck_certificate("a").serial_number
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
