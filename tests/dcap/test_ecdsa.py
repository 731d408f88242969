"""Raw ECDSA-P256 encodings: round trips, off-curve keys and out-of-range signatures refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.dcap.ecdsa import (
    P256_ORDER,
    public_key_from_raw,
    public_key_to_raw,
    sign_raw,
    verify_raw,
)
from enclavekit.errors import QuoteFormatError

KEY = ec.derive_private_key(0x1234567, ec.SECP256R1())


def test_public_key_round_trip() -> None:
    raw = public_key_to_raw(KEY.public_key())
    assert len(raw) == 64
    assert public_key_to_raw(public_key_from_raw(raw)) == raw


def test_off_curve_and_wrong_length_refused() -> None:
    raw = bytearray(public_key_to_raw(KEY.public_key()))
    raw[63] ^= 1
    with pytest.raises(QuoteFormatError, match="not on the curve"):
        public_key_from_raw(bytes(raw))
    with pytest.raises(QuoteFormatError, match="64 bytes"):
        public_key_from_raw(bytes(63))
    with pytest.raises(QuoteFormatError, match="not on the curve"):
        public_key_from_raw(bytes(64))


def test_sign_verify_and_tamper() -> None:
    sig = sign_raw(KEY, b"hello")
    assert len(sig) == 64
    assert verify_raw(KEY.public_key(), sig, b"hello")
    assert not verify_raw(KEY.public_key(), sig, b"hellp")
    assert not verify_raw(KEY.public_key(), sig[:63], b"hello")
    other = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    assert not verify_raw(other, sig, b"hello")


@pytest.mark.parametrize(
    "r, s",
    [(0, 0), (0, 1), (1, 0), (P256_ORDER, 1), (1, P256_ORDER), (2**256 - 1, 2**256 - 1)],
)
def test_psychic_signatures_refused(r: int, s: int) -> None:
    """CVE-2022-21449: r = s = 0 (or r, s >= n) is never a valid signature."""
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert not verify_raw(KEY.public_key(), sig, b"anything")


def test_s_and_n_minus_s_both_verify_but_n_plus_s_does_not() -> None:
    sig = sign_raw(KEY, b"m")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    flipped = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    assert verify_raw(KEY.public_key(), flipped, b"m")  # ECDSA malleability is inherent
    if s + P256_ORDER < 2**256:
        high = r.to_bytes(32, "big") + (s + P256_ORDER).to_bytes(32, "big")
        assert not verify_raw(KEY.public_key(), high, b"m")


@settings(max_examples=200)
@given(st.binary(min_size=64, max_size=64), st.binary(max_size=64))
def test_random_signatures_never_verify_or_raise(sig: bytes, data: bytes) -> None:
    assert verify_raw(KEY.public_key(), sig, data) is False
