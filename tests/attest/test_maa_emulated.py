"""End to end with an enclavekit VM: the sample enclave quotes SHA-256 of its runtime JWKS, the
attestation service verifies the quote with the DCAP verifier (collateral from ``enclavekit pccs``
over HTTP, the VM's emulation root trusted), and Microsoft's client gets a token whose
``x-ms-runtime`` holds the JWKS. The same service pinned to Intel's root refuses the quote."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.security.attestation import AttestationClient

from enclavekit.attest.maa import AttestationService, ServiceConfig, create_app
from enclavekit.attest.maa.dcap import DcapAppraiser, PccsCollateral
from enclavekit.attest.maa.server import running
from enclavekit.attest.pccs.app import create_app as pccs_app
from enclavekit.attest.pccs.publish import Publisher
from enclavekit.attest.pccs.serve import running as pccs_running
from enclavekit.cli.quote_sample import sample_quote
from enclavekit.dcap.roots import intel_sgx_root_ca
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning
from tests.attest._maa import jwt_parts

RUNTIME = json.dumps({"keys": [{"kty": "RSA", "kid": "enclave-key", "key_ops": ["encrypt"],
                                "n": "sXch", "e": "AQAB"}]}).encode()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, bytes]]:
    data = tmp_path_factory.mktemp("maa-emulated")
    store = PlatformStore(data)
    store.create("a", "Standard_DC1s_v2")
    quote = sample_quote(store, "a", hashlib.sha256(RUNTIME).digest())
    with pccs_running(pccs_app(Publisher.open(data))) as pccs:
        yield data, pccs, quote


def _client(url: str) -> AttestationClient:
    return AttestationClient(url, object(), authentication_policy=SansIOHTTPPolicy(),
                             retry_total=0)


def test_emulated_vm_quote_via_pccs_through_microsofts_client(
        site: tuple[Path, str, bytes], tmp_path: Path) -> None:
    data, pccs, quote = site
    roots = [intel_sgx_root_ca(), Provisioning.open(data).root_certificate]
    service = AttestationService(ServiceConfig(tmp_path),
                                 DcapAppraiser(PccsCollateral(pccs), roots))
    with running(create_app(service)) as url:
        result, token = _client(url).attest_sgx_enclave(quote, runtime_json=RUNTIME,
                                                        validate_issuer=True, issuer=url)
    assert token.algorithm == "RS256"
    assert result.runtime_claims == json.loads(RUNTIME)
    assert result.is_debuggable is False and result.verifier_type == "sgx"
    _, claims = jwt_parts(token.to_jwt_string())
    assert claims["x-ms-sgx-tcb-status"] == "ConfigurationNeeded"  # a development platform
    assert claims["x-ms-sgx-advisory-ids"] == ["EK-DEV-0001"]
    assert claims["x-ms-sgx-report-data"] == (hashlib.sha256(RUNTIME).digest() + bytes(32)).hex()
    assert set(claims["x-ms-sgx-collateral"]) >= {"quotehash", "tcbinfohash", "qeidhash"}


def test_emulated_quote_refused_by_a_service_that_trusts_only_intel(
        site: tuple[Path, str, bytes], tmp_path: Path) -> None:
    _, pccs, quote = site
    service = AttestationService(ServiceConfig(tmp_path), DcapAppraiser(PccsCollateral(pccs)))
    with running(create_app(service)) as url, pytest.raises(HttpResponseError) as info:
        _client(url).attest_sgx_enclave(quote, runtime_json=RUNTIME)
    assert info.value.status_code == 400
    assert "root_untrusted" in info.value.error.message
