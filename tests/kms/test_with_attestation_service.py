"""The key service trusting enclavekit's own attestation service (``enclavekit.attest.maa``):
the token it issues for a quote with JSON runtime data releases the key to that runtime key.

The attestation service runs with a parse-only appraiser (the vector quote has no collateral;
DCAP verification is tested in tests/attest) whose REPORTDATA is replaced by
SHA-256(runtime data), the binding the service checks before it issues ``x-ms-runtime``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from enclavekit.attest.maa import Appraisal, AttestationService, ServiceConfig
from enclavekit.dcap.quote import Quote
from enclavekit.kms.serve import build_service
from enclavekit.kms.tokens import TokenVerifier, TrustedAuthority
from tests.attest._maa import TestClient, asgi_client, b64url, sdk_quote

from ._support import enclave_jwk, open_release, policy_body, rsa_key

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

MAA = "http://maa.test"
SDK_MRSIGNER = "2c1a44952ae8207135c6c29b75b8c029372ee94b677e15c20bd42340f10d41aa"
RUNTIME = json.dumps({"keys": [enclave_jwk("enclave")]}).encode()


def _appraiser(quote: bytes) -> Appraisal:
    body = Quote.parse(quote).body
    bound = dataclasses.replace(body, reportdata=hashlib.sha256(RUNTIME).digest() + bytes(32))
    return Appraisal(quote, bound, tcb_status="UpToDate")


def _policy(min_svn: int) -> dict[str, object]:
    return {"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": SDK_MRSIGNER},
        {"claim": "x-ms-sgx-product-id", "equals": 1},
        {"claim": "x-ms-sgx-svn", "greaterOrEquals": min_svn},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False}]}]}


def _attest(tmp_path: Path, appraiser: Callable[[bytes], Appraisal]) -> tuple[str, TestClient]:
    """A token for the SDK quote from an attestation service with ``appraiser``, and a client
    of that service (the key service fetches its certificates through it)."""
    maa = AttestationService(ServiceConfig(tmp_path / "maa", issuer=MAA), appraiser)
    maa_http: TestClient = asgi_client(maa, MAA)
    reply = maa_http.post("/attest/SgxEnclave?api-version=2022-08-01", json={
        "quote": b64url(sdk_quote()), "runtimeData": {"data": b64url(RUNTIME),
                                                      "dataType": "JSON"}})
    assert reply.status_code == 200, reply.text
    return reply.json()["token"], maa_http


def test_token_from_enclavekits_attestation_service_releases_the_key(tmp_path: Path) -> None:
    token, maa_http = _attest(tmp_path, _appraiser)

    verifier = TokenVerifier([TrustedAuthority(MAA)], http=maa_http)  # fetches MAA/certs
    kms = build_service(tmp_path / "kms", [], verifier=verifier)
    http = TestClient(kms.app, base_url="https://kms.test",
                      headers={"Authorization": "Bearer x"})
    for name, svn in (("ok", 1), ("newer-only", 2)):
        r = http.post(f"/keys/{name}/create?api-version=7.4", json={
            "kty": "RSA-HSM", "attributes": {"exportable": True},
            "release_policy": policy_body(_policy(svn))})
        assert r.status_code == 200, r.text

    r = http.post("/keys/ok/release?api-version=7.4", json={"target": token})
    assert r.status_code == 200, r.text
    _, material = open_release(r.json()["value"], rsa_key("enclave"))
    released = serialization.load_der_private_key(material, password=None)
    assert isinstance(released, rsa.RSAPrivateKey)
    public = http.get("/keys/ok?api-version=7.4").json()["key"]
    assert b64url(released.public_key().public_numbers().n.to_bytes(256, "big")) == public["n"]

    r = http.post("/keys/newer-only/release?api-version=7.4", json={"target": token})
    assert r.status_code == 403
    last = list(kms.audit.records())[-1]
    assert last["issuer"] == MAA and "x-ms-sgx-svn greaterOrEquals 2" in last["reason"]
    assert last["enclave"]["x-ms-sgx-mrsigner"] == SDK_MRSIGNER


def test_the_default_release_policy_refuses_a_development_platform_unless_it_names_ek_dev_0001(
        tmp_path: Path) -> None:
    """A development platform's token (TCB ConfigurationNeeded, advisory EK-DEV-0001): the
    release is attempted under the default SGX release policy and refused, and released under
    the same policy naming EK-DEV-0001."""
    from enclavekit.kms.owner import sgx_release_policy

    def development(quote: bytes) -> Appraisal:
        return dataclasses.replace(_appraiser(quote), tcb_status="ConfigurationNeeded",
                                   advisory_ids=("EK-DEV-0001",))

    token, maa_http = _attest(tmp_path, development)
    kms = build_service(tmp_path / "kms", [],
                        verifier=TokenVerifier([TrustedAuthority(MAA)], http=maa_http))
    http = TestClient(kms.app, base_url="https://kms.test",
                      headers={"Authorization": "Bearer x"})
    mrsigner = bytes.fromhex(SDK_MRSIGNER)
    for name, allowed in (("strict", ()), ("dev", ("EK-DEV-0001",))):
        policy = sgx_release_policy(MAA, mrsigner=mrsigner, product_id=1, min_svn=1,
                                    allowed_advisories=allowed)
        r = http.post(f"/keys/{name}/create?api-version=7.4", json={
            "kty": "RSA-HSM", "attributes": {"exportable": True},
            "release_policy": policy_body(policy)})
        assert r.status_code == 200, r.text

    r = http.post("/keys/strict/release?api-version=7.4", json={"target": token})
    assert r.status_code == 403
    last = list(kms.audit.records())[-1]
    assert "x-ms-sgx-tcb-status" in last["reason"]
    r = http.post("/keys/dev/release?api-version=7.4", json={"target": token})
    assert r.status_code == 200, r.text
    _, material = open_release(r.json()["value"], rsa_key("enclave"))
    assert isinstance(serialization.load_der_private_key(material, password=None),
                      rsa.RSAPrivateKey)
