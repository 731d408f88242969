"""Service state: persistence across restarts, signing-key rotation, modes, the state file."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from azure.security.attestation import AttestationSigner, AttestationToken

from enclavekit.attest.maa import AttestationService, ServiceConfig, ServiceState
from enclavekit.attest.maa.state import STATE_FILE, canonical_type
from enclavekit.attest.maa.tokens import ATTESTATION_TOKEN_LIFETIME
from enclavekit.attest.policy import DEFAULT_SGX_POLICY, PERMIT_ALL_POLICY
from enclavekit.errors import AttestationError, AttestationRequestError
from tests.attest._maa import (
    asgi_client,
    b64url,
    jwt_parts,
    parse_only_appraiser,
    pem,
    sdk_quote,
    signer,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _service(path: Path, clock: Clock, **config: object) -> AttestationService:
    return AttestationService(ServiceConfig(path, **config),  # type: ignore[arg-type]
                              parse_only_appraiser, clock=clock)


def _signers(jwks: dict[str, list[dict[str, object]]]) -> list[AttestationSigner]:
    """What Microsoft's client builds from ``/certs`` (it takes each entry's x5c and kid)."""
    return [AttestationSigner(k["x5c"], k["kid"]) for k in jwks["keys"]]


def _client_accepts(token: str, jwks: dict[str, list[dict[str, object]]]) -> bool:
    """Whether Microsoft's client validation accepts ``token`` with the signers in ``jwks``."""
    try:
        AttestationToken(token=token)._validate_token(_signers(jwks), validate_expiration=False)
    except Exception:  # the client raises several unrelated types
        return False
    return True


def test_state_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock(time.time())
    first = _service(tmp_path, clock)
    kid = first.state.signing_key.kid
    client = asgi_client(first)
    assert client.put("/policies/SgxEnclave", content=PERMIT_ALL_POLICY).status_code == 200
    token = client.post("/attest/SgxEnclave", json={"quote": b64url(sdk_quote())}).json()["token"]
    second = _service(tmp_path, clock)
    assert second.state.signing_key.kid == kid
    assert second.state.policy("SgxEnclave").text == PERMIT_ALL_POLICY
    assert second.state.policy("OpenEnclave").text == DEFAULT_SGX_POLICY
    assert _client_accepts(token, second.jwks())


def test_state_file_is_private_and_written_atomically(tmp_path: Path) -> None:
    service = _service(tmp_path, Clock(time.time()))
    path = tmp_path / STATE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    service.rotate_signing_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert json.loads(path.read_text())["format"] == 1


def test_rotation_keeps_old_key_in_certs_until_its_tokens_expire(tmp_path: Path) -> None:
    clock = Clock(time.time())
    service = _service(tmp_path, clock)
    client = asgi_client(service)
    old_kid = service.state.signing_key.kid
    old_token = client.post("/attest/SgxEnclave",
                            json={"quote": b64url(sdk_quote())}).json()["token"]
    new_kid = service.rotate_signing_key()
    assert new_kid != old_kid
    new_token = client.post("/attest/SgxEnclave",
                            json={"quote": b64url(sdk_quote())}).json()["token"]
    assert jwt_parts(new_token)[0]["kid"] == new_kid
    kids = [k["kid"] for k in client.get("/certs").json()["keys"]]
    assert kids == [new_kid, old_kid]  # the signing key first
    assert _client_accepts(old_token, service.jwks())
    # survives a restart, still with both keys
    service = _service(tmp_path, clock)
    client = asgi_client(service)
    assert [k["kid"] for k in service.jwks()["keys"]] == [new_kid, old_kid]
    # once every token of the old key has expired, the key leaves /certs
    clock.now += ATTESTATION_TOKEN_LIFETIME + 1
    assert [k["kid"] for k in client.get("/certs").json()["keys"]] == [new_kid]
    assert not _client_accepts(old_token, service.jwks())
    assert _client_accepts(new_token, service.jwks())
    service.rotate_signing_key()  # and the next rotation forgets it for good
    assert old_kid not in json.loads((tmp_path / STATE_FILE).read_text()).__repr__()


def test_isolated_mode_needs_a_certificate_and_cannot_be_switched(tmp_path: Path) -> None:
    with pytest.raises(AttestationRequestError, match="at least one policy-management"):
        ServiceState.open(tmp_path / "a", mode="isolated")
    _, cert = signer("mgmt")
    ServiceState.open(tmp_path / "b", mode="isolated", management_certs=[cert])
    with pytest.raises(AttestationRequestError, match="isolated-mode service"):
        ServiceState.open(tmp_path / "b", mode="aad")
    reopened = ServiceState.open(tmp_path / "b")
    assert reopened.mode == "isolated" and reopened.is_management_cert(cert)


def test_isolated_policy_and_signer_persist(tmp_path: Path) -> None:
    from azure.security.attestation import AttestationPolicyToken

    key, cert = signer("mgmt")
    clock = Clock(time.time())
    service = _service(tmp_path, clock, mode="isolated", management_certs=(cert,))
    client = asgi_client(service)
    unsigned = AttestationPolicyToken(PERMIT_ALL_POLICY).to_jwt_string()
    assert client.put("/policies/SgxEnclave", content=unsigned).status_code == 401
    assert client.put("/policies/SgxEnclave", content=PERMIT_ALL_POLICY).status_code == 401
    signed = AttestationPolicyToken(PERMIT_ALL_POLICY, signing_key=pem(key),
                                    signing_certificate=pem(cert)).to_jwt_string()
    # a signature that does not verify (payload swapped) is refused before any trust decision
    head, _, sig = signed.split(".")
    other = AttestationPolicyToken(DEFAULT_SGX_POLICY).to_jwt_string()
    forged = f"{head}.{other.split('.')[1]}.{sig}"
    assert client.put("/policies/SgxEnclave", content=forged).json()["error"]["code"] == \
        "InvalidOperation"
    assert client.put("/policies/SgxEnclave", content=signed).status_code == 200
    reopened = _service(tmp_path, clock)
    stored = reopened.state.policy("SgxEnclave")
    assert stored.jws == signed and stored.text == PERMIT_ALL_POLICY
    assert stored.signer is not None and pem(stored.signer) == pem(cert)


def test_signed_policy_from_the_docs_verifies_and_is_refused_from_a_stranger(
        tmp_path: Path) -> None:
    from tests.vectors import vector

    jws = vector("maa_policies/sgx_signed_policy.jwt").read_text().strip()
    _, cert = signer("mgmt")
    service = _service(tmp_path, Clock(time.time()), mode="isolated",
                       management_certs=(cert,))
    reply = asgi_client(service).put("/policies/SgxEnclave", content=jws)
    # the signature verifies (RSA256 + x5c with JSON escapes), but its signer is not ours
    assert reply.status_code == 401, reply.text
    assert "not a policy-management certificate" in reply.json()["error"]["message"]
    aad = _service(tmp_path / "aad", Clock(time.time()))
    assert asgi_client(aad).put("/policies/SgxEnclave", content=jws).status_code == 200
    assert "$is-debuggable" in aad.state.policy("SgxEnclave").text


def test_services_sharing_a_data_directory_see_each_others_changes(tmp_path: Path) -> None:
    # as the workers of one service (or attest rotate-key beside a running service) do
    clock = Clock(time.time())
    one, two = _service(tmp_path, clock), _service(tmp_path, clock)
    assert asgi_client(one).put("/policies/SgxEnclave", content=PERMIT_ALL_POLICY
                                ).status_code == 200
    assert two.state.policy("SgxEnclave").text == PERMIT_ALL_POLICY
    old = one.state.signing_key.kid
    new = two.rotate_signing_key()
    assert one.state.signing_key.kid == new
    token = asgi_client(one).post("/attest/SgxEnclave",
                                  json={"quote": b64url(sdk_quote())}).json()["token"]
    assert jwt_parts(token)[0]["kid"] == new
    assert [k["kid"] for k in one.jwks()["keys"]] == [new, old]
    # a change made by one is the base of the next change made by the other
    assert asgi_client(two).post("/policies/SgxEnclave:reset", content=b"").status_code == 200
    assert one.state.policy("SgxEnclave").default
    assert [k["kid"] for k in two.jwks()["keys"]] == [new, old]


def test_a_failed_change_leaves_memory_and_file_as_they_were(tmp_path: Path) -> None:
    _, cert = signer("only")
    state = ServiceState.open(tmp_path, mode="isolated", management_certs=[cert])
    before = (tmp_path / STATE_FILE).read_bytes()
    with pytest.raises(AttestationRequestError, match="last policy-management"):
        state.remove_management_cert(cert, applied="ab" * 32)
    assert (tmp_path / STATE_FILE).read_bytes() == before
    assert state.is_management_cert(cert) and not state.was_applied("certificates:remove",
                                                                    "ab" * 32)


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(AttestationError, match="unreadable"):
        ServiceState.open(tmp_path)


@pytest.mark.parametrize("name, expected", [("sgxenclave", "SgxEnclave"),
                                            ("OPENENCLAVE", "OpenEnclave")])
def test_attestation_type_names(name: str, expected: str) -> None:
    assert canonical_type(name) == expected
