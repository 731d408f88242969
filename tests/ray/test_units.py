"""enclavekit.ray pieces that need no cluster: resources, EPC need, namespace commands."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

import enclavekit
from enclavekit.enclave.peer import hello_report_data, split_hello
from enclavekit.errors import EnclaveKitError, UnknownVMSize, VerificationFailed
from enclavekit.ray import netns
from enclavekit.ray.jointstats import app_dir
from enclavekit.ray.resources import epc_mib, node_resources, parse_node


def test_node_resources_name_the_epc_size_and_vm() -> None:
    got = node_resources("n1", "DC4s_v2")
    assert got == {"epc_mib": 112.0, "enclavekit_size:Standard_DC4s_v2": 1.0,
                   "enclavekit_vm:n1": 1.0}
    assert parse_node({**got, "CPU": 1.0}) == ("n1", "Standard_DC4s_v2", 112)
    assert parse_node({"CPU": 1.0}) is None
    with pytest.raises(UnknownVMSize):
        node_resources("n1", "DC3s_v2")


def test_epc_need_comes_from_the_signed_files_layout() -> None:
    image = enclavekit.build(app_dir())
    assert epc_mib(image) == -(-image.epc_pages * 4096 // (1 << 20))
    assert 8 < epc_mib(image) < 12  # 8 MiB heap, code, stacks


def test_isolated_command_wraps_in_a_loopback_only_namespace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "can_isolate", lambda: "")
    cmd = netns.isolated_command(["python", "x.py"])
    assert cmd[:2] == ["unshare", "--net"] and cmd[-2:] == ["python", "x.py"]
    assert "ip link set lo up" in cmd[4]
    monkeypatch.setattr(netns, "can_isolate", lambda: "not root")
    with pytest.raises(EnclaveKitError, match="not root"):
        netns.isolated_command(["python"])


def test_ray_is_refused_where_other_interfaces_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "_interfaces", lambda: ["eth0", "lo"])
    with pytest.raises(EnclaveKitError, match=r"eth0, lo.*unshare -n"):
        netns.check_loopback_only()
    monkeypatch.setattr(netns, "_interfaces", lambda: ["lo"])
    netns.check_loopback_only()


def test_proc_net_addresses_decode() -> None:
    assert netns._address("0100007F") == "127.0.0.1"
    assert netns._address("0000000000000000FFFF00000100007F") == "127.0.0.1"
    assert netns._address("00000000000000000000000001000000") == "::1"


def test_hello_binds_context_and_key() -> None:
    a = hello_report_data(b"job", b"\x04" + bytes(64))
    assert len(a) == 64 and a[32:] == bytes(32)
    assert a != hello_report_data(b"job2", b"\x04" + bytes(64))
    assert a != hello_report_data(b"jo", b"b\x04" + bytes(64))  # length-prefixed context
    with pytest.raises(VerificationFailed, match="not a quote"):
        split_hello(bytes(100))
    with pytest.raises(VerificationFailed):
        split_hello(bytes(2000))  # no uncompressed-point marker
