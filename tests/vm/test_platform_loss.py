"""Platform loss (issue 4 item 5): ``vm restart`` / ``VM.restart()`` and ``kill -9`` of the
device are power events — running enclaves are lost (EnclaveLost saying to reload), new
enclaves load, per-boot keys change, and data sealed with ``seal`` (MRENCLAVE policy)
before the event unseals in a fresh instance; no durable state is lost."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from enclavekit.cli import main as cli
from enclavekit.errors import EnclaveKitError, EnclaveLost
from enclavekit.host import VM, EnclaveFile
from enclavekit.vm.platform import PlatformStore
from tests.host.test_vm import alive, wait_gone
from tests.sgx.conftest import session_signing_key
from tests.vm._device import signed_image

KEYS = '''

@ecall
def seal_blob(data: bytes) -> bytes:
    from enclavekit.enclave import SealPolicy, seal

    return seal(data, SealPolicy.MRENCLAVE)


@ecall
def unseal_blob(blob: bytes) -> bytes:
    from enclavekit.enclave import unseal

    return unseal(blob).data


@ecall
def report_keyid() -> bytes:
    from enclavekit.enclave import report, target_info
    from enclavekit.sgx.structs import Report

    return Report.from_bytes(report(target_info(), b"")).keyid
'''

VM_NAME = "lossvm"


@pytest.fixture()
def image(tmp_path: Path) -> EnclaveFile:
    return signed_image(tmp_path, session_signing_key(), "keys", extra=KEYS)


@pytest.fixture()
def store(tmp_path: Path) -> PlatformStore:
    s = PlatformStore(tmp_path / "data")
    s.create(VM_NAME, "Standard_DC1s_v2")
    return s


@pytest.fixture()
def vm(store: PlatformStore) -> Iterator[VM]:
    machine = VM.start(VM_NAME, store.root)
    try:
        yield machine
    finally:
        if alive(machine.pid):
            machine.stop()
        machine.close()


def enclave_pids(vm: VM) -> list[int]:
    return [e.pid for e in vm.status().enclaves]


def test_restart_loses_running_enclaves_and_sealed_data_survives(
        vm: VM, image: EnclaveFile) -> None:
    enclave = vm.load(image)
    blob, report = enclave.ecalls.seal_blob(b"state"), enclave.ecalls.report_keyid()
    [old_pid] = enclave_pids(vm)
    device_pid = vm.pid
    assert vm.restart() == 1
    assert wait_gone(old_pid)  # the enclave's process died with the power
    assert vm.status().enclaves == []
    with pytest.raises(EnclaveLost, match=r"lost power \(vm restart\); load it again"):
        enclave.ecalls.add(1, 2)
    with pytest.raises(EnclaveLost, match="load it again"):  # and stays lost
        enclave.ecalls.add(1, 2)
    enclave.close()
    assert vm.pid == device_pid and alive(device_pid)  # same device, new boot
    with vm.load(image) as again:
        assert again.ecalls.add(2, 3) == 5
        assert again.ecalls.unseal_blob(blob) == b"state"  # sealed data still unseals
        assert again.ecalls.report_keyid() != report  # per-boot CR_REPORT_KEYID changed


def test_restart_of_an_idle_vm_and_from_another_connection(vm: VM, store: PlatformStore,
                                                           image: EnclaveFile) -> None:
    assert vm.restart() == 0
    enclave = vm.load(image)
    result = CliRunner().invoke(cli, ["vm", "--data-dir", str(store.root), "restart", VM_NAME])
    assert result.exit_code == 0, result.output
    assert "1 running enclave(s) lost power" in result.output
    with pytest.raises(EnclaveLost, match=r"lost power \(vm restart\)"):
        enclave.ecalls.add(1, 2)


def test_cli_restart_starts_a_stopped_vm(store: PlatformStore) -> None:
    result = CliRunner().invoke(cli, ["vm", "--data-dir", str(store.root), "restart", VM_NAME])
    assert result.exit_code == 0, result.output
    assert "it was not running" in result.output
    vm = VM.open(VM_NAME, store.root)
    vm.stop()


def test_kill_9_of_the_device_is_a_power_loss_without_durable_loss(
        vm: VM, store: PlatformStore, image: EnclaveFile) -> None:
    platform = store.path(VM_NAME).read_bytes()
    enclave = vm.load(image)
    blob = enclave.ecalls.seal_blob(b"durable")
    [enclave_pid] = enclave_pids(vm)
    os.kill(vm.pid, signal.SIGKILL)
    assert wait_gone(vm.pid, enclave_pid)  # the enclave dies with its device (PDEATHSIG)
    with pytest.raises(EnclaveLost, match=r"lost power.*load it again"):
        enclave.ecalls.add(1, 2)
    with pytest.raises(EnclaveKitError):
        vm.status()
    assert store.path(VM_NAME).read_bytes() == platform  # platform.json intact
    again = VM.start(VM_NAME, store.root)  # the VM restarts (stale lock, socket, device.json)
    try:
        with again.load(image) as fresh:
            assert fresh.ecalls.unseal_blob(blob) == b"durable"
    finally:
        again.stop()
