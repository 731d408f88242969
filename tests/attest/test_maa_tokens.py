"""Token contents compared with the real MAA token in the vectors; header, times, nonce, policy.

The appraiser here parses the SDK quote and reports the *collateral hashes MAA recorded for it*
(the vector has no collateral of its own), so the whole token can be compared claim by claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509

from enclavekit.attest.maa import Appraisal, AttestationService, ServiceConfig
from enclavekit.attest.maa.jws import b64decode_any
from enclavekit.attest.maa.tokens import ATTESTATION_TOKEN_LIFETIME
from enclavekit.attest.policy import DEFAULT_SGX_POLICY, policy_hash
from enclavekit.dcap.quote import Quote
from tests.attest._maa import TestClient, asgi_client, b64url, jwt_parts, sdk_quote, sdk_runtime
from tests.vectors import vector

NOW = 1_700_000_000.25


def _real() -> tuple[dict[str, Any], dict[str, Any]]:
    doc = json.loads(vector("azure_sdk_python_maa/attest_sgx_token_decoded.json").read_text())
    return doc["header"], doc["payload"]


def _as_maa_recorded(quote: bytes) -> Appraisal:
    recorded = dict(_real()[1]["x-ms-sgx-collateral"])
    recorded.pop("quotehash")
    return Appraisal(quote, Quote.parse(quote).body, collateral_hashes=recorded)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    service = AttestationService(ServiceConfig(tmp_path), _as_maa_recorded, clock=lambda: NOW)
    return asgi_client(service)


def _attest(client: TestClient, body: dict[str, Any], kind: str = "SgxEnclave") -> str:
    reply = client.post(f"/attest/{kind}?api-version=2022-08-01", json=body)
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    return token


def test_token_has_the_real_tokens_claims_with_the_same_types_and_values(
        client: TestClient) -> None:
    real_header, real = _real()
    token = _attest(client, {"quote": b64url(sdk_quote()),
                             "runtimeData": {"data": b64url(sdk_runtime()),
                                             "dataType": "Binary"}})
    header, ours = jwt_parts(token)
    assert set(header) == set(real_header) and header["alg"] == "RS256"
    assert header["typ"] == "JWT" and header["jku"] == "http://maa.test/certs"
    assert set(real) <= set(ours), f"missing {set(real) - set(ours)}"
    for name, value in real.items():
        assert type(ours[name]) is type(value), name
    same = set(real) - {"iss", "iat", "nbf", "exp", "jti", "x-ms-policy-hash"}
    for name in sorted(same):
        assert ours[name] == real[name], name
    assert ours["x-ms-policy-hash"] == policy_hash(DEFAULT_SGX_POLICY)
    assert ours["iat"] == ours["nbf"] == int(NOW)
    assert ours["exp"] - ours["iat"] == ATTESTATION_TOKEN_LIFETIME == real["exp"] - real["iat"]
    assert ours["iss"] == "http://maa.test" and len(ours["jti"]) == 64
    int(ours["jti"], 16)
    # the default policy issues exactly the real token's x-ms-policy object
    assert ours["x-ms-policy"] == real["x-ms-policy"]


def test_token_signature_verifies_with_the_key_in_certs(client: TestClient) -> None:
    token = _attest(client, {"quote": b64url(sdk_quote())})
    kid = jwt_parts(token)[0]["kid"]
    keys = client.get("/certs").json()["keys"]
    entry = next(k for k in keys if k["kid"] == kid)
    assert set(entry) == {"kid", "kty", "x5c"} and "\n" not in entry["x5c"][0]
    cert = x509.load_der_x509_certificate(b64decode_any(entry["x5c"][0], "x5c"))
    claims = jwt.decode(token, cert.public_key(), algorithms=["RS256"],  # type: ignore[arg-type]
                        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert claims["x-ms-sgx-mrsigner"] == _real()[1]["x-ms-sgx-mrsigner"]
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, cert.public_key(), algorithms=["RS256"],  # type: ignore[arg-type]
                   options={"verify_exp": False})


@pytest.mark.parametrize("nonce, echoed", [("abc-123", "abc-123"), (42, "42")])
def test_nonce_string_or_number_is_echoed(client: TestClient, nonce: object,
                                          echoed: str) -> None:
    _, claims = jwt_parts(_attest(client, {"quote": b64url(sdk_quote()), "nonce": nonce}))
    assert claims["nonce"] == echoed


@pytest.mark.parametrize("encode", [
    b64url,
    lambda b: b64url(b) + "=" * (-len(b64url(b)) % 4),
    lambda b: __import__("base64").b64encode(b).decode(),
], ids=["unpadded-url", "padded-url", "standard"])
def test_every_base64_variant_is_accepted(client: TestClient, encode: Any) -> None:
    _, claims = jwt_parts(_attest(client, {
        "quote": encode(sdk_quote()),
        "runtimeData": {"data": encode(sdk_runtime()), "dataType": "binary"}}))
    assert claims["x-ms-sgx-ehd"] == b64url(sdk_runtime())


def test_json_runtime_data_becomes_x_ms_runtime_and_no_ehd(client: TestClient) -> None:
    _, claims = jwt_parts(_attest(client, {
        "quote": b64url(sdk_quote()),
        "runtimeData": {"data": b64url(sdk_runtime()), "dataType": "JSON"}}))
    assert claims["x-ms-runtime"] == json.loads(sdk_runtime())
    assert not {"x-ms-sgx-ehd", "maa-ehd", "aas-ehd"} & set(claims)


def test_open_enclave_report_header_is_required_and_stripped(client: TestClient) -> None:
    quote = sdk_quote()
    report = (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + \
        len(quote).to_bytes(8, "little") + quote
    _, claims = jwt_parts(_attest(client, {"report": b64url(report)}, "openenclave"))
    assert claims["x-ms-sgx-collateral"]["quotehash"] == _real()[1][
        "x-ms-sgx-collateral"]["quotehash"]
    reply = client.post("/attest/OpenEnclave", json={"report": b64url(quote)})
    assert reply.status_code == 400 and "Open Enclave" in reply.json()["error"]["message"]


def test_policy_issued_claims_cannot_override_service_claims(client: TestClient) -> None:
    draft = ('version=1.0; authorizationrules{=>permit();}; issuancerules{'
             '=> issue(type="x-ms-sgx-mrsigner", value="00"); '
             '=> issue(type="iss", value="https://evil"); '
             '=> issue(type="custom", value="yes");};')
    token = _attest(client, {"quote": b64url(sdk_quote()), "draftPolicyForAttestation": draft})
    header, claims = jwt_parts(token)
    assert header == {"alg": "none"} and token.endswith(".")
    assert claims["x-ms-sgx-mrsigner"] == _real()[1]["x-ms-sgx-mrsigner"]
    assert claims["iss"] == "http://maa.test"
    assert claims["custom"] == "yes" and claims["x-ms-policy"]["custom"] == "yes"
    assert claims["x-ms-policy-hash"] == policy_hash(draft)


def test_deny_by_policy_is_a_400_policy_evaluation_error(client: TestClient) -> None:
    draft = ('version=1.0; authorizationrules{[type=="x-ms-sgx-svn", value>=2] => permit();};'
             ' issuancerules{};')
    reply = client.post("/attest/SgxEnclave", json={"quote": b64url(sdk_quote()),
                                                    "draftPolicyForAttestation": draft})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "PolicyEvaluationError"
    assert "Retry-After" not in reply.headers


def test_runtime_data_not_bound_is_refused(client: TestClient) -> None:
    reply = client.post("/attest/SgxEnclave", json={
        "quote": b64url(sdk_quote()),
        "runtimeData": {"data": b64url(sdk_runtime() + b" "), "dataType": "Binary"}})
    assert reply.status_code == 400
    assert "REPORTDATA[0:32]" in reply.json()["error"]["message"]


def test_init_time_data_must_hash_into_configid(client: TestClient) -> None:
    # the SDK quote's CONFIGID is zero: no init-time data can be bound to it
    reply = client.post("/attest/SgxEnclave", json={
        "quote": b64url(sdk_quote()), "initTimeData": {"data": b64url(b"{}"),
                                                       "dataType": "JSON"}})
    assert reply.status_code == 400 and "CONFIGID" in reply.json()["error"]["message"]


def test_claims_visible_to_the_policy_include_legacy_aliases_and_runtime_json(
        client: TestClient) -> None:
    draft = ('version=1.2; authorizationrules{[type=="$is-debuggable", value==false] && '
             'r:[type=="x-ms-runtime"] => permit();}; issuancerules{'
             'r:[type=="x-ms-runtime"] => issue(type="crv", value=JmesPath(r.value, "jwk.crv"));'
             '};')
    _, claims = jwt_parts(_attest(client, {
        "quote": b64url(sdk_quote()), "draftPolicyForAttestation": draft,
        "runtimeData": {"data": b64url(sdk_runtime()), "dataType": "JSON"}}))
    assert claims["crv"] == "P-256"
