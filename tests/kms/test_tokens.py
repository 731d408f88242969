"""Token verification: the real MAA token from the vectors, JWKS fetching and caching."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.errors import TokenRejected
from enclavekit.kms.tokens import TokenVerifier, TrustedAuthority
from tests.vectors import cases, vector

from ._support import AUTHORITY, FakeAuthority, public_jwk, rsa_key

MAA = cases("maa_vectors", "token", "signing_cert")


@pytest.mark.parametrize("v", MAA)
def test_real_maa_token_verifies_with_its_certificate_and_is_refused_as_expired(
        v: dict[str, Any]) -> None:
    token = vector(v["token"]).read_text().strip()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    issuer = "https://sharedwus.wus.attest.azure.net"
    authority = TrustedAuthority.from_certificate(issuer, vector(v["signing_cert"]).read_bytes(),
                                                  header["kid"])
    verifier = TokenVerifier([authority])
    verified = verifier.verify(token, now=v["iat"] + 60)
    assert verified.claims["x-ms-sgx-mrenclave"] == v["x-ms-sgx-mrenclave"]
    assert verified.claims["x-ms-sgx-mrsigner"] == v["x-ms-sgx-mrsigner"]
    assert verified.claims["x-ms-sgx-is-debuggable"] is v["x-ms-sgx-is-debuggable"]
    assert verified.authority == issuer
    with pytest.raises(TokenRejected, match=f"expired at {v['exp']}"):
        verifier.verify(token)
    with pytest.raises(TokenRejected, match="not valid before"):
        verifier.verify(token, now=v["iat"] - 60)
    # One flipped byte in the signature and the same key refuses it.
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[10] ^= 1
    bad = f"{head}.{body}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    with pytest.raises(TokenRejected, match="signature does not verify"):
        verifier.verify(bad, now=v["iat"] + 60)
    # Not trusted at all without the authority configured.
    with pytest.raises(TokenRejected, match="not a trusted authority"):
        TokenVerifier([TrustedAuthority(AUTHORITY)]).verify(token, now=v["iat"] + 60)


def test_jwks_entries_in_maa_form_with_x5c_are_used() -> None:
    auth = FakeAuthority()
    key = auth.key
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "maa test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    jwks = {"keys": [{"kid": auth.kid, "kty": "RSA", "x5c": [base64.b64encode(der).decode()]}]}
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=jwks))
    verifier = TokenVerifier([auth.trusted()], http=httpx.Client(transport=transport))
    assert verifier.verify(auth.token()).kid == auth.kid


def test_jwks_cached_for_the_ttl_and_refetched_for_a_new_kid_at_most_every_interval() -> None:
    auth = FakeAuthority()
    clock = [1000.0]
    verifier = auth.verifier(ttl=300, refresh_interval=30, clock=lambda: clock[0])
    now_claims = {"iat": 1000, "nbf": 1000, "exp": 5000}
    verifier.verify(auth.token(**now_claims), now=1000)
    verifier.verify(auth.token(**now_claims), now=1000)
    assert auth.fetches == 1
    # Key rotation: a new kid appears in the JWKS.
    auth.extra_keys.append(public_jwk(rsa_key("rotated"), "rotated-key"))
    rotated = auth.token(header={"kid": "rotated-key"}, key=rsa_key("rotated"), **now_claims)
    with pytest.raises(TokenRejected, match="kid 'rotated-key'"):
        verifier.verify(rotated, now=1000)  # within the refresh interval: no refetch
    assert auth.fetches == 1
    clock[0] = 1031
    assert verifier.verify(rotated, now=1031).kid == "rotated-key"
    assert auth.fetches == 2
    clock[0] = 1032  # unknown kids cannot make it fetch again right away
    with pytest.raises(TokenRejected):
        verifier.verify(auth.token(header={"kid": "nope"}, **now_claims), now=1032)
    assert auth.fetches == 2
    clock[0] = 1400  # TTL over: fetched again
    verifier.verify(auth.token(**now_claims), now=1400)
    assert auth.fetches == 3


@pytest.mark.parametrize(("response", "message"), [
    (httpx.Response(500), "HTTP 500"),
    (httpx.Response(200, content=b"not json"), "not JSON"),
    (httpx.Response(200, json={"nokeys": []}), "not a JWKS"),
    (httpx.Response(200, content=b'{"keys": [], "keys": []}'), "duplicate key"),
    (httpx.Response(302, headers={"Location": "https://attacker.example/certs"}), "HTTP 302"),
])
def test_bad_jwks_responses_refuse_the_token(response: httpx.Response, message: str) -> None:
    auth = FakeAuthority()
    verifier = TokenVerifier([auth.trusted()],
                             http=httpx.Client(transport=httpx.MockTransport(lambda r: response)))
    with pytest.raises(TokenRejected, match=message):
        verifier.verify(auth.token())


def test_unreachable_authority_refuses_the_token() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")
    auth = FakeAuthority()
    verifier = TokenVerifier([auth.trusted()],
                             http=httpx.Client(transport=httpx.MockTransport(fail)))
    with pytest.raises(TokenRejected, match=r"cannot fetch the keys .* ConnectError"):
        verifier.verify(auth.token())


@pytest.mark.parametrize("jwk_change", [
    {"kty": "EC"}, {"alg": "HS256"}, {"use": "enc"},
    {"n": base64.urlsafe_b64encode((2**1023 + 1).to_bytes(128, "big")).decode()},
])
def test_unusable_jwks_entries_are_ignored(jwk_change: dict[str, str]) -> None:
    auth = FakeAuthority()
    entry = public_jwk(auth.key, auth.kid) | jwk_change
    verifier = TokenVerifier([auth.trusted()], http=httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"keys": [entry]}))))
    with pytest.raises(TokenRejected, match="is not a key of"):
        verifier.verify(auth.token())


@pytest.mark.parametrize("token", [
    None, 42, "", "a.b", "a.b.c.d", "!!!.???.***", "e30.e30.", "W10.e30.", "e30.W10.",
    "x" * 70000,
])
def test_malformed_tokens_refused_with_a_typed_error(token: object) -> None:
    with pytest.raises(TokenRejected):
        FakeAuthority().verifier().verify(token)


def test_leeway_is_applied_to_exp_and_nbf() -> None:
    auth = FakeAuthority()
    verifier = auth.verifier(leeway=5)
    verifier.verify(auth.token(iat=990, nbf=1003, exp=1000), now=998)
    verifier.verify(auth.token(iat=990, nbf=1003, exp=1000), now=1004)
    with pytest.raises(TokenRejected, match="expired"):
        verifier.verify(auth.token(iat=990, nbf=990, exp=1000), now=1005)


_VERIFIER = FakeAuthority().verifier()
_GOOD = FakeAuthority().token(exp=4_000_000_000)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "


@settings(max_examples=1000, deadline=None)
@given(position=st.integers(0, _GOOD.rindex(".") - 1), char=st.sampled_from(_ALPHABET))
def test_any_change_to_the_signed_part_is_refused(position: int, char: str) -> None:
    if _GOOD[position] == char:
        return
    mutated = _GOOD[:position] + char + _GOOD[position + 1:]
    with pytest.raises(TokenRejected):
        _VERIFIER.verify(mutated)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(
    lambda b: ".".join(base64.urlsafe_b64encode(p).decode() for p in (b[:40], b[40:], b"")))))
def test_random_tokens_are_typed_refusals(token: str) -> None:
    with pytest.raises(TokenRejected):
        _VERIFIER.verify(token)
