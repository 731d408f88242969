"""An in-process device service for tests: a real Device, Unix socket, fake or real enclaves."""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from enclavekit.host.build import build
from enclavekit.host.image import EnclaveFile
from enclavekit.sgx.signing import SigningKey
from enclavekit.vm.device import Device, serve_connection
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.spawn import spawn_enclave

APP = '''
from enclavekit.enclave import ecall


@ecall
def add(a: int, b: int) -> int:
    return a + b
'''

ECHO_BOOT = r'''
import os, struct
def read(fd, n):
    buf = b""
    while len(buf) < n:
        got = os.read(fd, n - len(buf))
        if not got:
            raise SystemExit(0)
        buf += got
    return buf
head = read(3, 24)
payload = read(3, struct.unpack_from("<I", head, 20)[0])
data = struct.pack("<I", len(payload)) + payload
while data:
    data = data[os.write(4, data):]
while os.read(4, 4096):
    pass
'''
"""A stand-in enclave process: sends its BOOT payload back on fd 4, then waits for EOF."""


def make_app(root: Path, name: str = "app", *, heap: str = "64K", extra: str = "") -> Path:
    """A small enclave app directory."""
    app = root / name
    app.mkdir(parents=True, exist_ok=True)
    (app / "enclave.toml").write_text(
        f'name = "{name}"\nentry = "app.py"\ndebug = true\nheap_size = "{heap}"\n'
        'stack_size = "16K"\nthreads = 2\n')
    (app / "app.py").write_text(APP + extra)
    return app


def signed_image(root: Path, key: SigningKey, name: str = "app", **kw: str) -> EnclaveFile:
    """Build and sign a small app."""
    return build(make_app(root, name, **kw)).sign(key)


@contextmanager
def device_server(tmp: Path, *, fake: bool = True, vm: str = "testvm",
                  **kw: object) -> Iterator[tuple[Device, str, PlatformStore]]:
    """A Device serving a Unix socket in ``tmp`` from threads of this process."""
    store = PlatformStore(tmp / "data")
    if vm not in store.names():
        store.create(vm, "Standard_DC1s_v2")
    spawn = functools.partial(spawn_enclave, source=ECHO_BOOT) if fake else None
    device = Device(store.load(vm), spawn=spawn, **kw)  # type: ignore[arg-type]
    path = str(tmp / "dev.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    listener.settimeout(0.05)

    def accept() -> None:
        while not device.stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=serve_connection, args=(device, conn), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield device, path, store
    finally:
        device.stopping.set()
        thread.join()
        listener.close()
        device.close()
        os.unlink(path)
