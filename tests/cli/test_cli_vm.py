"""`enclavekit vm`: sizes, create, list, show, delete against a temporary data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from enclavekit.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_sizes_lists_every_catalogue_entry() -> None:
    code, out, _ = run("vm", "sizes", "--json")
    assert code == 0
    sizes = {s["name"]: s for s in json.loads(out)}
    assert sizes["Standard_DC2s_v2"]["epc_mib"] == 56
    assert sizes["Standard_DC8_v2"]["vcpus"] == 8
    code, out, _ = run("vm", "sizes")
    assert code == 0 and "Standard_DC1s_v2" in out and "28 MiB" in out


def test_create_show_list_delete(tmp_path: Path) -> None:
    d = str(tmp_path)
    code, out, _ = run("vm", "--data-dir", d, "create", "dev", "--size", "Standard_DC1s_v2")
    assert code == 0 and "EPC 28 MiB" in out
    code, out, _ = run("vm", "--data-dir", d, "show", "dev", "--json")
    shown = json.loads(out)
    assert shown["epc_total_pages"] == 28 * 256
    fused = json.loads((tmp_path / "vms" / "dev" / "platform.json").read_text())["secrets"]
    assert "secrets" not in shown and fused not in out
    assert shown["development"] is True
    assert shown["platform"] == "development platform: the host user holds its secrets"
    code, out, _ = run("vm", "--data-dir", d, "show", "dev")
    assert code == 0 and "development platform: the host user holds its secrets" in out
    assert fused not in out
    code, out, _ = run("vm", "--data-dir", d, "list")
    assert code == 0 and "dev" in out and "development" in out
    code, out, _ = run("vm", "--data-dir", d, "delete", "dev", "--yes")
    assert code == 0
    code, _, err = run("vm", "--data-dir", d, "show", "dev")
    assert code == 1 and "VMNotFound: no VM named 'dev'" in err


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path) -> None:
    d = str(tmp_path)
    code, _, err = run("vm", "--data-dir", d, "create", "dev", "--size", "DC3s_v2")
    assert code == 1 and "UnknownVMSize" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    run("vm", "--data-dir", d, "create", "dev")
    code, _, err = run("vm", "--data-dir", d, "create", "dev")
    assert code == 1 and "VMExists" in err
    code, _, err = run("vm", "--data-dir", d, "create", "Bad/Name")
    assert code == 1 and "not a valid name" in err


def test_env_override_of_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVEKIT_HOME", str(tmp_path))
    assert run("vm", "create", "envvm")[0] == 0
    assert (tmp_path / "vms" / "envvm" / "platform.json").is_file()


def test_start_show_stop(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert run("vm", "--data-dir", d, "create", "svc", "--size", "DC1s_v2")[0] == 0
    code, _, err = run("vm", "--data-dir", d, "stop", "svc")
    assert code == 1 and "DeviceUnavailable" in err and "enclavekit vm start svc" in err
    code, out, err = run("vm", "--data-dir", d, "start", "svc")
    assert code == 0, err
    pid = int(out.split("device pid ")[1].split(",")[0])
    try:
        code, _, err = run("vm", "--data-dir", d, "start", "svc")
        assert code == 1 and "already served" in err  # one device per VM (flock)
        code, out, _ = run("vm", "--data-dir", d, "show", "svc", "--json")
        shown = json.loads(out)
        assert shown["running"] is True and shown["enclaves"] == []
        assert shown["epc_used_pages"] + shown["epc_free_pages"] == 28 * 256
        code, out, _ = run("vm", "--data-dir", d, "show", "svc")
        assert code == 0 and "epc_free_pages" in out
    finally:
        code, out, _ = run("vm", "--data-dir", d, "stop", "svc")
    assert code == 0 and "stopped VM svc" in out
    assert not Path(f"/proc/{pid}").exists() or b"enclavekit.vm.device" not in \
        Path(f"/proc/{pid}/cmdline").read_bytes()
    code, out, _ = run("vm", "--data-dir", d, "show", "svc", "--json")
    assert json.loads(out)["running"] is False
