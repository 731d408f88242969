"""``enclavekit demo --nodes N``: the partitioned joint statistics on a local Ray cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

pytest.importorskip("ray")

from enclavekit.cli import main
from enclavekit.ray import netns


def test_demo_on_three_nodes_equals_the_single_vm_result() -> None:
    why = netns.can_isolate()
    if why:
        pytest.skip(f"needs a loopback-only network namespace: {why}")
    proc = subprocess.run([sys.executable, "-m", "enclavekit", "demo", "--nodes", "3"],
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "3 Ray node(s) on 127.0.0.1" in out
    assert "Standard_DC1s_v2" in out and "Standard_DC4s_v2" in out
    assert "12 quote verifications inside the enclaves" in out
    assert "development platforms: the host user holds their secrets; the job allows advisory " \
        "EK-DEV-0001 by name" in out
    assert "✓ equals the single-VM result" in out


def test_demo_nodes_refuses_clearly_where_ray_cannot_stay_on_loopback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "loopback_only", lambda: False)
    monkeypatch.setattr(netns, "can_isolate", lambda: "a network namespace needs root here")
    result = CliRunner().invoke(main, ["demo", "--nodes", "3"])
    assert result.exit_code == 1
    assert "Ray binds the machine's interface address" in result.output
    assert "needs root" in result.output
