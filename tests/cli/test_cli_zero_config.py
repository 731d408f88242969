"""Zero-config services: ``pccs serve``, ``attest serve`` and ``kms serve`` started with no
wiring flags from one data directory find each other (``<data dir>/run/*.json``), each saying
so in one line; explicit flags still win; with nothing running the command says what to start.

Every service is its own process on a free loopback port. The enclave is the sample enclave of
``quote sample``; its quote binds SHA-256 of JSON runtime data naming an RSA key, so the token
the attestation service issues releases a key wrapped to that key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from enclavekit.cli import main
from enclavekit.vm.platform import PlatformStore
from tests.kms._support import enclave_jwk, open_release, policy_body, rsa_key

RUNTIME = json.dumps({"keys": [enclave_jwk("enclave")]}).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Service:
    """One ``enclavekit ... serve`` process: its URL (first stdout line) and stderr lines."""

    def __init__(self, home: Path, *args: str) -> None:
        env = {**os.environ, "ENCLAVEKIT_HOME": str(home)}
        self.proc = subprocess.Popen([sys.executable, "-m", "enclavekit", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if " at " not in line:
            self.proc.wait(timeout=15)
            raise AssertionError(f"{args} did not start: {line!r} {self.stderr()}")
        self.url = line.split(" at ")[1].split()[0]

    def stderr(self) -> str:
        """What it wrote to stderr (once it has stopped)."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def first_error_line(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.readline()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _wait(url: str, verify: ssl.SSLContext | bool = True) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, verify=verify)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.05)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    PlatformStore(tmp_path / "home").create("a", "Standard_DC1s_v2")
    return tmp_path / "home"


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in reversed(started):
        service.stop()


def _quote(home: Path, out: Path) -> bytes:
    env = {**os.environ, "ENCLAVEKIT_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "enclavekit", "quote", "sample", "--vm", "a",
                           "--report-data", hashlib.sha256(RUNTIME).hexdigest(), "-o",
                           str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def _attest(url: str, quote: bytes) -> httpx.Response:
    _wait(f"{url}/certs")
    return httpx.post(f"{url}/attest/SgxEnclave?api-version=2022-08-01", timeout=30, json={
        "quote": _b64url(quote), "runtimeData": {"data": _b64url(RUNTIME), "dataType": "JSON"}})


def _kms_client(kms: Service, home: Path) -> httpx.Client:
    cert = home / "kms" / "tls" / "cert.pem"
    context = ssl.create_default_context(cafile=str(cert))
    _wait(f"{kms.url}/keys?api-version=7.4", verify=context)
    return httpx.Client(base_url=kms.url, verify=context, timeout=30,
                        headers={"Authorization": "Bearer x"})


def test_services_started_with_no_flags_attest_a_quote_and_release_a_key(
        home: Path, tmp_path: Path, services: list[Service]) -> None:
    quote = _quote(home, tmp_path / "q.bin")
    pccs = Service(home, "pccs", "serve", "--port", "0")
    services.append(pccs)
    attest = Service(home, "attest", "serve", "--port", "0")
    services.append(attest)
    note = attest.first_error_line()
    assert note == (f"no --pccs or --collateral: collateral from the local collateral service "
                    f"at {pccs.url}, trusting the emulation root of {home}\n")
    reply = _attest(attest.url, quote)
    assert reply.status_code == 200, reply.text
    token = reply.json()["token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == attest.url
    assert claims["x-ms-sgx-is-debuggable"] is False
    assert claims["x-ms-runtime"]["keys"][0]["kid"] == enclave_jwk("enclave")["kid"]

    kms = Service(home, "kms", "serve", "--port", "0")
    services.append(kms)
    assert kms.first_error_line() == (f"no --trust-authority: trusting the local attestation "
                                      f"service at {attest.url} (data dir {home})\n")
    policy = {"version": "1.0.0", "anyOf": [{"authority": attest.url, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": claims["x-ms-sgx-mrsigner"]},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False}]}]}
    with _kms_client(kms, home) as http:
        created = http.post("/keys/data/create?api-version=7.4", json={
            "kty": "RSA-HSM", "attributes": {"exportable": True},
            "release_policy": policy_body(policy)})
        assert created.status_code == 200, created.text
        released = http.post("/keys/data/release?api-version=7.4", json={"target": token})
        assert released.status_code == 200, released.text
    _, material = open_release(released.json()["value"], rsa_key("enclave"))
    assert isinstance(serialization.load_der_private_key(material, password=None),
                      rsa.RSAPrivateKey)


def test_explicit_flags_override_the_local_services(home: Path, tmp_path: Path,
                                                    services: list[Service]) -> None:
    quote = _quote(home, tmp_path / "q.bin")
    pccs = Service(home, "pccs", "serve", "--port", "0")
    services.append(pccs)
    # --pccs given: the same collateral service, but the emulation root is no longer trusted
    pinned = Service(home, "attest", "serve", "--port", "0", "--pccs", pccs.url,
                     "--data-dir", str(tmp_path / "pinned"))
    services.append(pinned)
    refused = _attest(pinned.url, quote)
    assert refused.status_code == 400 and "root" in refused.json()["error"]["message"], \
        refused.text
    # the zero-config one beside it attests; a key service naming another authority refuses
    # its token although it runs from the same data dir
    local = Service(home, "attest", "serve", "--port", "0")
    services.append(local)
    reply = _attest(local.url, quote)
    assert reply.status_code == 200, reply.text
    other = Service(home, "kms", "serve", "--port", "0",
                    "--trust-authority", "https://attest.example")
    services.append(other)
    policy = {"version": "1.0.0", "anyOf": [{"authority": local.url, "allOf": [
        {"claim": "x-ms-sgx-is-debuggable", "equals": False}]}]}
    with _kms_client(other, home) as http:
        assert http.post("/keys/data/create?api-version=7.4", json={
            "kty": "RSA-HSM", "attributes": {"exportable": True},
            "release_policy": policy_body(policy)}).status_code == 200
        r = http.post("/keys/data/release?api-version=7.4",
                      json={"target": reply.json()["token"]})
    assert r.status_code == 403, r.text
    last = json.loads((home / "kms" / "release-log.jsonl").read_text().splitlines()[-1])
    assert last["decision"] == "refused"
    assert f"issuer '{local.url}' is not a trusted authority" in last["reason"]


def test_with_nothing_running_each_says_what_to_start(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVEKIT_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    result = runner.invoke(main, ["attest", "serve", "--port", "0", "--data-dir",
                                  str(tmp_path / "maa")])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: ServiceNotRunning: no collateral service runs from data "
                             f"dir {tmp_path / 'home'}; start 'enclavekit pccs serve' there first "
                             "(or give --pccs URL or --collateral FILE)\n")
    result = runner.invoke(main, ["kms", "serve", "--port", "0", "--data-dir",
                                  str(tmp_path / "kms")])
    assert result.exit_code == 1
    assert "ServiceNotRunning: no attestation service runs from data dir" in result.stderr
    assert "start 'enclavekit attest serve' there first (or give --trust-authority URL)" in \
        result.stderr
    assert len(result.stderr.splitlines()) == 1
