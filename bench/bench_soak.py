"""Soak: each service in its own process under bounded concurrent load; its RSS sampled.

* the collateral service (``enclavekit pccs serve``): TCB info, QE identity and CRL reads;
* the attestation service (``enclavekit attest serve --pccs``): JWKS and policy reads, policy
  writes, draft-policy and malformed attestations (400s), OpenID metadata;
* the key-release service (``enclavekit kms serve``): releases, each with a fresh nonce (the
  replay cache is what could grow), and malformed releases.

``THREADS`` keep-alive clients per service. RSS (``/proc/PID/status`` VmRSS) is sampled every
0.2 s; the figure is the growth from the end of the warm-up (the first quarter) to the end,
goal <= 10 %. Usage: ``python bench/bench_soak.py [--short] [--seconds N]`` (N per service;
default 60, short 1).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import _common
from bench_release import _client, _jwk, _start_kms, _token
from enclavekit._codec import b64url
from enclavekit.kms.serve import ServerThread
from enclavekit.vm.platform import EMULATED_FMSPC

GOAL_GROWTH = 0.10
THREADS = 4
Request = Callable[[httpx.Client], bool]


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "enclavekit", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = next(w for w in line.split() if w.startswith("http")).rstrip(",;)")
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def soak(name: str, pid: int, session: Callable[[], contextlib.AbstractContextManager[
         Callable[[], bool]]], seconds: float) -> tuple[float, float, int, int]:
    """Load the service for ``seconds``; (RSS after warm-up, RSS at the end, requests,
    errors)."""
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not done.is_set():
            samples.append((time.monotonic() - start, rss_bytes(pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run = _common.load(session, threads=THREADS, duration=seconds,
                       service_cpu=lambda: _common.process_cpu_seconds(pid))
    done.set()
    sampler.join()
    warm = next((rss for t, rss in samples if t >= seconds / 4), samples[-1][1])
    end = samples[-1][1]
    growth = (end - warm) / warm
    mib = 1 << 20
    _common.report(f"soak {name}: RSS at the end", end / mib, "MiB",
                   "after warm-up", warm / mib, 1 + growth, f"<= {1 + GOAL_GROWTH:.2f}",
                   growth <= GOAL_GROWTH)
    print(f"soak {name}: {len(run.latencies)} requests in {run.elapsed:.1f} s "
          f"({run.rate:.0f}/s, {THREADS} clients), {run.errors} unexpected answers, "
          f"RSS growth after warm-up {growth * 100:+.1f} %", flush=True)
    return warm, end, len(run.latencies), run.errors


def _session(base: str, requests: list[Request], *, verify: ssl.SSLContext | bool = True,
             headers: dict[str, str] | None = None
             ) -> Callable[[], contextlib.AbstractContextManager[Callable[[], bool]]]:
    @contextlib.contextmanager
    def session() -> Iterator[Callable[[], bool]]:
        cycle = itertools.cycle(requests)
        if isinstance(verify, ssl.SSLContext):
            client = _client(verify, headers or {})
        else:
            client = httpx.Client(headers=headers or {})
        with client:
            client.base_url = httpx.URL(base)
            yield lambda: next(cycle)(client)
    return session


def _pccs_requests() -> list[Request]:
    prefix, fmspc = "/sgx/certification/v4", EMULATED_FMSPC.hex().upper()
    return [lambda c: c.get(f"{prefix}/tcb", params={"fmspc": fmspc}).status_code == 200,
            lambda c: c.get(f"{prefix}/qe/identity").status_code == 200,
            lambda c: c.get(f"{prefix}/pckcrl", params={"ca": "processor"}).status_code == 200,
            lambda c: c.get(f"{prefix}/tcb", params={"fmspc": "zz"}).status_code == 400]


_POLICY = ('version=1.0; authorizationrules{ => permit(); }; '
           'issuancerules{ => issue(type="n", value=%d); };')


def _maa_requests() -> list[Request]:
    counter = itertools.count()
    return [lambda c: c.get("/certs").status_code == 200,
            lambda c: c.get("/policies/SgxEnclave").status_code == 200,
            lambda c: c.put("/policies/SgxEnclave",
                            content=_POLICY % (next(counter) % 1000)).status_code == 200,
            lambda c: c.post("/attest/SgxEnclave", json={
                "quote": "AAAA", "nonce": f"n{next(counter)}"}).status_code == 400,
            lambda c: c.get("/.well-known/openid-configuration").status_code == 200]


def main(argv: list[str]) -> int:
    short = "--short" in argv
    seconds = 1.0 if short else 60.0
    if "--seconds" in argv:
        seconds = float(argv[argv.index("--seconds") + 1])
    home = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    env = {**os.environ, "ENCLAVEKIT_HOME": str(home)}
    results = {}
    pccs, pccs_url = _start(["pccs", "serve", "--port", "0"], env)
    try:
        _wait(pccs_url + "/sgx/certification/v4/qe/identity")
        results["collateral service"] = soak("collateral service", pccs.pid,
                                             _session(pccs_url, _pccs_requests()), seconds)
        maa, maa_url = _start(["attest", "serve", "--port", "0", "--pccs", pccs_url,
                               "--data-dir", str(home / "maa")], env)
        try:
            _wait(maa_url + "/certs")
            results["attestation service"] = soak("attestation service", maa.pid,
                                                  _session(maa_url, _maa_requests()), seconds)
        finally:
            _stop(maa)
    finally:
        _stop(pccs)
    results["key-release service"] = _soak_kms(home, env, seconds)
    worst = max((end - warm) / warm for warm, end, _, _ in results.values())
    print(f"soak: worst RSS growth after warm-up {worst * 100:+.1f} % over {seconds:g} s per "
          f"service (goal <= {GOAL_GROWTH * 100:.0f} %)")
    return 0


def _wait(url: str, **kwargs: object) -> None:
    for _ in range(400):
        try:
            httpx.get(url, **kwargs)  # type: ignore[arg-type]
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def _soak_kms(home: Path, env: dict[str, str], seconds: float) -> tuple[float, float, int, int]:
    authority_key = rsa.generate_private_key(65537, 2048)
    enclave_key = rsa.generate_private_key(65537, 2048)
    jwks = {"keys": [_jwk(authority_key, "k1")]}
    authority = ServerThread(Starlette(routes=[Route("/certs", lambda r: JSONResponse(jwks))]))
    authority.start()
    authority_url = f"http://127.0.0.1:{authority.port}"
    proc, url, context = _start_kms(home / "kms", authority_url, env)
    try:
        headers = {"Authorization": "Bearer soak"}
        policy = {"anyOf": [{"authority": authority_url, "allOf": [
            {"claim": "x-ms-sgx-mrsigner", "equals": "c2" * 32},
            {"claim": "x-ms-sgx-is-debuggable", "equals": False}]}]}
        _wait(f"{url}/keys?api-version=7.4", verify=context)
        with httpx.Client(verify=context, headers=headers) as admin:
            admin.post(f"{url}/keys/soak/create?api-version=7.4", json={
                "kty": "oct-HSM", "key_size": 256, "attributes": {"exportable": True},
                "release_policy": {"data": b64url(json.dumps(policy).encode())}}
            ).raise_for_status()
        time.sleep(1.1)  # tokens for nonce releases must be issued after the service started
        token = _token(authority_url, authority_key, enclave_key)
        release = "/keys/soak/release?api-version=7.4"
        nonces = itertools.count()
        requests: list[Request] = [
            lambda c: c.post(release, json={"target": token, "nonce": f"soak-{next(nonces)}"}
                             ).status_code == 200,
            lambda c: c.post(release, json={"target": token, "enc": {"x": 1}}
                             ).status_code == 400,
            lambda c: c.get("/keys/soak?api-version=7.4").status_code == 200]
        return soak("key-release service", proc.pid,
                    _session(url, requests, verify=context, headers=headers), seconds)
    finally:
        _stop(proc)
        authority.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
