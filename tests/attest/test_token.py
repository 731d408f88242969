"""verify_token as a relying party uses it: tokens of enclavekit's attestation service and the
real Azure Attestation token in the vectors, verified at the time the vectors say, and every
kind of bad token refused with one typed error."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import enclavekit.attest
from enclavekit.attest import jwks_source, verify_token
from enclavekit.attest.maa import AttestationService, ServiceConfig
from enclavekit.attest.maa.server import running
from enclavekit.errors import InvalidToken
from tests.attest._maa import (
    TestClient,
    asgi_client,
    b64url,
    jwt_parts,
    parse_only_appraiser,
    sdk_quote,
    sdk_runtime,
)
from tests.vectors import cases, vector

NOW = 1_750_000_000
MAA = cases("maa_vectors", "token", "signing_cert", "iat", "exp")
AZURE_ISSUER = "https://sharedwus.wus.attest.azure.net"


def test_attest_public_surface_is_pinned() -> None:
    assert sorted(enclavekit.attest.__all__) == ["JWKSSource", "jwks_source", "verify_token"]
    for name in enclavekit.attest.__all__:
        assert hasattr(enclavekit.attest, name)


# --------------------------------------------------------------------------- our service


@pytest.fixture
def service(tmp_path: Path) -> AttestationService:
    return AttestationService(ServiceConfig(tmp_path), parse_only_appraiser, clock=lambda: NOW)


def _attest(client: TestClient) -> str:
    reply = client.post("/attest/SgxEnclave", json={
        "quote": b64url(sdk_quote()),
        "runtimeData": {"data": b64url(sdk_runtime()), "dataType": "Binary"}})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    return token


def test_a_token_of_our_service_verifies_with_its_certs(service: AttestationService) -> None:
    client = asgi_client(service)
    token = _attest(client)
    certs = client.get("/certs")
    claims = verify_token(token, jwks=certs.json(), issuer="http://maa.test", at=NOW + 60)
    assert claims == jwt_parts(token)[1]
    assert claims["x-ms-sgx-ehd"] == b64url(sdk_runtime())
    # the JWKS as bytes and as a fetcher give the same answer
    assert verify_token(token, jwks=certs.content, at=NOW + 60) == claims
    assert verify_token(token, jwks=lambda: certs.content, at=NOW + 60) == claims
    with pytest.raises(InvalidToken, match=r"expired at \d+"):
        verify_token(token, jwks=certs.json(), at=NOW + 8 * 3600)
    with pytest.raises(InvalidToken, match=r"issuer 'http://maa\.test' is not"):
        verify_token(token, jwks=certs.json(), issuer="https://maa.test", at=NOW + 60)


def test_after_a_key_rotation_old_and_new_tokens_verify_by_kid(
        service: AttestationService) -> None:
    client = asgi_client(service)
    before = _attest(client)
    service.rotate_signing_key()
    after = _attest(client)
    assert jwt_parts(before)[0]["kid"] != jwt_parts(after)[0]["kid"]
    certs = client.get("/certs").json()
    for token in (before, after):
        assert verify_token(token, jwks=certs, at=NOW + 1)["iss"] == "http://maa.test"
    # the new key alone does not verify the old token
    newest = {"keys": [k for k in certs["keys"] if k["kid"] == jwt_parts(after)[0]["kid"]]}
    with pytest.raises(InvalidToken, match="is not a trusted key"):
        verify_token(before, jwks=newest, at=NOW + 1)


def test_an_unsecured_draft_policy_token_of_our_service_is_refused(
        service: AttestationService) -> None:
    client = asgi_client(service)
    reply = client.post("/attest/SgxEnclave", json={
        "quote": b64url(sdk_quote()),
        "draftPolicyForAttestation": "version=1.0; authorizationrules{=> permit();};"
                                     " issuancerules{};"})
    token = reply.json()["token"]
    with pytest.raises(InvalidToken, match="algorithm 'none' refused"):
        verify_token(token, jwks=client.get("/certs").json(), at=NOW + 1)


def test_jwks_fetched_from_the_running_service_url(service: AttestationService,
                                                   tmp_path: Path) -> None:
    from enclavekit.attest.maa import create_app

    with running(create_app(service)) as url:
        token = _attest(asgi_client(service, url))
        claims = verify_token(token, jwks=jwks_source(f"{url}/certs"), at=NOW + 60)
        assert claims["iss"] == url
        with pytest.raises(InvalidToken, match=r"cannot fetch the keys from .*: HTTP 404"):
            verify_token(token, jwks=jwks_source(f"{url}/nothing"), at=NOW + 60)
    path = tmp_path / "certs.json"
    path.write_bytes(asgi_client(service).get("/certs").content)
    assert verify_token(token, jwks=jwks_source(str(path)), at=NOW + 60) == claims
    with pytest.raises(InvalidToken, match="cannot read the keys from"):
        verify_token(token, jwks=jwks_source(str(tmp_path / "missing.json")), at=NOW + 60)


def test_the_fetcher_is_not_called_for_a_malformed_token() -> None:
    calls: list[int] = []

    def fetch() -> bytes:
        calls.append(1)
        return b'{"keys": []}'
    hs256 = b64url(b'{"alg":"HS256"}')
    for token in ("", "a.b", "e30.e30.", f"{hs256}.e30."):
        with pytest.raises(InvalidToken):
            verify_token(token, jwks=fetch, at=NOW)
    assert calls == []


# --------------------------------------------------------------------------- Azure Attestation


def _azure_jwks(v: dict[str, Any], key: rsa.RSAPublicKey | None = None) -> dict[str, Any]:
    """/certs as Azure Attestation serves it: the kid and x5c of its signing certificate."""
    kid = jwt_parts(vector(v["token"]).read_text().strip())[0]["kid"]
    cert = x509.load_pem_x509_certificate(vector(v["signing_cert"]).read_bytes())
    if key is None:
        der = cert.public_bytes(serialization.Encoding.DER)
        return {"keys": [{"kid": kid, "kty": "RSA", "x5c": [base64.b64encode(der).decode()]}]}
    nums = key.public_numbers()
    return {"keys": [{"kid": kid, "kty": "RSA", "n": b64url(nums.n.to_bytes(256, "big")),
                      "e": b64url(nums.e.to_bytes(3, "big"))}]}


@pytest.mark.parametrize("v", MAA)
def test_azure_attestation_token_verifies_at_its_time_with_its_claims(v: dict[str, Any]) -> None:
    token = vector(v["token"]).read_text().strip()
    claims = verify_token(token, jwks=_azure_jwks(v), issuer=AZURE_ISSUER, at=v["iat"] + 60)
    assert claims["iat"] == v["iat"] and claims["exp"] == v["exp"]
    for name in ("x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner", "x-ms-sgx-product-id",
                 "x-ms-sgx-svn", "x-ms-sgx-is-debuggable"):
        assert claims[name] == v[name], name
    assert claims["x-ms-sgx-collateral"]["quotehash"] == v["quotehash"]
    assert verify_token(token, jwks=_azure_jwks(v), at=v["exp"] - 1)["iss"] == AZURE_ISSUER


@pytest.mark.parametrize("v", MAA)
def test_azure_attestation_token_refusals(v: dict[str, Any]) -> None:
    token = vector(v["token"]).read_text().strip()
    jwks = _azure_jwks(v)
    at = v["iat"] + 60
    with pytest.raises(InvalidToken, match=f"expired at {v['exp']}"):
        verify_token(token, jwks=jwks)  # now
    with pytest.raises(InvalidToken, match=f"not valid before {v['iat']}"):
        verify_token(token, jwks=jwks, at=v["iat"] - 60)
    with pytest.raises(InvalidToken, match=r"issuer .* is not 'https://evil\.example'"):
        verify_token(token, jwks=jwks, issuer="https://evil.example", at=at)
    # the same kid with another key: the signature does not verify
    other = rsa.generate_private_key(65537, 2048).public_key()
    with pytest.raises(InvalidToken, match="signature does not verify"):
        verify_token(token, jwks=_azure_jwks(v, other), at=at)
    with pytest.raises(InvalidToken, match="is not a trusted key"):
        verify_token(token, jwks={"keys": [jwks["keys"][0] | {"kid": "another"}]}, at=at)
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged = b64url(json.dumps(claims | {"x-ms-sgx-is-debuggable": True}).encode())
    with pytest.raises(InvalidToken, match="signature does not verify"):
        verify_token(f"{head}.{forged}.{sig}", jwks=jwks, at=at)
    for malformed in (token[:-1], token + "=", f"{head}.{body}", token.replace(".", "..", 1)):
        with pytest.raises(InvalidToken):
            verify_token(malformed, jwks=jwks, at=at)


def test_azure_samples_response_without_its_signature_is_refused() -> None:
    # The Azure sample recorded the response's header and claims but not its signature.
    text = vector("azure_samples_maa/post.attest.response.jwt.body.json").read_text()
    header, end = json.JSONDecoder().raw_decode(text.lstrip())
    claims = json.loads(text.lstrip()[end:])
    kid = header["kid"]
    key = rsa.generate_private_key(65537, 2048).public_key()
    nums = key.public_numbers()
    jwks = {"keys": [{"kid": kid, "kty": "RSA", "n": b64url(nums.n.to_bytes(256, "big")),
                      "e": "AQAB"}]}
    body = b64url(json.dumps(claims).encode())
    head = b64url(json.dumps(header).encode())
    for signature in ("", b64url(bytes(256))):
        with pytest.raises(InvalidToken, match="signature does not verify"):
            verify_token(f"{head}.{body}.{signature}", jwks=jwks, issuer=claims["iss"],
                         at=claims["iat"] + 1)
    unsecured = b64url(b'{"alg":"none"}')
    with pytest.raises(InvalidToken, match="algorithm 'none' refused"):
        verify_token(f"{unsecured}.{body}.", jwks=jwks, at=claims["iat"] + 1)
