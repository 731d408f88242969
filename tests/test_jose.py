"""The JOSE module: each check it adds around PyJWT, attempted and seen refused."""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from enclavekit import jose
from enclavekit.errors import InvalidToken

NOW = 1_700_000_000
CLAIMS = {"iss": "https://attest.test", "iat": NOW, "nbf": NOW, "exp": NOW + 3600, "x": 1}


@cache
def _key(label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_sign(head: bytes, body: bytes, key: rsa.RSAPrivateKey | None = None) -> str:
    """A token over exactly these header and payload bytes (no library in between)."""
    signing_input = f"{b64u(head)}.{b64u(body)}"
    sig = (key or _key("a")).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64u(sig)}"


def _token(claims: dict[str, Any] | None = None, **header: Any) -> str:
    return jose.sign(CLAIMS if claims is None else claims, _key("a"),
                     headers={"kid": "a", "typ": "JWT", **header})


KEYS = {"a": _key("a").public_key()}


def _verify(token: object, **kwargs: Any) -> jose.Verified:
    return jose.verify(token, KEYS, at=NOW + 60, **kwargs)


def test_a_signed_token_round_trips_with_its_claims_and_kid() -> None:
    verified = _verify(_token(), issuer="https://attest.test")
    assert verified.claims == CLAIMS and verified.kid == "a"
    assert dict(verified.header) == {"alg": "RS256", "kid": "a", "typ": "JWT"}
    # PyJWT reads what jose writes (the library underneath, not a private format)
    assert jwt.decode(_token(), _key("a").public_key(), algorithms=["RS256"],
                      options={"verify_exp": False}) == CLAIMS


def test_unsecured_is_alg_none_with_an_empty_signature_and_never_verifies() -> None:
    token = jose.unsecured({"a": 1})
    head, _, sig = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "none"} and sig == ""
    assert jose.decode(token).claims() == {"a": 1}
    with pytest.raises(InvalidToken, match="algorithm 'none' refused; only RS256"):
        _verify(token)


@pytest.mark.parametrize("alg", ["none", "None", "", None, 7])
def test_alg_none_and_missing_alg_refused_with_or_without_a_signature(alg: object) -> None:
    head = json.dumps({"kid": "a"} | ({} if alg is None else {"alg": alg})).encode()
    for sig in ("", b64u(b"x" * 256)):
        with pytest.raises(InvalidToken, match=r"algorithm .* refused"):
            _verify(f"{b64u(head)}.{b64u(json.dumps(CLAIMS).encode())}.{sig}")


def test_hs256_keyed_with_the_public_key_refused() -> None:
    secret = _key("a").public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64u(b'{"alg":"HS256","kid":"a"}')
    signing_input = f"{head}.{b64u(json.dumps(CLAIMS).encode())}"
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(signing_input.encode())
    with pytest.raises(InvalidToken, match="algorithm 'HS256' refused"):
        _verify(f"{signing_input}.{b64u(mac.finalize())}")


@pytest.mark.parametrize("alg", ["ES256", "PS256", "RS512", "rs256", "RSA256"])
def test_algorithms_outside_the_allow_list_refused(alg: str) -> None:
    token = _raw_sign(json.dumps({"alg": alg, "kid": "a"}).encode(), json.dumps(CLAIMS).encode())
    with pytest.raises(InvalidToken, match=f"algorithm '{alg}' refused"):
        _verify(token)


def test_rsa256_alias_verifies_only_where_the_caller_allows_it() -> None:
    token = _raw_sign(b'{"alg":"RSA256","kid":"a"}', json.dumps(CLAIMS).encode())
    assert _verify(token, algorithms=("RS256", "RSA256")).claims == CLAIMS
    with pytest.raises(InvalidToken, match="'RSA256' refused"):
        _verify(token)


def test_duplicate_keys_in_header_or_payload_refused() -> None:
    body = json.dumps(CLAIMS).encode()
    with pytest.raises(InvalidToken, match="header: duplicate key 'alg'"):
        _verify(_raw_sign(b'{"alg":"none","alg":"RS256","kid":"a"}', body))
    dup = body[:-1] + b', "x": 2}'
    with pytest.raises(InvalidToken, match="payload: duplicate key 'x'"):
        _verify(_raw_sign(b'{"alg":"RS256","kid":"a"}', dup))
    # PyJWT alone would have taken the last value: the check is ours
    assert jwt.decode(_raw_sign(b'{"alg":"RS256","kid":"a"}', dup), KEYS["a"],
                      algorithms=["RS256"], options={"verify_exp": False})["x"] == 2


@pytest.mark.parametrize("header", [b"[1]", b'"RS256"', b"not json", b'{"alg":NaN}'])
def test_header_that_is_not_a_strict_json_object_refused(header: bytes) -> None:
    with pytest.raises(InvalidToken, match="header"):
        _verify(_raw_sign(header, json.dumps(CLAIMS).encode()))


def _respell(token: str) -> list[str]:
    head, body, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twiddled = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    return [f"{head}.{body}.{sig}{'=' * (-len(sig) % 4 or 1)}",          # padded
            f"{head}.{body}.{sig.replace('-', '+').replace('_', '/')}",  # standard alphabet
            f"{head}.{body}.{twiddled}",                                  # unused bits set
            f"{head}.{body}.{sig[:10]}!{sig[11:]}",                       # a foreign character
            f"{head}.{body}.{sig} ", f" {head}.{body}.{sig}",
            f"{head}.{body}.{sig[:-1]}"]                                   # impossible length


def test_only_unpadded_canonical_base64url_is_accepted() -> None:
    token = _token()
    sig = token.split(".")[2]
    for variant in _respell(token):
        if variant == token:
            continue
        with pytest.raises(InvalidToken, match="base64url"):
            _verify(variant)
    # PyJWT alone accepts the padded spelling of the same token: the check is ours
    padded = f"{token}{'=' * (-len(sig) % 4)}"
    assert padded != token
    jwt.decode(padded, KEYS["a"], algorithms=["RS256"], options={"verify_exp": False})


@pytest.mark.parametrize("token", [None, 42, b"e30.e30.", "", "a.b", "a.b.c.d", "....",
                                   "e30.e30", "e30.W10.", "!!!.???.***"])
def test_malformed_tokens_refused(token: object) -> None:
    with pytest.raises(InvalidToken):
        _verify(token)


def test_oversize_token_refused_before_decoding() -> None:
    big = _token(CLAIMS | {"pad": "x" * jose.MAX_TOKEN})
    with pytest.raises(InvalidToken, match=f"the limit is {jose.MAX_TOKEN}"):
        _verify(big)
    assert _verify(big, max_size=len(big)).claims["pad"]


def test_crit_refused_even_for_the_extension_pyjwt_knows() -> None:
    for header in ({"alg": "RS256", "kid": "a", "crit": ["b64"], "b64": False},
                   {"alg": "RS256", "kid": "a", "crit": ["exp"], "exp": 1}):
        with pytest.raises(InvalidToken, match="crit"):
            _verify(_raw_sign(json.dumps(header).encode(), json.dumps(CLAIMS).encode()))


def test_tampered_signature_payload_and_header_refused() -> None:
    token = _token()
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[5] ^= 1
    with pytest.raises(InvalidToken, match="signature does not verify with key 'a'"):
        _verify(f"{head}.{body}.{b64u(bytes(raw))}")
    forged = b64u(json.dumps(CLAIMS | {"x": 2}).encode())
    with pytest.raises(InvalidToken, match="signature does not verify"):
        _verify(f"{head}.{forged}.{sig}")
    other_head = b64u(json.dumps({"alg": "RS256", "kid": "a", "typ": "at+jwt"}).encode())
    with pytest.raises(InvalidToken, match="signature does not verify"):
        _verify(f"{other_head}.{body}.{sig}")


def test_signed_by_another_key_refused() -> None:
    token = jose.sign(CLAIMS, _key("attacker"), headers={"kid": "a"})
    with pytest.raises(InvalidToken, match="signature does not verify"):
        _verify(token)


@pytest.mark.parametrize("kid", ["unknown", "A", "a ", "", None, 5])
def test_unknown_or_missing_kid_refused(kid: object) -> None:
    token = _token(kid=kid) if isinstance(kid, str) and kid else _raw_sign(
        json.dumps({"alg": "RS256"} | ({} if kid is None else {"kid": kid})).encode(),
        json.dumps(CLAIMS).encode())
    with pytest.raises(InvalidToken, match="kid"):
        _verify(token)


def test_header_key_material_is_never_used() -> None:
    attacker = _key("attacker")
    nums = attacker.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": b64u(nums.n.to_bytes(256, "big")), "e": "AQAB"}
    token = jose.sign(CLAIMS, attacker, headers={"kid": "a", "jwk": jwk,
                                                  "jku": "https://attacker.example/certs"})
    with pytest.raises(InvalidToken, match="signature does not verify"):
        _verify(token)


def test_keys_that_are_not_rsa_or_too_short_refused() -> None:
    token = _token()
    with pytest.raises(InvalidToken, match="RSA key of at least 2048 bits, found"):
        jose.verify(token, {"a": ec.generate_private_key(ec.SECP256R1()).public_key()},
                    at=NOW)
    short = _key("short", 1024)
    with pytest.raises(InvalidToken, match="at least 2048 bits, found 1024"):
        jose.verify(_raw_sign(b'{"alg":"RS256","kid":"a"}', json.dumps(CLAIMS).encode(), short),
                    {"a": short.public_key()}, at=NOW)


def test_expired_refused_at_exp_and_after_and_accepted_just_before() -> None:
    token = _token()
    assert _verify(token) and jose.verify(token, KEYS, at=NOW + 3599)
    for at in (NOW + 3600, NOW + 10**6):
        with pytest.raises(InvalidToken, match=f"expired at {NOW + 3600}"):
            jose.verify(token, KEYS, at=at)
    assert jose.verify(token, KEYS, at=NOW + 3600, leeway=1)


def test_not_yet_valid_nbf_and_iat_refused() -> None:
    with pytest.raises(InvalidToken, match=f"not valid before {NOW}"):
        jose.verify(_token(), KEYS, at=NOW - 1)
    with pytest.raises(InvalidToken, match="issued in the future"):
        jose.verify(_token(CLAIMS | {"nbf": NOW - 10}), KEYS, at=NOW - 1)
    assert jose.verify(_token(), KEYS, at=NOW - 5, leeway=5)


@pytest.mark.parametrize(("claim", "value"), [("exp", "9999999999"), ("exp", True),
                                              ("nbf", "0"), ("iat", [1])])
def test_numeric_dates_must_be_json_numbers(claim: str, value: object) -> None:
    with pytest.raises(InvalidToken, match=f"{claim} must be a NumericDate"):
        _verify(_token(CLAIMS | {claim: value}))


def test_missing_exp_refused() -> None:
    with pytest.raises(InvalidToken, match="exp claim is missing"):
        _verify(_token({"iss": "https://attest.test"}))


def test_issuer_must_match_exactly_when_given() -> None:
    with pytest.raises(InvalidToken, match=r"issuer 'https://attest\.test' is not"):
        _verify(_token(), issuer="https://attest.test/")
    with pytest.raises(InvalidToken, match="issuer None is not"):
        _verify(_token({"exp": NOW + 10}), issuer="https://attest.test")


# --------------------------------------------------------------------------- JWKS


def _cert_der(key: rsa.RSAPrivateKey) -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _ne(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    nums = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "n": b64u(nums.n.to_bytes(nums.n.bit_length() // 8 + 1,
                                                                "big").lstrip(b"\0")),
            "e": b64u(nums.e.to_bytes(3, "big")), **extra}


def test_jwks_keys_from_x5c_and_from_n_e_by_exact_kid() -> None:
    x5c = {"kty": "RSA", "kid": "maa", "x5c": [base64.b64encode(_cert_der(_key("a"))).decode()]}
    keys = jose.jwks_keys({"keys": [x5c, _ne(_key("b"), "ne"),
                                    _ne(_key("attacker"), "maa")]})  # a repeat: first wins
    assert set(keys) == {"maa", "ne"}
    assert keys["maa"].public_numbers() == _key("a").public_key().public_numbers()
    assert keys["ne"].public_numbers() == _key("b").public_key().public_numbers()
    assert jose.jwks_keys(json.dumps({"keys": [x5c]}).encode()).keys() == {"maa"}


@pytest.mark.parametrize("change", [{"kty": "EC"}, {"alg": "HS256"}, {"use": "enc"},
                                    {"x5c": ["QUJD"]}, {"n": b64u((2**1023 + 1).to_bytes(128,
                                                                                         "big"))}])
def test_unusable_jwks_entries_are_left_out(change: dict[str, Any]) -> None:
    assert jose.jwks_keys({"keys": [_ne(_key("a"), "k") | change]}) == {}


@pytest.mark.parametrize(("doc", "message"), [
    (b'{"keys": [], "keys": []}', "duplicate key 'keys'"), (b"not json", "not JSON"),
    (b'{"nokeys": []}', "no keys array"), (b"[]", "no keys array"),
    (b" " * (jose.MAX_JWKS + 1), "the limit is"),
])
def test_bad_jwks_documents_refused(doc: bytes, message: str) -> None:
    with pytest.raises(InvalidToken, match=message):
        jose.jwks_keys(doc)


def test_fetch_jwks_follows_no_redirect_and_names_the_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/certs":
            return httpx.Response(200, json={"keys": [_ne(_key("a"), "a")]})
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"Location": "https://attest.test/certs"})
        raise httpx.ConnectError("refused")
    client = httpx.Client(transport=httpx.MockTransport(handler))
    doc = jose.fetch_jwks("https://attest.test/certs", client=client)
    assert set(jose.jwks_keys(doc)) == {"a"}
    with pytest.raises(InvalidToken, match="HTTP 302"):
        jose.fetch_jwks("https://attest.test/moved", client=client)
    with pytest.raises(InvalidToken, match=r"cannot fetch the keys from .*: ConnectError"):
        jose.fetch_jwks("https://attest.test/down", client=client)


def test_x5c_must_be_standard_base64_of_a_der_certificate() -> None:
    der = _cert_der(_key("a"))
    assert jose.x5c_certificate(base64.b64encode(der).decode())
    for bad in (b64u(der) if "-" in b64u(der) or "_" in b64u(der) else "!" + b64u(der),
                "QUJD", 7, base64.b64encode(der).decode() + "A"):
        with pytest.raises(InvalidToken, match="x5c"):
            jose.x5c_certificate(bad)


def test_none_never_verifies_even_when_a_caller_allows_it() -> None:
    jws = jose.decode(jose.unsecured(CLAIMS))
    with pytest.raises(InvalidToken, match="PyJWT has no verifier for 'none'"):
        jose.verify_signature(jws, KEYS["a"], algorithms=("none",))
