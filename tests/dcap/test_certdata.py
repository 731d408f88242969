"""Certification data: the type-5 chain read as RFC 7468 PEM, types 1-4 and 7 decoded.

The PEM variants are built here, at test time, by re-wrapping the DER certificates of a real
quote's chain (the vectors stay as they are): every variant must give the verifier's result of
the original quote, and everything that is not PEM of certificates is still refused.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from enclavekit.dcap.certdata import CertificationData, link_chain
from enclavekit.dcap.quote import Quote
from enclavekit.dcap.verify import verify_quote
from enclavekit.errors import QuoteFormatError
from tests.dcap._collateral_sets import cases

CASE = cases()["phala_sgx_2025"]
QUOTE = Quote.parse(CASE.quote)
ORIGINAL = QUOTE.certification_data.data
DERS = [base64.b64decode(b"".join(body.split()))
        for body in re.findall(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----",
                               ORIGINAL, re.S)]


def wrap(ders: list[bytes], width: int = 64, eol: bytes = b"\n", nul: bool = True) -> bytes:
    """A PEM chain written here: base64 lines of ``width`` characters ended by ``eol``."""
    out = b""
    for der in ders:
        text = base64.b64encode(der)
        lines = b"".join(text[i:i + width] + eol for i in range(0, len(text), width))
        out += b"-----BEGIN CERTIFICATE-----" + eol + lines + b"-----END CERTIFICATE-----" + eol
    return out + (b"\x00" if nul else b"")


def _second_line_end_to_cr(data: bytes) -> bytes:
    i = data.index(b"\n", data.index(b"\n") + 1)
    return data[:i] + b"\r" + data[i + 1:]


def with_chain(data: bytes) -> Quote:
    return dataclasses.replace(QUOTE, certification_data=CertificationData(5, data))


def verdict(quote: Quote) -> tuple[str, tuple[str, ...], bytes, int]:
    r = verify_quote(quote, CASE.collateral, at=CASE.at)
    return r.status, r.advisory_ids, r.mrenclave, r.pck_serial


BASELINE = verdict(QUOTE)


def test_the_re_wrap_at_64_columns_is_the_original_bytes() -> None:
    assert len(DERS) == 3
    assert wrap(DERS) == ORIGINAL  # so the variants below differ only in their wrapping


@pytest.mark.parametrize(("width", "eol", "nul"), [
    (64, b"\n", True), (76, b"\n", True), (64, b"\r\n", True), (76, b"\r\n", False),
    (1, b"\n", False), (10_000, b"\n", True),
], ids=["64-LF", "76-LF", "64-CRLF", "76-CRLF-no-NUL", "1-column", "one-line"])
def test_real_chain_re_wrapped_verifies_the_same(width: int, eol: bytes, nul: bool) -> None:
    quote = with_chain(wrap(DERS, width, eol, nul))
    assert Quote.parse(quote.to_bytes()) == quote
    assert verdict(Quote.parse(quote.to_bytes())) == BASELINE
    chain = quote.certification_data.pck_chain()
    assert [c.public_bytes(Encoding.DER) for c in chain] == DERS


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_certificates_in_any_order_are_linked_leaf_first(order: tuple[int, ...]) -> None:
    quote = with_chain(wrap([DERS[i] for i in order], 76))
    chain = quote.certification_data.pck_chain()
    assert [c.public_bytes(Encoding.DER) for c in chain] == DERS
    assert verdict(quote) == BASELINE


def test_line_ends_between_blocks_are_allowed() -> None:
    spaced = wrap(DERS).replace(b"-----END CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n\n")
    assert verdict(with_chain(spaced)) == BASELINE


@pytest.mark.parametrize(("data", "match"), [
    (wrap(DERS)[:-1] + b"junk", r"4 stray bytes outside PEM blocks"),
    (b"intro\n" + wrap(DERS), r"stray bytes outside PEM blocks at offset 0"),
    (wrap(DERS).replace(b"-----END CERTIFICATE-----\n-----BEGIN",
                        b"-----END CERTIFICATE-----\nnote\n-----BEGIN", 1), "stray bytes"),
    (wrap(DERS).replace(b"\n", b"\r", 1), "certificate 0 has a BEGIN line not ended by LF"),
    (_second_line_end_to_cr(wrap(DERS)), "certificate 0 has a base64 line .* stray CR"),
    (wrap(DERS)[:200], "certificate 0 has no END CERTIFICATE line"),
    (re.sub(rb"\nM", b"\n*", wrap(DERS), count=1), "certificate 0 is not valid base64"),
    (wrap(DERS).replace(b"\n", b"\n\n", 2), "line that is empty"),
    (wrap([b"\x30\x03\x02\x01\x01", *DERS[1:]]), "certificate 0 does not parse"),
    (b"garbage", "holds no PEM certificate"),
    (b"", "holds no PEM certificate"),
], ids=["trailing-junk", "leading-text", "text-between", "bare-CR-begin", "bare-CR-line",
        "no-end", "bad-char", "blank-line",
        "not-a-certificate", "garbage", "empty"])
def test_what_is_not_pem_of_certificates_is_refused(data: bytes, match: str) -> None:
    with pytest.raises(QuoteFormatError, match=match) as err:
        with_chain(data).certification_data.pck_chain()
    assert "\n" not in str(err.value)


def test_base64_with_nonzero_padding_bits_is_refused() -> None:
    """One base64 text per DER: a different text for the same certificate is not accepted."""
    text = base64.b64encode(DERS[2])
    pad = text.index(b"=") - 1  # the last data character before the padding
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    bumped = text[:pad] + bytes([alphabet[alphabet.index(text[pad]) + 1]]) + text[pad + 1:]
    assert base64.b64decode(bumped) == DERS[2]  # the same certificate...
    data = ORIGINAL.replace(b"\n".join(text[i:i + 64] for i in range(0, len(text), 64)),
                            b"\n".join(bumped[i:i + 64] for i in range(0, len(bumped), 64)))
    assert data != ORIGINAL
    with pytest.raises(QuoteFormatError, match="certificate 2 is not canonical base64"):
        with_chain(data).certification_data.pck_chain()  # ...in another text: refused


@pytest.mark.parametrize(("ders", "match"), [
    ([DERS[0], DERS[0], DERS[1], DERS[2]], r"more than one leaf: certificate 0 \(.*SGX PCK "
                                           r"Certificate.*\) and certificate 1"),
    ([DERS[0], DERS[2]], r"does not link: the issuer of certificate 0 \(.*SGX PCK Certificate"),
    ([DERS[1], DERS[2]], None),
    ([DERS[0], DERS[1], DERS[2], DERS[2]], r"certificate 2 .* and certificate 3 .* have the "
                                           "same subject"),
    ([DERS[1]], None),
], ids=["two-leaves", "missing-CA", "CA-and-root", "root-twice", "CA-alone"])
def test_chains_that_do_not_link_are_refused_naming_the_certificate(
        ders: list[bytes], match: str | None) -> None:
    data = with_chain(wrap(ders)).certification_data
    if match is None:  # well formed, if short: the verifier refuses it (pck_chain), not the parser
        assert len(data.pck_chain()) == len(ders)
        return
    with pytest.raises(QuoteFormatError, match=match):
        data.pck_chain()


def test_link_chain_of_nothing_is_refused() -> None:
    with pytest.raises(QuoteFormatError, match="no certificate"):
        link_chain([])


def test_a_re_wrapped_chain_changes_nothing_the_verifier_checks() -> None:
    """The verifier's attack surface is the DER: a changed certificate byte is still refused."""
    der = bytearray(DERS[0])
    der[-5] ^= 1  # inside the PCK certificate's signature
    quote = with_chain(wrap([bytes(der), DERS[1], DERS[2]], 76, b"\r\n"))
    from enclavekit.errors import VerificationFailed

    with pytest.raises(VerificationFailed) as err:
        verify_quote(quote, CASE.collateral, at=CASE.at)
    assert err.value.check == "pck_chain"


# --- types 1-4 and 7 decoded; types 1-4 verified with a PCK chain from the collateral ---------


def test_types_1_to_3_decode_ppid_cpusvn_pcesvn_pceid() -> None:
    cpusvn, tail = bytes(range(16)), (13).to_bytes(2, "little") + b"\x00\x00"
    for cert_type, size, key in ((1, 16, "ppid"), (2, 256, "encrypted_ppid"),
                                 (3, 384, "encrypted_ppid")):
        ppid = bytes([cert_type]) * size
        view = CertificationData(cert_type, ppid + cpusvn + tail).to_dict()
        assert view[key] == ppid.hex() and view["cpusvn"] == cpusvn.hex()
        assert (view["pcesvn"], view["pceid"]) == (13, "0000")
        old = CertificationData(cert_type, ppid + cpusvn + tail[:2]).to_dict()  # no PCE-ID
        assert old["pceid"] is None
        with pytest.raises(QuoteFormatError, match=f"type {cert_type} .* expected {size + 20}"):
            CertificationData(cert_type, ppid + cpusvn).to_dict()


def test_type_4_decodes_the_leaf_and_type_7_is_kept_raw() -> None:
    for leaf in (DERS[0], wrap(DERS[:1], 76)):  # DER or PEM
        view = CertificationData(4, leaf).to_dict()
        assert "SGX PCK Certificate" in view["certificate"]["subject"]  # type: ignore[index]
    with pytest.raises(QuoteFormatError, match="holds 2 certificates"):
        CertificationData(4, wrap(DERS[:2])).pck_leaf()
    manifest = CertificationData(7, b"\x01\x02platform manifest")
    assert manifest.to_dict() == {"type": 7, "type_name": "PLATFORM_MANIFEST", "size": 19,
                                  "data": b"\x01\x02platform manifest".hex()}
    quote = dataclasses.replace(QUOTE, certification_data=manifest)
    assert Quote.parse(quote.to_bytes()).certification_data == manifest


def _typed(cert_type: int, data: bytes) -> Quote:
    return dataclasses.replace(QUOTE, certification_data=CertificationData(cert_type, data))


def test_type_4_verifies_with_the_chain_from_the_collateral() -> None:
    from enclavekit.errors import VerificationFailed

    ca_root = wrap(DERS[1:], nul=False)
    whole = wrap(DERS, nul=False)
    for leaf in (DERS[0], wrap(DERS[:1])):
        for chain in (ca_root, whole):
            coll = dataclasses.replace(CASE.collateral, pck_certificate_chain=chain)
            r = verify_quote(_typed(4, leaf), coll, at=CASE.at)
            assert (r.status, r.advisory_ids, r.mrenclave, r.pck_serial) == BASELINE
    with pytest.raises(VerificationFailed) as err:
        verify_quote(_typed(4, DERS[0]), CASE.collateral, at=CASE.at)
    assert err.value.check == "unsupported_quote"
    assert "--pck-cert" in str(err.value) and "PCCS that serves it by PPID" in str(err.value)
    other = dataclasses.replace(CASE.collateral, pck_certificate_chain=wrap(
        [DERS[1], DERS[1], DERS[2]], nul=False))  # the CA where the leaf should be
    with pytest.raises(VerificationFailed) as err:
        verify_quote(_typed(4, DERS[0]), other, at=CASE.at)
    assert err.value.check in ("certification_data", "pck_chain")
    with pytest.raises(VerificationFailed) as err:
        verify_quote(_typed(7, b"manifest"), dataclasses.replace(
            CASE.collateral, pck_certificate_chain=whole), at=CASE.at)
    assert err.value.check == "unsupported_quote" and "types 1-5 only" in str(err.value)


def test_type_4_leaf_other_than_the_chains_leaf_is_refused() -> None:
    """Another platform's genuine PCK certificate in the quote, the right chain beside it."""
    from enclavekit.errors import VerificationFailed

    other = Quote.parse(cases()["mobilecoin_sgx_2023"].quote).certification_data.pck_chain()[0]
    other_der = other.public_bytes(Encoding.DER)
    assert other_der != DERS[0]
    coll = dataclasses.replace(CASE.collateral, pck_certificate_chain=wrap(DERS, nul=False))
    with pytest.raises(VerificationFailed) as err:
        verify_quote(_typed(4, other_der), coll, at=CASE.at)
    assert err.value.check == "certification_data"
    assert "not the PCK certificate of the supplied chain" in str(err.value)
