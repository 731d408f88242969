"""Remote attestation end to end (issue 5 item 6), every party its own process.

An enclave on VM ``a`` quotes a fresh nonce (``enclavekit quote sample``); a verifier in another
process (``enclavekit quote verify --pccs URL --trust-root root.pem --json``), holding only the
emulation root and the collateral service's URL, accepts it UpToDate. The operator then runs a
TCB recovery (``enclavekit pccs recover``): the same old quote now verifies OutOfDate with the
advisory, a new quote from the restarted platform UpToDate. After ``enclavekit pccs revoke``
both are refused (``pck_revoked``). A verifier pinned to Intel's root refuses the emulated quote
and one pinned to the emulation root refuses a real Intel quote (QV-12).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enclavekit.attest.pccs.app import create_app
from enclavekit.attest.pccs.publish import Publisher
from enclavekit.attest.pccs.serve import running
from enclavekit.vm.platform import DEFAULT_CPUSVN, DEFAULT_PCESVN, PlatformStore
from tests.vectors import vector


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENCLAVEKIT_HOME": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "enclavekit", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc


def _verify(data_dir: Path, quote: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = _cli(data_dir, "quote", "verify", str(quote), *args, "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _sample(data_dir: Path, out: Path) -> bytes:
    nonce = secrets.token_bytes(32)
    _ok(_cli(data_dir, "quote", "sample", "--vm", "a", "--report-data", nonce.hex(),
             "-o", str(out)))
    return nonce


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    PlatformStore(tmp_path).create("a", "Standard_DC1s_v2")
    return tmp_path


@pytest.fixture
def pccs(data_dir: Path) -> Iterator[str]:
    with running(create_app(Publisher.open(data_dir))) as url:
        yield url


def test_quote_verified_remotely_then_recovered_then_revoked(data_dir: Path, pccs: str,
                                                              tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    _ok(_cli(data_dir, "pki", "root", "--vm", "a", "-o", str(root)))
    old_quote = tmp_path / "old.quote"
    nonce = _sample(data_dir, old_quote)
    trust = ("--pccs", pccs, "--trust-root", str(root))

    code, verdict = _verify(data_dir, old_quote, *trust)
    assert code == 0, verdict
    # VM a is a development platform: its quotes carry EK-DEV-0001
    assert verdict["status"] == "ConfigurationNeeded" and verdict["advisory_ids"] == [
        "EK-DEV-0001"]
    assert verdict["report_data"] == (nonce + bytes(32)).hex()
    assert verdict["debug"] is False and verdict["fmspc"] == "00ee0a000000"
    assert verdict["pcesvn"] == DEFAULT_PCESVN
    assert len(verdict["mrenclave"]) == len(verdict["mrsigner"]) == 64

    # QV-12: the same quote and service, but a verifier pinned to Intel's root only
    code, refused = _verify(data_dir, old_quote, "--pccs", pccs)
    assert code == 1 and refused["error"] == "root_untrusted"

    # TCB recovery: the old quote is now OutOfDate with the advisory
    _ok(_cli(data_dir, "pccs", "recover", "--vm", "a", "--pcesvn", str(DEFAULT_PCESVN + 1),
             "--advisory", "ENCLAVEKIT-SA-0001"))
    code, verdict = _verify(data_dir, old_quote, *trust)
    assert code == 0, verdict  # every check passed; the status says what to think of it
    assert verdict["status"] == "OutOfDateConfigurationNeeded"
    assert verdict["advisory_ids"] == ["EK-DEV-0001", "ENCLAVEKIT-SA-0001"]
    assert verdict["tcb_evaluation_data_number"] == 2
    # the recovered platform's new quote (a fresh device picks up the new TCB) is UpToDate
    new_quote = tmp_path / "new.quote"
    new_nonce = _sample(data_dir, new_quote)
    code, verdict = _verify(data_dir, new_quote, *trust)
    assert code == 0 and verdict["status"] == "ConfigurationNeeded", verdict
    assert verdict["pcesvn"] == DEFAULT_PCESVN + 1
    assert verdict["report_data"] == (new_nonce + bytes(32)).hex()

    # revocation: both the old and the new quote are refused
    _ok(_cli(data_dir, "pccs", "revoke", "--vm", "a"))
    for quote in (old_quote, new_quote):
        code, refused = _verify(data_dir, quote, *trust)
        assert code == 1 and refused["error"] == "pck_revoked", refused


def test_a_real_intel_quote_is_refused_under_the_emulation_root(data_dir: Path,
                                                                  tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    _ok(_cli(data_dir, "pki", "root", "--vm", "a", "-o", str(root)))
    code, refused = _verify(data_dir, vector("phala_dcap_qvl/sgx_quote"),
                            "--collateral", str(vector("phala_dcap_qvl/sgx_quote_collateral.json")),
                            "--at", "2025-07-01T00:00:00Z", "--trust-root", str(root))
    assert code == 1 and refused["error"] == "root_untrusted"


def test_a_running_vm_quotes_at_the_recovered_tcb_after_vm_restart(data_dir: Path, pccs: str,
                                                                   tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    _ok(_cli(data_dir, "pki", "root", "--vm", "a", "-o", str(root)))
    trust = ("--pccs", pccs, "--trust-root", str(root))
    _ok(_cli(data_dir, "vm", "start", "a"))
    try:
        raised = bytes([DEFAULT_CPUSVN[0] + 1]) + DEFAULT_CPUSVN[1:]
        out = _ok(_cli(data_dir, "pccs", "recover", "--vm", "a", "--cpusvn", raised.hex(),
                       "--advisory", "ENCLAVEKIT-SA-0002")).stdout
        assert "enclavekit vm restart a" in out
        # the running processor still has the old CPUSVN: its PCE cannot derive the new PCK key
        refused = _cli(data_dir, "quote", "sample", "--vm", "a", "-o", str(tmp_path / "x"))
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "QuotingError" in refused.stderr
        _ok(_cli(data_dir, "vm", "restart", "a"))  # the power cycle loads the new TCB
        quote = tmp_path / "after-restart.quote"
        _sample(data_dir, quote)
        code, verdict = _verify(data_dir, quote, *trust)
        assert code == 0 and verdict["status"] == "ConfigurationNeeded", verdict
        assert verdict["tcb_components"] == list(raised)  # the new PCK certificate's TCB
        assert verdict["cpusvn"] == raised.hex()  # and the restarted processor's CPUSVN
    finally:
        _ok(_cli(data_dir, "vm", "stop", "a"))
