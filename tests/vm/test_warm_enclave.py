"""The device's pre-started ("warm") enclave process: used only for the runtime it loaded.

A LOAD whose measured manifest pins exactly the device's runtime gets the warm process and
a new one is started; any other pin gets a cold process (and still works, or is refused as
a cold start would be); a dead warm process falls back to a cold start; a warm process
handed a BOOT for another runtime refuses it; the device leaves no warm process behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from enclavekit.errors import EnclaveKitError
from enclavekit.host import VM, build
from enclavekit.host import manifest as manifest_mod
from enclavekit.host.image import EnclaveFile
from enclavekit.vm.bootstrap import runtime_files
from enclavekit.vm.device import Device
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server, make_app

WAIT = 20.0


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def _image(tmp: Path, name: str, pin: Callable[[dict[str, str]], dict[str, str]] | None,
           monkeypatch: pytest.MonkeyPatch) -> EnclaveFile:
    """A signed app whose measured runtime pin is ``pin(runtime_files())``."""
    if pin is not None:
        with monkeypatch.context() as m:
            m.setattr(manifest_mod, "runtime_files", lambda: pin(runtime_files()))
            return build(make_app(tmp, name)).sign(session_signing_key())
    return build(make_app(tmp, name)).sign(session_signing_key())


@pytest.fixture()
def device(tmp_path: Path) -> Iterator[tuple[Device, VM]]:
    with device_server(tmp_path, fake=False) as (dev, path, store), \
            VM("testvm", path, store=store) as vm:
        yield dev, vm


def test_load_uses_the_warm_process_and_a_new_one_is_started(
        tmp_path: Path, device: tuple[Device, VM], monkeypatch: pytest.MonkeyPatch) -> None:
    dev, vm = device
    image = _image(tmp_path, "app", None, monkeypatch)
    warm = dev.warm_pid(wait=WAIT)
    assert warm is not None and _running(warm)
    assert vm.status().enclaves == []  # the warm process is not an enclave
    with vm.load(image) as enc:
        assert enc.ecalls.add(2, 3) == 5
        (row,) = vm.status().enclaves
        assert row.pid == warm
        deadline = time.monotonic() + WAIT
        while dev.warm_pid(wait=0.05) in (None, warm) and time.monotonic() < deadline:
            pass
        new = dev.warm_pid()
        assert new is not None and new != warm and _running(new)
        assert len(vm.status().enclaves) == 1


def test_a_different_runtime_pin_gets_a_cold_process_that_works(
        tmp_path: Path, device: tuple[Device, VM], monkeypatch: pytest.MonkeyPatch) -> None:
    dev, vm = device

    def without_cryptography(pin: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in pin.items() if not k.startswith("cryptography/")}

    image = _image(tmp_path, "other", without_cryptography, monkeypatch)
    warm = dev.warm_pid(wait=WAIT)
    assert warm is not None
    with vm.load(image) as enc:
        assert enc.ecalls.add(1, 1) == 2
        (row,) = vm.status().enclaves
        assert row.pid != warm
    assert dev.warm_pid() == warm and _running(warm)  # kept for an enclave it fits


def test_a_different_pin_that_does_not_match_the_files_is_refused_as_a_cold_start(
        tmp_path: Path, device: tuple[Device, VM], monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    dev, vm = device

    def wrong_importer(pin: dict[str, str]) -> dict[str, str]:
        return {**pin, "enclavekit/enclave/importer.py": "00" * 32}

    image = _image(tmp_path, "bad", wrong_importer, monkeypatch)
    warm = dev.warm_pid(wait=WAIT)
    with pytest.raises(EnclaveKitError), vm.load(image) as enc:
        enc.ecalls.add(1, 1)
    assert "does not match its pin" in capfd.readouterr().err
    assert dev.warm_pid() == warm and warm is not None and _running(warm)


def test_a_dead_warm_process_falls_back_to_a_cold_start(
        tmp_path: Path, device: tuple[Device, VM], monkeypatch: pytest.MonkeyPatch) -> None:
    dev, vm = device
    image = _image(tmp_path, "app", None, monkeypatch)
    warm = dev.warm_pid(wait=WAIT)
    assert warm is not None
    os.kill(warm, 9)
    deadline = time.monotonic() + WAIT
    while _running(warm) and time.monotonic() < deadline:
        time.sleep(0.01)
    with vm.load(image) as enc:
        assert enc.ecalls.add(4, 5) == 9
        (row,) = vm.status().enclaves
        assert row.pid != warm and _running(row.pid)
    assert not os.path.exists(f"/proc/{warm}")  # reaped, not left a zombie


def test_a_warm_process_refuses_a_boot_for_another_runtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def without_cryptography(pin: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in pin.items() if not k.startswith("cryptography/")}

    image = _image(tmp_path, "other", without_cryptography, monkeypatch)
    # Enclave processes write bootstrap refusals to the stderr they inherit at spawn time:
    # point this process's fd 2 at a file before the device (and its warm process) exists.
    log = tmp_path / "enclave-stderr.log"
    saved = os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        (tmp_path / "dev").mkdir()
        with device_server(tmp_path / "dev", fake=False) as (dev, path, store), \
                VM("testvm", path, store=store) as vm:
            warm = dev.warm_pid(wait=WAIT)
            assert warm is not None
            take = dev._take_warm

            def careless(pin: object, python: object) -> object:  # skips the device's check
                return take(runtime_files(), python)

            monkeypatch.setattr(dev, "_take_warm", careless)
            with pytest.raises(EnclaveKitError), vm.load(image) as enc:
                enc.ecalls.add(1, 1)
            deadline = time.monotonic() + WAIT
            while _running(warm) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not _running(warm)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    assert "pins a different runtime than this warm enclave process" in log.read_text()


def test_device_close_leaves_no_warm_process(tmp_path: Path) -> None:
    with device_server(tmp_path, fake=False) as (dev, _, _):
        warm = dev.warm_pid(wait=WAIT)
        assert warm is not None and _running(warm)
    assert not os.path.exists(f"/proc/{warm}")
    assert dev.warm_pid() is None


def test_fake_spawns_and_no_warm_option_start_no_warm_process(tmp_path: Path) -> None:
    with device_server(tmp_path, fake=True) as (dev, _, _):
        assert dev.warm_pid(wait=0.3) is None
    with device_server(tmp_path / "b", fake=False, warm=False) as (dev, _, _):
        assert dev.warm_pid(wait=0.3) is None
