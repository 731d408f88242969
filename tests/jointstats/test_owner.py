"""The data owners' side of joint_stats: batches bound to owner and number, results that open
only under their owner's key, and the Key Vault client's policy and import (refusal typed)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enclavekit.errors import IntegrityError, KeyReleaseError, ReleasePolicyNotSatisfied
from enclavekit.jointstats.data import OWNERS, all_records, plain_statistics, records
from enclavekit.jointstats.owner import BATCH, NONCE, encrypt_records, open_result
from enclavekit.kms.owner import import_key, sgx_release_policy
from enclavekit.kms.policy import ReleasePolicy, parse_release_policy
from enclavekit.kms.serve import KMSService, ServerThread, build_service
from enclavekit.kms.tokens import TrustedAuthority


def _open(key: bytes, blob: bytes, owner: str, number: int) -> list[dict[str, int]]:
    aad = f"joint-stats/v1/records/{owner}/{number}".encode()
    return json.loads(AESGCM(key).decrypt(blob[:NONCE], blob[NONCE:], aad))  # type: ignore


def test_records_go_in_batches_bound_to_their_owner_and_number() -> None:
    key = AESGCM.generate_key(bit_length=256)
    batches = encrypt_records("alice", key)
    rows = records("alice")
    assert len(batches) == -(-len(rows) // BATCH)
    assert [r for i, b in enumerate(batches) for r in _open(key, b, "alice", i)] == rows
    with pytest.raises(InvalidTag):  # moved to another number or owner: does not open
        _open(key, batches[0], "alice", 1)
    with pytest.raises(InvalidTag):
        _open(key, batches[0], "bob", 0)
    assert encrypt_records("alice", key)[0] != batches[0]  # a fresh nonce each time


def _result(owner: str, key: bytes, value: object) -> bytes:
    nonce = b"\x01" * NONCE
    aad = f"joint-stats/v1/result/{owner}/".encode()
    return nonce + AESGCM(key).encrypt(nonce, json.dumps(value).encode(), aad)


def test_a_result_opens_only_for_its_owner_and_unaltered() -> None:
    keys = {owner: AESGCM.generate_key(bit_length=256) for owner in OWNERS}
    value = {"owners": {"alice": 1}, "stats": plain_statistics(all_records())}
    blob = _result("alice", keys["alice"], value)
    assert open_result("alice", keys["alice"], blob) == value
    with pytest.raises(IntegrityError, match="does not open"):  # the host redirects it
        open_result("bob", keys["alice"], blob)
    with pytest.raises(IntegrityError, match="does not open"):
        open_result("alice", keys["bob"], blob)
    with pytest.raises(IntegrityError, match="does not open"):
        open_result("alice", keys["alice"], blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="not a JSON object"):
        open_result("alice", keys["alice"], _result("alice", keys["alice"], [1, 2]))


def test_the_release_policy_admits_only_production_builds_of_the_signer() -> None:
    policy = sgx_release_policy("https://attest.example", mrsigner=b"\xc2" * 32, product_id=7,
                                min_svn=3)
    assert policy["anyOf"] == [{"authority": "https://attest.example", "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": "c2" * 32},
        {"claim": "x-ms-sgx-product-id", "equals": 7},
        {"claim": "x-ms-sgx-svn", "greaterOrEquals": 3},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False},
        {"claim": "x-ms-sgx-tcb-status", "equals": "UpToDate"}]}]
    parse_release_policy(json.dumps(policy).encode())  # the key service's grammar


_GOOD = {"x-ms-sgx-mrsigner": "c2" * 32, "x-ms-sgx-product-id": 7, "x-ms-sgx-svn": 3,
         "x-ms-sgx-is-debuggable": False}
_DEV = {**_GOOD, "x-ms-sgx-tcb-status": "ConfigurationNeeded",
        "x-ms-sgx-advisory-ids": ["EK-DEV-0001"], "x-ms-sgx-advisories": "EK-DEV-0001"}


def _policy(*allowed: str) -> ReleasePolicy:
    doc = sgx_release_policy("https://attest.example", mrsigner=b"\xc2" * 32, product_id=7,
                             min_svn=3, allowed_advisories=allowed)
    return parse_release_policy(json.dumps(doc).encode())


def test_the_default_release_policy_refuses_a_development_platform() -> None:
    policy = _policy()
    policy.check("https://attest.example",
                 {**_GOOD, "x-ms-sgx-tcb-status": "UpToDate", "x-ms-sgx-advisory-ids": []})
    with pytest.raises(ReleasePolicyNotSatisfied):
        policy.check("https://attest.example", _DEV)
    with pytest.raises(ReleasePolicyNotSatisfied):
        policy.check("https://attest.example", _GOOD)  # no TCB status claim: refused


def test_a_release_policy_naming_ek_dev_0001_admits_only_that_advisory() -> None:
    policy = _policy("EK-DEV-0001")
    policy.check("https://attest.example", _DEV)
    for claims in [
        {**_DEV, "x-ms-sgx-advisories": "EK-DEV-0001,INTEL-SA-00615"},  # one more
        {**_DEV, "x-ms-sgx-advisories": "INTEL-SA-00615"},
        {**_DEV, "x-ms-sgx-advisories": ""},
        {**_DEV, "x-ms-sgx-advisories": ["EK-DEV-0001"]},  # not the string form
        {**_DEV, "x-ms-sgx-tcb-status": "Revoked"},
        {**_DEV, "x-ms-sgx-is-debuggable": True},
    ]:
        with pytest.raises(ReleasePolicyNotSatisfied):
            policy.check("https://attest.example", claims)


@pytest.fixture(scope="module")
def kms() -> Iterator[tuple[KMSService, str]]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048)
    authority = TrustedAuthority("https://attest.example", keys={"k1": key.public_key()})
    service = build_service(tempfile.mkdtemp(), [authority])
    server = ServerThread(service.app, certfile=service.cert_path,
                          keyfile=service.key_path).start()
    try:
        yield service, f"https://127.0.0.1:{server.port}"
    finally:
        server.stop()
        service.audit.close()


def test_import_key_returns_its_id_and_a_refusal_is_typed(kms: tuple[KMSService, str]) -> None:
    service, url = kms
    policy = sgx_release_policy("https://attest.example", mrsigner=bytes(32), product_id=1,
                                min_svn=1)
    kid = import_key(url, "owner-key", bytes(32), policy, cafile=service.cert_path)
    assert kid.startswith(f"{url}/keys/owner-key/")
    with pytest.raises(KeyReleaseError, match=r"importing other-key failed: HTTP 4\d\d"):
        import_key(url, "other-key", bytes(32), {"version": "1.0.0"},  # no anyOf: refused
                   cafile=service.cert_path)
    with pytest.raises(KeyReleaseError, match=r"HTTP 4\d\d"):
        import_key(url, "bad/name", bytes(32), policy, cafile=Path(service.cert_path))
