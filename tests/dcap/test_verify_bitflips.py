"""Any single-bit flip in a real quote is refused, by the check that covers the flipped field.

The phala quote (4600 bytes, production Intel chain) is verified at its asserted time with a
cached :class:`Verifier`; six regions x 200 examples (the CI profile) = 1,200 cases.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.dcap.verify import Verifier
from enclavekit.errors import QuoteFormatError, VerificationFailed
from tests.dcap._collateral_sets import cases

CASE = cases()["phala_sgx_2025"]
QUOTE = CASE.quote
VERIFIER = Verifier()
VERIFIER.verify(QUOTE, CASE.collateral, at=CASE.at)  # warm the caches once

AUTH_END = 1014 + int.from_bytes(QUOTE[1012:1014], "little")
CERT_START = AUTH_END + 6


def _outcome(offset: int, bit: int) -> str:
    data = bytearray(QUOTE)
    data[offset] ^= 1 << bit
    try:
        VERIFIER.verify(bytes(data), CASE.collateral, at=CASE.at)
    except QuoteFormatError:
        return "format"
    except VerificationFailed as exc:
        return exc.check
    return "accepted"


def _expected_in_signed_region(offset: int) -> set[str]:
    if offset < 2:
        return {"format"}  # the version: the parser refuses
    if offset < 8:
        return {"unsupported_quote"}  # attestation key type, TEE type: named before parsing
    if 12 <= offset < 28:
        return {"unsupported_quote"}  # QE vendor id
    return {"quote_signature"}


bits = st.integers(0, 7)


@given(st.integers(0, 431), bits)
def test_flip_in_signed_region(offset: int, bit: int) -> None:
    assert _outcome(offset, bit) in _expected_in_signed_region(offset)


@given(st.integers(436, 499), bits)
def test_flip_in_quote_signature(offset: int, bit: int) -> None:
    assert _outcome(offset, bit) == "quote_signature"


@given(st.integers(564, 947), bits)
def test_flip_in_qe_report(offset: int, bit: int) -> None:
    assert _outcome(offset, bit) == "qe_report_signature"


@given(st.integers(948, 1011), bits)
def test_flip_in_qe_report_signature(offset: int, bit: int) -> None:
    assert _outcome(offset, bit) == "qe_report_signature"


@given(st.one_of(st.integers(500, 563), st.integers(1014, AUTH_END - 1)), bits)
def test_flip_in_attestation_key_or_auth_data(offset: int, bit: int) -> None:
    assert _outcome(offset, bit) == "qe_report_data"


@settings(max_examples=200)
@given(st.integers(CERT_START, len(QUOTE) - 1), bits)
def test_flip_in_certification_data(offset: int, bit: int) -> None:
    assert _outcome(offset, bit) in {"format", "pck_chain", "root_untrusted"}


@given(st.sampled_from([432, 433, 434, 435, 1012, 1013, AUTH_END, AUTH_END + 1,
                        AUTH_END + 2, AUTH_END + 3, AUTH_END + 4, AUTH_END + 5]), bits)
def test_flip_in_a_length_or_type_field(offset: int, bit: int) -> None:
    assert _outcome(offset, bit) in {"format", "unsupported_quote"}


def test_unflipped_quote_still_verifies() -> None:
    assert _outcome(0, 0) == "format"
    assert VERIFIER.verify(QUOTE, CASE.collateral, at=CASE.at).status == CASE.status


def test_regressions_found_by_exhaustive_scan() -> None:
    """Every single-bit flip of the phala quote was tried once; these used to slip through:
    a duplicated extension (pyca raises DuplicateExtension, not a ValueError) and a non-zero
    unused-bits count in the PCK certificate's signature BIT STRING (pyca ignores it)."""
    for offset, bit in ((1640, 0), (1685, 0), (1876, 0), (1877, 4), (1897, 0)):
        assert _outcome(offset, bit) in {"format", "pck_chain", "pck_extension"}, offset
    assert _outcome(2567, 4) == "format"


def _expected(offset: int) -> set[str]:
    if offset < 432:
        return _expected_in_signed_region(offset)
    if 436 <= offset < 500:
        return {"quote_signature"}
    if 500 <= offset < 564 or 1014 <= offset < AUTH_END:
        return {"qe_report_data"}
    if 564 <= offset < 1012:
        return {"qe_report_signature"}
    if offset >= CERT_START:
        return {"format", "pck_chain", "root_untrusted", "pck_extension"}
    return {"format", "unsupported_quote"}  # the length and type fields


@pytest.mark.slow
def test_every_single_bit_flip_is_refused_by_its_check() -> None:
    """All 36,800 single-bit flips of the phala quote (``--slow``)."""
    wrong = [(offset, bit, got) for offset in range(len(QUOTE)) for bit in range(8)
             if (got := _outcome(offset, bit)) not in _expected(offset)]
    assert not wrong, wrong[:10]
