"""End to end through a real device and real enclave processes: scaffold → build → sign →
load → ecall; ocalls; hostile arguments as raw frames; typed errors; asyncio proxies."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from enclavekit.cli import main
from enclavekit.errors import (
    EcallArgumentError,
    EcallError,
    EnclaveLost,
    UnknownEcall,
)
from enclavekit.host import VM, Enclave, build
from enclavekit.sgx.signing import SigningKey
from enclavekit.vm import protocol as p
from enclavekit.wire import FrameReader, decode_value, encode_value, pack_frame
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

pytest.importorskip("enclavekit.enclave.dispatch")

APP = '''
from enclavekit.enclave import ecall, ocall


@ocall
def host_time(label: str) -> int: ...


@ecall
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@ecall
def stamp(label: str) -> int:
    return host_time(label) + 1


@ecall
def fail(message: str) -> None:
    raise ValueError(message)
'''


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("app")
    app = root / "calc"
    assert CliRunner().invoke(main, ["new", str(app)]).exit_code == 0
    (app / "app.py").write_text(APP)
    key: SigningKey = session_signing_key()
    path = root / "calc.enclave"
    build(app).sign(key).save(path)
    return path


@pytest.fixture()
def enclave(tmp_path: Path, image: Path) -> Iterator[Enclave]:
    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, \
            vm.load(image, ocalls={"host_time": lambda label: len(label) * 100}) as enc:
        yield enc


def test_scaffold_build_sign_load_ecall(enclave: Enclave) -> None:
    assert enclave.ecalls.add(2, 40) == 42
    assert enclave.ecalls.add(a=1, b=-1) == 0
    assert list(inspect.signature(enclave.ecalls.add).parameters) == ["a", "b"]
    assert "add" in dir(enclave.ecalls) and enclave.ecalls.add.__doc__


def test_ocalls_are_served_by_the_host(enclave: Enclave) -> None:
    assert enclave.ecalls.stamp("abc") == 301


def test_enclave_exception_reaches_the_host_typed(enclave: Enclave) -> None:
    with pytest.raises(EcallError, match="ValueError: nope"):
        enclave.ecalls.fail("nope")
    assert enclave.ecalls.add(1, 1) == 2


def test_unknown_ecall_and_wrong_types(enclave: Enclave) -> None:
    with pytest.raises(UnknownEcall, match="no ecall 'host_time'"):
        enclave.ecalls.host_time("x")
    with pytest.raises(EcallArgumentError):
        enclave.ecalls.add("1", 2)
    with pytest.raises(EcallArgumentError):
        enclave.ecalls.add(True, 2)
    assert enclave.ecalls.add(3, 4) == 7


def test_hostile_raw_frames_get_typed_errors_and_the_enclave_keeps_serving(
        enclave: Enclave) -> None:
    sock, reader = enclave._sock, FrameReader()

    def raw(call: p.Call, rid: int) -> p.ErrorInfo:
        sock.sendall(pack_frame(p.Msg.ECALL, rid, encode_value(call, p.Call)))
        frames: list = []
        while not frames:
            frames = reader.feed(sock.recv(65536))
        assert frames[0].is_error and frames[0].request_id == rid
        return decode_value(frames[0].payload, p.ErrorInfo)

    with enclave._lock:
        wrong = raw(p.Call("add", encode_value({"a": "x", "b": 1}, dict[str, str | int])), 1001)
        assert wrong.type == "EcallArgumentError"
        malformed = raw(p.Call("add", b"\x82\xa1a\xc1"), 1002)
        assert malformed.type in ("ProtocolError", "EcallArgumentError")
        huge = raw(p.Call("add", b"\xdd\xff\xff\xff\xff"), 1003)  # array of 2**32 - 1
        assert huge.type in ("ProtocolError", "EcallArgumentError")
        dunder = raw(p.Call("__init__", b"\x80"), 1004)
        assert dunder.type == "UnknownEcall"
    assert enclave.ecalls.add(5, 5) == 10


def test_asyncio_proxies(enclave: Enclave) -> None:
    async def go() -> list[int]:
        return list(await asyncio.gather(*(enclave.aecalls.add(i, i) for i in range(5))))

    assert asyncio.run(go()) == [0, 2, 4, 6, 8]


def test_a_killed_enclave_is_lost(tmp_path: Path, image: Path) -> None:
    with device_server(tmp_path, fake=False) as (device, path, store), \
            VM("testvm", path, store=store) as vm:
        enc = vm.load(image)
        assert enc.ecalls.add(1, 2) == 3
        os.kill(device.enclaves[enc.enclave_id].pid, signal.SIGKILL)
        with pytest.raises(EnclaveLost, match="load it again"):
            enc.ecalls.add(1, 2)
        for _ in range(300):
            if not vm.status().enclaves:
                break
            time.sleep(0.01)
        assert vm.status().enclaves == []  # the device noticed and removed its pages
        enc.close()

