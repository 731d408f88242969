"""Platform identity: creation, atomic persistence, corruption and name checks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from enclavekit.errors import InvalidStructure, UnknownVMSize, VMExists, VMNotFound
from enclavekit.vm.datadir import data_dir
from enclavekit.vm.platform import PlatformIdentity, PlatformStore


def test_create_load_round_trip_and_private_file(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    made = store.create("dev", "DC4s_v2")
    assert made.size == "Standard_DC4s_v2"
    assert store.load("dev") == made
    mode = stat.S_IMODE(store.path("dev").stat().st_mode)
    assert mode == 0o600
    assert store.names() == ["dev"]


def test_two_platforms_have_different_secrets_and_ppids(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    a, b = store.create("a", "DC1s_v2"), store.create("b", "DC1s_v2")
    assert a.secrets != b.secrets
    assert a.ppid != b.ppid


def test_existing_missing_and_bad_names_are_typed_errors(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    store.create("dev", "DC2s_v2")
    with pytest.raises(VMExists, match="'dev' already exists"):
        store.create("dev", "DC2s_v2")
    with pytest.raises(VMNotFound, match="no VM named 'nope'"):
        store.load("nope")
    with pytest.raises(InvalidStructure, match="not a valid name"):
        store.create("../escape", "DC2s_v2")
    with pytest.raises(UnknownVMSize):
        store.create("x", "DC3s_v2")


def test_corrupt_platform_file_is_refused_with_one_line(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    store.create("dev", "DC2s_v2")
    path = store.path("dev")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InvalidStructure, match=r"^platform: corrupt platform file") as info:
        store.load("dev")
    assert "\n" not in str(info.value)


def test_delete_removes_the_vm(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    store.create("dev", "DC2s_v2")
    store.delete("dev")
    assert store.names() == []
    with pytest.raises(VMNotFound):
        store.delete("dev")


def test_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENCLAVEKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert data_dir() == tmp_path / "home"
    monkeypatch.delenv("ENCLAVEKIT_HOME")
    assert data_dir() == tmp_path / "xdg" / "enclavekit"


def test_identity_json_round_trip() -> None:
    ident = PlatformIdentity.new("x", "DC1s_v2")
    assert PlatformIdentity.from_json(ident.to_json()) == ident
