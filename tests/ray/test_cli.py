"""``enclavekit ray node``: what it would start, and its refusals."""

from __future__ import annotations

import json
import shlex

import pytest
from click.testing import CliRunner

from enclavekit.cli import main


def test_ray_node_dry_run_prints_the_nodes_resources() -> None:
    result = CliRunner().invoke(main, ["ray", "node", "--size", "DC4s_v2", "--name", "n1",
                                       "--address", "127.0.0.1:6379", "--dry-run"])
    assert result.exit_code == 0, result.output
    first, command = result.output.splitlines()
    assert first == "VM n1: Standard_DC4s_v2, EPC 112 MiB"
    argv = shlex.split(command)
    assert argv[:3] == ["ray", "start", "--block"]
    assert argv[argv.index("--node-ip-address") + 1] == "127.0.0.1"
    assert argv[argv.index("--address") + 1] == "127.0.0.1:6379" and "--head" not in argv
    assert json.loads(argv[argv.index("--resources") + 1]) == {
        "epc_mib": 112.0, "enclavekit_size:Standard_DC4s_v2": 1.0, "enclavekit_vm:n1": 1.0}


def test_ray_node_refuses_an_unknown_size() -> None:
    result = CliRunner().invoke(main, ["ray", "node", "--size", "DC3s_v2", "--dry-run"])
    assert result.exit_code == 1
    assert "UnknownVMSize: unknown VM size 'DC3s_v2'" in result.output


def test_ray_node_refuses_to_start_where_ray_would_leave_loopback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from enclavekit.ray import netns

    monkeypatch.setattr(netns, "_interfaces", lambda: ["eth0", "lo"])
    result = CliRunner().invoke(main, ["ray", "node", "--size", "DC1s_v2"])
    assert result.exit_code == 1
    assert "interfaces eth0, lo" in result.output and "unshare -n" in result.output
