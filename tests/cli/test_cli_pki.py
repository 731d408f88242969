"""`enclavekit pki root` (the emulated trust root of a VM's PCK chain) and `quote sample`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from enclavekit.cli import main
from enclavekit.dcap.quote import Quote
from enclavekit.errors import DeviceUnavailable
from enclavekit.host import VM
from enclavekit.vm.provisioning import Provisioning


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_vm_create_issues_a_pck_and_pki_root_exports_its_root(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert run("vm", "--data-dir", d, "create", "dev", "--size", "DC1s_v2")[0] == 0
    assert (tmp_path / "vms" / "dev" / "pck.pem").is_file()
    out_file = tmp_path / "root.pem"
    code, _, err = run("pki", "--data-dir", d, "root", "--vm", "dev", "-o", str(out_file))
    assert code == 0, err
    assert "SHA-256 of DER" in err
    root = x509.load_pem_x509_certificate(out_file.read_bytes())
    assert "not Intel" in root.subject.rfc4514_string()
    leaf = Provisioning.open(tmp_path).pck_certificate("dev")
    chain = x509.load_pem_x509_certificates(Provisioning.open(tmp_path).pck_chain_pem("dev"))
    assert chain[-1] == root
    chain[1].verify_directly_issued_by(root)
    assert chain[0] == leaf
    code, out, _ = run("pki", "--data-dir", d, "root", "--vm", "dev")
    assert code == 0 and x509.load_pem_x509_certificate(out.encode()) == root


def test_unknown_vm_is_one_line_error(tmp_path: Path) -> None:
    code, _, err = run("pki", "--data-dir", str(tmp_path), "root", "--vm", "ghost", "-o",
                       str(tmp_path / "x.pem"))
    assert code == 1
    assert err.strip().splitlines() == [
        f"Error: VMNotFound: no VM named 'ghost' in {tmp_path}; create it with "
        "'enclavekit vm create ghost'"]
    assert not (tmp_path / "x.pem").exists()


def test_corrupt_pki_is_one_line_error(tmp_path: Path) -> None:
    d = str(tmp_path)
    run("vm", "--data-dir", d, "create", "dev", "--size", "DC1s_v2")
    (tmp_path / "pki" / "root.pem").write_text("garbage")
    code, _, err = run("pki", "--data-dir", d, "root", "--vm", "dev")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "ProvisioningError" in err


def test_env_home_selects_the_pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVEKIT_HOME", str(tmp_path))
    assert run("vm", "create", "envvm", "--size", "DC1s_v2")[0] == 0
    code, out, _ = run("pki", "root", "--vm", "envvm")
    assert code == 0
    assert x509.load_pem_x509_certificate(out.encode()) == Provisioning.open(
        tmp_path).root_certificate


def test_quote_sample_writes_a_quote_of_the_sample_enclave(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert run("vm", "--data-dir", d, "create", "dev", "--size", "DC1s_v2")[0] == 0
    out = tmp_path / "q.bin"
    code, _, err = run("quote", "sample", "--vm", "dev", "--data-dir", d, "--report-data",
                       "00ff" * 4, "-o", str(out))
    assert code == 0, err
    assert "REPORTDATA 00ff00ff00ff00ff" in err
    q = Quote.parse(out.read_bytes())
    assert q.version == 3
    assert q.body.reportdata == bytes.fromhex("00ff" * 4).ljust(64, b"\0")
    chain = q.certification_data.pck_chain()
    assert chain[0] == Provisioning.open(tmp_path).pck_certificate("dev")
    with pytest.raises(DeviceUnavailable):  # the device started for the command is gone
        VM.open("dev", d)
    code, _, err = run("quote", "sample", "--vm", "dev", "--data-dir", d, "--version", "4",
                       "-o", str(out))
    assert code == 0, err
    assert Quote.parse(out.read_bytes()).version == 4


@pytest.mark.parametrize("args, message", [
    (["--report-data", "zz"], "not hexadecimal"),
    (["--report-data", "00" * 65], "65 bytes; at most 64"),
])
def test_quote_sample_bad_report_data_is_a_usage_error(tmp_path: Path, args: list[str],
                                                       message: str) -> None:
    code, _, err = run("quote", "sample", "--vm", "dev", "--data-dir", str(tmp_path), *args,
                       "-o", str(tmp_path / "q"))
    assert code == 2 and message in err


def test_quote_sample_unknown_vm(tmp_path: Path) -> None:
    code, _, err = run("quote", "sample", "--vm", "ghost", "--data-dir", str(tmp_path),
                       "-o", str(tmp_path / "q"))
    assert code == 1 and "VMNotFound: no VM named 'ghost'" in err


def test_demo_checks_the_enclave_with_a_quote(tmp_path: Path) -> None:
    """`enclavekit demo` (item 6; issue 6 item 4): the compute enclave's quote is verified by
    the demo's attestation service before the key service releases the owners' keys, and a
    verifier pinned to Intel's root refuses it; the full demo checks are tests/cli/test_demo.py."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ENCLAVEKIT_HOME": str(tmp_path), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "enclavekit", "demo"], env=env, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # the default VM is a development platform: its TCB says so and the policy names it
    assert "debuggable False, TCB ConfigurationNeeded ['EK-DEV-0001']" in out
    assert "VM default: development platform: the host user holds its secrets" in out
    assert "development mode: the policy allows advisory EK-DEV-0001 by name" in out
    assert "refuses the same quote (QV-12): CertificateChainError" in out
    assert out.index("joint_stats: token ← attest") < out.index("wrapped key alice")


def test_pki_show_prints_the_certified_tcb_and_identity(tmp_path: Path) -> None:
    import json

    from enclavekit.vm.platform import PlatformStore

    d = str(tmp_path)
    assert run("vm", "--data-dir", d, "create", "dev", "--size", "DC1s_v2")[0] == 0
    ident = PlatformStore(tmp_path).load("dev")
    code, out, err = run("pki", "--data-dir", d, "show", "--vm", "dev", "--json")
    assert code == 0, err
    doc = json.loads(out)
    prov = Provisioning.open(tmp_path)
    assert doc["ppid"] == ident.ppid.hex() and doc["cpusvn"] == ident.cpusvn.hex()
    assert doc["tcb_components"] == list(ident.cpusvn) and doc["pcesvn"] == ident.pcesvn
    assert doc["fmspc"] == "00ee0a000000" and doc["pceid"] == "0000" and doc["sgx_type"] == 0
    assert doc["development"] is True
    assert int(doc["serial"], 16) == prov.pck_certificate("dev").serial_number
    assert "not Intel" in doc["subject"] and "not Intel" in doc["root_subject"]
    assert doc["arch_mrsigner"] == prov.arch_signer().mrsigner().hex()
    code, out, _ = run("pki", "--data-dir", d, "show", "--vm", "dev")
    assert code == 0 and "fmspc           00ee0a000000" in out
    assert "development platform: the host user holds its secrets" in out  # what the FMSPC says
    code, _, err = run("pki", "--data-dir", d, "show", "--vm", "ghost")
    assert code == 1 and "VMNotFound" in err
