"""Microsoft's azure-keyvault-keys client, unchanged, against the service over HTTPS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient, KeyReleasePolicy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from enclavekit.kms.serve import KMSService, ServerThread

from ._support import FakeAuthority, open_release, service, sgx_policy


class FakeCredential:
    """Any token will do: the service accepts every bearer token (there is no directory)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append((scopes, kwargs))
        return AccessToken("fake-token", int(time.time()) + 3600)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[KMSService, str, FakeAuthority]]:
    authority = FakeAuthority()
    svc = service(tmp_path_factory.mktemp("kms"), authority)
    server = ServerThread(svc.app, certfile=svc.cert_path, keyfile=svc.key_path).start()
    try:
        yield svc, f"https://127.0.0.1:{server.port}", authority
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(running: tuple[KMSService, str, FakeAuthority]) -> Iterator[KeyClient]:
    svc, url, _ = running
    with KeyClient(url, FakeCredential(), verify_challenge_resource=False,
                   connection_verify=str(svc.cert_path)) as kc:
        yield kc


def test_create_get_list_release_delete_with_microsofts_client(
        client: KeyClient, running: tuple[KMSService, str, FakeAuthority]) -> None:
    svc, _, authority = running
    policy = json.dumps(sgx_policy()).encode()
    key = client.create_rsa_key("skr-key", hardware_protected=True, exportable=True,
                                release_policy=KeyReleasePolicy(policy), size=2048)
    assert key.name == "skr-key" and key.key_type == "RSA-HSM"
    assert key.properties.exportable is True
    assert key.properties.release_policy is not None
    stored = json.loads(key.properties.release_policy.encoded_policy)
    assert stored["anyOf"][0]["authority"] == authority.url

    got = client.get_key("skr-key")
    assert got.id == key.id and got.key.n == key.key.n
    assert client.get_key("skr-key", key.properties.version).id == key.id
    assert "skr-key" in [p.name for p in client.list_properties_of_keys()]

    result = client.release_key("skr-key", authority.token(), nonce="n-1")
    payload, material = open_release(result.value)
    released = serialization.load_der_private_key(material, password=None)
    assert isinstance(released, rsa.RSAPrivateKey)
    assert released.public_key().public_numbers().n == int.from_bytes(key.key.n, "big")
    assert payload["request"]["nonce"] == "n-1"
    assert payload["request"]["enc"] == "CKM_RSA_AES_KEY_WRAP"
    assert payload["response"]["key"]["key"]["kid"] == key.id

    for enc in ("RSA_AES_KEY_WRAP_256", "RSA_AES_KEY_WRAP_384"):
        result = client.release_key("skr-key", authority.token(), version=key.properties.version,
                                    algorithm=enc)
        assert open_release(result.value)[1] == material

    deleted = client.begin_delete_key("skr-key").result()
    assert deleted.name == "skr-key"
    with pytest.raises(ResourceNotFoundError):
        client.get_key("skr-key")
    log = list(svc.audit.records())
    assert [r["decision"] for r in log if r["key"] == "skr-key"] == ["allowed"] * 3


def test_release_refused_for_a_token_that_does_not_satisfy_the_policy(
        client: KeyClient, running: tuple[KMSService, str, FakeAuthority]) -> None:
    svc, _, authority = running
    client.create_rsa_key("strict-key", exportable=True, size=2048,
                          release_policy=KeyReleasePolicy(json.dumps(sgx_policy()).encode()))
    with pytest.raises(HttpResponseError) as info:
        client.release_key("strict-key", authority.token(x_ms_sgx_svn=1))
    assert info.value.status_code == 403
    assert info.value.error is not None and info.value.error.code == "Forbidden"
    assert "attestation statement cannot be verified" in str(info.value)
    last = list(svc.audit.records())[-1]
    assert last["decision"] == "refused" and "x-ms-sgx-svn" in last["reason"]
    assert last["enclave"]["x-ms-sgx-svn"] == 1


def test_key_vault_validation_errors_reach_the_client(client: KeyClient) -> None:
    with pytest.raises(HttpResponseError, match="Exportable keys must have release policy") as info:
        client.create_rsa_key("no-policy", exportable=True)
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"
    with pytest.raises(HttpResponseError, match="Non-exportable keys must not have release"):
        client.create_rsa_key("bad", release_policy=KeyReleasePolicy(
            json.dumps(sgx_policy()).encode()))


def test_ec_key_created_and_released(client: KeyClient,
                                     running: tuple[KMSService, str, FakeAuthority]) -> None:
    _, _, authority = running
    key = client.create_ec_key("ec-key", curve="P-384", exportable=True,
                               release_policy=KeyReleasePolicy(json.dumps(sgx_policy()).encode()))
    assert key.key.crv == "P-384"
    _, material = open_release(client.release_key("ec-key", authority.token()).value)
    from cryptography.hazmat.primitives.asymmetric import ec

    released = serialization.load_der_private_key(material, password=None)
    assert isinstance(released, ec.EllipticCurvePrivateKey)
    assert released.public_key().public_numbers().x == int.from_bytes(key.key.x, "big")


def test_request_without_bearer_gets_the_key_vault_challenge(
        running: tuple[KMSService, str, FakeAuthority]) -> None:
    import httpx

    svc, url, _ = running
    import ssl

    with httpx.Client(verify=ssl.create_default_context(cafile=str(svc.cert_path))) as http:
        r = http.post(f"{url}/keys/x/create?api-version=2025-07-01", content=b"")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith(
        'Bearer authorization="https://login.microsoftonline.com/')
    assert 'resource="https://vault.azure.net"' in r.headers["www-authenticate"]
