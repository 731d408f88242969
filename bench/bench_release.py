"""Key release over HTTPS: releases/s and latency percentiles, two processes on this machine.

The service is ``enclavekit kms serve`` in its own process (uvicorn, TLS, one worker); this
process is the load generator (threads with keep-alive HTTPS clients) and also serves the
attestation authority's JWKS over plain HTTP on 127.0.0.1. Each request is a full release: the
token's RS256 signature is verified against the authority's key, the release policy evaluated,
the RSA-2048 key wrapped (RSA-OAEP + AES-KWP) to the token's runtime key, the answer signed
(RS256) and the decision appended to the fsynced release log.

Goal (issue 6): >= 300 releases/s with p99 < 100 ms. Printed beside it, measured in the same
run in this process: the raw RSA-OAEP wrap rate (``wrap_key_material`` alone) — the ratio is
releases/s over that. Usage: ``python bench/bench_release.py [--short]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import _common
from enclavekit._codec import b64url
from enclavekit.kms.serve import ServerThread
from enclavekit.kms.wrap import wrap_key_material

GOAL_RATE = 300.0
GOAL_P99_MS = 100.0
THREADS = 8


def _jwk(key: rsa.RSAPrivateKey, kid: str, **extra: str) -> dict[str, str]:
    nums = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "n": b64url(nums.n.to_bytes(256, "big")), "e": "AQAB",
            **extra}


def _token(authority: str, key: rsa.RSAPrivateKey, enclave: rsa.RSAPrivateKey) -> str:
    now = int(time.time())
    head = b64url(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    body = b64url(json.dumps({
        "iss": authority, "iat": now, "nbf": now, "exp": now + 3600,
        "x-ms-sgx-mrsigner": "c2" * 32, "x-ms-sgx-svn": 2, "x-ms-sgx-is-debuggable": False,
        "x-ms-runtime": {"keys": [_jwk(enclave, "enclave", use="enc")]}}).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(sig)}"


def _client(context: ssl.SSLContext, headers: dict[str, str]) -> httpx.Client:
    # TCP_NODELAY as urllib3 (the Azure SDK's transport) sets it: without it the request
    # body waits for the ACK of the headers (Nagle + delayed ACK, ~40 ms per request).
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    return httpx.Client(transport=httpx.HTTPTransport(verify=context, socket_options=nodelay),
                        headers=headers)


def _raw_wrap_rate(seconds: float) -> float:
    target = rsa.generate_private_key(65537, 2048).public_key()
    material = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        wrap_key_material(target, material, "CKM_RSA_AES_KEY_WRAP")
        count += 1
    return count / (time.perf_counter() - start)


def _start_kms(data_dir: Path, authority_url: str, env: dict[str, str] | None = None
               ) -> tuple[subprocess.Popen[str], str, ssl.SSLContext]:
    """``enclavekit kms serve`` trusting ``authority_url``: the process, its URL and a TLS
    context trusting the certificate it printed (the caller stops the process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "enclavekit", "kms", "serve", "--port", "0", "--data-dir",
         str(data_dir), "--trust-authority", authority_url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        cert = proc.stdout.readline().strip().removeprefix("certificate ")
        return proc, url, ssl.create_default_context(cafile=cert)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def main(argv: list[str]) -> int:
    short = "--short" in argv
    duration = 2.0 if short else 20.0
    authority_key = rsa.generate_private_key(65537, 2048)
    enclave_key = rsa.generate_private_key(65537, 2048)
    jwks = {"keys": [_jwk(authority_key, "k1")]}
    authority_app = Starlette(routes=[Route("/certs", lambda r: JSONResponse(jwks))])
    authority = ServerThread(authority_app).start()
    authority_url = f"http://127.0.0.1:{authority.port}"
    data_dir = Path(tempfile.mkdtemp(prefix="bench-kms-"))
    proc, url, context = _start_kms(data_dir, authority_url)
    try:
        headers = {"Authorization": "Bearer bench"}
        policy = {"anyOf": [{"authority": authority_url, "allOf": [
            {"claim": "x-ms-sgx-mrsigner", "equals": "c2" * 32},
            {"claim": "x-ms-sgx-is-debuggable", "equals": False}]}]}
        with httpx.Client(verify=context, headers=headers) as admin:
            for _ in range(200):
                try:
                    r = admin.post(f"{url}/keys/bench/create?api-version=7.4", json={
                        "kty": "RSA-HSM", "attributes": {"exportable": True},
                        "release_policy": {"data": b64url(json.dumps(policy).encode())}})
                    break
                except httpx.ConnectError:
                    time.sleep(0.05)
            r.raise_for_status()
        token = _token(authority_url, authority_key, enclave_key)
        release = f"{url}/keys/bench/release?api-version=7.4"

        @contextlib.contextmanager
        def session() -> Iterator[Callable[[], bool]]:
            with _client(context, headers) as http:
                http.post(release, json={"target": token})  # warm the connection
                yield lambda: http.post(release, json={"target": token}).status_code == 200

        run = _common.load(session, threads=THREADS, duration=duration + 0.5,
                           service_cpu=lambda: _common.process_cpu_seconds(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()
        authority.stop()
    rate, p50, p99, done = run.rate, run.p50_ms, run.p99_ms, len(run.latencies)
    raw = _raw_wrap_rate(0.5 if short else 2.0)
    print(f"CPU per release: service {run.service_cpu / done * 1000:.2f} ms, "
          f"load generator {run.client_cpu / done * 1000:.2f} ms "
          f"({os.cpu_count()} cores shared)")
    print(f"releases: {done} in {run.elapsed:.1f} s with {THREADS} client threads, "
          f"{run.errors} errors; p50 {p50:.1f} ms, p99 {p99:.1f} ms (goal < {GOAL_P99_MS:.0f} ms)")
    ok = rate >= GOAL_RATE and p99 < GOAL_P99_MS and run.errors == 0
    _common.report("key release over HTTPS", rate, "releases/s", "raw RSA-OAEP+AES-KWP wrap",
                   raw, rate / raw, f">= {GOAL_RATE:.0f}/s, p99 < {GOAL_P99_MS:.0f} ms", ok)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
