"""Attacks on protected files by the host that stores them (attacks.md SE-5, SE-6): every
single-bit flip, truncation and splice, swaps, moves, chunk reordering, version mixing, size
edits and rollback are refused at open or at the first read of the bad chunk."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.enclave import files
from enclavekit.errors import (
    IntegrityError,
    ProtectedFileMoved,
    ProtectedFileRollback,
    ProtectedFileTampered,
)

KEY = bytes(range(32))
CS = 32
HDR = 128


def _write(path: Path, data: bytes, *, mode: files.Mode = "wb") -> None:
    with files.open(path, mode, key=KEY, chunk_size=CS) as f:
        f.write(data)


def _read_all(path: Path) -> bytes:
    with files.open(path, "rb", key=KEY) as f:
        return f.read()


def _layout(path: Path, size: int) -> tuple[int, int]:
    """(offset of chunk 0, offset of the chunk table)."""
    data_off = HDR + len(os.path.abspath(path).encode())
    return data_off, data_off + size


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """A protected file of 7 chunks (last one partial), its bytes, and an older version."""
    path = tmp_path_factory.mktemp("victim") / "v.pf"
    _write(path, b"A" * 200)
    older = path.read_bytes()
    _write(path, bytes(range(200)))
    return path, path.read_bytes(), older


def _refused(path: Path, blob: bytes) -> None:
    path.write_bytes(blob)
    with pytest.raises(IntegrityError):
        _read_all(path)


@settings(max_examples=1000)
@given(data=st.data())
def test_every_single_bit_flip_is_refused(victim: tuple[Path, bytes, bytes],
                                          data: st.DataObject) -> None:
    path, good, _ = victim
    bit = data.draw(st.integers(0, len(good) * 8 - 1))
    blob = bytearray(good)
    blob[bit // 8] ^= 1 << (bit % 8)
    try:
        _refused(path, bytes(blob))
    finally:
        path.write_bytes(good)


@settings(max_examples=1000)
@given(data=st.data())
def test_every_truncation_and_extension_is_refused(victim: tuple[Path, bytes, bytes],
                                                   data: st.DataObject) -> None:
    path, good, _ = victim
    cut = data.draw(st.integers(0, len(good) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=64))
    try:
        _refused(path, good[:cut])
        _refused(path, good + extra)
        if good[:cut] + extra != good:  # a cut refilled with its own bytes is the file itself
            _refused(path, good[:cut] + extra)
    finally:
        path.write_bytes(good)


@settings(max_examples=1000)
@given(data=st.data())
def test_every_splice_of_two_versions_is_refused(victim: tuple[Path, bytes, bytes],
                                                 data: st.DataObject) -> None:
    path, good, older = victim
    assert len(good) == len(older)
    start = data.draw(st.integers(0, len(good) - 1))
    end = data.draw(st.integers(start + 1, len(good)))
    for base, donor in ((good, older), (older, good)):
        blob = base[:start] + donor[start:end] + base[end:]
        if blob in (good, older):
            continue
        try:
            _refused(path, blob)
        finally:
            path.write_bytes(good)


# ---------------------------------------------------------------- SE-5: substitution


def test_se5_swapping_files_a_and_b_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pf", tmp_path / "b.pf"
    _write(a, b"alice" * 20)
    _write(b, b"bob" * 20)
    os.rename(a, tmp_path / "tmp")
    os.rename(b, a)
    os.rename(tmp_path / "tmp", b)
    for path in (a, b):
        with pytest.raises(ProtectedFileMoved, match="moved or swapped"):
            _read_all(path)


def test_se5_moving_or_copying_to_another_path_is_refused(tmp_path: Path) -> None:
    a = tmp_path / "a.pf"
    _write(a, b"data" * 30)
    (tmp_path / "other").mkdir()
    shutil.copy(a, tmp_path / "other" / "a.pf")
    os.rename(a, tmp_path / "renamed.pf")
    for path in (tmp_path / "other" / "a.pf", tmp_path / "renamed.pf"):
        with pytest.raises(ProtectedFileMoved):
            _read_all(path)


def test_a_logical_name_binding_lets_the_app_move_its_own_files(tmp_path: Path) -> None:
    with files.open(tmp_path / "a.pf", "wb", key=KEY, name="db/state") as f:
        f.write(b"payload")
    os.rename(tmp_path / "a.pf", tmp_path / "b.pf")
    with files.open(tmp_path / "b.pf", "rb", key=KEY, name="db/state") as f:
        assert f.read() == b"payload"
    with pytest.raises(ProtectedFileMoved):
        files.open(tmp_path / "b.pf", "rb", key=KEY, name="db/other")


def _chunk(blob: bytes, data_off: int, i: int) -> bytes:
    return blob[data_off + i * CS:data_off + (i + 1) * CS]


def test_se5_swapping_two_chunks_is_refused_at_their_first_read(tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    _write(path, bytes(range(200)))
    good = path.read_bytes()
    data_off, table = _layout(path, 200)
    c1, c2 = _chunk(good, data_off, 1), _chunk(good, data_off, 2)
    swapped = bytearray(good)
    swapped[data_off + CS:data_off + 2 * CS] = c2
    swapped[data_off + 2 * CS:data_off + 3 * CS] = c1
    path.write_bytes(bytes(swapped))
    with files.open(path, "rb", key=KEY) as f:  # the header and table are intact: opens
        assert f.read(CS) == bytes(range(CS))  # chunk 0 is untouched and reads
        with pytest.raises(ProtectedFileTampered, match="chunk 1 does not authenticate"):
            f.read(CS)
    # swapping the chunks together with their table entries breaks the root at open
    e1, e2 = good[table + 28:table + 56], good[table + 56:table + 84]
    swapped[table + 28:table + 56], swapped[table + 56:table + 84] = e2, e1
    path.write_bytes(bytes(swapped))
    with pytest.raises(ProtectedFileTampered, match="do not authenticate"):
        _read_all(path)


def test_se5_mixing_chunks_from_two_versions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    _write(path, b"1" * 200)
    v1 = path.read_bytes()
    with files.open(path, "r+b", key=KEY) as f:
        f.write(b"2" * 200)
    v2 = path.read_bytes()
    data_off, table = _layout(path, 200)
    mixed = bytearray(v2)
    mixed[data_off + 3 * CS:data_off + 4 * CS] = _chunk(v1, data_off, 3)
    path.write_bytes(bytes(mixed))
    with files.open(path, "rb", key=KEY) as f:
        f.seek(3 * CS)
        with pytest.raises(ProtectedFileTampered, match="chunk 3"):
            f.read(1)
    mixed[table + 3 * 28:table + 4 * 28] = v1[table + 3 * 28:table + 4 * 28]  # and its entry
    path.write_bytes(bytes(mixed))
    with pytest.raises(ProtectedFileTampered):
        _read_all(path)


def test_se5_truncating_a_chunk_and_fixing_up_the_size_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    _write(path, bytes(range(200)))
    good = path.read_bytes()
    data_off, table = _layout(path, 200)
    # drop the last chunk (8 bytes) and its table entry; rewrite size and count to match
    short = bytearray(good[:data_off + 192] + good[table:table + 6 * 28])
    struct.pack_into("<QII", short, 24, 192, CS, 6)
    path.write_bytes(bytes(short))
    with pytest.raises(ProtectedFileTampered, match="do not authenticate"):
        _read_all(path)


def test_se5_extending_and_editing_the_size_field_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    _write(path, bytes(range(200)))
    good = path.read_bytes()
    path.write_bytes(good + os.urandom(28))
    with pytest.raises(ProtectedFileTampered, match="truncated, extended"):
        _read_all(path)
    edited = bytearray(good)
    struct.pack_into("<Q", edited, 24, 190)  # still 7 chunks; the lengths then disagree
    path.write_bytes(bytes(edited))
    with pytest.raises(ProtectedFileTampered):
        _read_all(path)
    edited = bytearray(good)
    struct.pack_into("<QI", edited, 24, 2**60, 0)  # a lying huge size: refused before reading
    path.write_bytes(bytes(edited))
    with pytest.raises(ProtectedFileTampered):
        _read_all(path)


# ---------------------------------------------------------------- SE-6: rollback


def test_se6_replaying_an_older_version_is_refused_in_the_same_run(tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    _write(path, b"v1")
    v1 = path.read_bytes()
    with files.open(path, "r+b", key=KEY) as f:
        f.seek(0, os.SEEK_END)
        f.write(b" then v2")
    v2 = path.read_bytes()
    path.write_bytes(v1)
    with pytest.raises(ProtectedFileRollback, match="version 1 is older than version 2"):
        _read_all(path)
    with pytest.raises(ProtectedFileRollback):
        files.open(path, "r+b", key=KEY)
    path.write_bytes(v2)
    assert _read_all(path) == b"v1 then v2"


def test_se6_a_rewrite_with_wb_still_supersedes_the_older_copies(tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    _write(path, b"one")
    _write(path, b"two")
    v2 = path.read_bytes()
    _write(path, b"three")
    path.write_bytes(v2)
    with pytest.raises(ProtectedFileRollback):
        _read_all(path)


def test_se6_rollback_across_a_restart_is_the_documented_limitation(tmp_path: Path) -> None:
    """Without a device counter a new process has no memory: the old copy opens (threat model)."""
    path = tmp_path / "f.pf"
    _write(path, b"v1")
    v1 = path.read_bytes()
    _write(path, b"v2")
    path.write_bytes(v1)
    code = ("import sys; from enclavekit.enclave import files\n"
            f"f = files.open({str(path)!r}, 'rb', key={KEY!r})\n"
            "sys.stdout.write(f.read().decode() + ' ' + str(f.version))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    assert out == "v1 1"


def test_se5_a_modified_chunk_inside_a_batched_read_leaves_no_plaintext_of_it(
        tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    data = bytes(range(200))
    _write(path, data)
    good = path.read_bytes()
    data_off, _ = _layout(path, 200)
    bad = bytearray(good)
    bad[data_off + 4 * CS] ^= 0x01  # one bit of chunk 4, in the middle of a whole-file read
    path.write_bytes(bytes(bad))
    with files.open(path, "rb", key=KEY) as f:
        buf = bytearray(b"\xee" * 200)
        with pytest.raises(ProtectedFileTampered, match="chunk 4 does not authenticate"):
            f.readinto(buf)
    assert buf[:4 * CS] == data[:4 * CS]  # the chunks before it were authentic
    assert buf[4 * CS:5 * CS] == bytes(CS)  # the bad chunk's decryption was wiped
    assert buf[5 * CS:] == b"\xee" * (200 - 5 * CS)  # nothing after it was touched
