"""Local service records (``<data dir>/run/NAME.json``): written and removed by the service,
counted only while its process lives and its port accepts, never another process's removed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from enclavekit.errors import ServiceNotRunning
from enclavekit.vm.endpoints import (
    ATTEST,
    PCCS,
    Endpoint,
    find,
    local_authority,
    local_collateral,
    published,
    record_path,
)
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def _url(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_published_service_is_found_until_its_block_ends(tmp_path: Path,
                                                           listener: socket.socket) -> None:
    url = _url(listener)
    with published(tmp_path, ATTEST, url, issuer="https://attest.example"):
        assert record_path(tmp_path, ATTEST).stat().st_mode & 0o777 == 0o600
        assert find(tmp_path, ATTEST) == Endpoint(ATTEST, os.getpid(), url,
                                                  "https://attest.example")
        assert local_authority(tmp_path).url == url
        assert find(tmp_path, PCCS) is None
    assert not record_path(tmp_path, ATTEST).exists()
    assert find(tmp_path, ATTEST) is None


def test_a_record_of_a_dead_process_is_ignored(tmp_path: Path, listener: socket.socket) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = record_path(tmp_path, PCCS)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": int(dead.stdout), "url": _url(listener)}))
    assert find(tmp_path, PCCS) is None  # the port still accepts: the process is what counts


def test_a_record_whose_port_does_not_accept_is_ignored(tmp_path: Path) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    url = _url(closed)
    closed.close()
    with published(tmp_path, PCCS, url):  # this process lives, nothing listens
        assert find(tmp_path, PCCS) is None


@pytest.mark.parametrize("text", ["", "[]", "{oops", '{"pid": "1", "url": "http://x:1"}',
                                  '{"pid": 0, "url": "http://127.0.0.1:1"}',
                                  '{"pid": 1, "url": 7}'])
def test_a_malformed_record_is_ignored(tmp_path: Path, text: str) -> None:
    path = record_path(tmp_path, ATTEST)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert find(tmp_path, ATTEST) is None


def test_a_service_leaves_a_newer_services_record_alone(tmp_path: Path,
                                                        listener: socket.socket) -> None:
    path = record_path(tmp_path, PCCS)
    with published(tmp_path, PCCS, _url(listener)):
        newer = json.dumps({"pid": os.getppid(), "url": "http://127.0.0.1:1"})
        path.write_text(newer)  # another service started from the same data dir since
    assert path.read_text() == newer


def test_unknown_service_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown local service 'dashboard'"):
        record_path(tmp_path, "dashboard")
    with pytest.raises(ValueError, match="unknown local service"):
        record_path(tmp_path, "../pccs")


def test_nothing_running_says_what_to_start(tmp_path: Path) -> None:
    with pytest.raises(ServiceNotRunning, match=r"no collateral service runs from data dir .*; "
                       r"start 'enclavekit pccs serve' there first"):
        local_collateral(tmp_path)
    with pytest.raises(ServiceNotRunning, match=r"start 'enclavekit attest serve' there first"):
        local_authority(tmp_path)


def test_local_collateral_is_the_running_pccs_and_the_data_dirs_root(
        tmp_path: Path, listener: socket.socket) -> None:
    PlatformStore(tmp_path).create("a", "Standard_DC1s_v2")
    with published(tmp_path, PCCS, _url(listener)):
        local = local_collateral(tmp_path)
    assert local.url == _url(listener)
    assert local.root == Provisioning.open(tmp_path).root_certificate
