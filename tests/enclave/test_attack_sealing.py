"""SE-1 (tampering, lying lengths), SE-2 (downgrade) and SE-4 (KEYID reuse) attacks on
sealed blobs, against enclaves of real Processors (see test_seal.py)."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.enclave.seal import HEADER_SIZE, SealPolicy, seal, unseal
from enclavekit.errors import InvalidCPUSVN, InvalidISVSVN, SealRuleError
from enclavekit.sgx.structs import KeyRequest
from tests.enclave.test_seal import base, grid

REFUSED = (SealRuleError, InvalidISVSVN, InvalidCPUSVN)


def _blob(data: bytes = b"the secret state!" * 2, aad: bytes = b"label-0123456789",
          policy: SealPolicy = SealPolicy.MRSIGNER) -> bytes:
    with base().active():
        return seal(data, policy, aad)


def _refused(blob: bytes) -> None:
    with base().active(), pytest.raises(REFUSED):
        unseal(blob)


def _flip(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_single_bit_flip_of_a_whole_blob_is_refused() -> None:
    """Exhaustive: header, KEYREQUEST, lengths, tag, ciphertext, descriptor and AAD."""
    blob = _blob()
    accepted = []
    with base().active():
        for bit in range(len(blob) * 8):
            try:
                unseal(_flip(blob, bit))
            except REFUSED:
                continue
            accepted.append(bit)
    assert not accepted


@settings(max_examples=1000)
@given(data=st.binary(max_size=300), aad=st.binary(max_size=40), policy=st.sampled_from(SealPolicy),
       where=st.floats(0, 1, exclude_max=True))
def test_random_blobs_any_bit_flip_is_refused(data: bytes, aad: bytes, policy: SealPolicy,
                                               where: float) -> None:
    blob = _blob(data, aad, policy)
    _refused(_flip(blob, int(where * len(blob) * 8)))


@settings(max_examples=1000)
@given(data=st.binary(max_size=200), cut=st.integers(1, 2000), extra=st.binary(min_size=1,
                                                                              max_size=64))
def test_truncation_and_extension_are_refused(data: bytes, cut: int, extra: bytes) -> None:
    blob = _blob(data)
    _refused(blob[:max(0, len(blob) - cut)])
    _refused(blob + extra)


def test_splices_of_two_blobs_are_refused() -> None:
    a, b = _blob(b"A" * 40, b"aad-A"), _blob(b"B" * 40, b"aad-B")
    n = HEADER_SIZE + 40
    for spliced in (a[:512] + b[512:], a[:HEADER_SIZE] + b[HEADER_SIZE:], a[:n] + b[n:],
                    b[:n] + a[n:], a[:544] + b[544:560] + a[560:]):
        _refused(spliced)


def test_lying_lengths_are_refused_before_allocation() -> None:
    blob = _blob()
    for enc_len, payload in ((0xFFFFFFFF, 0xFFFFFFFF), (10, 0xFFFFFFF0), (0xFFFFFFFF, 50)):
        lying = blob[:512] + struct.pack("<I12xI12x", enc_len, payload) + blob[544:]
        tracemalloc.start()
        try:
            with base().active(), pytest.raises(SealRuleError, match="format rule"):
                unseal(lying)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024


def test_downgrades_are_refused_se2() -> None:
    g = grid()
    blob = _blob()
    for combo, err in (((0, False, 0, 0, 1, 1, False), InvalidISVSVN),   # older ISVSVN
                       ((0, False, 0, 0, 2, 2, False), SealRuleError),   # other ISVPRODID
                       ((0, False, 0, 0, 2, 1, True), SealRuleError),    # DEBUG build
                       ((1, False, 0, 0, 2, 1, False), SealRuleError)):  # other platform
        with g[combo].active(), pytest.raises(err):
            unseal(blob)
    # raising the stored ISVSVN / CPUSVN above the enclave's: EGETKEY refuses
    kr = KeyRequest.from_bytes(blob[:512])
    for forged in (kr.replace(isvsvn=3), kr.replace(cpusvn=bytes([255]) * 16)):
        with base().active(), pytest.raises((InvalidISVSVN, InvalidCPUSVN)):
            unseal(forged.to_bytes() + blob[512:])


def _keyids(n: int) -> list[bytes]:
    with base().active():
        return [seal(b"")[40:72] for _ in range(n)]


def test_keyids_never_repeat_se4() -> None:
    ids = _keyids(10_000)
    assert len(set(ids)) == len(ids)
    # a second instance of the same build (a clone) draws its own KEYIDs
    clone = grid()[(0, False, 0, 0, 2, 1, False)]
    with clone.active():
        other = {seal(b"")[40:72] for _ in range(1000)}
    assert not other & set(ids)


@pytest.mark.slow
def test_keyids_never_repeat_in_100k_seals_se4() -> None:
    ids = _keyids(100_000)
    assert len(set(ids)) == len(ids)
