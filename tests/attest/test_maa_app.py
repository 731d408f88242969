"""Bad input to every endpoint: 400 (or 401/404/405) with MAA's CloudError body, never a 5xx,
never ``Retry-After``, and the service keeps serving."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.attest.maa import AttestationService
from enclavekit.attest.maa.app import MAX_BODY, error_status
from enclavekit.errors import EnclaveKitError
from tests.attest._maa import TestClient, asgi_client, b64url, make_service, sdk_quote, sdk_runtime


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> AttestationService:
    return make_service(tmp_path_factory.mktemp("maa-app"))


@pytest.fixture(scope="module")
def client(service: AttestationService) -> TestClient:
    return asgi_client(service)


def _cloud_error(reply: Any, status: int = 400, code: str | None = None) -> str:
    assert reply.status_code == status, reply.text
    assert "Retry-After" not in reply.headers
    error = reply.json()["error"]
    assert set(error) == {"code", "message"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    message: str = error["message"]
    return message


def _still_serving(client: TestClient) -> None:
    reply = client.post("/attest/SgxEnclave", json={"quote": b64url(sdk_quote())})
    assert reply.status_code == 200, reply.text


QUOTE = b64url(sdk_quote())
BAD_ATTEST_BODIES: list[tuple[str, Any, str]] = [
    ("not-an-object", [QUOTE], "JSON object"),
    ("no-quote", {}, "missing quote"),
    ("null-quote", {"quote": None}, "missing quote"),
    ("quote-number", {"quote": 5}, "base64url string"),
    ("quote-bad-char", {"quote": "AAAA*AAA"}, "not base64"),
    ("quote-bad-length", {"quote": "AAAAA"}, "impossible length"),
    ("quote-truncated", {"quote": QUOTE[:200]}, "quote does not parse"),
    ("quote-empty", {"quote": ""}, "quote does not parse"),
    ("unknown-field", {"quote": QUOTE, "quoteX": 1}, "unknown field(s) quoteX"),
    ("runtime-not-object", {"quote": QUOTE, "runtimeData": "abc"}, "runtimeData must be"),
    ("runtime-unknown-field", {"quote": QUOTE, "runtimeData": {"data": "", "x": 1}},
     "unknown field"),
    ("runtime-bad-type", {"quote": QUOTE, "runtimeData": {"data": "AA", "dataType": "XML"}},
     "Binary or JSON"),
    ("runtime-data-int", {"quote": QUOTE, "runtimeData": {"data": 7}}, "base64url string"),
    ("runtime-json-not-json", {"quote": QUOTE, "runtimeData": {
        "data": b64url(b"\xff\xfe"), "dataType": "JSON"}}, "not UTF-8 JSON"),
    ("runtime-json-array", {"quote": QUOTE, "runtimeData": {
        "data": b64url(b"[1]"), "dataType": "JSON"}}, "not a JSON object"),
    ("nonce-object", {"quote": QUOTE, "nonce": {}}, "nonce must be"),
    ("nonce-bool", {"quote": QUOTE, "nonce": True}, "nonce must be"),
    ("nonce-huge", {"quote": QUOTE, "nonce": "n" * 5000}, "nonce longer"),
    ("draft-number", {"quote": QUOTE, "draftPolicyForAttestation": 3}, "string of policy"),
    ("draft-syntax", {"quote": QUOTE, "draftPolicyForAttestation": "version=9.9;"},
     "policy does not parse"),
    ("report-field-on-sgx", {"report": QUOTE}, "unknown field(s) report"),
]


@pytest.mark.parametrize("name, body, words", BAD_ATTEST_BODIES,
                         ids=[b[0] for b in BAD_ATTEST_BODIES])
def test_bad_attest_bodies_get_400_saying_what_is_wrong(client: TestClient, name: str,
                                                        body: Any, words: str) -> None:
    assert words in _cloud_error(client.post("/attest/SgxEnclave", json=body))


def test_non_json_and_non_utf8_bodies(client: TestClient) -> None:
    for raw in (b"{", b"\xff\xff", b"", b'{"quote": NaN}', b'{"nonce": Infinity}'):
        _cloud_error(client.post("/attest/SgxEnclave", content=raw,
                                 headers={"Content-Type": "application/json"}))
    _cloud_error(client.put("/policies/SgxEnclave", content=b"\xff\xfe"))
    _still_serving(client)


def test_deeply_nested_json_is_refused(client: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert "nested too deeply" in _cloud_error(client.post("/attest/SgxEnclave", content=deep))
    runtime = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    message = _cloud_error(client.post("/attest/SgxEnclave", json={
        "quote": QUOTE, "runtimeData": {"data": b64url(runtime), "dataType": "JSON"}}))
    assert "nested too deeply" in message
    _still_serving(client)


def test_deeply_nested_policy_is_refused(client: TestClient) -> None:
    expr = '"x"'
    for _ in range(3000):
        expr = f'AppendString({expr}, "y")'
    policy = (f'version=1.2; authorizationrules{{ => permit(); }}; '
              f'issuancerules{{ => issue(type="a", value={expr}); }};')
    _cloud_error(client.put("/policies/SgxEnclave", content=policy), 400, "PolicyParsingError")
    _cloud_error(client.post("/attest/SgxEnclave", json={
        "quote": QUOTE, "draftPolicyForAttestation": policy}), 400, "PolicyParsingError")
    _still_serving(client)


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "9" * 4000, str(1 << 64)])
def test_out_of_range_integer_in_a_policy_is_a_parsing_error(client: TestClient,
                                                            literal: str) -> None:
    policy = (f'version=1.0; authorizationrules{{ [type=="x-ms-sgx-svn", value>={literal}] '
              f'=> permit(); }}; issuancerules{{ }};')
    message = _cloud_error(client.put("/policies/SgxEnclave", content=policy), 400,
                           "PolicyParsingError")
    assert "out of range" in message and len(message) < 200
    _cloud_error(client.post("/attest/SgxEnclave", json={
        "quote": QUOTE, "draftPolicyForAttestation": policy}), 400, "PolicyParsingError")
    _still_serving(client)


@pytest.mark.parametrize("size", [70 * 1024, 200 * 1024])
def test_huge_headers_get_431_in_the_cloud_error_body(client: TestClient, size: int) -> None:
    reply = client.get("/certs", headers={"x-filler": "a" * size})
    assert "at most 16384" in _cloud_error(reply, 431, "RequestHeaderFieldsTooLarge")
    _still_serving(client)


def test_overlong_json_numbers_are_refused(client: TestClient) -> None:
    body = b'{"quote": "' + QUOTE.encode() + b'", "nonce": ' + b"7" * 4000 + b"}"
    assert "a number of 4000 characters" in _cloud_error(client.post("/attest/SgxEnclave",
                                                                     content=body))


def test_huge_body_is_refused_without_reading_it_all(client: TestClient) -> None:
    huge = b'{"quote": "' + b"A" * (MAX_BODY + 10) + b'"}'
    assert "larger than" in _cloud_error(client.post("/attest/SgxEnclave", content=huge))
    _still_serving(client)


def test_unknown_attestation_types_and_paths(client: TestClient) -> None:
    assert "not supported" in _cloud_error(client.post("/attest/Tpm", json={"data": "AA"}))
    assert "unknown attestation type" in _cloud_error(client.post("/attest/Nope", json={}))
    assert "unknown attestation type" in _cloud_error(client.get("/policies/Nope"))
    _cloud_error(client.get("/nothing/here"), 404, "NotFound")
    _cloud_error(client.delete("/certs"), 405)
    _cloud_error(client.post("/policies/SgxEnclave:delete", content=b""), 404)
    _still_serving(client)


@pytest.mark.parametrize("body", [
    "a.b", "....", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.c2ln",
    f"{b64url(json.dumps({'alg': 'HS256'}).encode())}.e30.",
    f"{b64url(json.dumps({'alg': 'RS256'}).encode())}.e30.c2ln",
    f"{b64url(json.dumps({'alg': 'RS256', 'x5c': ['QUJD']}).encode())}.e30.c2ln",
    f"{b64url(json.dumps({'alg': 'none', 'crit': ['x']}).encode())}.e30.",
    f"{b64url(b'[1]')}.e30.",
    "eyJhbGciOiJub25lIn0.e30.",  # no AttestationPolicy claim
])
def test_bad_policy_jws_is_refused_as_invalid_operation(client: TestClient, body: str) -> None:
    _cloud_error(client.put("/policies/SgxEnclave", content=body), 400, "InvalidOperation")


def test_certificate_operations_refuse_bad_bodies(client: TestClient) -> None:
    _cloud_error(client.post("/certificates:add", json={"not": "a string"}))
    _cloud_error(client.post("/certificates:add", json="eyJhbGciOiJub25lIn0.e30."), 401,
                 "Unauthorized")
    _cloud_error(client.post("/certificates:remove", json="x.y"), 400, "InvalidOperation")


def test_api_version_is_ignored_and_types_match_case_insensitively(client: TestClient) -> None:
    for path in ("/attest/sgxenclave?api-version=2018-09-01-preview",
                 "/attest/SGXENCLAVE?api-version=2099-01-01", "/attest/SgxEnclave"):
        reply = client.post(path, json={"quote": QUOTE, "runtimeData": {
            "data": b64url(sdk_runtime()), "dataType": "Binary"}})
        assert reply.status_code == 200, reply.text


def test_openapi_document_lists_every_operation(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/attest/SgxEnclave", "/attest/OpenEnclave", "/certs", "/.well-known/openid-configuration",
        "/policies/{type}", "/policies/{type}:reset", "/certificates", "/certificates:add",
        "/certificates:remove"}


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False), _containers, max_leaves=4)
_fields = st.sampled_from(["quote", "report", "runtimeData", "initTimeData", "nonce",
                           "draftPolicyForAttestation", "data", "dataType"])
_bodies = st.dictionaries(_fields, _json_values | st.builds(
    lambda d: {"data": d, "dataType": "JSON"}, _json_values), max_size=4)


@settings(max_examples=500, deadline=None)
@given(body=_bodies, kind=st.sampled_from(["SgxEnclave", "OpenEnclave"]))
def test_random_bodies_only_raise_typed_errors_that_map_to_400(
        service: AttestationService, body: dict[str, Any], kind: str) -> None:
    # the operation itself: every failure is a typed error the app answers with 400
    with pytest.raises(EnclaveKitError) as info:
        service.attest(kind, body, "http://maa.test")
    assert error_status(info.value)[0] == 400


@settings(max_examples=200, deadline=None)
@given(body=_bodies, kind=st.sampled_from(["SgxEnclave", "OpenEnclave"]))
def test_random_bodies_never_get_a_server_error(client: TestClient, body: dict[str, Any],
                                                kind: str) -> None:
    reply = client.post(f"/attest/{kind}", json=body)
    assert reply.status_code == 400, reply.text
    assert "Retry-After" not in reply.headers
    assert set(reply.json()["error"]) == {"code", "message"}


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_to_every_endpoint_never_get_a_server_error(client: TestClient,
                                                                 raw: bytes) -> None:
    for method, path in (("POST", "/attest/SgxEnclave"), ("POST", "/attest/OpenEnclave"),
                         ("PUT", "/policies/SgxEnclave"), ("POST", "/policies/SgxEnclave:reset"),
                         ("POST", "/certificates:add"), ("POST", "/certificates:remove")):
        reply = client.request(method, path, content=raw)
        # an empty reset body is an unsecured reset, allowed in AAD mode
        ok = 200 if path.endswith(":reset") and not raw.strip() else 400
        assert ok <= reply.status_code < 500, (path, reply.text)


def test_service_survives_the_fuzzing(client: TestClient, tmp_path: Path) -> None:
    _still_serving(client)


def test_policy_jws_signed_with_a_non_rsa_certificate_is_refused(client: TestClient) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed25519 signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, None))
    x5c = base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
    head = b64url(json.dumps({"alg": "RS256", "x5c": [x5c]}).encode())
    body = b64url(json.dumps({"AttestationPolicy": b64url(b"version=1.0;")}).encode())
    sig = b64url(key.sign(f"{head}.{body}".encode()))
    message = _cloud_error(client.put("/policies/SgxEnclave", content=f"{head}.{body}.{sig}"),
                           400, "InvalidOperation")
    assert "RSA key" in message
    garbage = b64url(json.dumps({"alg": "RS256", "x5c": [x5c[:40] + "AAAA"]}).encode())
    _cloud_error(client.put("/policies/SgxEnclave", content=f"{garbage}.{body}.{sig}"),
                 400, "InvalidOperation")
