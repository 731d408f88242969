"""Keys at rest: encrypted under the master key, atomic, surviving restarts; a corrupted key
is a typed error for that key only."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from enclavekit.errors import IntegrityError, KeyNotFound, KeyParameterError
from enclavekit.kms.store import KeyStore

from ._support import FakeAuthority, KMSHarness, b64u, open_release, policy_body, sgx_policy

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _secret_forms(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> list[bytes]:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    forms = [der, base64.b64encode(der), b64u(der).encode(), der[-64:]]
    if isinstance(key, rsa.RSAPrivateKey):
        d = key.private_numbers().d
        raw = d.to_bytes((d.bit_length() + 7) // 8, "big")
        forms += [raw[:32], b64u(raw).encode()[:40]]
    else:
        d = key.private_numbers().private_value
        raw = d.to_bytes((d.bit_length() + 7) // 8, "big")
        forms += [raw, b64u(raw).encode()]
    return forms


def test_data_dir_never_holds_key_material_in_the_clear(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    body = {"kty": "RSA-HSM", "attributes": {"exportable": True},
            "release_policy": policy_body(sgx_policy())}
    keys = [store.create("r", body), store.create("e", body | {"kty": "EC", "crv": "P-521"}),
            store.create("o", body | {"kty": "oct-HSM", "key_size": 256})]
    data = _all_bytes(tmp_path)
    for key in keys[:2]:
        for form in _secret_forms(key.private_key()):
            assert form not in data
    assert keys[2].material not in data and b64u(keys[2].material).encode() not in data
    assert b"PRIVATE KEY" not in data
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys" / "r.key").stat().st_mode) == 0o600
    assert not list((tmp_path / "keys").glob(".*tmp"))  # no leftovers of atomic writes


def test_restart_keeps_keys_and_versions(tmp_path: Path) -> None:
    body = {"kty": "RSA", "attributes": {"exportable": True},
            "release_policy": policy_body(sgx_policy())}
    first = KeyStore(tmp_path).create("k", body)
    second = KeyStore(tmp_path).create("k", body)
    again = KeyStore(tmp_path)
    assert [v.version for v in again.versions("k")] == [first.version, second.version]
    assert again.get("k").material == second.material
    assert again.get("k", first.version).material == first.material


def test_service_restart_releases_the_same_key(tmp_path: Path) -> None:
    authority = FakeAuthority()
    kms = KMSHarness(tmp_path, [authority])
    kms.create("k", sgx_policy())
    before = open_release(kms.release("k", authority.token()).json()["value"])[1]
    kms2 = KMSHarness(tmp_path, [authority])
    assert open_release(kms2.release("k", authority.token()).json()["value"])[1] == before


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "swap", "garbage"])
def test_corrupted_key_is_a_typed_error_and_others_keep_working(tmp_path: Path,
                                                                damage: str) -> None:
    authority = FakeAuthority()
    kms = KMSHarness(tmp_path, [authority])
    kms.create("good", sgx_policy())
    kms.create("bad", sgx_policy())
    path = tmp_path / "keys" / "bad.key"
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x40
    elif damage == "truncate":
        blob = blob[:-5]
    elif damage == "empty":
        blob = bytearray()
    elif damage == "swap":  # another key's (valid) file under this name
        blob = bytearray((tmp_path / "keys" / "good.key").read_bytes())
    else:
        blob = bytearray(os.urandom(300))
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="'bad'"):
        kms.svc.store.get("bad")
    r = kms.http.get("/keys/bad" + kms.API)
    assert r.status_code == 409 and r.json()["error"]["code"] == "Conflict"
    r = kms.release("bad", authority.token())
    assert r.status_code == 409 and kms.audit()[-1]["decision"] == "refused"
    assert kms.http.get("/keys/good" + kms.API).status_code == 200
    assert kms.release("good", authority.token()).status_code == 200
    names = [item["kid"].rsplit("/", 1)[1] for item in
             kms.http.get("/keys" + kms.API).json()["value"]]
    assert names == ["good"]


def test_import_rsa_ec_and_oct_keys_and_release_them(tmp_path: Path) -> None:
    authority = FakeAuthority()
    kms = KMSHarness(tmp_path, [authority])
    rsa_key_ = rsa.generate_private_key(65537, 3072)
    nums = rsa_key_.private_numbers()

    def i2b(v: int) -> str:
        return b64u(v.to_bytes((v.bit_length() + 7) // 8, "big"))

    jwks = {
        "rsa": {"kty": "RSA", "n": i2b(nums.public_numbers.n), "e": i2b(nums.public_numbers.e),
                "d": i2b(nums.d), "p": i2b(nums.p), "q": i2b(nums.q)},
        "ec": {"kty": "EC", "crv": "P-256", "d": i2b(ec.generate_private_key(
            ec.SECP256R1()).private_numbers().private_value)},
        "oct": {"kty": "oct", "k": b64u(b"k" * 32)},
    }
    for name, jwk in jwks.items():
        r = kms.http.put(f"/keys/{name}" + kms.API, json={
            "key": jwk, "Hsm": True, "attributes": {"exportable": True},
            "release_policy": policy_body(sgx_policy())})
        assert r.status_code == 200, r.text
        assert r.json()["key"]["kty"].endswith("-HSM")
        assert "d" not in r.json()["key"] and "k" not in r.json()["key"]
        material = open_release(kms.release(name, authority.token()).json()["value"])[1]
        if name == "rsa":
            got = serialization.load_der_private_key(material, password=None)
            assert isinstance(got, rsa.RSAPrivateKey)
            assert got.private_numbers() == nums
        if name == "oct":
            assert material == b"k" * 32


@pytest.mark.parametrize(("body", "message"), [
    ({"kty": "RSA", "key_size": 1024}, "2048, 3072 or 4096"),
    ({"kty": "RSA", "key_size": "2048"}, "key_size must be an integer"),
    ({"kty": "RSA", "public_exponent": 3}, "65537"),
    ({"kty": "EC", "crv": "P-256K"}, "P-256, P-384 or P-521"),
    ({"kty": "oct", "key_size": 512}, "128, 192 or 256"),
    ({"kty": "DSA"}, "kty must be one of"),
    ({"kty": "RSA", "attributes": []}, "attributes must be an object"),
    ({"kty": "RSA", "attributes": {"enabled": "yes"}}, "true or false"),
    ({"kty": "RSA", "attributes": {"exp": -1}}, "Unix time"),
    ({"kty": "RSA", "key_ops": ["encrypt", "launch"]}, "key_ops"),
    ({"kty": "RSA", "tags": {"a": 1}}, "tags"),
    ({"kty": "RSA", "attributes": {"exportable": True},
      "release_policy": {"data": "%%%"}}, "release_policy data"),
    ({"kty": "RSA", "attributes": {"exportable": True},
      "release_policy": {"data": b64u(b"{}"), "contentType": "text/plain"}}, "contentType"),
    ({"kty": "RSA", "attributes": {"exportable": True},
      "release_policy": {"data": b64u(b"{}"), "other": 1}}, "unknown field"),
])
def test_key_vault_parameter_errors(tmp_path: Path, body: dict[str, object],
                                    message: str) -> None:
    with pytest.raises(KeyParameterError, match=message):
        KeyStore(tmp_path).create("k", body)


@pytest.mark.parametrize("name", ["", "a" * 128, "../x", "a/b", "a.b", "a b", "ä"])
def test_bad_names_refused(tmp_path: Path, name: str) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(KeyParameterError, match="key name"):
        store.create(name, {"kty": "oct"})
    with pytest.raises(KeyParameterError):
        store.get(name)


def test_missing_key_and_version(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(KeyNotFound):
        store.get("nope")
    store.create("k", {"kty": "oct"})
    with pytest.raises(KeyNotFound, match="no version"):
        store.get("k", "0" * 32)


def test_update_and_delete(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key = store.create("k", {"kty": "oct"})
    updated = store.update("k", key.version, {"attributes": {"enabled": False},
                                              "tags": {"team": "a"}})
    assert updated.enabled is False and updated.tags == {"team": "a"}
    assert KeyStore(tmp_path).get("k").enabled is False
    with pytest.raises(KeyParameterError, match="exportable cannot be changed"):
        store.update("k", key.version, {"attributes": {"exportable": True}})
    store.delete("k")
    with pytest.raises(KeyNotFound):
        store.get("k")
    assert json.dumps(store.names()) == "[]"


def test_master_key_made_once_and_shared_by_concurrent_starts(tmp_path: Path) -> None:
    import threading

    stores: list[KeyStore] = []
    threads = [threading.Thread(target=lambda: stores.append(KeyStore(tmp_path)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    key = stores[0].create("k", {"kty": "oct"})
    assert all(s.get("k").material == key.material for s in stores)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "master.key"]
    (tmp_path / "master.key").write_bytes(b"short")
    with pytest.raises(IntegrityError, match="5 bytes, expected 32"):
        KeyStore(tmp_path)
