"""`enclavekit kms serve | keys list | log`."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from enclavekit.cli import main
from tests.kms._support import FakeAuthority, KMSHarness, sgx_policy

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_keys_list_and_log(tmp_path: Path) -> None:
    authority = FakeAuthority()
    kms = KMSHarness(tmp_path, [authority])
    kms.create("alpha", sgx_policy())
    kms.create("beta")
    kms.release("alpha", authority.token())
    kms.release("alpha", authority.token(x_ms_sgx_is_debuggable=True))
    (tmp_path / "keys" / "beta.key").write_bytes(b"garbage")
    code, out, err = run("kms", "keys", "list", "--data-dir", str(tmp_path), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows[0]["name"] == "alpha" and rows[0]["exportable"] is True
    assert rows[1]["name"] == "beta" and "IntegrityError" in rows[1]["error"]
    code, out, _ = run("kms", "keys", "list", "--data-dir", str(tmp_path))
    assert code == 0 and "alpha" in out and "UNREADABLE" in out
    code, out, _ = run("kms", "log", "--data-dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert "allowed" in lines[0] and "refused" in lines[1] and "debug=True" in lines[1]
    code, out, _ = run("kms", "log", "--data-dir", str(tmp_path), "--json", "--tail", "1")
    assert json.loads(out)["decision"] == "refused"


def test_list_and_log_refuse_a_directory_without_service_state(tmp_path: Path) -> None:
    for args in (["keys", "list"], ["log"]):
        code, _, err = run("kms", *args, "--data-dir", str(tmp_path / "typo"))
        assert code == 1 and "no key-release service state" in err
    assert not (tmp_path / "typo").exists()


def test_serve_needs_a_trusted_authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVEKIT_HOME", str(tmp_path / "home"))  # no attestation service
    code, _, err = run("kms", "serve", "--data-dir", str(tmp_path))
    assert code == 1 and "ServiceNotRunning" in err and "--trust-authority" in err


def test_serve_over_https_prints_url_and_certificate(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "enclavekit", "kms", "serve", "--port", "0", "--data-dir",
         str(tmp_path), "--trust-authority", "http://127.0.0.1:9/attest"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url_line = proc.stdout.readline().strip()
        cert_line = proc.stdout.readline().strip()
        assert url_line.startswith("key-release service at https://127.0.0.1:"), url_line
        url = url_line.rsplit(" ", 1)[1]
        cert = Path(cert_line.removeprefix("certificate "))
        assert cert == tmp_path / "tls" / "cert.pem"
        context = ssl.create_default_context(cafile=str(cert))
        for _ in range(100):
            try:
                r = httpx.get(f"{url}/keys?api-version=7.4", verify=context)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert r.status_code == 401 and "resource=" in r.headers["www-authenticate"]
        r = httpx.get(f"{url}/keys?api-version=7.4", verify=context,
                      headers={"Authorization": "Bearer x"})
        assert r.json() == {"value": [], "nextLink": None}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
