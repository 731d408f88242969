"""Attack classes TS-1..TS-4, TS-7 (token service consumers) and KR-1..KR-6 (key release)
from attacks.md, each attempted against the key-release service and seen refused."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from enclavekit.errors import ReleasePolicyInvalid, TokenRejected
from enclavekit.kms.policy import parse_release_policy
from tests.kms._support import (
    AUTHORITY,
    DROP,
    MRSIGNER,
    FakeAuthority,
    KMSHarness,
    b64u,
    b64u_json,
    enclave_jwk,
    open_release,
    rsa_key,
    sgx_policy,
    sign_rs256,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

REFUSED = "Target environment attestation statement cannot be verified."


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> KMSHarness:
    """One service for the module (tests only add keys and read the newest audit records)."""
    harness = KMSHarness(tmp_path_factory.mktemp("kms"), [FakeAuthority()])
    assert harness.create("k", sgx_policy()).status_code == 200
    return harness


def assert_refused(response: httpx.Response, reason: str, kms: KMSHarness) -> None:
    """A Key Vault 403 with no oracle in the answer, and the reason in the audit log."""
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error == {"code": "Forbidden", "message": REFUSED,
                     "innererror": {"code": "AccessDenied"}}
    last = kms.audit()[-1]
    assert last["decision"] == "refused"
    assert reason in last["reason"], last["reason"]


def hs256(header: dict[str, object], claims: dict[str, object], secret: bytes) -> str:
    signing_input = f"{b64u_json(header)}.{b64u_json(claims)}"
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(signing_input.encode())
    return f"{signing_input}.{b64u(mac.finalize())}"


# --------------------------------------------------------------------------- TS-1


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", None])
def test_ts1_unsigned_tokens_refused(kms: KMSHarness, alg: str | None) -> None:
    auth = kms.authorities[0]
    header = {"typ": "JWT", "kid": auth.kid} | ({} if alg is None else {"alg": alg})
    for signature in ("", b64u(b"x" * 256)):
        token = f"{b64u_json(header)}.{b64u_json(auth.claims())}.{signature}"
        assert_refused(kms.release("k", token), "algorithm", kms)


def test_ts1_draft_policy_token_from_the_attestation_service_refused(kms: KMSHarness) -> None:
    # MAA's draft-policy answer: {"alg":"none"} and an empty signature.
    token = f"{b64u_json({'alg': 'none'})}.{b64u_json(kms.authorities[0].claims())}."
    assert_refused(kms.release("k", token), "algorithm 'none' refused", kms)


# --------------------------------------------------------------------------- TS-2


def _public_key_forms(key: rsa.RSAPublicKey, jwk: dict[str, object]) -> dict[str, bytes]:
    return {
        "pem-spki": key.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo),
        "pem-pkcs1": key.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.PKCS1),
        "der-spki": key.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk-json": json.dumps(jwk).encode(),
        "jwks-json": json.dumps({"keys": [jwk]}).encode(),
        "openssh": key.public_bytes(serialization.Encoding.OpenSSH,
                                    serialization.PublicFormat.OpenSSH),
    }


def test_ts2_hs256_keyed_with_the_published_key_refused_in_every_form(kms: KMSHarness) -> None:
    auth = kms.authorities[0]
    forms = _public_key_forms(auth.key.public_key(), auth.jwks()["keys"][0])
    for form, secret in forms.items():
        for alg in ("HS256", "HS384", "HS512"):
            token = hs256({"alg": alg, "kid": auth.kid, "typ": "JWT"}, auth.claims(), secret)
            response = kms.release("k", token)
            assert_refused(response, f"algorithm '{alg}' refused", kms), form


def test_ts2_es256_with_zero_signature_and_other_algorithms_refused(kms: KMSHarness) -> None:
    auth = kms.authorities[0]
    for alg in ("ES256", "PS256", "rs256", "RS512", "EdDSA"):
        token = f"{b64u_json({'alg': alg, 'kid': auth.kid})}.{b64u_json(auth.claims())}." \
                f"{b64u(bytes(64))}"
        assert_refused(kms.release("k", token), "algorithm", kms)


# --------------------------------------------------------------------------- TS-3


def test_ts3_header_key_material_ignored(kms: KMSHarness) -> None:
    auth = kms.authorities[0]
    attacker = rsa_key("attacker")
    attacker_jwk = enclave_jwk("attacker", use="sig") | {"kid": "evil"}
    attacker_cert_chain = [base64.b64encode(b"not even a certificate").decode()]
    for header in (
        {"jku": "https://attacker.example/certs", "kid": "evil"},
        {"x5u": "https://attacker.example/cert.pem", "kid": "evil"},
        {"jwk": attacker_jwk, "kid": "evil"},
        {"jwk": attacker_jwk},
        {"x5c": attacker_cert_chain, "kid": "evil"},
        {"jku": "https://attacker.example/certs", "kid": auth.kid},
        {"kid": auth.kid, "jwk": attacker_jwk},
    ):
        response = kms.release("k", auth.token(header=header, key=attacker))
        assert response.status_code == 403
        reason = kms.audit()[-1]["reason"]
        assert "kid" in reason or "signature does not verify" in reason, reason
    assert kms.requested
    assert set(kms.requested) == {f"{AUTHORITY}/certs"}  # the jku/x5u were never fetched


@pytest.mark.parametrize("kid", ["../../dev/null", "' OR '1'='1", "", "maa-signing-key-1 ",
                                 "MAA-SIGNING-KEY-1", "unknown"])
def test_ts3_kid_injection_and_unknown_kid_refused(kms: KMSHarness, kid: str) -> None:
    auth = kms.authorities[0]
    token = auth.token(header={"kid": kid})
    assert_refused(kms.release("k", token), "kid", kms)


# --------------------------------------------------------------------------- TS-4


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"exp": int(time.time()) - 10}, "expired"),
    ({"exp": DROP}, "exp claim is missing"),
    ({"exp": "9999999999"}, "exp must be a NumericDate"),
    ({"nbf": int(time.time()) + 600}, "not valid before"),
    ({"iat": int(time.time()) + 600}, "issued in the future"),
    ({"iss": "https://evil.example"}, "not a trusted authority"),
    ({"iss": DROP}, "iss claim is missing"),
])
def test_ts4_time_and_issuer_claims_checked(kms: KMSHarness, overrides: dict[str, object],
                                            reason: str) -> None:
    token = kms.authorities[0].token(**overrides)
    assert_refused(kms.release("k", token), reason, kms)


def test_ts4_token_from_another_trusted_instance_with_the_first_ones_key(tmp_path: Path) -> None:
    first, second = FakeAuthority(), FakeAuthority(url="https://second.example",
                                                   key_label="second", kid="second-key")
    kms = KMSHarness(tmp_path, [first, second])
    kms.create("k", sgx_policy())
    # Claims say "second", signature and kid are the first's: looked up in second's JWKS only.
    token = first.token(iss=second.url)
    assert_refused(kms.release("k", token), "kid 'maa-signing-key-1' is not a key of "
                   "https://second.example", kms)
    # Properly signed by the second authority, which the key's policy does not name.
    assert_refused(kms.release("k", second.token(iss=second.url)), "not one of the policy's "
                   "authorities", kms)


def test_ts4_tampered_payload_refused(kms: KMSHarness) -> None:
    auth = kms.authorities[0]
    head, _, sig = auth.token().split(".")
    forged = b64u_json(auth.claims(x_ms_sgx_svn=99))
    assert_refused(kms.release("k", f"{head}.{forged}.{sig}"), "signature does not verify", kms)


# --------------------------------------------------------------------------- TS-7


def test_ts7_duplicate_claims_in_a_signed_token_refused(kms: KMSHarness) -> None:
    auth = kms.authorities[0]
    claims = auth.claims(x_ms_sgx_is_debuggable=True)
    text = json.dumps(claims)[:-1] + ', "x-ms-sgx-is-debuggable": false}'
    token = sign_rs256({"alg": "RS256", "kid": auth.kid}, b64u(text.encode()), auth.key)
    assert_refused(kms.release("k", token), "duplicate key 'x-ms-sgx-is-debuggable'", kms)
    header = b64u(b'{"alg":"none","alg":"RS256","kid":"maa-signing-key-1"}')
    body = auth.token().split(".", 1)[1]
    assert_refused(kms.release("k", f"{header}.{body}"), "duplicate key 'alg'", kms)


def test_ts7_duplicate_keys_in_request_bodies_and_policies_refused(kms: KMSHarness) -> None:
    token = kms.authorities[0].token()
    body = f'{{"target": "{token}", "enc": "CKM_RSA_AES_KEY_WRAP", "enc": "RSA_AES_KEY_WRAP_256"}}'
    r = kms.http.post("/keys/k/release" + kms.API, content=body,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "duplicate key 'enc'" in r.json()["error"]["message"]
    policy = json.dumps(sgx_policy())[:-1] + ', "anyOf": []}'
    r = kms.create("dup", policy.encode())
    assert r.status_code == 400 and "duplicate key 'anyOf'" in r.json()["error"]["message"]


# --------------------------------------------------------------------------- KR-1


LOOKALIKES = ["https://a.example.evil", "https://a.example:444", "http://a.example",
              "https://A.example", "https://a.example/extra", "https://a.example//",
              "https://a.example.", " https://a.example"]


def test_kr1_lookalike_authorities_refused_even_when_trusted(tmp_path: Path) -> None:
    real = FakeAuthority(url="https://a.example")
    fakes = [FakeAuthority(url=u.strip() if u.startswith(" ") else u, key_label="lookalike",
                           kid="lk") for u in LOOKALIKES]
    kms = KMSHarness(tmp_path, [real, *fakes[:-1]])
    assert kms.create("k", sgx_policy(authority="https://a.example")).status_code == 200
    for fake, url in zip(fakes, LOOKALIKES, strict=True):
        response = kms.release("k", fake.token(iss=url))
        assert response.status_code == 403, url
        assert kms.audit()[-1]["decision"] == "refused", url
    # Signed with the real key but claiming a case-changed issuer (same host for the fetch).
    assert_refused(kms.release("k", real.token(iss="https://A.example")),
                   "not one of the policy's authorities", kms)
    # One trailing "/" is the only normalisation.
    assert kms.release("k", real.token(iss="https://a.example/")).status_code == 200
    assert kms.release("k", real.token()).status_code == 200


def test_kr1_untrusted_authority_with_a_perfect_token_refused(kms: KMSHarness) -> None:
    rogue = FakeAuthority(url="https://rogue.example", key_label="rogue")
    assert_refused(kms.release("k", rogue.token()), "not a trusted authority", kms)
    assert rogue.fetches == 0


# --------------------------------------------------------------------------- KR-2


def test_kr2_wrapping_key_in_the_request_body_refused(kms: KMSHarness) -> None:
    attacker_jwk = enclave_jwk("attacker")
    for field in ("jwk", "key", "wrapping_key", "x-ms-runtime"):
        r = kms.release("k", kms.authorities[0].token(), **{field: attacker_jwk})
        assert r.status_code == 400
        assert "only wrapped to the key in the attestation token" in r.json()["error"]["message"]


def test_kr2_key_wrapped_only_to_the_tokens_enc_key(kms: KMSHarness) -> None:
    auth = kms.authorities[0]
    keys = [enclave_jwk("signing-only", use="sig"),
            enclave_jwk("ops-sign", use=None, key_ops=["sign", "verify"]) | {"use": "sig"},
            enclave_jwk("small-ec") | {"kty": "EC"},
            enclave_jwk("enclave")]
    r = kms.release("k", auth.token(x_ms_runtime={"keys": keys}))
    assert r.status_code == 200
    payload, _ = open_release(r.json()["value"], rsa_key("enclave"))
    key_hsm = json.loads(base64.urlsafe_b64decode(
        payload["response"]["key"]["key"]["key_hsm"] + "=="))
    assert key_hsm["header"]["kid"] == "enclave-wrapping-key"
    with pytest.raises(ValueError):
        open_release(r.json()["value"], rsa_key("signing-only"))


@pytest.mark.parametrize("runtime", [
    DROP, {}, {"keys": []}, {"keys": [enclave_jwk("x", use="sig")]},
    {"keys": [{"kty": "RSA", "kid": "no-use", "n": "AQAB", "e": "AQAB"}]},
    {"keys": [enclave_jwk("tiny") | {"n": b64u((2**1023 + 1).to_bytes(128, "big"))}]},
    "not-an-object",
])
def test_kr2_no_usable_wrapping_key_refused(kms: KMSHarness, runtime: object) -> None:
    token = kms.authorities[0].token(x_ms_runtime=runtime)
    assert_refused(kms.release("k", token), "x-ms-runtime.keys", kms)


# --------------------------------------------------------------------------- KR-3


def _policy_with(*conditions: dict[str, object], mode: str = "allOf") -> dict[str, object]:
    pin = {"claim": "x-ms-sgx-is-debuggable", "equals": False}
    return {"anyOf": [{"authority": AUTHORITY, "allOf": [pin, {mode: list(conditions)}]
                       if conditions else [pin, {mode: []}]}]}


@pytest.mark.parametrize(("policy", "message"), [
    ({"anyOf": []}, "non-empty anyOf"),
    ({"anyOf": [{"authority": AUTHORITY, "allOf": []}]}, "allOf is empty"),
    ({"anyOf": [{"authority": AUTHORITY, "anyOf": []}]}, "anyOf is empty"),
    (_policy_with(), "allOf is empty"),
    (_policy_with(mode="anyOf"), "anyOf is empty"),
    ({"anyOf": [{"authority": AUTHORITY, "allOf": [
        {"claim": "x-ms-sgx-is-debuggable", "equals": "false"}]}]}, "JSON boolean"),
    (_policy_with({"claim": "x-ms-sgx-svn", "equals": "1"}), "is a number"),
    (_policy_with({"claim": "x-ms-sgx-mrsigner", "equals": MRSIGNER.upper()}), "lower-case hex"),
    (_policy_with({"claim": "x-ms-sgx-svn", "matches": 1}), "unknown operator 'matches'"),
    (_policy_with({"claim": "x-ms-sgx-svn", "greater": "1"}), "compares numbers"),
    (_policy_with({"claim": "a", "equals": [1]}), "string, number or boolean"),
    (_policy_with({"claim": "a", "equals": 1, "notEquals": 2}), "exactly one operator"),
    (_policy_with({"claim": "a..b", "equals": 1}), "empty path segment"),
    ({"anyOf": [{"authority": AUTHORITY, "allOf": [{"claim": "x-ms-sgx-is-debuggable",
                                                    "equals": False}], "anyOf": [1]}]},
     "exactly one of allOf / anyOf"),
    ({"version": "2.0", "anyOf": []}, "version '2.0'"),
    ({"anyOf": [{"authority": AUTHORITY, "allOf": [{"claim": "x-ms-sgx-is-debuggable",
                                                    "equals": False}]}], "extra": 1},
     "unknown field"),
])
def test_kr3_malformed_policies_refused_at_creation(kms: KMSHarness, policy: dict[str, object],
                                                     message: str) -> None:
    r = kms.create("bad", policy)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BadParameter"
    assert message in r.json()["error"]["message"]
    assert kms.http.get("/keys/bad" + kms.API).status_code == 404


@pytest.mark.parametrize(("condition", "claims"), [
    ({"claim": "sdk-test", "equals": True}, {"sdk-test": "true"}),
    ({"claim": "sdk-test", "equals": "true"}, {"sdk-test": True}),
    ({"claim": "level", "equals": 1}, {"level": "1"}),
    ({"claim": "level", "notEquals": 2}, {"level": "1"}),
    ({"claim": "level", "greater": 0}, {"level": "1"}),
    ({"claim": "level", "equals": 1}, {"level": True}),
    ({"claim": "missing", "equals": 1}, {}),
    ({"claim": "missing", "notEquals": 1}, {}),
    ({"claim": "x-ms-runtime.keys.0.kid", "equals": "enclave-wrapping-key"}, {}),
    ({"claim": "x-ms-runtime.keys", "exists": False}, {}),
    ({"claim": "tag", "equals": "ABC"}, {"tag": "abc"}),
])
def test_kr3_strict_comparison_fails_closed(kms: KMSHarness, condition: dict[str, object],
                                            claims: dict[str, object]) -> None:
    assert kms.create("edge", _policy_with(condition)).status_code == 200
    token = kms.authorities[0].token(**claims)
    assert_refused(kms.release("edge", token), "condition not met", kms)


def test_kr3_the_published_doc_bug_policies(kms: KMSHarness) -> None:
    from tests.vectors import vector

    for name in ("skr_sgx_example2_mrsigner_mrenclave.json",
                 "skr_sgx_example3_mrsigner_mrenclave_svn.json"):
        data = vector(f"akv_skr_policies/{name}").read_bytes()
        with pytest.raises(ReleasePolicyInvalid, match="64 lower-case hex"):
            parse_release_policy(data, require_debug_pin=False)


# --------------------------------------------------------------------------- KR-4


def test_kr4_policy_without_the_debug_pin_refused_at_creation(kms: KMSHarness) -> None:
    unpinned = {"anyOf": [{"authority": AUTHORITY, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": MRSIGNER}]}]}
    r = kms.create("loose", unpinned)
    assert r.status_code == 400 and "x-ms-sgx-is-debuggable == false" in r.text
    either = {"anyOf": [{"authority": AUTHORITY, "anyOf": [
        {"claim": "x-ms-sgx-is-debuggable", "equals": False},
        {"claim": "x-ms-sgx-mrsigner", "equals": MRSIGNER}]}]}
    assert kms.create("loose", either).status_code == 400


def test_kr4_debug_enclave_refused_by_a_pinned_policy(kms: KMSHarness) -> None:
    token = kms.authorities[0].token(x_ms_sgx_is_debuggable=True)
    assert_refused(kms.release("k", token), "x-ms-sgx-is-debuggable equals false", kms)


def test_kr4_emulated_token_never_meets_a_hardware_policy(kms: KMSHarness) -> None:
    hardware = sgx_policy(authority="https://sharedeus2.eus2.attest.azure.net")
    assert kms.create("hw", hardware).status_code == 200
    assert_refused(kms.release("hw", kms.authorities[0].token()),
                   "not one of the policy's authorities", kms)


def test_kr4_unpinned_policy_accepted_only_when_the_service_allows_it(tmp_path: Path) -> None:
    kms = KMSHarness(tmp_path, [FakeAuthority()], require_debug_pin=False)
    unpinned = {"anyOf": [{"authority": AUTHORITY, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": MRSIGNER}]}]}
    assert kms.create("loose", unpinned).status_code == 200
    policy = parse_release_policy(json.dumps(unpinned).encode(), require_debug_pin=False)
    assert policy.warnings and "DEBUG enclave" in policy.warnings[0]


# --------------------------------------------------------------------------- KR-5


def test_kr5_non_exportable_disabled_and_expired_keys_refused(kms: KMSHarness) -> None:
    token = kms.authorities[0].token()
    assert kms.create("plain").status_code == 200
    r = kms.release("plain", token)
    assert r.status_code == 403 and "non-exportable" in r.json()["error"]["message"]
    assert kms.create("off", sgx_policy(), attributes={"exportable": True,
                                                        "enabled": False}).status_code == 200
    r = kms.release("off", token)
    assert r.status_code == 403 and "disabled" in r.json()["error"]["message"]
    assert kms.create("old", sgx_policy(), attributes={
        "exportable": True, "exp": int(time.time()) - 1}).status_code == 200
    assert kms.release("old", token).json()["error"]["message"].endswith("expired key.")
    assert kms.create("later", sgx_policy(), attributes={
        "exportable": True, "nbf": int(time.time()) + 600}).status_code == 200
    assert "not yet valid" in kms.release("later", token).json()["error"]["message"]
    assert [r["decision"] for r in kms.audit()[-4:]] == ["refused"] * 4


def test_kr5_immutable_policy_never_changes(kms: KMSHarness) -> None:
    r = kms.http.post("/keys/imm/create" + kms.API, json={
        "kty": "RSA", "attributes": {"exportable": True},
        "release_policy": {"data": b64u(json.dumps(sgx_policy()).encode()), "immutable": True}})
    assert r.status_code == 200 and r.json()["release_policy"]["immutable"] is True
    version = r.json()["key"]["kid"].rsplit("/", 1)[1]
    looser = sgx_policy(authority="https://other.example")
    r = kms.http.patch(f"/keys/imm/{version}" + kms.API, json={
        "release_policy": {"data": b64u(json.dumps(looser).encode())}})
    assert r.status_code == 403 and "immutable" in r.json()["error"]["message"]
    r = kms.http.post("/keys/imm/create" + kms.API, json={
        "kty": "RSA", "attributes": {"exportable": True},
        "release_policy": {"data": b64u(json.dumps(looser).encode())}})
    assert r.status_code == 403 and "immutable" in r.json()["error"]["message"]
    got = kms.http.get("/keys/imm" + kms.API).json()
    assert json.loads(base64.urlsafe_b64decode(got["release_policy"]["data"] + "=="))[
        "anyOf"][0]["authority"] == AUTHORITY


def test_kr5_the_named_version_is_released_never_another(kms: KMSHarness) -> None:
    token = kms.authorities[0].token()
    first = kms.http.get("/keys/k" + kms.API).json()["key"]
    assert kms.create("k", sgx_policy()).status_code == 200  # a second version
    v1 = first["kid"].rsplit("/", 1)[1]
    payload, material = open_release(kms.release("k", token, version=v1).json()["value"])
    released = serialization.load_der_private_key(material, password=None)
    assert isinstance(released, rsa.RSAPrivateKey)
    assert b64u(released.public_key().public_numbers().n.to_bytes(256, "big")) == first["n"]
    assert payload["response"]["key"]["key"]["kid"].endswith(v1)
    r = kms.release("k", token, version="0" * 32)
    assert r.status_code == 404 and r.json()["error"]["code"] == "KeyNotFound"
    r = kms.release("k", token, version=v1.upper())
    assert r.status_code == 404
    r = kms.http.post("/keys/k.key/release" + kms.API, json={"target": token})
    assert r.status_code == 400 and "key name" in r.json()["error"]["message"]


# --------------------------------------------------------------------------- KR-6


def test_kr6_replayed_request_only_gives_a_blob_for_the_enclave(kms: KMSHarness) -> None:
    token = kms.authorities[0].token()
    first = kms.release("k", token)
    from starlette.testclient import TestClient

    other = TestClient(kms.svc.app, base_url="https://kms.test", client=("203.0.113.9", 4444),
                       headers={"Authorization": "Bearer stolen"})
    replay = other.post("/keys/k/release" + kms.API, json={"target": token})
    assert first.status_code == replay.status_code == 200
    _, material = open_release(replay.json()["value"])
    assert open_release(first.json()["value"])[1] == material
    with pytest.raises(ValueError):
        open_release(replay.json()["value"], rsa_key("attacker"))
    clients = [r["client"] for r in kms.audit() if r["decision"] == "allowed"]
    assert clients[-1] == "203.0.113.9:4444" and clients[-2] != clients[-1]


def test_kr6_nonce_echoed_and_a_replayed_nonce_refused(kms: KMSHarness) -> None:
    token = kms.authorities[0].token()
    r = kms.release("k", token, nonce="fresh-1")
    payload, _ = open_release(r.json()["value"])
    assert payload["request"]["nonce"] == "fresh-1"
    assert kms.audit()[-1]["nonce"] == "fresh-1"
    assert_refused(kms.release("k", token, nonce="fresh-1"), "nonce 'fresh-1' was already used",
                   kms)


def test_token_rejected_is_the_typed_error_underneath(kms: KMSHarness) -> None:
    with pytest.raises(TokenRejected, match="algorithm 'none' refused"):
        kms.svc.releaser.verifier.verify(
            f"{b64u_json({'alg': 'none'})}.{b64u_json(kms.authorities[0].claims())}.")
