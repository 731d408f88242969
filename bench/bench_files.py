"""Protected-file sequential write and read of 64 MiB against raw AES-GCM over the same bytes.

Goal (issue 4): >= 0.7 x the throughput of AES-GCM (pyca ``cryptography``) encrypting (for
write) or decrypting (for read) the same 64 MiB in the same 64 KiB pieces as the file's
chunks, same run, data in memory, one fresh output per piece. The protected-file figures
include everything: key set-up, chunk nonces, the storage writes/reads, the chunk table,
the root tag and the atomic commit (fsync + rename). The app writes and reads in 1 MiB
blocks; reads are measured with ``read`` (a new bytes object per block) and with
``readinto`` (one reused 1 MiB buffer). Also printed for context: the raw figure over the
whole buffer in one call, and the I/O floor (raw AES-GCM plus the same pwrite + fsync, or
pread) that any durable file format pays on this machine, with its own ratio to raw
AES-GCM: the best a file on this storage can reach; and, below durability, what the kernel
alone costs to take 64 MiB of fresh pages (encrypt + pwrite, no format, no fsync) on this
disk's page cache and on tmpfs.
Usage: ``python bench/bench_files.py [--short]`` (short form: 8 MiB).
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import _common
from enclavekit.enclave import files

CHUNK = 64 * 1024
BLOCK = 1 << 20  # the app writes and reads in 1 MiB blocks
GOAL = 0.7
_FRESH = itertools.count()


def _raw_encrypt(aead: AESGCM, data: bytes) -> None:
    view = memoryview(data)
    nonce = os.urandom(12)
    for off in range(0, len(data), CHUNK):
        aead.encrypt(nonce, view[off:off + CHUNK], b"")


def _raw_decrypt(aead: AESGCM, pieces: list[tuple[bytes, bytes]]) -> None:
    for nonce, ct in pieces:
        aead.decrypt(nonce, ct, b"")


def _floor_write(path: str, aead: AESGCM, data: bytes, *, sync: bool = True) -> None:
    """The I/O floor of a durable write: encrypt, pwrite, fsync, no format or commit
    (``sync=False``: no fsync either - what the kernel's page cache alone costs)."""
    view = memoryview(data)
    nonce = os.urandom(12)
    if not sync:  # a fresh file each time (truncating one would start its writeback here)
        path = f"{path}.{next(_FRESH)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for off in range(0, len(data), CHUNK):
            os.pwrite(fd, aead.encrypt(nonce, view[off:off + CHUNK], b""), off)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _memory_floor_write(aead: AESGCM, data: bytes, repeat: int) -> dict[str, float]:
    """Seconds of the no-fsync write floor into RAM-backed storage (``/dev/shm``, when the
    machine has it): no disk at all, only the page cache taking fresh pages."""
    if not os.path.isdir("/dev/shm"):
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-files-", dir="/dev/shm") as tmp:
        path = os.path.join(tmp, "floor.bin")
        return {"tmpfs": _timed(lambda: _floor_write(path, aead, data, sync=False), repeat)}


def _floor_read(path: str, aead: AESGCM, pieces: list[tuple[bytes, bytes]]) -> None:
    """The I/O floor of a read: pread and decrypt each piece."""
    fd = os.open(path, os.O_RDONLY)
    try:
        off = 0
        for nonce, ct in pieces:
            aead.decrypt(nonce, os.pread(fd, len(ct), off), b"")
            off += len(ct)
    finally:
        os.close(fd)


def _write(path: str, key: bytes, data: bytes) -> None:
    view = memoryview(data)
    with files.open(path, "wb", key=key, chunk_size=CHUNK) as handle:
        for off in range(0, len(data), BLOCK):
            handle.write(view[off:off + BLOCK])


def _read(path: str, key: bytes, size: int) -> None:
    with files.open(path, "rb", key=key) as handle:
        while handle.read(BLOCK):
            pass


def _readinto(path: str, key: bytes, buf: memoryview) -> None:
    with files.open(path, "rb", key=key) as handle:
        while handle.readinto(buf):
            pass


def _timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # untimed: the page cache and the allocator settle
    return _common.median(_common.per_call(fn, repeat=repeat))


def main(argv: list[str]) -> int:
    short = "--short" in argv
    mib = 8 if short else 64
    repeat = 3 if short else 7
    data = os.urandom(mib << 20)
    key = AESGCM.generate_key(128)
    aead = AESGCM(key)
    nonce = os.urandom(12)
    pieces = [(nonce, aead.encrypt(nonce, data[off:off + CHUNK], b""))
              for off in range(0, len(data), CHUNK)]
    block = memoryview(bytearray(BLOCK))
    with tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        path = os.path.join(tmp, "data.pf")
        _write(path, key, data)
        with files.open(path, "rb", key=key) as handle:  # same bytes back, or figures mean nothing
            if handle.read() != data:
                print("bench_files: the protected file read back differs from what was written")
                return 1
        floor = os.path.join(tmp, "floor.bin")
        with open(floor, "wb") as handle:
            handle.write(b"".join(ct for _, ct in pieces))
        t_enc = _timed(lambda: _raw_encrypt(aead, data), repeat)
        t_dec = _timed(lambda: _raw_decrypt(aead, pieces), repeat)
        t_one = _timed(lambda: aead.encrypt(nonce, data, b""), repeat)
        t_fr = _timed(lambda: _floor_read(floor, aead, pieces), repeat)
        t_read = _timed(lambda: _read(path, key, len(data)), repeat)
        t_into = _timed(lambda: _readinto(path, key, block), repeat)
        t_fw = _timed(lambda: _floor_write(floor, aead, data), repeat)
        t_fw_cache = _timed(lambda: _floor_write(floor, aead, data, sync=False), repeat)
        t_write = _timed(lambda: _write(path, key, data), repeat)
    mb = len(data) / 1e6
    for name, t_pf, base, t_base in (("write", t_write, "AES-GCM encrypt", t_enc),
                                     ("read", t_read, "AES-GCM decrypt", t_dec),
                                     ("readinto", t_into, "AES-GCM decrypt", t_dec)):
        ratio = t_base / t_pf
        _common.report(f"protected file sequential {name} {mib} MiB", mb / t_pf, "MB/s",
                       f"{base} (64 KiB pieces)", mb / t_base, ratio, f">= {GOAL}",
                       ratio >= GOAL)
    _common.report(f"context: AES-GCM encrypt {mib} MiB in one call", mb / t_one, "MB/s",
                   "AES-GCM encrypt (64 KiB pieces)", mb / t_enc, t_enc / t_one, "none", True)
    for name, t_pf, floor_name, t_floor in (
            ("write", t_write, "encrypt + pwrite + fsync", t_fw),
            ("read", t_read, "pread + decrypt", t_fr),
            ("readinto", t_into, "pread + decrypt", t_fr)):
        _common.report(f"context: protected file {name} {mib} MiB", mb / t_pf, "MB/s",
                       f"{floor_name} (I/O floor)", mb / t_floor, t_floor / t_pf, "none", True)
    for name, t_floor, t_base in (("write", t_fw, t_enc), ("read", t_fr, t_dec)):
        print(f"context: the I/O floor of a {name} reaches {t_base / t_floor:.2f} x raw "
              "AES-GCM on this machine (the most any file on this storage can)", flush=True)
    cache_floors = {"this disk's page cache": t_fw_cache, **_memory_floor_write(aead, data, repeat)}
    for where, t_floor in cache_floors.items():
        print(f"context: encrypt + pwrite with no format and no fsync ({where}) reaches "
              f"{t_enc / t_floor:.2f} x raw AES-GCM: the kernel taking fresh pages, before "
              "any durability", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
