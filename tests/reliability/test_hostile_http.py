"""Hostile HTTP: each service, served by uvicorn as in production, gets thousands of malformed
requests (``_hostile``: broken request lines and headers, framing tricks, oversized parts, bad
JSON, wrong JSON types, unknown paths and methods); no answer may be a 5xx, and a valid
request is answered afterwards. ``--slow`` sends 20,000 per service instead of 2,000."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from enclavekit.attest.maa import create_app as maa_app
from enclavekit.attest.maa.server import running as maa_running
from enclavekit.attest.pccs.app import PREFIX
from enclavekit.attest.pccs.app import create_app as pccs_app
from enclavekit.attest.pccs.publish import Publisher
from enclavekit.attest.pccs.serve import running as pccs_running
from enclavekit.kms.serve import ServerThread, build_service
from enclavekit.vm.platform import EMULATED_FMSPC
from enclavekit.vm.provisioning import Provisioning

from ._hostile import Target, barrage


def _count(request: pytest.FixtureRequest) -> int:
    return 20_000 if request.config.getoption("--slow") else 2_000


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _report(name: str, statuses: dict[int | None, int], errors: list[object]) -> None:
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=lambda i: str(i[0])))
    print(f"\n{name}: {sum(statuses.values())} malformed requests; answers {shown}; "
          f"5xx: {len(errors)}")


@pytest.fixture(scope="module")
def maa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.attest._maa import make_service

    with maa_running(maa_app(make_service(tmp_path_factory.mktemp("hostile-maa")))) as url:
        yield url


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.kms._support import FakeAuthority, multi_verifier

    service = build_service(tmp_path_factory.mktemp("hostile-kms"), [],
                            verifier=multi_verifier([FakeAuthority()]))
    server = ServerThread(service.app).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pccs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("hostile-pccs")
    Provisioning.open(data)
    with pccs_running(pccs_app(Publisher.open(data))) as url:
        yield url


_QUOTE = base64.urlsafe_b64encode(b"\x03\x00" + bytes(600)).rstrip(b"=").decode()
MAA = Target(
    operations=[("POST", "/attest/SgxEnclave"), ("POST", "/attest/OpenEnclave"),
                ("GET", "/certs"), ("GET", "/.well-known/openid-configuration"),
                ("GET", "/policies/SgxEnclave"), ("PUT", "/policies/SgxEnclave"),
                ("POST", "/policies/SgxEnclave:reset"), ("GET", "/certificates"),
                ("POST", "/certificates:add"), ("POST", "/certificates:remove")],
    headers={}, query="?api-version=2022-08-01",
    bodies=[{"quote": _QUOTE, "runtimeData": {"data": "AAAA", "dataType": "Binary"}},
            {"report": _QUOTE, "draftPolicyForAttestation": "version=1.0;"}])
KMS = Target(
    operations=[("POST", "/keys/k/create"), ("PUT", "/keys/k"), ("GET", "/keys/k"),
                ("PATCH", "/keys/k"), ("POST", "/keys/k/release"), ("GET", "/keys"),
                ("DELETE", "/keys/nothing"), ("GET", "/keys/k/versions")],
    headers={"Authorization": "Bearer hostile"}, query="?api-version=7.4",
    bodies=[{"kty": "oct", "key_size": 256, "attributes": {"exportable": False}},
            {"target": "a.b.c", "enc": "RSA_AES_KEY_WRAP_256", "nonce": "n"},
            {"attributes": {"enabled": True, "exp": 2_000_000_000}, "tags": {"a": "b"}}])
FMSPC = EMULATED_FMSPC.hex().upper()
PCCS = Target(
    operations=[("GET", f"{PREFIX}/tcb?fmspc={FMSPC}"), ("GET", f"{PREFIX}/qe/identity"),
                ("GET", f"{PREFIX}/pckcrl?ca=processor"), ("GET", f"{PREFIX}/rootcacrl")],
    headers={})


def test_the_attestation_service_answers_no_malformed_request_with_a_5xx(
        maa: str, request: pytest.FixtureRequest) -> None:
    statuses, errors = barrage(_address(maa), MAA, _count(request), seed=1)
    _report("attestation service", statuses, errors)
    assert errors == []
    assert httpx.get(f"{maa}/certs").status_code == 200


def test_the_key_service_answers_no_malformed_request_with_a_5xx(
        kms: str, request: pytest.FixtureRequest) -> None:
    statuses, errors = barrage(_address(kms), KMS, _count(request), seed=2)
    _report("key-release service", statuses, errors)
    assert errors == []
    reply = httpx.get(f"{kms}/keys?api-version=7.4", headers={"Authorization": "Bearer ok"})
    assert reply.status_code == 200


def test_the_collateral_service_answers_no_malformed_request_with_a_5xx(
        pccs: str, request: pytest.FixtureRequest) -> None:
    statuses, errors = barrage(_address(pccs), PCCS, _count(request), seed=3)
    _report("collateral service", statuses, errors)
    assert errors == []
    assert httpx.get(f"{pccs}{PREFIX}/qe/identity").status_code == 200


def test_the_barrage_covers_every_class() -> None:
    from ._hostile import MAKERS, requests

    kinds = {kind for kind, _ in requests(KMS, 2_000, seed=2)}
    assert kinds == {m.__name__.lstrip("_") for m in MAKERS}

