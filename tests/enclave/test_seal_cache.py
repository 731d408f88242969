"""The enclave's EGETKEY cache for sealing: per instance, bounded, never a refusal.

``seal`` and ``unseal`` remember the key EGETKEY gave for a KEYREQUEST so that unsealing
the same blob again (or one this instance sealed) needs no device round trip. These tests
count the EGETKEY calls that reach the device and attempt to use the cache across
enclaves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from enclavekit.enclave.seal import SealPolicy, seal, unseal
from enclavekit.errors import InvalidISVSVN, SealRuleError
from enclavekit.vm.protocol import Msg
from tests.enclave._harness import acting_as
from tests.enclave.test_seal import DirectChannel, grid

seal_module = sys.modules["enclavekit.enclave.seal"]


class Counting(DirectChannel):
    """A direct channel that counts the EGETKEY requests it serves."""

    def __init__(self, inner: DirectChannel) -> None:
        super().__init__(inner.proc, inner.secs, inner.boot)
        self.egetkeys = 0

    def call(self, msg: Msg, payload: bytes) -> bytes:
        if msg == Msg.EGETKEY:
            self.egetkeys += 1
        return super().call(msg, payload)


def counting(combo: tuple[object, ...]) -> Counting:
    return Counting(grid()[combo].channel)


BASE = (0, False, 0, 0, 2, 1, False)
OLD = (0, False, 0, 0, 1, 1, False)  # same build and platform, ISVSVN 1
OTHER_BUILD = (0, False, 0, 1, 2, 1, False)


@contextmanager
def acting(chan: Counting) -> Iterator[None]:
    """As the enclave of ``chan``, its sealing context made (its own EGETKEY not counted)."""
    with acting_as(chan):
        seal_module._ctx()
        yield


def test_unsealing_a_blob_again_asks_egetkey_once() -> None:
    chan = counting(BASE)
    with acting(chan):
        blob = seal(b"state", SealPolicy.MRENCLAVE)
        before = chan.egetkeys
        for _ in range(5):
            assert unseal(blob).data == b"state"
        assert chan.egetkeys == before  # sealing remembered the key
    fresh = counting(BASE)  # another instance of the same enclave: nothing cached
    with acting(fresh):
        start = fresh.egetkeys
        assert unseal(blob).data == b"state"
        assert unseal(blob).data == b"state"
        assert fresh.egetkeys == start + 1


def test_a_refusal_is_never_cached() -> None:
    newer = counting(BASE)
    with acting(newer):
        blob = seal(b"v2")
    old = counting(OLD)
    with acting(old):
        for _ in range(2):
            start = old.egetkeys
            with pytest.raises(InvalidISVSVN):
                unseal(blob)
            assert old.egetkeys == start + 1


def test_another_enclave_never_gets_a_key_this_one_cached() -> None:
    owner = counting(BASE)
    with acting(owner):
        blob = seal(b"only this build", SealPolicy.MRENCLAVE)
        assert unseal(blob).data == b"only this build"  # the key is now cached
    thief = counting(OTHER_BUILD)
    with acting(thief), pytest.raises(SealRuleError) as info:
        unseal(blob)
    assert info.value.rule == "mrenclave"
    with acting(owner):
        assert unseal(blob).data == b"only this build"


def test_the_cache_is_bounded() -> None:
    chan = counting(BASE)
    with acting(chan):
        blobs = [seal(bytes([i])) for i in range(3 * seal_module._KEY_CACHE_SIZE)]
        assert len(seal_module._ctx().keys) == seal_module._KEY_CACHE_SIZE
        start = chan.egetkeys
        assert unseal(blobs[0]).data == b"\0"  # evicted long ago: asks EGETKEY again
        assert unseal(blobs[-1]).data == bytes([len(blobs) - 1])  # still cached
        assert chan.egetkeys == start + 1
