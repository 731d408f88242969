"""Microsoft's ``azure-security-attestation`` 1.0.0 client, unchanged, against the service.

The service runs in-process (uvicorn on 127.0.0.1, port 0, from a thread) and is stopped at
the end of each fixture. Quotes are the real ones from the vectors (Azure SDK recording, Azure
samples); they come without collateral, so the service here uses the *parse-only* appraiser
(see ``_maa.py``) — test names say ``parse_only`` for that reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.security.attestation import (
    AttestationAdministrationClient,
    AttestationClient,
    AttestationPolicyToken,
    AttestationType,
    CertificateModification,
    PolicyModification,
)
from cryptography.hazmat.primitives import hashes

from enclavekit.attest.maa import AttestationService, create_app
from enclavekit.attest.maa.server import running
from enclavekit.attest.policy import DEFAULT_SGX_POLICY, PERMIT_ALL_POLICY
from tests.attest._maa import make_service, pem, sample, sdk_quote, sdk_runtime, signer
from tests.vectors import vector

_NO_AUTH: dict[str, Any] = {"authentication_policy": SansIOHTTPPolicy(), "retry_total": 0}


@pytest.fixture(scope="module")
def aad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, AttestationService]]:
    service = make_service(tmp_path_factory.mktemp("maa-aad"))
    with running(create_app(service)) as url:
        yield url, service


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    key, cert = signer("enclavekit test policy signer")
    service = make_service(tmp_path, mode="isolated", management_certs=(cert,))
    with running(create_app(service)) as url:
        yield url, key, cert


def _client(url: str) -> AttestationClient:
    return AttestationClient(url, object(), **_NO_AUTH)


def _admin(url: str) -> AttestationAdministrationClient:
    return AttestationAdministrationClient(url, object(), **_NO_AUTH)


def _token_hash(policy_jws: str) -> bytes:
    return hashlib.sha256(policy_jws.encode()).digest()


# --- attest -------------------------------------------------------------------------------

def test_parse_only_sdk_quote_with_runtime_data_gives_a_token_the_client_validates(
        aad: tuple[str, AttestationService]) -> None:
    url, _ = aad
    expected = json.loads(vector("azure_sdk_python_maa/attest_sgx_token_decoded.json")
                          .read_text())["payload"]
    result, token = _client(url).attest_sgx_enclave(
        sdk_quote(), runtime_data=sdk_runtime(), validate_issuer=True, issuer=url)
    assert token.algorithm == "RS256" and token.key_id
    assert result.issuer == url
    assert result.mr_enclave == expected["x-ms-sgx-mrenclave"]
    assert result.mr_signer == expected["x-ms-sgx-mrsigner"]
    assert result.product_id == 1 and result.svn == 1
    assert result.is_debuggable is False
    assert result.enclave_held_data == sdk_runtime()
    assert result.verifier_type == "sgx" and result.version == "1.0"
    assert result.sgx_collateral["quotehash"] == expected["x-ms-sgx-collateral"]["quotehash"]
    assert result.policy_claims == expected["x-ms-policy"]
    assert len(result.unique_id) == 64


def test_parse_only_sdk_quote_with_runtime_json_gives_runtime_claims(
        aad: tuple[str, AttestationService]) -> None:
    url, _ = aad
    result, _ = _client(url).attest_sgx_enclave(sdk_quote(), runtime_json=sdk_runtime())
    assert result.runtime_claims["jwk"]["crv"] == "P-256"
    assert not result.enclave_held_data


def test_parse_only_inittime_json_without_data_is_tolerated(
        aad: tuple[str, AttestationService]) -> None:
    # The 1.0.0 client sends {"initTimeData": {"dataType": "JSON"}} with no data (its bug).
    url, _ = aad
    result, _ = _client(url).attest_sgx_enclave(sdk_quote(), runtime_data=sdk_runtime(),
                                                inittime_json=b'{"a": 1}')
    assert result.inittime_claims is None


@pytest.mark.parametrize("name", ["release", "debug", "prodid", "securityversion"])
def test_parse_only_open_enclave_report_from_azure_samples(
        aad: tuple[str, AttestationService], name: str) -> None:
    url, _ = aad
    info = sample("oe_sdk_quotes", name)
    result, _ = _client(url).attest_open_enclave(
        bytes.fromhex(info["QuoteHex"]), runtime_data=bytes.fromhex(info["EnclaveHeldDataHex"]))
    assert result.mr_enclave == info["MrEnclaveHex"].lower()
    assert result.mr_signer == info["MrSignerHex"].lower()
    assert result.svn == info["SecurityVersion"]
    assert result.is_debuggable is (name == "debug")


@pytest.mark.parametrize("name", ["release", "debug", "prodid", "securityversion"])
def test_parse_only_intel_sdk_quotes_from_azure_samples(
        aad: tuple[str, AttestationService], name: str) -> None:
    url, _ = aad
    info = sample("intel_sdk_quotes", name)
    result, _ = _client(url).attest_sgx_enclave(
        bytes.fromhex(info["QuoteHex"]), runtime_data=bytes.fromhex(info["EnclaveHeldDataHex"]))
    assert result.mr_enclave == info["MrEnclaveHex"].lower()
    assert result.product_id == int.from_bytes(bytes.fromhex(info["ProductIdHex"])[:2], "little")
    assert result.svn == info["SecurityVersion"]
    assert result.is_debuggable is (name == "debug")


def test_parse_only_draft_policy_gives_an_unsecured_token(
        aad: tuple[str, AttestationService]) -> None:
    url, _ = aad
    draft = vector("maa_policies/permit_all_policy_sdk_test.txt").read_text()
    result, token = _client(url).attest_sgx_enclave(sdk_quote(), runtime_data=sdk_runtime(),
                                                    draft_policy=draft)
    assert token.algorithm == "none"
    assert result.policy_claims == {}
    assert result.mr_enclave and result.enclave_held_data == sdk_runtime()


def test_parse_only_unbound_runtime_data_is_refused(
        aad: tuple[str, AttestationService]) -> None:
    url, _ = aad
    with pytest.raises(HttpResponseError) as info:
        _client(url).attest_sgx_enclave(sdk_quote(), runtime_data=b"not what the enclave bound")
    assert info.value.status_code == 400
    assert "not bound" in str(info.value.message)


def test_signing_certificates_and_openid_metadata(aad: tuple[str, AttestationService]) -> None:
    url, service = aad
    client = _client(url)
    signers = client.get_signing_certificates()
    assert [s.key_id for s in signers] == [service.state.signing_key.kid]
    assert "BEGIN CERTIFICATE" in signers[0].certificates[0]
    metadata = client.get_open_id_metadata()
    assert metadata["issuer"] == url and metadata["jwks_uri"] == f"{url}/certs"


# --- policies, AAD mode ---------------------------------------------------------------------

def test_aad_unsigned_set_get_reset_policy(tmp_path: Path) -> None:
    with running(create_app(make_service(tmp_path))) as url:
        admin = _admin(url)
        text, _ = admin.get_policy(AttestationType.SGX_ENCLAVE)
        assert text == DEFAULT_SGX_POLICY
        result, _ = admin.set_policy(AttestationType.SGX_ENCLAVE, PERMIT_ALL_POLICY)
        assert result.policy_resolution == PolicyModification.UPDATED
        sent = AttestationPolicyToken(PERMIT_ALL_POLICY).to_jwt_string()
        assert result.policy_token_hash == _token_hash(sent)
        assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == PERMIT_ALL_POLICY
        # the lookup is per type and the path is matched case-insensitively
        assert admin.get_policy("sgxenclave")[0] == PERMIT_ALL_POLICY
        assert admin.get_policy(AttestationType.OPEN_ENCLAVE)[0] == DEFAULT_SGX_POLICY
        reset, _ = admin.reset_policy(AttestationType.SGX_ENCLAVE)
        assert reset.policy_resolution == PolicyModification.REMOVED
        assert reset.policy_token_hash is None
        assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == DEFAULT_SGX_POLICY
        certs, _ = admin.get_policy_management_certificates()
        assert certs == []


def test_aad_malformed_policy_is_refused_with_its_position(tmp_path: Path) -> None:
    with running(create_app(make_service(tmp_path))) as url:
        with pytest.raises(HttpResponseError) as info:
            _admin(url).set_policy(AttestationType.SGX_ENCLAVE,
                                   "version=1.0; authorizationrules{ => permit() };")
        assert info.value.status_code == 400
        assert info.value.error.code == "PolicyParsingError"
        assert "line 1, column" in info.value.error.message


def test_parse_only_policy_refusal_is_a_policy_evaluation_error(tmp_path: Path) -> None:
    deny_debug = ('version=1.0; authorizationrules{[type=="x-ms-sgx-is-debuggable", '
                  'value==false] => permit();}; issuancerules{};')
    with running(create_app(make_service(tmp_path))) as url:
        _admin(url).set_policy(AttestationType.SGX_ENCLAVE, deny_debug)
        debug = sample("intel_sdk_quotes", "debug")
        with pytest.raises(HttpResponseError) as info:
            _client(url).attest_sgx_enclave(bytes.fromhex(debug["QuoteHex"]))
        assert info.value.status_code == 400
        assert info.value.error.code == "PolicyEvaluationError"
        release = sample("intel_sdk_quotes", "release")
        result, _ = _client(url).attest_sgx_enclave(bytes.fromhex(release["QuoteHex"]))
        assert result.is_debuggable is False


# --- policies and certificates, isolated mode ------------------------------------------------

def test_isolated_signed_set_policy_hash_matches_what_was_sent(
        isolated: tuple[str, Any, Any]) -> None:
    url, key, cert = isolated
    admin = _admin(url)
    result, _ = admin.set_policy(AttestationType.SGX_ENCLAVE, PERMIT_ALL_POLICY,
                                 signing_key=pem(key), signing_certificate=pem(cert))
    assert result.policy_resolution == PolicyModification.UPDATED
    sent = AttestationPolicyToken(PERMIT_ALL_POLICY, signing_key=pem(key),
                                  signing_certificate=pem(cert)).to_jwt_string()
    assert result.policy_token_hash == _token_hash(sent)
    assert result.policy_signer.certificates[0].strip() == pem(cert).strip()
    assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == PERMIT_ALL_POLICY
    reset, _ = admin.reset_policy(AttestationType.SGX_ENCLAVE, signing_key=pem(key),
                                  signing_certificate=pem(cert))
    assert reset.policy_resolution == PolicyModification.REMOVED


def test_isolated_refuses_unsigned_and_wrongly_signed_policies(
        isolated: tuple[str, Any, Any]) -> None:
    url, _, _ = isolated
    admin = _admin(url)
    with pytest.raises(ClientAuthenticationError, match="isolated mode"):
        admin.set_policy(AttestationType.SGX_ENCLAVE, PERMIT_ALL_POLICY)
    other_key, other_cert = signer("not a management certificate")
    with pytest.raises(ClientAuthenticationError, match="not a policy-management"):
        admin.set_policy(AttestationType.SGX_ENCLAVE, PERMIT_ALL_POLICY,
                         signing_key=pem(other_key), signing_certificate=pem(other_cert))
    with pytest.raises(ClientAuthenticationError):
        admin.reset_policy(AttestationType.SGX_ENCLAVE)
    assert admin.get_policy(AttestationType.SGX_ENCLAVE)[0] == DEFAULT_SGX_POLICY


def test_isolated_management_certificates_get_add_remove(
        isolated: tuple[str, Any, Any]) -> None:
    url, key, cert = isolated
    admin = _admin(url)
    certs, _ = admin.get_policy_management_certificates()
    assert [c[0].strip() for c in certs] == [pem(cert).strip()]
    new_key, new_cert = signer("second policy signer")
    added, _ = admin.add_policy_management_certificate(
        pem(new_cert), signing_key=pem(key), signing_certificate=pem(cert))
    assert added.certificate_resolution == CertificateModification.IS_PRESENT
    assert added.certificate_thumbprint.upper() == new_cert.fingerprint(hashes.SHA1()).hex().upper()
    assert len(admin.get_policy_management_certificates()[0]) == 2
    # the new certificate may now sign policies
    admin.set_policy(AttestationType.SGX_ENCLAVE, PERMIT_ALL_POLICY,
                     signing_key=pem(new_key), signing_certificate=pem(new_cert))
    removed, _ = admin.remove_policy_management_certificate(
        pem(cert), signing_key=pem(new_key), signing_certificate=pem(new_cert))
    assert removed.certificate_resolution == CertificateModification.IS_ABSENT
    with pytest.raises(ClientAuthenticationError):
        admin.set_policy(AttestationType.SGX_ENCLAVE, DEFAULT_SGX_POLICY,
                         signing_key=pem(key), signing_certificate=pem(cert))
    # the last certificate stays
    with pytest.raises(HttpResponseError) as info:
        admin.remove_policy_management_certificate(
            pem(new_cert), signing_key=pem(new_key), signing_certificate=pem(new_cert))
    assert info.value.status_code == 400
    # a certificate change signed by a stranger is refused
    stranger_key, stranger_cert = signer("stranger")
    with pytest.raises(ClientAuthenticationError):
        admin.add_policy_management_certificate(
            pem(stranger_cert), signing_key=pem(stranger_key),
            signing_certificate=pem(stranger_cert))


def test_unsigned_policy_jws_from_the_docs_is_accepted_in_aad_mode(tmp_path: Path) -> None:
    jws = vector("maa_policies/sgx_unsigned_policy.jwt").read_text().strip()
    with running(create_app(make_service(tmp_path))) as url:
        import httpx

        reply = httpx.put(f"{url}/policies/SgxEnclave?api-version=2022-08-01", content=jws,
                          headers={"Content-Type": "text/plain"})
        assert reply.status_code == 200, reply.text
        text, _ = _admin(url).get_policy(AttestationType.SGX_ENCLAVE)
        body = jws.split(".")[1]
        policy_b64 = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))[
            "AttestationPolicy"]
        assert text == base64.urlsafe_b64decode(policy_b64 + "=" * (-len(policy_b64) % 4)
                                                ).decode()


def test_parse_only_over_https_with_a_test_ca(tmp_path: Path) -> None:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "tls.pem", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    service = make_service(tmp_path / "state")
    with running(create_app(service), tls_cert=str(cert_path), tls_key=str(key_path)) as url:
        assert url.startswith("https://127.0.0.1:")
        with AttestationClient(url, object(), connection_verify=str(cert_path),
                               **_NO_AUTH) as client:
            result, _ = client.attest_sgx_enclave(sdk_quote(), runtime_data=sdk_runtime())
        assert result.issuer == url and result.enclave_held_data == sdk_runtime()


def test_aad_bare_policy_text_starting_with_a_comment_is_policy_text(tmp_path: Path) -> None:
    import httpx

    text = "// strict\nversion=1.2; authorizationrules{=> permit();}; issuancerules{};"
    with running(create_app(make_service(tmp_path))) as url:
        reply = httpx.put(f"{url}/policies/SgxEnclave", content=text)
        assert reply.status_code == 200, reply.text
        assert _admin(url).get_policy(AttestationType.SGX_ENCLAVE)[0] == text
