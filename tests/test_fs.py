"""Atomic writes: the temp file's name and lock, and the clean-up of the temp files of writers
killed mid-write (every durable store runs it when it opens; a live writer's is never taken)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from enclavekit._fs import TEMP_SUFFIX, atomic_write, locked_temp, remove_stale_temps

_KILLED_WRITER = """
import os, sys, time
from enclavekit._fs import locked_temp
fd, tmp = locked_temp(sys.argv[1])
os.write(fd, b"half a record")
print(tmp, flush=True)
time.sleep(60)
"""


def _killed_mid_write(target: Path) -> Path:
    """A process that made a temp file for ``target`` and was killed with SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    tmp = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists()
    return tmp


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(TEMP_SUFFIX))


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two", mode=0o644)
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o644
    assert _temps(tmp_path) == []


def test_temp_names_are_recognizable(tmp_path: Path) -> None:
    fd, tmp = locked_temp(tmp_path / "state.json")
    try:
        name = os.path.basename(tmp)
        assert name.startswith(".state.json.") and name.endswith(TEMP_SUFFIX)
    finally:
        os.unlink(tmp)
        os.close(fd)


def test_a_killed_writers_temp_is_removed_and_a_live_writers_kept(tmp_path: Path) -> None:
    stale = _killed_mid_write(tmp_path / "state.json")
    fd, live = locked_temp(tmp_path / "state.json")  # this process is still writing it
    other = tmp_path / ".notes.txt.tmp"
    other.write_bytes(b"not ours")
    try:
        assert remove_stale_temps(tmp_path) == 1
        assert not stale.exists() and Path(live).exists() and other.exists()
    finally:
        os.unlink(live)
        os.close(fd)


def test_clean_up_of_one_target_leaves_the_others(tmp_path: Path) -> None:
    mine = _killed_mid_write(tmp_path / "a.pf")
    theirs = _killed_mid_write(tmp_path / "b.pf")
    assert remove_stale_temps(tmp_path, "a.pf") == 1
    assert not mine.exists() and theirs.exists()


def test_the_key_store_cleans_at_open(tmp_path: Path) -> None:
    from enclavekit.kms.store import KeyStore

    KeyStore(tmp_path)
    stale = [_killed_mid_write(tmp_path / "master.key"),
             _killed_mid_write(tmp_path / "keys" / "k.key")]
    KeyStore(tmp_path)
    assert not any(p.exists() for p in stale)


def test_the_attestation_state_cleans_at_open(tmp_path: Path) -> None:
    from enclavekit.attest.maa.state import STATE_FILE, ServiceState

    ServiceState.open(tmp_path)
    stale = _killed_mid_write(tmp_path / STATE_FILE)
    ServiceState.open(tmp_path)
    assert not stale.exists()


def test_the_pccs_state_cleans_at_open(tmp_path: Path) -> None:
    from enclavekit.attest.pccs.state import StateStore

    (tmp_path / "pki").mkdir()
    stale = _killed_mid_write(tmp_path / "pki" / "state.json")
    StateStore(tmp_path)
    assert not stale.exists()


@pytest.mark.parametrize("mode", ["rb", "r+b", "wb"])
def test_a_protected_file_cleans_its_own_temps_at_open(tmp_path: Path, mode: str) -> None:
    from enclavekit.enclave import files

    key = bytes(range(32))
    path = tmp_path / "data.pf"
    with files.open(path, "wb", key=key) as handle:
        handle.write(b"record")
    stale = _killed_mid_write(path)
    neighbour = _killed_mid_write(tmp_path / "other.pf")
    with files.open(path, mode, key=key):
        pass
    assert not stale.exists() and neighbour.exists()
