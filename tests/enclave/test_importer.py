"""RT-3 at the importer: only bundle, pinned runtime and stdlib modules import."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import pytest

from enclavekit.enclave import importer
from enclavekit.enclave.importer import PinnedFinder, parse_bundle
from enclavekit.vm.bootstrap import runtime_files


def _finder(tmp_path: Path, pinned: bytes, on_disk: bytes) -> PinnedFinder:
    (tmp_path / "msgpack").mkdir()
    (tmp_path / "msgpack" / "ext.py").write_bytes(on_disk)
    pin = {"msgpack/ext.py": hashlib.sha256(pinned).hexdigest()}
    return PinnedFinder(pin, [str(tmp_path)], {"app.py": b"X = 1\n"})


def test_pinned_module_loads_only_with_matching_hash(tmp_path: Path) -> None:
    ok = _finder(tmp_path, b"A = 1\n", b"A = 1\n")
    spec = ok.find_spec("msgpack.ext")
    assert spec is not None and spec.loader is not None
    changed = _finder(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path,
                      b"A = 1\n", b"A = 2  # edited after the build\n")
    with pytest.raises(ModuleNotFoundError, match="does not match its pin"):
        changed.find_spec("msgpack.ext")


@pytest.mark.parametrize("name", ["requests", "enclavekit.host", "enclavekit.sgx.processor",
                                  "msgpack.evil", "sitecustomize", "usercustomize"])
def test_unlisted_modules_are_refused_with_a_reason(tmp_path: Path, name: str) -> None:
    finder = _finder(tmp_path, b"", b"")
    with pytest.raises(ModuleNotFoundError, match=f"'{name}' refused in the enclave"):
        finder.find_spec(name)


def test_app_and_stdlib(tmp_path: Path) -> None:
    finder = _finder(tmp_path, b"", b"")
    assert finder.find_spec("app") is not None
    assert finder.find_spec("json") is None  # left to the interpreter's own stdlib finders


def test_app_cannot_shadow_the_runtime() -> None:
    with pytest.raises(ImportError, match="shadow the runtime"):
        PinnedFinder({}, [], {"enclavekit/errors.py": b""})


def test_bundle_entries_are_hash_checked() -> None:
    body = b"print('hi')\n"
    path = b"app.py"
    good = (b"EKBUNDL1" + (1).to_bytes(4, "little") + len(path).to_bytes(2, "little") + path
            + len(body).to_bytes(8, "little") + hashlib.sha256(body).digest() + body)
    assert parse_bundle(good + bytes(100)) == {"app.py": body}
    with pytest.raises(ImportError, match="does not match"):
        parse_bundle(good[:-2] + b"X\n")


def test_runtime_pin_covers_the_runtime() -> None:
    pin = runtime_files()
    assert "enclavekit/enclave/importer.py" in pin and "msgpack/__init__.py" in pin
    assert any(k.startswith("cryptography/") and k.endswith(".so") for k in pin)
    assert not any(k.startswith("enclavekit/host/") for k in pin)


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no memfd_create on this host")
def test_an_extension_is_loaded_from_a_sealed_copy_that_cannot_be_rewritten() -> None:
    spec = importer._extension_spec("ek_probe", b"checked bytes", "/nonexistent/ek_probe.so")
    assert spec.origin is not None and spec.origin.startswith("/proc/self/fd/")
    fd = int(spec.origin.rsplit("/", 1)[1])
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        with pytest.raises(PermissionError):
            os.pwrite(fd, b"other bytes!!", 0)  # the attack: change them after the check
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        assert os.pread(fd, 64, 0) == b"checked bytes"
    finally:
        os.close(fd)
