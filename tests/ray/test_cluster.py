"""Ray cluster tests: 3 local nodes of different sizes in a loopback-only network namespace.

The scenarios run once, in a child process under ``unshare --net`` (tests/ray/cluster_checks.py);
each test below asserts on what one scenario recorded.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")

from enclavekit.ray import netns

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    why = netns.can_isolate()
    if why:
        pytest.skip(f"the Ray cluster tests need a loopback-only network namespace: {why}")
    work = tmp_path_factory.mktemp("ray")
    out = work / "out.json"
    proc = subprocess.Popen(
        netns.isolated_command([sys.executable, "-m", "tests.ray.cluster_checks", str(work),
                                str(out)]),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=170)
    except subprocess.TimeoutExpired:  # stop what it started: its whole process group
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
    assert out.exists(), f"the cluster run wrote nothing: {stderr[-3000:]}"
    results: dict[str, Any] = json.loads(out.read_text())
    assert results["start"]["ok"], results["start"]
    return results


def ok(runs: dict[str, Any], name: str) -> Any:
    got = runs[name]
    assert got["ok"], f"{name}: {got.get('error')}\n{got.get('trace', '')}"
    return got["value"]


def refused(runs: dict[str, Any], name: str) -> dict[str, str]:
    got = runs[name]
    assert not got["ok"], f"{name} should have been refused, got {got.get('value')}"
    error: dict[str, str] = got["error"]
    return error


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def test_every_listening_socket_of_the_cluster_is_on_loopback(runs: dict[str, Any]) -> None:
    assert runs["loopback_only"] is True
    assert len(runs["listening"]) >= 6  # gcs, raylets, object managers, workers...
    assert [a for a in runs["listening"] if not _loopback(a[0])] == []


def test_nodes_advertise_their_vm_size_and_epc(runs: dict[str, Any]) -> None:
    assert runs["nodes"] == [["ray-node-0", "Standard_DC1s_v2", 28],
                             ["ray-node-1", "Standard_DC2s_v2", 56],
                             ["ray-node-2", "Standard_DC4s_v2", 112]]


def test_an_enclave_too_big_for_a_node_never_lands_there(runs: dict[str, Any]) -> None:
    got = ok(runs, "placement")  # a 41 MiB enclave, placed twice
    assert "Standard_DC1s_v2" not in got["big_sizes"]


def test_an_enclave_too_big_for_every_node_fails_naming_the_sizes(runs: dict[str, Any]) -> None:
    error = refused(runs, "too_big")
    assert error["type"] == "EPCExhausted"
    for text in ("121 MiB", "Standard_DC1s_v2 28 MiB", "Standard_DC2s_v2 56 MiB",
                 "Standard_DC4s_v2 112 MiB"):
        assert text in error["message"]
    assert runs["too_big"]["seconds"] < 5  # fails fast, no waiting for room


def test_spread_puts_enclaves_on_distinct_nodes(runs: dict[str, Any]) -> None:
    assert sorted(ok(runs, "spread")) == ["ray-node-0", "ray-node-1", "ray-node-2"]
    error = refused(runs, "spread_too_big")  # only 2 nodes hold 41 MiB
    assert error["type"] == "EPCExhausted" and "only 2 node(s)" in error["message"]


def test_ecalls_are_actor_methods_sync_and_remote(runs: dict[str, Any]) -> None:
    got = ok(runs, "ecalls")
    assert got["sync"] == got["remote"] == got["expected"]
    assert got["ray_get_type"] == "bytes"
    assert got["typed_error"]["type"] == "PermissionError" or \
        "provision first" in got["typed_error"]["message"]
    assert "EcallFailed" in got["ray_get_error"] and "provision first" in got["ray_get_error"]


def test_an_image_the_vm_refuses_is_a_typed_placement_error(runs: dict[str, Any]) -> None:
    error = refused(runs, "tampered_image")
    assert error["type"] == "InvalidMeasurement"


def test_partitioned_job_equals_the_single_vm_result(runs: dict[str, Any]) -> None:
    got = ok(runs, "job")
    assert got["stats"] == got["reference"]
    assert got["workers_on"] == ["ray-node-0", "ray-node-1", "ray-node-2"]
    assert got["fingerprints"] == 12  # 4 enclaves, each verified the 3 others


def test_no_plaintext_or_key_enters_rays_objects_or_files(runs: dict[str, Any]) -> None:
    assert ok(runs, "job")["secret_in_objects"] == []
    scan = runs["leaks_in_ray_dirs"]
    assert scan["files"] > 10  # session logs, sockets' files, spill dir
    assert scan["found"] == []


@pytest.mark.parametrize("case", ["refuse_other_mrenclave", "refuse_debug"])
def test_a_peer_with_another_mrenclave_or_a_debug_build_is_refused(
        runs: dict[str, Any], case: str) -> None:
    got = ok(runs, case)
    assert "honest_accepted_rogue" not in got
    assert "honest_opened_rogue_payload" not in got
    assert got["refusal"]["type"] == "VerificationFailed"
    check = "debug:" if case == "refuse_debug" else "mrenclave:"
    assert got["refusal"]["message"].startswith(check)
    assert got["debug"] is (case == "refuse_debug")


def test_tampered_replayed_and_reflected_payloads_are_refused(runs: dict[str, Any]) -> None:
    got = ok(runs, "tamper")
    for label in ("flipped", "truncated", "replayed", "reflected"):
        assert got[label]["type"] == "IntegrityError", (label, got[label])
    assert got["genuine"] == 64


def test_sealed_state_resumes_on_the_same_platform_only(runs: dict[str, Any]) -> None:
    got = ok(runs, "sealing")
    assert got["same_platform"] == 3 and got["total"] == 6
    assert got["other_platform"]["type"] == "SealRuleError"
    assert "another platform" in got["other_platform"]["message"]


def test_killing_a_node_fails_over_to_a_replica(runs: dict[str, Any]) -> None:
    got = ok(runs, "failover")
    assert got["before_ok"] and got["after_ok"]
    assert got["live"] == 2 and len(got["lost"]) == 1
    assert "ray-node-2" in got["lost"][0]


def test_a_job_whose_node_died_fails_clearly_never_a_wrong_result(runs: dict[str, Any]) -> None:
    error = refused(runs, "job_after_node_kill")
    assert error["type"] == "EnclaveLost"
    # the actor is gone, or the enclave answered that its VM lost power: either names the VM
    assert "ray-node-2" in error["message"]
    assert "is gone" in error["message"] or "lost power" in error["message"]


def test_a_node_killed_mid_job_fails_it_clearly(runs: dict[str, Any]) -> None:
    error = refused(runs, "node_killed_mid_job")  # killed after the records went in
    assert runs["node_killed_mid_job"]["killed"] == ["ray-node-1"]
    assert error["type"] == "EnclaveLost"
    assert "ray-node-1" in error["message"]
