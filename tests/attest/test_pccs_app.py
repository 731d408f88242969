"""The collateral service over HTTP (in-process TestClient): PCS v4 paths, bodies that embed
the exact signed texts, URL-encoded issuer-chain headers, 400/404 with JSON errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from starlette.testclient import TestClient

from enclavekit.attest.pccs.app import PREFIX, create_app
from enclavekit.attest.pccs.publish import Publisher
from enclavekit.vm.platform import EMULATED_FMSPC
from enclavekit.vm.provisioning import Provisioning

from ._pccs import Clock, chain_from_header, signed_by

FMSPC = EMULATED_FMSPC.hex().upper()
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pccs-app")
    Provisioning.open(path)
    return path


@pytest.fixture(scope="module")
def authority(pki_dir: Path) -> Provisioning:
    return Provisioning.open(pki_dir)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def publisher(pki_dir: Path, tmp_path: Path, clock: Clock) -> Publisher:
    shutil.copytree(pki_dir / "pki", tmp_path / "pki")
    return Publisher.open(tmp_path, clock)


@pytest.fixture
def client(publisher: Publisher) -> Iterator[TestClient]:
    with TestClient(create_app(publisher)) as c:
        yield c


def _signed_member(body: str, name: str) -> tuple[str, str]:
    """The exact text of ``name``'s object inside a PCS body, and the signature."""
    prefix = f'{{"{name}":'
    assert body.startswith(prefix)
    doc = json.loads(body)
    text = body[len(prefix): body.rindex(',"signature":')]
    assert json.loads(text) == doc[name]
    return text, doc["signature"]


@pytest.mark.parametrize("fmspc", [FMSPC, FMSPC.lower()])
def test_tcb_info(client: TestClient, authority: Provisioning, fmspc: str) -> None:
    resp = client.get(f"{PREFIX}/tcb", params={"fmspc": fmspc})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    text, signature = _signed_member(resp.text, "tcbInfo")
    chain = chain_from_header(resp.headers["TCB-Info-Issuer-Chain"])
    assert chain == [authority.tcb_signing_certificate, authority.root_certificate]
    assert signed_by(chain[0], signature, text)
    assert json.loads(text)["fmspc"] == FMSPC


def test_qe_identity(client: TestClient, authority: Provisioning) -> None:
    resp = client.get(f"{PREFIX}/qe/identity")
    assert resp.status_code == 200
    text, signature = _signed_member(resp.text, "enclaveIdentity")
    chain = chain_from_header(resp.headers["SGX-Enclave-Identity-Issuer-Chain"])
    assert chain == [authority.tcb_signing_certificate, authority.root_certificate]
    assert signed_by(chain[0], signature, text)
    assert json.loads(text)["id"] == "QE"


@pytest.mark.parametrize("encoding", ["der", "pem", None])
def test_pck_crl(client: TestClient, authority: Provisioning, encoding: str | None) -> None:
    params = {"ca": "processor", **({"encoding": encoding} if encoding else {})}
    resp = client.get(f"{PREFIX}/pckcrl", params=params)
    assert resp.status_code == 200
    if encoding == "der":
        crl = x509.load_der_x509_crl(resp.content)
        assert resp.headers["content-type"] == "application/pkix-crl"
    else:
        crl = x509.load_pem_x509_crl(resp.content)
    chain = chain_from_header(resp.headers["SGX-PCK-CRL-Issuer-Chain"])
    assert chain == [authority.pck_ca_certificate, authority.root_certificate]
    assert crl.issuer == chain[0].subject
    assert crl.is_signature_valid(chain[0].public_key())  # type: ignore[arg-type]


def test_root_ca_crl(client: TestClient, authority: Provisioning) -> None:
    resp = client.get(f"{PREFIX}/rootcacrl")
    assert resp.status_code == 200
    crl = x509.load_der_x509_crl(resp.content)
    assert crl.is_signature_valid(authority.root_certificate.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "params", "status", "message"), [
    ("tcb", {}, 400, "missing query parameter fmspc"),
    ("tcb", {"fmspc": "00EE0A00000"}, 400, "fmspc must be 12 hex digits"),
    ("tcb", {"fmspc": "00EE0A00000G"}, 400, "fmspc must be 12 hex digits"),
    ("tcb", {"fmspc": "00A067110000"}, 404, "no TCB info for FMSPC 00A067110000"),
    ("tcb", {"fmspc": FMSPC, "x": "1"}, 400, "unknown query parameter 'x'"),
    ("tcb", {"fmspc": FMSPC, "update": "late"}, 400, "update must be one of early, standard"),
    ("qe/identity", {"fmspc": FMSPC}, 400, "unknown query parameter 'fmspc'"),
    ("pckcrl", {}, 400, "missing query parameter ca"),
    ("pckcrl", {"ca": "intel"}, 400, "ca must be processor or platform"),
    ("pckcrl", {"ca": "platform"}, 404, "PCK Processor CA only"),
    ("pckcrl", {"ca": "processor", "encoding": "base64"}, 400, "encoding must be der or pem"),
    ("rootcacrl", {"ca": "processor"}, 400, "unknown query parameter 'ca'"),
])
def test_bad_requests_get_a_json_error(client: TestClient, path: str, params: dict[str, str],
                                       status: int, message: str) -> None:
    resp = client.get(f"{PREFIX}/{path}", params=params)
    assert resp.status_code == status
    assert message in resp.json()["error"]


def test_a_parameter_given_twice_is_refused(client: TestClient) -> None:
    resp = client.get(f"{PREFIX}/tcb?fmspc={FMSPC}&fmspc=00A067110000")
    assert resp.status_code == 400 and "more than once" in resp.json()["error"]


def test_update_early_and_standard_are_accepted(client: TestClient) -> None:
    for update in ("early", "standard"):
        assert client.get(f"{PREFIX}/tcb", params={"fmspc": FMSPC,
                                                   "update": update}).status_code == 200


def test_only_get_is_served(client: TestClient) -> None:
    assert client.post(f"{PREFIX}/tcb", params={"fmspc": FMSPC}).status_code == 405
    assert client.get("/sgx/certification/v4/pckcert").status_code == 404


def test_a_request_after_next_update_gets_a_new_window(client: TestClient, clock: Clock) -> None:
    def issue_and_next() -> tuple[str, str]:
        text, _ = _signed_member(client.get(f"{PREFIX}/qe/identity").text, "enclaveIdentity")
        doc = json.loads(text)
        return doc["issueDate"], doc["nextUpdate"]

    first = issue_and_next()
    assert first == ("2026-03-01T12:00:00Z", "2026-03-31T12:00:00Z")
    clock.advance(timedelta(days=29))
    assert issue_and_next() == first
    clock.advance(timedelta(days=1))
    assert issue_and_next() == ("2026-03-31T12:00:00Z", "2026-04-30T12:00:00Z")


def test_a_broken_pki_is_a_503_with_a_json_error(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "root.pem").write_text("garbage")
    with TestClient(create_app(Publisher.open(tmp_path))) as c:
        resp = c.get(f"{PREFIX}/qe/identity")
    assert resp.status_code == 503
    assert resp.json()["error"].startswith("ProvisioningError:")


def test_requests_outside_the_limits_get_a_json_error(client: TestClient) -> None:
    resp = client.get(f"{PREFIX}/qe/identity", headers={"x-filler": "a" * 100_000})
    assert resp.status_code == 431 and "at most 16384" in resp.json()["error"]
    resp = client.get(f"{PREFIX}/tcb?fmspc={'0' * 10_000}")
    assert resp.status_code == 414 and "request target" in resp.json()["error"]
    resp = client.request("GET", f"{PREFIX}/qe/identity", content=b"{}")
    assert resp.status_code == 400 and "larger than 0 bytes" in resp.json()["error"]
    assert client.get(f"{PREFIX}/qe/identity").status_code == 200
