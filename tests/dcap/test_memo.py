"""Content caches: one parse per distinct content, bounded, refusals never kept, and a cached
parse never standing in for a check."""

from __future__ import annotations

import dataclasses

import pytest

from enclavekit.dcap import memo
from enclavekit.dcap.collateral import Collateral
from enclavekit.dcap.crl import load_crl
from enclavekit.dcap.memo import ContentCache
from enclavekit.dcap.verify import Verifier, verify_quote
from enclavekit.errors import CertificateChainError, CollateralFormatError, VerificationFailed
from tests.dcap._collateral_sets import cases
from tests.dcap._forge import forge
from tests.vectors import vector


def _counting() -> tuple[ContentCache[str], list[bytes]]:
    seen: list[bytes] = []

    def parse(key: bytes, *_: object) -> str:
        seen.append(key)
        if key.startswith(b"bad"):
            raise ValueError("refused")
        return key.decode()

    return ContentCache(parse, entries=3, max_bytes=10), seen


def test_one_parse_per_distinct_content_not_per_object() -> None:
    cache, seen = _counting()
    first = cache(b"abc")
    again = cache(bytes(bytearray(b"abc")))  # equal bytes in another object
    assert first == again == "abc" and seen == [b"abc"]
    assert cache(b"abd") == "abd" and seen == [b"abc", b"abd"]


def test_refusals_are_parsed_again_every_time() -> None:
    cache, seen = _counting()
    for _ in range(2):
        with pytest.raises(ValueError, match="refused"):
            cache(b"bad")
    assert seen == [b"bad", b"bad"] and len(cache) == 0


def test_bounded_by_entries_and_by_bytes() -> None:
    cache, seen = _counting()
    for key in (b"a", b"b", b"c", b"d"):  # four entries, three kept: "a" (oldest) goes
        cache(key)
    assert len(cache) == 3
    cache(b"a")
    assert seen.count(b"a") == 2
    cache(b"123456789")  # 9 key bytes: the older ones go until 10 bytes or fewer are held
    assert cache.held_bytes == 10 and len(cache) == 2  # "a" (1 byte) and the new key stay
    cache(b"123456789")
    assert seen.count(b"123456789") == 1
    cache(b"0123456789ab")  # larger than the byte bound: parsed, not kept
    cache(b"0123456789ab")
    assert seen.count(b"0123456789ab") == 2 and cache.held_bytes <= 10


def test_clear_empties_every_cache() -> None:
    cache, seen = _counting()
    cache(b"x")
    memo.clear()
    cache(b"x")
    assert seen == [b"x", b"x"]


def test_collateral_text_is_parsed_once_and_gives_the_same_collateral() -> None:
    text = vector("phala_dcap_qvl/sgx_quote_collateral.json").read_bytes()
    a = Collateral.from_json(bytes(bytearray(text)))
    assert Collateral.from_json(bytes(bytearray(text))) is a
    assert Collateral.from_json(text.decode()) == a
    assert Collateral.from_json(bytearray(text)) == a
    with pytest.raises(CollateralFormatError, match="bytes or text"):
        Collateral.from_json(42)  # type: ignore[arg-type]


def test_crl_parse_is_kept_and_refusal_is_not() -> None:
    der = vector("mobilecoin_attestation/root_crl.der").read_bytes()
    assert load_crl(bytes(bytearray(der))) is load_crl(der)
    broken = der[:-1]
    for _ in range(2):
        with pytest.raises(CollateralFormatError, match="does not parse"):
            load_crl(broken)


def test_a_warm_cache_still_checks_every_signature() -> None:
    """After a good verification has filled every cache, collateral that differs in one
    signature (or a quote that differs in one byte) is refused by that signature's check."""
    f = forge()
    assert verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at).status
    # each signature is valid, by the same key, over the other document's bytes
    swapped = dataclasses.replace(f.collateral,
                                  tcb_info_signature=f.collateral.qe_identity_signature)
    with pytest.raises(VerificationFailed) as err:
        verify_quote(f.quote, swapped, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "tcb_info_signature"
    swapped = dataclasses.replace(f.collateral,
                                  qe_identity_signature=f.collateral.tcb_info_signature)
    with pytest.raises(VerificationFailed) as err:
        verify_quote(f.quote, swapped, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "qe_identity_signature"
    tampered = bytearray(f.quote)
    tampered[100] ^= 1  # inside the ISV enclave's REPORTBODY
    with pytest.raises(VerificationFailed) as err:
        verify_quote(bytes(tampered), f.collateral, trusted_roots=f.roots, at=f.at)
    assert err.value.check == "quote_signature"


def test_a_warm_cache_never_carries_trust_between_roots() -> None:
    """Parses are shared; trust is not: the same quote and collateral, verified against the
    test root and then against Intel's (the default), are refused the second time."""
    f = forge()
    verify_quote(f.quote, f.collateral, trusted_roots=f.roots, at=f.at)
    with pytest.raises(CertificateChainError) as err:
        verify_quote(f.quote, f.collateral, at=f.at)
    assert err.value.check == "root_untrusted"
    case = cases()["phala_sgx_2025"]
    Verifier().verify(case.quote, case.collateral, at=case.at)
    with pytest.raises(CertificateChainError) as err:
        Verifier(f.roots).verify(case.quote, case.collateral, at=case.at)
    assert err.value.check == "root_untrusted"
