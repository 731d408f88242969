"""`enclavekit demo` end to end: exit 0, the owners' keys released by the key-release service
to the production build and refused to the DEBUG build (both in the release log), owners'
results right, host saw only ciphertext, the tampered image refused by EINIT, and no process
(or listening server) left behind."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import enclavekit
from enclavekit.errors import EcallError
from enclavekit.host.image import EnclaveFile
from enclavekit.host.layout import build_layout
from enclavekit.host.manifest import Manifest
from enclavekit.jointstats.data import FIELDS, OWNERS, records
from enclavekit.jointstats.scenario import KEY_NAMES, release_policy, tamper
from tests.sgx.conftest import session_signing_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class DemoRun:
    code: int
    stdout: str
    stderr: str
    leftovers: list[int]


def _procs() -> dict[int, tuple[int, str]]:
    """pid → (session id, command line) of every process we can see."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[3]), cmd)
    return found


def _related(root: int, home: str) -> list[int]:
    """Processes of the demo's session, or a device serving its data directory, and theirs."""
    procs = _procs()
    sessions = {root} | {pid for pid, (_, cmd) in procs.items() if home in cmd}
    return sorted(pid for pid, (sid, cmd) in procs.items()
                  if pid != os.getpid() and (sid in sessions or home in cmd))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    pytest.importorskip("enclavekit.enclave.local", reason="the enclave runtime has not landed")
    if not hasattr(enclavekit, "VM"):
        pytest.skip("the host SDK (enclavekit.VM) has not landed")
    home = str(tmp_path_factory.mktemp("ekhome"))
    env = {**os.environ, "ENCLAVEKIT_HOME": home, "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "enclavekit", "demo"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    deadline = time.monotonic() + 5
    while (left := _related(proc.pid, home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    yield DemoRun(proc.returncode, out, err, left)
    for pid in left:  # never leave anything behind, even when the test fails
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_demo_exits_zero_and_leaves_no_process(demo: DemoRun) -> None:
    assert demo.code == 0, demo.stdout + demo.stderr
    assert demo.leftovers == [], f"processes left behind: {demo.leftovers}"
    assert "match the plain computation" in demo.stdout


def test_owners_decrypt_the_true_joint_statistics(demo: DemoRun) -> None:
    everyone = [r for owner in OWNERS for r in records(owner)]
    for owner, (name, _, _) in OWNERS.items():
        line = next(ln for ln in demo.stdout.splitlines() if f"{name} decrypts:" in ln)
        stats = json.loads(line.split("decrypts:", 1)[1])
        for field in FIELDS:
            values = [r[field] for r in everyone]
            assert stats[field]["count"] == len(values), owner
            assert stats[field]["mean"] == pytest.approx(statistics.fmean(values), abs=0.005)
            assert (stats[field]["min"], stats[field]["max"]) == (min(values), max(values))


def test_host_saw_only_ciphertext(demo: DemoRun) -> None:
    host = [ln for ln in demo.stdout.splitlines() if ln.lstrip().startswith("host saw")]
    labels = " ".join(host)
    for owner in OWNERS:
        assert f"records {owner}/0" in labels and f"result for {owner}" in labels
        assert f"wrapped key {owner}" in labels
    tokens = set(re.findall(r"\b\d+\b", " ".join(ln.split(" B ")[-1] for ln in host)))
    values = {str(r[f]) for owner in OWNERS for r in records(owner) for f in FIELDS}
    assert not tokens & {v for v in values if len(v) >= 5}, "a record value reached the host"
    assert not any(word in labels for word in ('"age"', '"income"', "{"))


def test_intermediate_state_survives_a_vm_restart_sealed(demo: DemoRun) -> None:
    out = demo.stdout
    assert re.search(r"host saw\s+sealed checkpoint", out)
    assert "lost power (vm restart); load it again" in out
    resumed = re.search(r"unsealed the checkpoint: (\{.*\})", out)
    assert resumed is not None
    counts = ast.literal_eval(resumed.group(1))
    assert sum(counts.values()) > 0  # state from before the power loss came back
    assert out.index("unsealed the checkpoint") < out.index("match the plain computation")


def _lines(out: str, pattern: str) -> list[str]:
    return [ln for ln in out.splitlines() if re.search(pattern, ln)]


def test_trust_services_run_on_loopback_only(demo: DemoRun) -> None:
    urls = re.findall(r"\b(https?)://([\w.]+):(\d+)", demo.stdout)
    assert {host for _, host, _ in urls} == {"127.0.0.1"}, urls
    kms = _lines(demo.stdout, r"key-release service \(KV\)\s+https://127\.0\.0\.1:\d+")
    assert kms and "trusts only that attestation service" in kms[0]
    attest = _lines(demo.stdout, r"attestation service \(MAA\)\s+http://127\.0\.0\.1:\d+")
    assert attest and "trusts only O=enclavekit emulation" in attest[0]
    assert "trust services stopped" in demo.stdout


def test_owners_put_their_keys_in_the_key_service_with_the_policy(demo: DemoRun) -> None:
    line = _lines(demo.stdout, r"^\s+release policy: ")[0]
    conditions = json.loads(line.split("release policy: ", 1)[1])
    claims = {c["claim"]: c for c in conditions if "claim" in c}
    assert claims["x-ms-sgx-is-debuggable"] == {"claim": "x-ms-sgx-is-debuggable",
                                                "equals": False}
    assert claims["x-ms-sgx-product-id"]["equals"] == 1
    assert claims["x-ms-sgx-svn"]["greaterOrEquals"] == 1
    # the default VM is a development platform: the demo says so and names EK-DEV-0001
    assert "VM default: development platform: the host user holds its secrets" in demo.stdout
    assert "development mode: the policy allows advisory EK-DEV-0001 by name" in demo.stdout
    assert conditions[-1] == {"anyOf": [
        {"claim": "x-ms-sgx-tcb-status", "equals": "UpToDate"},
        {"allOf": [{"claim": "x-ms-sgx-tcb-status", "notEquals": "Revoked"},
                   {"claim": "x-ms-sgx-advisories", "equals": "EK-DEV-0001"}]}]}
    mrsigner = re.search(r"MRSIGNER \(demo key\)\s+([0-9a-f]{64})", demo.stdout)
    assert mrsigner and claims["x-ms-sgx-mrsigner"]["equals"] == mrsigner.group(1)
    for owner, name in KEY_NAMES.items():
        assert _lines(demo.stdout, rf"{OWNERS[owner][0]} imported https://127\.0\.0\.1:\d+/"
                                   rf"keys/{name}/[0-9a-f]{{32}}")
    assert "the owners never talk to the enclave" in demo.stdout


def test_keys_released_to_the_production_build_and_refused_to_the_debug_build(
        demo: DemoRun) -> None:
    out = demo.stdout
    assert "✓ joint_stats holds the keys of alice, bob" in out
    tokens = _lines(out, r"^\s+token: iss http://127\.0\.0\.1:\d+")
    assert len(tokens) == 2
    assert "debuggable False, TCB ConfigurationNeeded ['EK-DEV-0001']" in tokens[0]
    assert "debuggable True" in tokens[1]
    for owner in OWNERS:
        assert _lines(out, rf"host saw\s+joint_stats: wrapped key {owner}\s")
    assert _lines(out, r"host saw\s+DEBUG build: refusal \(403\)")
    assert not _lines(out, r"DEBUG build: wrapped key")
    refused = _lines(out, r"✓ refused: ")
    assert "key release refused" in refused[0]
    assert out.index("holds the keys of") < out.index("✓ refused: key release refused")


def test_release_log_records_both_decisions_with_the_policy_reason(demo: DemoRun) -> None:
    log = _lines(demo.stdout, r"^\s+(allowed|refused)\s+\S+-data-key\s")
    allowed = [ln for ln in log if ln.split()[0] == "allowed"]
    refused = [ln for ln in log if ln.split()[0] == "refused"]
    assert sorted(ln.split()[1] for ln in allowed) == sorted(KEY_NAMES.values())
    assert all("debuggable False: release policy satisfied" in ln for ln in allowed)
    assert len(refused) == 1 and refused[0].split()[1] == KEY_NAMES["alice"]
    assert ("debuggable True: ReleasePolicyNotSatisfied: release policy: condition not met: "
            "x-ms-sgx-is-debuggable equals false") in refused[0]
    production = {re.search(r"MRENCLAVE ([0-9a-f]{16})", ln).group(1)  # type: ignore[union-attr]
                  for ln in allowed}
    assert len(production) == 1
    assert production.pop() not in refused[0]  # the DEBUG build has another MRENCLAVE


def test_intel_root_verifier_refuses_the_emulated_quote(demo: DemoRun) -> None:
    line = _lines(demo.stdout, r"verifier pinned to Intel's root refuses the same quote")[0]
    assert "root_untrusted" in line


def test_release_policy_names_signer_product_svn_and_not_debuggable() -> None:
    manifest = Manifest.load(EXAMPLES / "joint_stats")
    image = EnclaveFile.from_layout(build_layout(manifest), manifest.to_dict())
    signed = image.sign(session_signing_key())
    policy = release_policy("http://127.0.0.1:1", signed)
    assert policy["version"] == "1.0.0" and len(policy["anyOf"]) == 1
    branch = policy["anyOf"][0]
    assert branch["authority"] == "http://127.0.0.1:1"
    assert signed.mrsigner is not None
    assert branch["allOf"] == [
        {"claim": "x-ms-sgx-mrsigner", "equals": signed.mrsigner.hex()},
        {"claim": "x-ms-sgx-product-id", "equals": manifest.to_dict()["product_id"]},
        {"claim": "x-ms-sgx-svn", "greaterOrEquals": manifest.to_dict()["security_version"]},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False},
        {"claim": "x-ms-sgx-tcb-status", "equals": "UpToDate"}]  # no advisory allowed
    from enclavekit.kms.policy import parse_release_policy

    parse_release_policy(json.dumps(policy).encode())  # the key service accepts it


def test_trust_services_are_stopped_on_error(tmp_path: Path) -> None:
    """The demo's services listen on 127.0.0.1 and stop when the block ends, also on error."""
    import socket

    from enclavekit.services import trust_services
    from enclavekit.vm.platform import PlatformStore

    PlatformStore(tmp_path / "home").create("x", "Standard_DC1s_v2")
    ports: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), \
            trust_services(tmp_path / "home", tmp_path / "work") as services:
        for url in (services.pccs_url, services.attest_url, services.kms_url):
            address, number = url.split("://", 1)[1].split(":")
            assert address == "127.0.0.1"
            ports.append(int(number))
            socket.create_connection(("127.0.0.1", int(number)), timeout=5).close()
        raise RuntimeError("boom")
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_tampered_image_is_refused_by_einit(demo: DemoRun) -> None:
    line = next(ln for ln in demo.stdout.splitlines() if "refused" in ln and "EINIT" in ln)
    assert "SGX_INVALID_MEASUREMENT" in line


def test_debugger_is_refused_on_production_and_reads_a_debug_build(demo: DemoRun) -> None:
    assert re.search(r"production debug_read refused: .*SGX_PAGE_NOT_DEBUGGABLE", demo.stdout)
    if os.geteuid() != 0:
        assert re.search(r"production /proc/\d+/mem refused", demo.stdout)
    assert "DEBUG build: debug_read gives b'EKMANIF1'" in demo.stdout
    assert re.search(r"/proc/\d+/mem read \d+ bytes .*never ship one", demo.stdout)


def test_tamper_changes_one_measured_byte_and_keeps_the_sigstruct() -> None:
    manifest = Manifest.load(EXAMPLES / "joint_stats")
    image = EnclaveFile.from_layout(build_layout(manifest), manifest.to_dict())
    signed = image.sign(session_signing_key())
    bad = tamper(signed)
    assert bad.sigstruct == signed.sigstruct and signed.sigstruct is not None
    assert bad.stream().mrenclave() != signed.sigstruct.enclavehash
    diff = [(a.offset, i) for a, b in zip(signed.stream().pages, bad.stream().pages, strict=True)
            for i in range(len(a.data)) if a.data[i] != b.data[i]]
    assert len(diff) == 1


def test_records_are_deterministic_and_plausible() -> None:
    for owner, (_, count, _) in OWNERS.items():
        rows = records(owner)
        assert rows == records(owner) and len(rows) == count
        assert all(18 <= r["age"] <= 90 and 18_000 <= r["income"] < 250_000 for r in rows)


# --------------------------------------------------------------------------- the host attacks
# The demo's apps on a VM of their own: the untrusted host tries to get the owners' keys
# into the wrong enclave, or to feed the compute enclave records twice or under the
# wrong owner. Each attempt is refused inside the enclaves.


@dataclass
class Apps:
    vm: Any
    compute: Any
    agent_image: Any
    debug_compute: Any


def _app_copy(root: Path, name: str, **changes: str) -> Path:
    app = root / name
    shutil.copytree(EXAMPLES / name, app)
    toml = (app / "enclave.toml").read_text()
    for key, value in changes.items():
        toml = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", toml)
    (app / "enclave.toml").write_text(toml)
    return app


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    pytest.importorskip("enclavekit.enclave.local", reason="the enclave runtime has not landed")
    if not hasattr(enclavekit, "VM"):
        pytest.skip("the host SDK (enclavekit.VM) has not landed")
    from enclavekit.vm.platform import PlatformStore

    root = tmp_path_factory.mktemp("apps")
    PlatformStore(root / "home").create("apps", "Standard_DC2s_v2")
    key = session_signing_key()
    compute = enclavekit.build(EXAMPLES / "joint_stats").sign(key)
    debug = enclavekit.build(_app_copy(root, "joint_stats", debug="true")).sign(key)
    vm = enclavekit.VM.start("apps", root / "home")
    try:
        yield Apps(vm, compute, enclavekit.build(EXAMPLES / "owner_agent").sign(key), debug)
    finally:
        vm.stop()


def _attest(agent: Any, compute: Any) -> None:
    hello_a, hello_c = agent.ecalls.attest_start(), compute.ecalls.attest_start()
    offer_a = agent.ecalls.attest_respond(hello_c)
    offer_c = compute.ecalls.attest_respond(hello_a)
    assert agent.ecalls.attest_finish(offer_c) == compute.ecalls.attest_finish(offer_a)


def _deposit(agent: Any, expected: Any) -> dict[str, bytes]:
    keys = {owner: os.urandom(32) for owner in OWNERS}
    for owner, key in keys.items():
        agent.ecalls.deposit_key(owner, key, expected.mrenclave, expected.mrsigner)
    return keys


def test_agent_refuses_a_debug_compute_enclave_even_when_named(apps: Apps) -> None:
    from enclavekit.errors import PolicyError

    with apps.vm.load(apps.agent_image) as agent, apps.vm.load(apps.debug_compute) as rogue:
        _deposit(agent, apps.debug_compute)  # the host even tricked the owners into naming it
        hello_a, hello_c = agent.ecalls.attest_start(), rogue.ecalls.attest_start()
        offer_c = rogue.ecalls.attest_respond(hello_a)
        agent.ecalls.attest_respond(hello_c)
        with pytest.raises(PolicyError, match="DEBUG"):
            agent.ecalls.attest_finish(offer_c)
        with pytest.raises(EcallError, match="not attested: keys stay here"):
            agent.ecalls.release_keys()


def test_agent_refuses_an_enclave_the_owners_did_not_name(apps: Apps) -> None:
    from enclavekit.errors import PolicyError

    with apps.vm.load(apps.agent_image) as agent, apps.vm.load(apps.agent_image) as other:
        _deposit(agent, apps.compute)  # owners expect joint_stats; the host offers an agent
        other.ecalls.deposit_key("mallory", bytes(32), apps.agent_image.mrenclave,
                                 apps.agent_image.mrsigner)
        hello_a, hello_o = agent.ecalls.attest_start(), other.ecalls.attest_start()
        offer_o = other.ecalls.attest_respond(hello_a)
        agent.ecalls.attest_respond(hello_o)
        with pytest.raises(PolicyError, match="MRENCLAVE"):
            agent.ecalls.attest_finish(offer_o)


def test_host_cannot_alter_or_replay_what_it_relays(apps: Apps) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from enclavekit.errors import IntegrityError

    with apps.vm.load(apps.agent_image) as agent, apps.vm.load(apps.compute) as compute:
        keys = _deposit(agent, apps.compute)
        hello_a, hello_c = agent.ecalls.attest_start(), compute.ecalls.attest_start()
        offer_c = compute.ecalls.attest_respond(hello_a)
        agent.ecalls.attest_respond(hello_c)
        forged = offer_c[:-1] + bytes([offer_c[-1] ^ 1])  # swap in another public key
        with pytest.raises(IntegrityError):
            agent.ecalls.attest_finish(forged)
        _attest(agent, compute)
        wrapped = agent.ecalls.release_keys()
        swapped = {"alice": wrapped["bob"], "bob": wrapped["alice"]}
        with pytest.raises(EcallError, match="authentication failed"):
            compute.ecalls.receive_keys(swapped)
        assert compute.ecalls.receive_keys(wrapped) == sorted(OWNERS)

        def batch(owner: str, number: int) -> bytes:
            nonce = os.urandom(12)
            rows = json.dumps(records(owner)[:3]).encode()
            aad = f"joint-stats/v1/records/{owner}/{number}".encode()
            return nonce + AESGCM(keys[owner]).encrypt(nonce, rows, aad)

        alice0 = batch("alice", 0)
        assert compute.ecalls.add_records("alice", 0, alice0) == 3
        with pytest.raises(EcallError, match="already added"):
            compute.ecalls.add_records("alice", 0, alice0)
        for owner, number in (("bob", 0), ("alice", 1)):  # moved to another owner or number
            with pytest.raises(EcallError, match="authentication failed"):
                compute.ecalls.add_records(owner, number, alice0)
        with pytest.raises(EcallError, match="no records from bob"):
            compute.ecalls.compute()
        assert compute.ecalls.add_records("bob", 0, batch("bob", 0)) == 3
        assert set(compute.ecalls.compute()) == set(OWNERS)
