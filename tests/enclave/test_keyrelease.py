"""Secure key release end to end with a real enclave: it attests through enclavekit's
attestation service (over HTTP, relayed by the host), has a key released by the key-release
service (over HTTPS, relayed by the host) and unwraps it inside; the host only relays.

The attestation service here trusts every quote it can parse (a parse-only appraiser: DCAP
verification of enclavekit quotes is tested in tests/attest); it still checks that
SHA-256(runtime data) is in the quote's REPORTDATA, so the released key is bound to the key
pair generated inside this enclave."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from enclavekit.attest.maa import Appraisal, AttestationService, ServiceConfig, create_app
from enclavekit.attest.maa.server import running
from enclavekit.dcap.quote import Quote
from enclavekit.enclave.keyrelease import HttpRelay
from enclavekit.errors import KeyReleaseError
from enclavekit.host import VM, Enclave, build
from enclavekit.kms.serve import KMSService, ServerThread, build_service
from tests.kms._support import b64u, policy_body
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

APP = '''
import hashlib

from enclavekit.enclave import ecall
from enclavekit.enclave.keyrelease import attest, release_key, runtime_data


@ecall
def token(service: str) -> str:
    return attest(service)


@ecall
def public_runtime_data() -> bytes:
    return runtime_data()


@ecall
def fetch(kms: str, name: str, token: str, cert: bytes, nonce: str) -> bytes:
    """The key stays inside: only its SHA-256 goes out (for the test to compare)."""
    return hashlib.sha256(release_key(kms, name, token, kms_certificate=cert,
                                      nonce=nonce or None)).digest()
'''


def _manifest(debug: bool) -> str:
    return (f'name = "skr"\nentry = "app.py"\ndebug = {str(debug).lower()}\n'
            'heap_size = "2M"\nstack_size = "64K"\nthreads = 2\n')


def _parse_only(quote: bytes) -> Appraisal:
    return Appraisal(quote, Quote.parse(quote).body, tcb_status="UpToDate")


@dataclass
class World:
    enclave: Enclave
    debug_enclave: Enclave
    relay: HttpRelay
    maa_url: str
    kms_url: str
    kms: KMSService


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("skr")
    images = {}
    for debug in (False, True):
        app = tmp / f"app-{debug}"
        app.mkdir()
        (app / "enclave.toml").write_text(_manifest(debug))
        (app / "app.py").write_text(APP)
        images[debug] = build(app).sign(session_signing_key())
    maa = AttestationService(ServiceConfig(tmp / "maa"), _parse_only)
    with running(create_app(maa)) as maa_url:
        kms = build_service(tmp / "kms", [maa_url])
        server = ServerThread(kms.app, certfile=kms.cert_path, keyfile=kms.key_path).start()
        relay = HttpRelay(verify=ssl.create_default_context(cafile=str(kms.cert_path)))
        ocalls = {"enclavekit_http": relay}
        try:
            with device_server(tmp, fake=False) as (_, path, store), \
                    VM("testvm", path, store=store) as vm, \
                    vm.load(images[False], ocalls=ocalls) as enc, \
                    vm.load(images[True], ocalls=ocalls) as dbg:
                yield World(enc, dbg, relay, maa_url, f"https://127.0.0.1:{server.port}", kms)
        finally:
            relay.close()
            server.stop()


def _create(world: World, name: str, **extra: Any) -> bytes:
    policy = {"version": "1.0.0", "anyOf": [{"authority": world.maa_url, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": world.enclave.mrsigner.hex()},
        {"claim": "x-ms-sgx-mrenclave", "equals": world.enclave.mrenclave.hex()},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False}, *extra.get("more", [])]}]}
    key = world.kms.store.create(name, {"kty": "oct-HSM", "attributes": {"exportable": True},
                                        "release_policy": policy_body(policy)})
    return key.material


def test_enclave_attests_and_unwraps_its_key_inside(world: World) -> None:
    material = _create(world, "data-key")
    token = world.enclave.ecalls.token(world.maa_url)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["x-ms-sgx-mrenclave"] == world.enclave.mrenclave.hex()
    assert claims["x-ms-runtime"] == json.loads(world.enclave.ecalls.public_runtime_data())
    cert = world.kms.cert_path.read_bytes()
    digest = world.enclave.ecalls.fetch(world.kms_url, "data-key", token, cert, "n-1")
    assert digest == hashlib.sha256(material).digest()
    last = list(world.kms.audit.records())[-1]
    assert last["decision"] == "allowed" and last["nonce"] == "n-1"


def test_debug_build_of_the_same_enclave_is_refused(world: World) -> None:
    _create(world, "prod-only")
    token = world.debug_enclave.ecalls.token(world.maa_url)
    cert = world.kms.cert_path.read_bytes()
    with pytest.raises(KeyReleaseError, match="attestation statement cannot be verified"):
        world.debug_enclave.ecalls.fetch(world.kms_url, "prod-only", token, cert, "")
    last = list(world.kms.audit.records())[-1]
    assert last["decision"] == "refused"
    assert last["enclave"]["x-ms-sgx-is-debuggable"] is True


def test_policy_refusal_reaches_the_enclave(world: World) -> None:
    _create(world, "newer", more=[{"claim": "x-ms-sgx-svn", "greaterOrEquals": 99}])
    token = world.enclave.ecalls.token(world.maa_url)
    with pytest.raises(KeyReleaseError, match="refused"):
        world.enclave.ecalls.fetch(world.kms_url, "newer", token,
                                   world.kms.cert_path.read_bytes(), "")


def test_host_substituting_the_answer_is_refused(world: World, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A hostile host wraps a key of its own choosing to the enclave's (public) key and
    signs the answer with its own service: the pinned certificate refuses it."""
    _create(world, "pinned")
    token = world.enclave.ecalls.token(world.maa_url)
    rogue = build_service(tmp_path / "rogue", [world.maa_url])
    rogue.store.create("pinned", {"kty": "oct", "attributes": {"exportable": True},
                                  "release_policy": policy_body({"anyOf": [{
                                      "authority": world.maa_url, "allOf": [
                                          {"claim": "x-ms-sgx-is-debuggable",
                                           "equals": False}]}]})})
    rogue_server = ServerThread(rogue.app, certfile=rogue.cert_path,
                                keyfile=rogue.key_path).start()
    real = HttpRelay.__call__

    def hostile(self: HttpRelay, method: str, url: str, headers: dict[str, str],
                body: bytes) -> tuple[int, bytes]:
        if "/release" in url:  # send the enclave's request to the host's own service
            url = url.replace(world.kms_url, f"https://127.0.0.1:{rogue_server.port}")
            r = httpx.post(url, headers=headers, content=body,
                           verify=ssl.create_default_context(cafile=str(rogue.cert_path)))
            return r.status_code, r.content
        return real(self, method, url, headers, body)

    try:
        monkeypatch.setattr(HttpRelay, "__call__", hostile)
        with pytest.raises(KeyReleaseError, match="not signed by the pinned"):
            world.enclave.ecalls.fetch(world.kms_url, "pinned", token,
                                       world.kms.cert_path.read_bytes(), "")
    finally:
        rogue_server.stop()
    # Tampering with the real answer breaks its signature.
    monkeypatch.undo()

    def tamper(self: HttpRelay, method: str, url: str, headers: dict[str, str],
               body: bytes) -> tuple[int, bytes]:
        status, data = real(self, method, url, headers, body)
        if "/release" in url and status == 200:
            head, payload, sig = json.loads(data)["value"].split(".")
            forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
            forged["request"]["kid"] = "x"
            return status, json.dumps({"value": f"{head}.{b64u(json.dumps(forged).encode())}"
                                                f".{sig}"}).encode()
        return status, data

    monkeypatch.setattr(HttpRelay, "__call__", tamper)
    with pytest.raises(KeyReleaseError, match="signature does not verify"):
        world.enclave.ecalls.fetch(world.kms_url, "pinned", token,
                                   world.kms.cert_path.read_bytes(), "")
