"""VM.default() and VM.start/open/stop with real device processes; killing the host leaves
no orphan device or enclave process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enclavekit.errors import DeviceUnavailable
from enclavekit.host import VM, build
from enclavekit.vm.platform import PlatformStore
from tests.sgx.conftest import session_signing_key
from tests.vm._device import make_app

pytest.importorskip("enclavekit.enclave.dispatch")

HOST = '''
import sys, time
from enclavekit.host import VM
vm = VM.default()
enc = vm.load(sys.argv[1])
assert enc.ecalls.add(2, 3) == 5
print(vm.pid, vm.status().enclaves[0].pid, flush=True)
if sys.argv[2] == "wait":
    time.sleep(60)
else:
    sys.stdin.readline()  # exit normally once the test has seen both processes alive
'''


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone): a /proc scan, no psutil."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(*pids: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "app.enclave"
    build(make_app(tmp_path)).sign(session_signing_key()).save(path)
    return path


def host(tmp_path: Path, image: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, ENCLAVEKIT_HOME=str(tmp_path / "home"))
    return subprocess.Popen([sys.executable, "-c", HOST, str(image), mode], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("mode", ["wait", "exit"])
def test_the_host_dying_leaves_no_orphans(tmp_path: Path, image: Path, mode: str) -> None:
    proc = host(tmp_path, image, mode)
    try:
        assert proc.stdout is not None
        device_pid, enclave_pid = map(int, proc.stdout.readline().split())
        assert alive(device_pid) and alive(enclave_pid)
        if mode == "wait":
            proc.send_signal(signal.SIGKILL)  # no atexit, no finalizer: the device notices
        else:
            assert proc.stdin is not None
            proc.stdin.close()  # the host exits normally: atexit stops its private device
        proc.wait(timeout=20)
        assert wait_gone(device_pid, enclave_pid), "device or enclave outlived the host"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # VM.default() created the default VM in the data directory on first use
    assert PlatformStore(tmp_path / "home").load("default").size == "Standard_DC2s_v2"


def test_start_open_stop(tmp_path: Path, image: Path) -> None:
    data = tmp_path / "data"
    PlatformStore(data).create("shared", "DC1s_v2")
    with pytest.raises(DeviceUnavailable, match="enclavekit vm start shared"):
        VM.open("shared", data)
    vm = VM.start("shared", data)
    try:
        other = VM.open("shared", data)
        enc = other.load(image)
        assert enc.ecalls.add(20, 22) == 42
        status = vm.status()
        assert [e.mrenclave for e in status.enclaves] == [enc.mrenclave]
        enclave_pid = status.enclaves[0].pid
        other.close()  # the loading connection went: the enclave is unloaded
        assert wait_gone(enclave_pid)
    finally:
        vm.stop()
    assert wait_gone(vm.pid)
    with pytest.raises(DeviceUnavailable):
        VM.open("shared", data)


def test_default_vm_uses_a_shared_device_when_one_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import enclavekit.host.vm as vm_module

    monkeypatch.setenv("ENCLAVEKIT_HOME", str(tmp_path))
    monkeypatch.setattr(vm_module, "_default", None)
    PlatformStore(tmp_path).create("default", "Standard_DC2s_v2")
    shared = VM.start("default")
    try:
        vm = VM.default()
        assert vm.pid == shared.pid  # no private device was started
        assert vm.status().name == "default"
        vm.close()
    finally:
        shared.stop()
