"""Seal and unseal of 1 MiB and 64 MiB against raw AES-GCM over the same bytes.

Goal (issue 4): >= 0.9 x the throughput of ``AESGCM.encrypt`` / ``decrypt`` (pyca
``cryptography``) on the same data, same run. Timed: the whole ``enclave.seal.seal`` /
``unseal`` (KEYREQUEST, descriptor, length checks, blob assembly, AES-128-GCM) with EGETKEY
answered in-process by a stub channel returning a fixed key — the device round trip
(~0.1 ms, independent of size) is not part of the crypto path being compared. Every
function gets three untimed calls first; the figure is the median of the timed ones.
Unseal of the same blob again finds its key in the enclave's EGETKEY cache (as a real
enclave does), so its figure is the format and AES-GCM cost alone.
Usage: ``python bench/bench_seal.py [--short]`` (short form: 1 MiB and 8 MiB).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import _common
from enclavekit.enclave import api, seal, unseal
from enclavekit.vm.protocol import Boot, Msg

GOAL = 0.9
KEY = bytes(range(16))


class _StubChannel(api._Channel):
    """EGETKEY → a fixed key; EREPORT is never needed (CPUSVN is preset)."""

    def __init__(self) -> None:
        self.boot = Boot(enclave_id=1, manifest=b"", bundle=b"", mrenclave=b"\1" * 32,
                         mrsigner=b"\2" * 32, isvprodid=1, isvsvn=1, attributes_flags=0x5,
                         attributes_xfrm=3, miscselect=0, threads=1, heap_size=0,
                         stack_size=0, debug=False, runtime_root="")
        self.cpusvn = bytes(16)

    def call(self, msg: Msg, payload: bytes) -> bytes:
        assert msg == Msg.EGETKEY
        return KEY


def main(argv: list[str]) -> int:
    short = "--short" in argv
    sizes = (1 << 20, 8 << 20) if short else (1 << 20, 64 << 20)
    api._channel = _StubChannel()
    aead = AESGCM(KEY)
    nonce = bytes(12)
    for size in sizes:
        data = os.urandom(size)
        repeat = 31 if size <= 8 << 20 else 5
        blob = seal(data)
        ct = aead.encrypt(nonce, data, b"")
        raw, sealed, raw_d, unsealed = (
            _timed(fn, repeat) for fn in (functools.partial(aead.encrypt, nonce, data, b""),
                                          functools.partial(seal, data),
                                          functools.partial(aead.decrypt, nonce, ct, b""),
                                          functools.partial(unseal, blob)))
        mib = size / (1 << 20)
        for name, t, base in (("seal", sealed, raw), ("unseal", unsealed, raw_d)):
            ratio = base / t
            _common.report(f"{name} {mib:.0f} MiB", mib / t, "MiB/s",
                           "raw AES-GCM", mib / base, ratio, f">= {GOAL}", ratio >= GOAL)
    api._channel = None
    return 0


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds per call after a few untimed calls (the allocator settles on the size)."""
    _common.per_call(fn, repeat=3)
    return _common.median(_common.per_call(fn, repeat=repeat))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
