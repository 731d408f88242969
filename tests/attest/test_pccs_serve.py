"""The service on a real socket: in a thread for tests, and ``enclavekit pccs serve`` as a
process that prints its URL, binds the loopback address and is stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from enclavekit.attest.pccs.app import PREFIX, create_app
from enclavekit.attest.pccs.publish import Publisher
from enclavekit.attest.pccs.serve import bind, running
from enclavekit.errors import ProvisioningError
from enclavekit.vm.platform import EMULATED_FMSPC

from ._pccs import chain_from_header, signed_by

FMSPC = EMULATED_FMSPC.hex().upper()


def _pccs_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pccs-server"]


def test_running_serves_on_loopback_and_stops(tmp_path: Path) -> None:
    with running(create_app(Publisher.open(tmp_path))) as url:
        assert url.startswith("http://127.0.0.1:")
        resp = httpx.get(f"{url}{PREFIX}/tcb", params={"fmspc": FMSPC}, timeout=10)
        assert resp.status_code == 200
        body = resp.json()
        chain = chain_from_header(resp.headers["TCB-Info-Issuer-Chain"])
        text = resp.text[len('{"tcbInfo":'): resp.text.rindex(',"signature":')]
        assert signed_by(chain[0], body["signature"], text)
        port = int(url.rsplit(":", 1)[1])
    assert not _pccs_threads()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{PREFIX}/rootcacrl", timeout=2)
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_bound_socket_is_tcp_with_nodelay() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only for sockets that say they are TCP
    (proto IPPROTO_TCP); without it each keep-alive request waits out a delayed ACK."""
    with bind() as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_bind_refuses_a_busy_port_with_a_typed_error() -> None:
    with bind() as held:
        port = held.getsockname()[1]
        with pytest.raises(ProvisioningError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)


def test_cli_serve_prints_its_url_and_serves_until_terminated(tmp_path: Path) -> None:
    env = {**os.environ, "ENCLAVEKIT_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "enclavekit", "pccs", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("collateral service at http://127.0.0.1:"), (
            line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        url = line.split()[3]
        resp = httpx.get(f"{url}{PREFIX}/qe/identity", timeout=10)
        assert resp.status_code == 200 and resp.json()["enclaveIdentity"]["id"] == "QE"
        # state written by the service is the data directory's (an operator sees the same)
        assert (tmp_path / "pki" / "pccs-published.json").is_file()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode in (0, -signal.SIGTERM)
