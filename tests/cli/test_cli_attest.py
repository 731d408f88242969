"""`enclavekit attest policy check|eval`, `attest serve`, `attest rotate-key`."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from enclavekit.attest.policy import policy_hash
from enclavekit.cli import main
from tests.vectors import vector


def test_check_prints_version_counts_and_hash() -> None:
    path = vector("maa_policies/sgx_default_policy.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid policy version 1.1" in result.output
    assert "6 issuance rule(s)" in result.output
    assert policy_hash(path.read_text()) in result.output


def test_check_names_line_and_column_of_an_error() -> None:
    path = vector("maa_policies/sgx_custom_policy_template.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "check", str(path)])
    assert result.exit_code == 1
    assert "PolicySyntaxError: line 5, column 50: unexpected '<'" in result.output
    assert "Traceback" not in result.output


def test_check_of_a_huge_integer_is_one_line_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    path.write_text(f'version=1.0; authorizationrules{{[type=="t", value=={"7" * 5000}] '
                    '=> permit();};')
    result = CliRunner().invoke(main, ["attest", "policy", "check", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # click's own exit, not an escaped error
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "PolicySyntaxError: line 1" in lines[0], result.output
    assert "out of range" in lines[0] and len(lines[0]) < 200


def test_eval_permits_and_prints_issued_claims(tmp_path: Path) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps([{"type": "x-ms-sgx-mrsigner", "value": "ab"},
                                  {"type": "x-ms-sgx-is-debuggable", "value": False}]))
    path = vector("maa_policies/sgx_default_policy.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path),
                                       "--claims", f"@{claims}"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["permitted"] is True
    assert out["issued"] == {"sgx-mrsigner": "ab", "is-debuggable": False}


def test_eval_exits_1_when_denied() -> None:
    path = vector("maa_policies/signing_tool_sample_deny.all.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path), "--claims", "{}"])
    assert result.exit_code == 1
    assert json.loads(result.output)["permitted"] is False


def test_eval_refuses_bad_claims_json() -> None:
    path = vector("maa_policies/sgx_default_policy.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path), "--claims", "{oops"])
    assert result.exit_code == 1
    assert "PolicyError: --claims is not JSON" in result.output
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path), "--claims",
                                       '{"a": [1]}'])
    assert "value must be a string, integer or Boolean" in result.output


# --- enclavekit attest serve / rotate-key ------------------------------------------------------

def _serve(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "enclavekit", "attest", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_serve_prints_its_url_and_verifies_quotes_with_the_dcap_verifier(tmp_path: Path) -> None:
    proc = _serve(["--port", "0", "--data-dir", str(tmp_path / "maa"),
                   "--collateral", str(vector("phala_dcap_qvl/sgx_quote_collateral.json"))])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("attestation service (aad mode) at http://127.0.0.1:"), line
        url = line.split(" at ")[1].strip()
        deadline = time.monotonic() + 10
        while True:
            try:
                keys = httpx.get(f"{url}/certs").json()["keys"]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "service did not come up"
                time.sleep(0.05)
        assert len(keys) == 1 and keys[0]["kty"] == "RSA"
        quote = vector("phala_dcap_qvl/sgx_quote").read_bytes()
        reply = httpx.post(f"{url}/attest/SgxEnclave?api-version=2020-10-01",
                           json={"quote": base64.urlsafe_b64encode(quote).decode()})
        # the recorded collateral is long expired: the real verifier says so, by check name
        assert reply.status_code == 400
        assert "expired" in reply.json()["error"]["message"]
        # a key rotated beside the running service is the one it signs with next
        rotated = CliRunner().invoke(main, ["attest", "rotate-key", "--data-dir",
                                            str(tmp_path / "maa")])
        assert rotated.exit_code == 0, rotated.output
        now = httpx.get(f"{url}/certs").json()["keys"]
        assert [k["kid"] for k in now][1:] == [keys[0]["kid"]]
        assert rotated.output.split()[2] == now[0]["kid"]
    finally:
        _stop(proc)
    assert proc.returncode is not None
    assert (tmp_path / "maa" / "maa-state.json").exists()


def test_serve_refuses_bad_option_combinations(tmp_path: Path) -> None:
    collateral = str(vector("phala_dcap_qvl/sgx_quote_collateral.json"))
    runner = CliRunner()
    result = runner.invoke(main, ["attest", "serve", "--data-dir", str(tmp_path), "--pccs",
                                  "http://127.0.0.1:9", "--collateral", collateral])
    assert result.exit_code == 2 and "at most one of --pccs URL or --collateral FILE" in \
        result.output
    result = runner.invoke(main, ["attest", "serve", "--data-dir", str(tmp_path),
                                  "--collateral", collateral, "--isolated"])
    assert result.exit_code == 1
    assert "isolated mode needs at least one policy-management certificate" in result.output
    assert "Traceback" not in result.output


def test_rotate_key_keeps_the_old_key_listed(tmp_path: Path) -> None:
    from enclavekit.attest.maa import ServiceState

    old = ServiceState.open(tmp_path).signing_key.kid
    result = CliRunner().invoke(main, ["attest", "rotate-key", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    state = ServiceState.open(tmp_path)
    assert state.signing_key.kid != old
    assert [k["kid"] for k in state.jwks()["keys"]] == [state.signing_key.kid, old]


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _url_and_workers(proc: subprocess.Popen[str], count: int) -> tuple[str, list[int]]:
    """The URL a ``--workers`` server printed and its worker pids, once all have started."""
    assert proc.stdout is not None
    url = proc.stdout.readline().split(" at ")[1].strip()
    workers: list[int] = []
    deadline = time.monotonic() + 10
    while len(workers) < count and time.monotonic() < deadline:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert len(workers) == count
    return url, workers


def test_serve_with_workers_shares_policy_and_keys_and_stops_every_worker(
        tmp_path: Path) -> None:
    from enclavekit.attest.policy import PERMIT_ALL_POLICY

    proc = _serve(["--port", "0", "--workers", "2", "--data-dir", str(tmp_path / "maa"),
                   "--collateral", str(vector("phala_dcap_qvl/sgx_quote_collateral.json"))])
    workers: list[int] = []
    try:
        url, workers = _url_and_workers(proc, 2)
        for _ in range(100):
            try:
                kids = {tuple(k["kid"] for k in httpx.get(f"{url}/certs").json()["keys"])
                        for _ in range(10)}
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert len(kids) == 1  # one signing key, whichever worker answers
        assert httpx.put(f"{url}/policies/SgxEnclave", content=PERMIT_ALL_POLICY
                         ).status_code == 200
        for _ in range(10):  # a new connection each time: both workers answer
            token = httpx.get(f"{url}/policies/SgxEnclave").json()["token"]
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            stored = claims["x-ms-policy"].split(".")[1]
            policy = json.loads(base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4)))
            text = policy["AttestationPolicy"]
            assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode() == \
                PERMIT_ALL_POLICY
    finally:
        _stop(proc)
    assert proc.returncode is not None
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or \
            "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


# --- enclavekit attest token verify ------------------------------------------------------------

_AZURE = "https://sharedwus.wus.attest.azure.net"


def _azure(tmp_path: Path) -> tuple[Path, Path, dict[str, object]]:
    """The real Azure Attestation token, its /certs as a JWKS file, and its expected values."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    v = json.loads(vector("expected.json").read_text())["maa_vectors"][0]
    token = vector(v["token"])
    head = token.read_text().split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
    der = x509.load_pem_x509_certificate(vector(v["signing_cert"]).read_bytes()) \
        .public_bytes(serialization.Encoding.DER)
    jwks = tmp_path / "certs.json"
    jwks.write_text(json.dumps({"keys": [{"kid": kid, "kty": "RSA",
                                          "x5c": [base64.b64encode(der).decode()]}]}))
    return token, jwks, v


def test_token_verify_prints_the_claims_of_the_azure_token_at_its_time(tmp_path: Path) -> None:
    token, jwks, v = _azure(tmp_path)
    at = str(v["iat"] + 60)  # type: ignore[operator]
    result = CliRunner().invoke(main, ["attest", "token", "verify", str(token), "--jwks",
                                       str(jwks), "--issuer", _AZURE, "--at", at, "--json"])
    assert result.exit_code == 0, result.output
    claims = json.loads(result.output)
    assert claims["x-ms-sgx-mrenclave"] == v["x-ms-sgx-mrenclave"]
    assert claims["exp"] == v["exp"]
    text = CliRunner().invoke(main, ["attest", "token", "verify", "-", "--jwks", str(jwks),
                                     "--at", "2022-10-07T13:30:00Z"],
                              input=token.read_text())
    assert text.exit_code == 0, text.output
    assert text.output.startswith(f"token verifies: iss '{_AZURE}', valid "
                                  "2022-10-07T13:23:53Z to 2022-10-07T21:23:53Z\n")
    assert f'  x-ms-sgx-mrsigner: "{v["x-ms-sgx-mrsigner"]}"\n' in text.output


def test_token_verify_refusals_are_one_typed_line(tmp_path: Path) -> None:
    token, jwks, v = _azure(tmp_path)
    at = str(v["iat"] + 60)  # type: ignore[operator]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"keys": []}))
    for args, message in (
        ([str(token), "--jwks", str(jwks)], f"InvalidToken: expired at {v['exp']} (now "),
        ([str(token), "--jwks", str(jwks), "--at", at, "--issuer", "https://evil.example"],
         f"InvalidToken: issuer '{_AZURE}' is not 'https://evil.example'"),
        ([str(token), "--jwks", str(other), "--at", at], "InvalidToken: kid "),
        (["not-a-token", "--jwks", str(jwks)], "InvalidToken: a compact JWS has 3 parts, found 1"),
        ([str(token), "--jwks", str(tmp_path / "missing.json"), "--at", at],
         "InvalidToken: cannot read the keys from"),
    ):
        result = CliRunner().invoke(main, ["attest", "token", "verify", *args])
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"Error: {message}"), result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
    bad_time = CliRunner().invoke(main, ["attest", "token", "verify", str(token), "--jwks",
                                         str(jwks), "--at", "yesterday"])
    assert bad_time.exit_code == 2 and "Unix seconds or an ISO 8601 time" in bad_time.output


def test_token_verify_fetches_the_keys_of_our_running_service(tmp_path: Path) -> None:
    from enclavekit.attest.maa import create_app
    from enclavekit.attest.maa.server import running
    from tests.attest._maa import make_service

    with running(create_app(make_service(tmp_path))) as url:
        quote = vector("azure_sdk_python_maa/sgx_quote.bin").read_bytes()
        reply = httpx.post(f"{url}/attest/SgxEnclave",
                           json={"quote": base64.urlsafe_b64encode(quote).decode()})
        token = reply.json()["token"]
        result = CliRunner().invoke(main, ["attest", "token", "verify", token, "--jwks",
                                           f"{url}/certs", "--issuer", url, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["x-ms-sgx-svn"] == 1
        tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
        result = CliRunner().invoke(main, ["attest", "token", "verify", tampered, "--jwks",
                                           f"{url}/certs"])
        assert result.exit_code == 1
        assert "InvalidToken: signature does not verify with key" in result.output


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_die_with_a_parent_killed_by_sigkill_and_the_port_is_free_again(
        tmp_path: Path) -> None:
    proc = _serve(["--port", "0", "--workers", "2", "--data-dir", str(tmp_path / "maa"),
                   "--collateral", str(vector("phala_dcap_qvl/sgx_quote_collateral.json"))])
    workers: list[int] = []
    try:
        url, workers = _url_and_workers(proc, 2)
        proc.kill()  # SIGKILL: the parent gets no chance to stop its workers
        proc.wait()
        deadline = time.monotonic() + 10
        while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(w) for w in workers), "a worker outlived its parent"
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _stop(proc)
    port = url.rsplit(":", 1)[1]
    again = _serve(["--port", port, "--data-dir", str(tmp_path / "maa"),
                    "--collateral", str(vector("phala_dcap_qvl/sgx_quote_collateral.json"))])
    try:
        assert again.stdout is not None
        assert f":{port}" in again.stdout.readline()
        assert httpx.get(f"{url}/certs").status_code == 200
    finally:
        _stop(again)


def test_a_start_on_a_held_port_names_the_holder(tmp_path: Path) -> None:
    from enclavekit._net import listen

    held = listen()
    port = held.getsockname()[1]
    try:
        result = CliRunner().invoke(main, [
            "attest", "serve", "--port", str(port), "--data-dir", str(tmp_path),
            "--collateral", str(vector("phala_dcap_qvl/sgx_quote_collateral.json"))])
    finally:
        held.close()
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"127.0.0.1:{port}: Address already in use (held by pid {os.getpid()} " in lines[0]
