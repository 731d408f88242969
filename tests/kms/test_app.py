"""The HTTP surface: bad input gets Key Vault's 400 body, never a 500, and the service keeps
serving; the bearer challenge; api-version handling; the wrap format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enclavekit.kms.wrap import ENC_ALGORITHMS, unwrap_key_material, wrap_key_material

from ._support import FakeAuthority, KMSHarness, b64u, open_release, rsa_key, sgx_policy

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> KMSHarness:
    harness = KMSHarness(tmp_path_factory.mktemp("kms"), [FakeAuthority()])
    assert harness.create("k", sgx_policy()).status_code == 200
    return harness


BAD = [
    ("POST", "/keys/a/create", b"not json"),
    ("POST", "/keys/a/create", b"[]"),
    ("POST", "/keys/a/create", b'{"kty": 5}'),
    ("POST", "/keys/a/create", b'{"kty": "RSA", "key_size": null, "attributes": "x"}'),
    ("POST", "/keys/a/create", json.dumps({"kty": "RSA", "attributes": {"exportable": True},
                                           "release_policy": {"data": "!!"}}).encode()),
    ("POST", "/keys/a/create", json.dumps({
        "kty": "RSA", "attributes": {"exportable": True},
        "release_policy": {"data": b64u(b"\xff\xfe")}}).encode()),
    ("POST", "/keys/a/create", json.dumps({"kty": "RSA", "attributes": {"exportable": True},
                                           "release_policy": "x"}).encode()),
    ("POST", "/keys/a/create", b'{"kty": "RSA", "kty": "EC"}'),
    ("POST", "/keys/a/create", b"[" * 5000 + b"]" * 5000),
    ("POST", "/keys/a/create", b'{"a": ' + b"1" * 10000 + b"}"),
    ("PUT", "/keys/a", b'{"key": {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQ", "p": "Aw",'
                        b' "q": "BQ"}}'),
    ("PUT", "/keys/a", b'{"key": {"kty": "EC", "crv": "P-256", "d": "AA"}}'),
    ("PUT", "/keys/a", b'{"key": {"kty": "oct", "k": 5}}'),
    ("PUT", "/keys/a", b'{"key": "RSA"}'),
    ("POST", "/keys/k/release", b"{}"),
    ("POST", "/keys/k/release", b'{"target": 5}'),
    ("POST", "/keys/k/release", b'{"target": "x", "enc": "RSA-OAEP"}'),
    ("POST", "/keys/k/release", b'{"target": "x", "nonce": 5}'),
    ("POST", "/keys/k/release", b'"target"'),
    ("POST", "/keys/k/release", b'{"target": "x", "enc": {"a": 1}}'),
    ("POST", "/keys/k/release", b'{"target": "x", "enc": ["RSA_AES_KEY_WRAP_256"]}'),
    ("POST", "/keys/a/create", b'{"kty": "oct", "colour": "red"}'),
    ("POST", "/keys/a/create", b'{"kty": "oct", "attributes": {"enabled": true, "x": 1}}'),
    ("POST", "/keys/a/create", b'{"kty": "oct", "attributes": {"exp": ' + b"9" * 4000 + b"}}"),
    ("POST", "/keys/a/create", b'{"kty": "oct", "attributes": {"exp": 253402300800}}'),
    ("PUT", "/keys/a", b'{"key": {"kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAA"}, "x": 1}'),
    ("PATCH", "/keys/k", b'{"enabled": false}'),
    ("PATCH", "/keys/k", b'{"attributes": {"expires": 5}}'),
    ("PATCH", "/keys/k", b'{"attributes": {"exp": ' + b"1" * 4000 + b"}}"),
    ("PATCH", "/keys/k", b'{"attributes": {"enabled": 1}}'),
    ("PATCH", "/keys/k", b'{"release_policy": {"data": "e30"}}'),
    ("GET", "/keys/a.b", b""),
    ("PUT", "/keys/" + "x" * 200, b"{}"),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD)
def test_bad_input_gets_400_with_a_key_vault_error_body(kms: KMSHarness, method: str,
                                                        path: str, body: bytes) -> None:
    r = kms.http.request(method, path + kms.API, content=body,
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "BadParameter" and error["message"]
    assert kms.http.get("/keys/k" + kms.API).status_code == 200
    assert kms.http.get("/keys/a" + kms.API).status_code == 404  # nothing was stored


def test_huge_bodies_refused(kms: KMSHarness) -> None:
    big = b'{"target": "' + b"a" * 400_000 + b'"}'
    r = kms.http.post("/keys/k/release" + kms.API, content=big)
    assert r.status_code == 400 and "larger than" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(100):
            yield b"a" * 10_000
    r = kms.http.post("/keys/k/release" + kms.API, content=chunks())
    assert r.status_code == 400 and "larger than" in r.json()["error"]["message"]


def test_huge_headers_and_targets_get_key_vaults_error_body(kms: KMSHarness) -> None:
    r = kms.http.get("/keys/k" + kms.API, headers={"x-filler": "a" * 100_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "BadParameter"
    r = kms.http.get("/keys/k" + kms.API + "&x=" + "a" * 10_000)
    assert r.status_code == 414 and "request target" in r.json()["error"]["message"]
    assert kms.http.get("/keys/k" + kms.API).status_code == 200


@pytest.mark.parametrize("query", ["", "?api-version=", "?api-version=1999-01-01"])
def test_api_version_required(kms: KMSHarness, query: str) -> None:
    r = kms.http.get("/keys/k" + query)
    assert r.status_code == 400 and "api-version" in r.json()["error"]["message"]


@pytest.mark.parametrize("version", ["7.3", "7.4", "7.5", "7.6", "2025-07-01"])
def test_api_versions_the_client_sends(kms: KMSHarness, version: str) -> None:
    assert kms.http.get(f"/keys/k?api-version={version}").status_code == 200


def test_bearer_challenge_on_every_path(kms: KMSHarness) -> None:
    for method, path in [("GET", "/keys"), ("POST", "/keys/k/release"), ("PUT", "/keys/k"),
                         ("DELETE", "/keys/k"), ("GET", "/deletedkeys/k")]:
        r = kms.http.request(method, path + kms.API, headers={"Authorization": ""})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == (
            'Bearer authorization="https://login.microsoftonline.com/'
            '72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net"')
    assert kms.http.get("/keys/k" + kms.API,
                        headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_release_paths_key_vault_clients_use(kms: KMSHarness) -> None:
    token = kms.authorities[0].token()
    version = kms.http.get("/keys/k" + kms.API).json()["key"]["kid"].rsplit("/", 1)[1]
    for path in ["/keys/k/release", "/keys/k//release", f"/keys/k/{version}/release"]:
        r = kms.http.post(path + kms.API, json={"target": token})
        assert r.status_code == 200, path
        payload, _ = open_release(r.json()["value"])
        assert payload["response"]["key"]["key"]["kid"].endswith(version)


def test_unknown_paths_are_404_not_500(kms: KMSHarness) -> None:
    for method, path in [("GET", "/keys/k/a/b/c"), ("POST", "/keys/k/rotate"),
                         ("DELETE", "/keys/k/v"), ("POST", "/keys")]:
        assert kms.http.request(method, path + kms.API).status_code in (404, 405)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                         lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.sampled_from(
                             ["kty", "key_size", "crv", "attributes", "release_policy", "data",
                              "exportable", "target", "enc", "nonce", "key", "tags", "x"]),
                             inner, max_size=5), max_leaves=12),
       where=st.sampled_from([("POST", "/keys/fz/create"), ("PUT", "/keys/fz"),
                              ("POST", "/keys/k/release"), ("PATCH", "/keys/k")]))
def test_random_json_bodies_never_give_500(kms: KMSHarness, body: object,
                                           where: tuple[str, str]) -> None:
    if isinstance(body, dict) and body.get("kty") in ("RSA", "RSA-HSM"):
        body["kty"] = "oct"  # keep RSA key generation out of the loop
    r = kms.http.request(where[0], where[1] + kms.API, content=json.dumps(body))
    assert r.status_code < 500, r.text
    assert r.status_code == 200 or "error" in r.json()


@pytest.mark.parametrize("enc", list(ENC_ALGORITHMS))
def test_wrap_format_matches_key_vaults(enc: str) -> None:
    target = rsa_key("enclave")
    material = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    blob = wrap_key_material(target.public_key(), material, enc)
    # 256 bytes of RSA-OAEP(KEK), then RFC 5649: the material padded to 8 bytes plus 8.
    assert len(blob) == 256 + (len(material) + 7) // 8 * 8 + 8
    assert unwrap_key_material(target, blob, enc) == material
    other = next(e for e in ENC_ALGORITHMS if e != enc)
    with pytest.raises(ValueError):
        unwrap_key_material(target, blob, other)


def test_key_vaults_observed_ciphertext_length() -> None:
    """maa-skr.md §5.4: a 1219-byte PKCS#8 key wraps to 1488 bytes for an RSA-2048 target."""
    blob = wrap_key_material(rsa_key("enclave").public_key(), b"\x00" * 1219,
                             "CKM_RSA_AES_KEY_WRAP")
    assert len(blob) == 1488


def test_audit_log_is_append_only_json_lines(kms: KMSHarness, tmp_path: Path) -> None:
    kms.release("k", kms.authorities[0].token(x_ms_sgx_svn=0))
    path = kms.svc.audit.path
    lines = path.read_bytes().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    last = json.loads(lines[-1])
    assert last["decision"] == "refused" and last["key"] == "k"
    assert set(last) >= {"time", "client", "subject", "version", "issuer", "enclave", "nonce",
                         "reason"}
