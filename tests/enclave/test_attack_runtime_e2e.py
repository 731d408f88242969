"""Runtime attacks through a real device and real enclave processes (attacks.md RT-3, RT-5,
RT-6, RT-9): the host's environment, signals, fork and host-visible residue."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclavekit.errors import EcallError
from enclavekit.host import VM, Enclave, build
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

SECRET = "TOKEN-7f3a9c-in-enclave-source"

APP = f'''
import os
import sys

from enclavekit.enclave import ecall

_SECRET = "{SECRET}"


@ecall
def environment() -> list[str]:
    return sorted(os.environ)


@ecall
def path() -> list[str]:
    return list(sys.path)


@ecall
def can_import(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


@ecall
def add(a: int, b: int) -> int:
    return a + b


@ecall
def fork() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return pid


@ecall
def crash() -> None:
    secret_local = _SECRET
    raise RuntimeError("boom " + str(len(secret_local)))
'''

TOML = ('name = "probe"\nentry = "app.py"\ndebug = false\nheap_size = "256K"\n'
        'stack_size = "64K"\nthreads = 2\n')


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = tmp_path_factory.mktemp("probe")
    (app / "enclave.toml").write_text(TOML)
    (app / "app.py").write_text(APP)
    path = app / "probe.enclave"
    build(app).sign(session_signing_key()).save(path)
    return path


@pytest.fixture()
def hostile_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's environment an attacker controls: paths, start-up hooks, a sitecustomize."""
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "hook-ran"
    hook = f"open({str(marker)!r}, 'w').write('ran')\n"
    (evil / "sitecustomize.py").write_text(hook)
    (evil / "usercustomize.py").write_text(hook)
    (evil / "evilmod.py").write_text(hook)
    (evil / "startup.py").write_text(hook)
    for name, value in {
        "PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil / "startup.py"),
        "PYTHONHOME": str(evil), "PYTHONINSPECT": "1", "PYTHONBREAKPOINT": "evilmod.hook",
        "PYTHONUSERBASE": str(evil), "LD_PRELOAD": str(evil / "nothing.so"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(evil)  # the device's cwd holds an importable module too
    return marker


@pytest.fixture()
def enclave(tmp_path: Path, image: Path) -> Iterator[tuple[Enclave, VM]]:
    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, vm.load(image) as enc:
        yield enc, vm


def _pid(vm: VM, enc: Enclave) -> int:
    for status in vm.status().enclaves:
        if status.enclave_id == enc.enclave_id:
            return status.pid
    raise AssertionError("enclave not in STATUS")


def test_rt3_host_environment_and_paths_do_not_reach_the_enclave(
        hostile_env: Path, tmp_path: Path, image: Path) -> None:
    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, vm.load(image) as enc:
        names = enc.ecalls.environment()
        assert not [n for n in names if n.startswith("PYTHON") or n == "LD_PRELOAD"]
        assert str(tmp_path / "evil") not in enc.ecalls.path()
        assert enc.ecalls.can_import("evilmod") is False
        assert enc.ecalls.can_import("sitecustomize") is False
        assert enc.ecalls.can_import("json") is True  # the pinned interpreter's stdlib
        assert enc.ecalls.can_import("numpy") is False  # installed on the host, not pinned
    assert not hostile_env.exists(), "a host start-up hook ran inside the enclave"


def test_rt5_host_signals_are_ignored_and_calls_stay_correct(
        enclave: tuple[Enclave, VM]) -> None:
    enc, vm = enclave
    pid = _pid(vm, enc)
    sent = 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGQUIT, signal.SIGALRM, signal.SIGPIPE):
        for i in range(50):
            os.kill(pid, sig)
            sent += 1
            assert enc.ecalls.add(i, int(sig)) == i + int(sig)
    time.sleep(0.05)
    assert enc.ecalls.add(20, 22) == 42
    assert Path(f"/proc/{pid}").exists()
    assert sent == 400


def test_rt6_fork_inside_the_enclave_is_refused(enclave: tuple[Enclave, VM]) -> None:
    enc, _ = enclave
    with pytest.raises(EcallError, match="fork"):
        enc.ecalls.fork()
    assert enc.ecalls.add(1, 1) == 2


def test_rt9_no_residue_on_host_visible_storage_or_stderr(
        enclave: tuple[Enclave, VM], tmp_path: Path, image: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    enc, _ = enclave
    with pytest.raises(EcallError, match="boom") as info:
        enc.ecalls.crash()
    assert "Traceback" not in str(info.value)
    assert SECRET not in str(info.value)
    assert enc.ecalls.add(2, 3) == 5
    out, err = capfd.readouterr()
    assert SECRET not in out + err and "Traceback" not in out + err
    assert not list(image.parent.rglob("*.pyc")), "compiled enclave code next to its source"
    scanned = 0
    for path in tmp_path.rglob("*"):  # the VM's data directory and sockets
        assert path.suffix != ".pyc", path
        if path.is_file():
            scanned += 1
            assert SECRET.encode() not in path.read_bytes(), path
    assert scanned > 0
