"""Attack classes TS-5 (evidence→claims binding), TS-6 (policy tampering) and TS-7 (JSON parser
differentials) from attacks.md, each attempted against the attestation service and refused.

Tests named ``parse_only`` use the parse-only appraiser (see ``_maa.py``) because they need a
quote whose REPORTDATA they choose; the others use real quotes, and TS-5's "claims come from
the verified quote" is checked with the DCAP verifier in ``test_maa_dcap.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from azure.security.attestation import AttestationPolicyToken, AttestationToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import Certificate

from enclavekit.attest.maa import AttestationService
from enclavekit.attest.policy import DEFAULT_SGX_POLICY, PERMIT_ALL_POLICY
from enclavekit.dcap.quote import Quote
from tests.attest._maa import (
    TestClient,
    asgi_client,
    b64url,
    jwt_parts,
    make_service,
    pem,
    sample,
    sdk_quote,
    sdk_runtime,
    signer,
)

_REPORTDATA = 48 + 320


def _error(reply: Any, status: int = 400) -> dict[str, str]:
    assert reply.status_code == status, reply.text
    error: dict[str, str] = reply.json()["error"]
    return error


def _b64json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def _sign(header: dict[str, Any], payload: str, key: rsa.RSAPrivateKey) -> str:
    head = _b64json(header)
    sig = key.sign(f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{payload}.{b64url(sig)}"


def _x5c(cert: Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


# --- TS-5: evidence → claims binding --------------------------------------------------------

@pytest.fixture
def aad(tmp_path: Path) -> TestClient:
    return asgi_client(make_service(tmp_path))


def test_ts5_swapped_runtime_data_refused(aad: TestClient) -> None:
    other = json.dumps({"jwk": {"kty": "EC", "crv": "P-256", "x": "attacker"}}).encode()
    for data_type in ("Binary", "JSON"):
        error = _error(aad.post("/attest/SgxEnclave", json={
            "quote": b64url(sdk_quote()),
            "runtimeData": {"data": b64url(other), "dataType": data_type}}))
        assert "runtimeData is not bound to the quote" in error["message"]


def test_ts5_init_time_data_not_matching_configid_refused(aad: TestClient) -> None:
    error = _error(aad.post("/attest/SgxEnclave", json={
        "quote": b64url(sdk_quote()), "runtimeData": {"data": b64url(sdk_runtime())},
        "initTimeData": {"data": b64url(b"\0" * 32), "dataType": "Binary"}}))
    assert "initTimeData is not bound" in error["message"]


def test_ts5_debug_quote_is_debuggable_and_a_production_policy_refuses_it(
        aad: TestClient) -> None:
    debug = bytes.fromhex(sample("intel_sdk_quotes", "debug")["QuoteHex"])
    reply = aad.post("/attest/SgxEnclave", json={"quote": b64url(debug)})
    claims = jwt_parts(reply.json()["token"])[1]
    assert claims["x-ms-sgx-is-debuggable"] is True and claims["is-debuggable"] is True
    policy = ('version=1.0; authorizationrules{[type=="x-ms-sgx-is-debuggable", value==false]'
              ' => permit();}; issuancerules{};')
    assert _error(aad.post("/attest/SgxEnclave", json={
        "quote": b64url(debug), "draftPolicyForAttestation": policy}))["code"] == \
        "PolicyEvaluationError"


def test_ts5_claims_in_the_request_body_refused(aad: TestClient) -> None:
    for field, value in (("x-ms-sgx-mrsigner", "00" * 32), ("x-ms-sgx-is-debuggable", False),
                         ("claims", {"x-ms-sgx-svn": 99})):
        error = _error(aad.post("/attest/SgxEnclave", json={"quote": b64url(sdk_quote()),
                                                             field: value}))
        assert "unknown field" in error["message"]


def test_ts5_parse_only_claims_in_runtime_json_stay_inside_x_ms_runtime(tmp_path: Path) -> None:
    forged = {"x-ms-sgx-mrsigner": "00" * 32, "x-ms-sgx-is-debuggable": False,
              "x-ms-sgx-svn": 99, "iss": "https://evil"}
    runtime = json.dumps(forged).encode()
    quote = bytearray(sdk_quote())
    quote[_REPORTDATA:_REPORTDATA + 32] = hashlib.sha256(runtime).digest()
    client = asgi_client(make_service(tmp_path))
    reply = client.post("/attest/SgxEnclave", json={
        "quote": b64url(bytes(quote)), "runtimeData": {"data": b64url(runtime),
                                                       "dataType": "JSON"}})
    claims = jwt_parts(reply.json()["token"])[1]
    assert claims["x-ms-runtime"] == forged
    assert claims["x-ms-sgx-mrsigner"] == Quote.parse(sdk_quote()).body.mrsigner.hex()
    assert claims["x-ms-sgx-svn"] == 1 and claims["iss"] == "http://maa.test"


# --- TS-6: policy tampering (isolated mode) -------------------------------------------------

@pytest.fixture
def isolated(tmp_path: Path) -> tuple[TestClient, AttestationService, Any, Any]:
    key, cert = signer("policy signer")
    service = make_service(tmp_path, mode="isolated", management_certs=(cert,))
    return asgi_client(service), service, key, cert


def _signed_policy(text: str, key: Any, cert: Any) -> str:
    return AttestationPolicyToken(text, signing_key=pem(key),
                                  signing_certificate=pem(cert)).to_jwt_string()


def test_ts6_unsigned_and_alg_none_policies_refused(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, service, _, _ = isolated
    for body in (PERMIT_ALL_POLICY, AttestationPolicyToken(PERMIT_ALL_POLICY).to_jwt_string()):
        assert _error(client.put("/policies/SgxEnclave", content=body), 401)["code"] == \
            "Unauthorized"
    assert _error(client.post("/policies/SgxEnclave:reset", content=b""), 401)
    assert service.state.policy("SgxEnclave").default


def test_ts6_policy_signed_by_an_unregistered_certificate_refused(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, service, _, cert = isolated
    stranger_key, stranger_cert = signer("policy signer")  # same name, another key
    body = _signed_policy(PERMIT_ALL_POLICY, stranger_key, stranger_cert)
    assert "not a policy-management" in _error(client.put("/policies/SgxEnclave", content=body),
                                                401)["message"]
    # a registered certificate in the header with the stranger's signature: does not verify
    payload = body.split(".")[1]
    forged = _sign({"alg": "RSA256", "jwk": {"x5c": [_x5c(cert)]}}, payload, stranger_key)
    assert _error(client.put("/policies/SgxEnclave", content=forged))["code"] == \
        "InvalidOperation"
    assert service.state.policy("SgxEnclave").default


def test_ts6_certificate_changes_signed_by_a_non_member_refused(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, service, _, cert = isolated
    stranger_key, stranger_cert = signer("stranger")
    for path, target in (("/certificates:add", stranger_cert), ("/certificates:remove", cert)):
        payload = _b64json({"policyCertificate": {"kty": "RSA", "x5c": [_x5c(target)]}})
        body = _sign({"alg": "RS256", "x5c": [_x5c(stranger_cert)]}, payload, stranger_key)
        assert _error(client.post(path, json=body), 401)["code"] == "Unauthorized"
        unsigned = f"{_b64json({'alg': 'none'})}.{payload}."
        assert _error(client.post(path, json=unsigned), 401)
    assert [pem(c) for c in service.state.management_certs] == [pem(cert)]


def test_ts6_replayed_older_signed_policy_and_reset_refused(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, service, key, cert = isolated
    strict = ('version=1.0; authorizationrules{[type=="x-ms-sgx-is-debuggable", value==false]'
              ' => permit();}; issuancerules{};')
    old = _signed_policy(PERMIT_ALL_POLICY, key, cert)
    new = _signed_policy(strict, key, cert)
    assert client.put("/policies/SgxEnclave", content=old).status_code == 200
    assert client.put("/policies/SgxEnclave", content=old).status_code == 200  # idempotent
    assert client.put("/policies/SgxEnclave", content=new).status_code == 200
    error = _error(client.put("/policies/SgxEnclave", content=old))
    assert error["code"] == "InvalidOperation" and "replay" in error["message"]
    assert service.state.policy("SgxEnclave").text == strict
    reset = AttestationToken(body=None, signing_key=pem(key),  # as the client's reset_policy
                             signing_certificate=pem(cert)).to_jwt_string()
    assert client.post("/policies/SgxEnclave:reset", content=reset).status_code == 200
    # the reset has been superseded by a new policy: replaying it is refused
    newer = _signed_policy(strict + "\n", key, cert)
    assert client.put("/policies/SgxEnclave", content=newer).status_code == 200
    assert "replay" in _error(client.post("/policies/SgxEnclave:reset",
                                          content=reset))["message"]
    assert service.state.policy("SgxEnclave").text == strict + "\n"
    # the record survives a restart
    again = make_service(service.config.data_dir)
    assert asgi_client(again).put("/policies/SgxEnclave", content=old).status_code == 400


def test_ts6_replayed_certificate_addition_refused(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, service, key, cert = isolated
    _, second = signer("second")
    # as Microsoft's client builds them, adding and removing one certificate are the same JWS
    change = _sign({"alg": "RSA256", "jwk": {"x5c": [_x5c(cert)]}},
                   _b64json({"policyCertificate": {"kty": "RSA", "x5c": [_x5c(second)]}}), key)
    assert client.post("/certificates:add", json=change).status_code == 200
    assert client.post("/certificates:remove", json=change).status_code == 200
    # replaying the old addition (say, of a certificate removed as compromised) is refused
    assert "replay" in _error(client.post("/certificates:add", json=change))["message"]
    assert [pem(c) for c in service.state.management_certs] == [pem(cert)]


def test_ts6_policy_token_hash_is_over_the_exact_text_received(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, _, key, cert = isolated
    body = _signed_policy(DEFAULT_SGX_POLICY, key, cert) + "\n"
    token = client.put("/policies/SgxEnclave", content=body).json()["token"]
    claims = jwt_parts(token)[1]
    assert claims["x-ms-policy-token-hash"] == b64url(hashlib.sha256(body.encode()).digest())
    assert claims["x-ms-policy-signer"]["x5c"] == [_x5c(cert)]


# --- TS-7: duplicate keys (parser differentials) ---------------------------------------------

def test_ts7_duplicate_keys_in_the_request_body_refused(aad: TestClient) -> None:
    quote = b64url(sdk_quote())
    for raw in (f'{{"quote": "{quote}", "quote": "{quote}"}}',
                f'{{"quote": "{quote}", "runtimeData": {{"data": "AA", "data": "AB"}}}}',
                f'{{"quote": "{quote}", "nonce": "a", "nonce": "b"}}'):
        error = _error(aad.post("/attest/SgxEnclave", content=raw.encode(),
                                headers={"Content-Type": "application/json"}))
        assert "duplicate key" in error["message"]


def test_ts7_parse_only_duplicate_keys_in_runtime_json_refused(aad: TestClient) -> None:
    runtime = b'{"keys": [{"kty": "RSA"}], "keys": []}'
    quote = bytearray(sdk_quote())
    quote[_REPORTDATA:_REPORTDATA + 32] = hashlib.sha256(runtime).digest()
    error = _error(aad.post("/attest/SgxEnclave", json={
        "quote": b64url(bytes(quote)),
        "runtimeData": {"data": b64url(runtime), "dataType": "JSON"}}))
    assert "duplicate key 'keys'" in error["message"]


def test_ts7_duplicate_keys_in_policy_and_certificate_jws_refused(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, service, key, cert = isolated
    text = b64url(PERMIT_ALL_POLICY.encode())
    payload = b64url(f'{{"AttestationPolicy": "{text}", "AttestationPolicy": "{text}"}}'
                     .encode())
    body = _sign({"alg": "RS256", "x5c": [_x5c(cert)]}, payload, key)
    assert _error(client.put("/policies/SgxEnclave", content=body))["code"] == "InvalidOperation"
    head = b64url(b'{"alg": "none", "alg": "RS256"}')
    assert _error(client.put("/policies/SgxEnclave", content=f"{head}.{payload}."))
    _, other = signer("other")
    entry = f'{{"kty": "RSA", "x5c": ["{_x5c(other)}"]}}'
    payload = b64url(f'{{"policyCertificate": {entry}, "policyCertificate": {entry}}}'.encode())
    body = _sign({"alg": "RS256", "x5c": [_x5c(cert)]}, payload, key)
    assert _error(client.post("/certificates:add", json=body))["code"] == "InvalidOperation"
    assert service.state.policy("SgxEnclave").default
    assert len(service.state.management_certs) == 1


def _reencodings(jws: str) -> list[str]:
    """The same signed JWS in other base64 spellings: padded, standard alphabet, a
    signature whose last character differs only in the unused low bits."""
    head, body, sig = jws.split(".")
    padded = sig + "=" * (-len(sig) % 4)
    standard = sig.replace("-", "+").replace("_", "/")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = (6 - (len(sig) * 6) % 8) % 6  # unused low bits of the last character
    last = alphabet.index(sig[-1])
    twiddled = sig[:-1] + alphabet[last ^ 1] if spare else sig
    out = [f"{head}.{body}.{s}" for s in (padded, standard, twiddled) if s != sig]
    out.append(f"{head}=.{body}.{sig}" if len(head) % 4 else f"{head}.{body}=.{sig}")
    return out


def test_ts6_replay_of_a_superseded_policy_in_another_base64_spelling_refused(
        isolated: tuple[TestClient, AttestationService, Any, Any]) -> None:
    client, service, key, cert = isolated
    strict = ('version=1.0; authorizationrules{[type=="x-ms-sgx-is-debuggable", value==false]'
              ' => permit();}; issuancerules{};')
    old = _signed_policy(PERMIT_ALL_POLICY, key, cert)
    assert client.put("/policies/SgxEnclave", content=old).status_code == 200
    assert client.put("/policies/SgxEnclave",
                      content=_signed_policy(strict, key, cert)).status_code == 200
    variants = _reencodings(old)
    assert len(variants) >= 3
    for variant in variants:
        # the same signature spelled differently is not a new signed change
        assert _error(client.put("/policies/SgxEnclave", content=variant))["code"] == \
            "InvalidOperation", variant
    assert service.state.policy("SgxEnclave").text == strict
