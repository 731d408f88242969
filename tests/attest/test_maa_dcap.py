"""The service with the real DCAP verifier: a real Intel quote with its recorded collateral
(Phala dcap-qvl vector, verified at a time inside the collateral's window), attested through
Microsoft's client; tampered quotes and stale collateral are refused with the check named."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.security.attestation import AttestationClient
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.attest.maa import AttestationService, ServiceConfig, create_app
from enclavekit.attest.maa.dcap import DcapAppraiser, FileCollateral, collateral_hashes
from enclavekit.attest.maa.server import running
from tests.attest._maa import asgi_client, b64url, jwt_parts
from tests.vectors import vector

QUOTE = "phala_dcap_qvl/sgx_quote"
COLLATERAL = "phala_dcap_qvl/sgx_quote_collateral.json"
INSIDE_WINDOW = datetime(2025, 7, 19, 10, 1, 17, tzinfo=UTC)
_REPORTDATA = 48 + 320


def _service(tmp_path: Path, at: datetime | None = INSIDE_WINDOW) -> AttestationService:
    appraiser = DcapAppraiser(FileCollateral(vector(COLLATERAL)),
                              at=(lambda: at) if at is not None else None)
    return AttestationService(ServiceConfig(tmp_path), appraiser)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with running(create_app(_service(tmp_path))) as base:
        yield base


def _client(url: str) -> AttestationClient:
    return AttestationClient(url, object(), authentication_policy=SansIOHTTPPolicy(),
                             retry_total=0)


def test_dcap_verified_real_intel_quote_through_microsofts_client(url: str) -> None:
    quote = vector(QUOTE).read_bytes()
    result, token = _client(url).attest_sgx_enclave(quote)
    assert result.mr_enclave == "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    assert result.mr_signer == "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    assert result.product_id == 0 and result.svn == 0 and result.is_debuggable is False
    _, claims = jwt_parts(token.to_jwt_string())
    assert claims["x-ms-sgx-tcb-status"] == "ConfigurationAndSWHardeningNeeded"
    assert claims["x-ms-sgx-advisory-ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert bytes.fromhex(claims["x-ms-sgx-report-data"]).rstrip(b"\0") == b"Hello, world!"
    collateral = json.loads(vector(COLLATERAL).read_text())
    assert result.sgx_collateral["quotehash"] == hashlib.sha256(quote).hexdigest()
    assert result.sgx_collateral["tcbinfohash"] == hashlib.sha256(
        collateral["tcb_info"].encode()).hexdigest()


def test_dcap_tcb_status_is_visible_to_the_policy(url: str) -> None:
    draft = ('version=1.0; authorizationrules{'
             '[type=="x-ms-sgx-tcb-status", value=="UpToDate"] => permit();}; issuancerules{};')
    with pytest.raises(HttpResponseError) as info:
        _client(url).attest_sgx_enclave(vector(QUOTE).read_bytes(), draft_policy=draft)
    assert info.value.error.code == "PolicyEvaluationError"
    deny_advisory = ('version=1.0; authorizationrules{'
                     '[type=="x-ms-sgx-advisory-ids", value=="INTEL-SA-00615"] => deny();'
                     '=> permit();}; issuancerules{};')
    with pytest.raises(HttpResponseError):
        _client(url).attest_sgx_enclave(vector(QUOTE).read_bytes(), draft_policy=deny_advisory)


@pytest.mark.parametrize("offset, words", [
    (_REPORTDATA, "check quote_signature"),         # the enclave's report data
    (48 + 64, "check quote_signature"),             # MRENCLAVE
    (48 + 256, "check quote_signature"),            # ISVPRODID
    (436 + 64, "check qe_report_data"),             # the attestation key
    (436 + 128 + 64, "check qe_report_signature"),  # the QE report's MRENCLAVE
    (2, "quote does not parse: attestation key type 3"),  # header
])
def test_dcap_tampered_quote_is_refused_naming_the_check(url: str, offset: int,
                                                         words: str) -> None:
    quote = bytearray(vector(QUOTE).read_bytes())
    quote[offset] ^= 0x01
    with pytest.raises(HttpResponseError) as info:
        _client(url).attest_sgx_enclave(bytes(quote))
    assert info.value.status_code == 400
    assert info.value.error.code == "InvalidParameter"
    assert words in info.value.error.message


def test_dcap_stale_collateral_is_refused_naming_the_check(tmp_path: Path) -> None:
    client = asgi_client(_service(tmp_path, at=None))  # now: long after the window
    reply = client.post("/attest/SgxEnclave", json={"quote": b64url(vector(QUOTE).read_bytes())})
    assert reply.status_code == 400
    message: str = reply.json()["error"]["message"]
    assert message.startswith("quote verification failed: check ")
    assert "expired" in message


def test_dcap_quote_chaining_to_an_untrusted_root_is_refused(tmp_path: Path) -> None:
    from tests.attest._maa import signer

    _, stranger = signer("not Intel")
    appraiser = DcapAppraiser(FileCollateral(vector(COLLATERAL)), [stranger],
                              at=lambda: INSIDE_WINDOW)
    client = asgi_client(AttestationService(ServiceConfig(tmp_path), appraiser))
    reply = client.post("/attest/SgxEnclave", json={"quote": b64url(vector(QUOTE).read_bytes())})
    assert reply.status_code == 400
    assert "root_untrusted" in reply.json()["error"]["message"]


def test_collateral_hashes_use_maas_names() -> None:
    hashes: dict[str, Any] = collateral_hashes(FileCollateral(vector(COLLATERAL)).collateral)
    assert {"tcbinfohash", "tcbinfocertshash", "tcbinfocrlhash", "qeidhash", "qeidcertshash",
            "qeidcrlhash"} <= set(hashes)
    assert hashes["tcbinfocrlhash"] == hashes["qeidcrlhash"]


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return asgi_client(_service(tmp_path_factory.mktemp("maa-dcap-fuzz")))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_dcap_mutated_quotes_are_400_never_a_server_error(fuzz_client: Any,
                                                          data: st.DataObject) -> None:
    client = fuzz_client
    quote = bytearray(vector(QUOTE).read_bytes())
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    at = data.draw(st.integers(0, len(quote) - 1))
    if kind == "flip":
        quote[at] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del quote[at:]
    else:
        quote[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    reply = client.post("/attest/SgxEnclave", json={"quote": b64url(bytes(quote))})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "InvalidParameter"
