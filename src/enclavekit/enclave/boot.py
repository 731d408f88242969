"""The enclave process after the bootstrap: BOOT, the app's import, the dispatcher.

The bootstrap (``vm.bootstrap``) hands over here once the pinned runtime is importable:
:func:`run` decodes BOOT, attaches the switchless ring when the measured manifest asks for
workers, connects the trusted API to the private channel, imports the app from the
measured bundle, caps the address space (heap + stacks + runtime slack) and serves ecalls
until the host closes the socket.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import socket
import threading
import traceback

from ..vm.protocol import Boot
from ..wire import decode_value
from . import api, importer, switchless
from .dispatch import Dispatcher

__all__ = ["run"]

RUNTIME_SLACK = 48 << 20
"""Address space allowed beyond the start-up footprint, heap and stacks: room for runtime
modules loaded on first use (e.g. ``cryptography`` for ``verify_report``)."""
MIN_THREAD_STACK = 1 << 20


def _entry_module(manifest_blob: bytes) -> str:
    size = int.from_bytes(manifest_blob[8:12], "little")
    manifest = json.loads(manifest_blob[12 : 12 + size])
    entry = str(manifest["entry"])
    parts = entry[:-3].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _switchless_workers(manifest_blob: bytes) -> int:
    size = int.from_bytes(manifest_blob[8:12], "little")
    value = json.loads(manifest_blob[12 : 12 + size]).get("switchless_workers", 0)
    return value if type(value) is int and value > 0 else 0


def _limit_heap(heap_size: int, threads: int, stack: int) -> None:
    """Cap the address space: start-up footprint + heap + thread stacks + runtime slack."""
    with open("/proc/self/statm", "rb") as f:
        vm_pages = int(f.read().split()[0])
    limit = vm_pages * os.sysconf("SC_PAGE_SIZE") + heap_size + threads * stack + RUNTIME_SLACK
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(payload: bytes, private_fd: int, ecall_fd: int) -> None:
    """The enclave process after the bootstrap: decode BOOT, load the app, serve ecalls."""
    boot = decode_value(payload, Boot, what="BOOT")
    private = socket.socket(fileno=private_fd)
    ecalls = socket.socket(fileno=ecall_fd)
    workers = _switchless_workers(boot.manifest)
    ring = None
    if workers:
        ring = switchless.attach(private, workers)
    api._connect(private, boot)
    importer.add_bundle(boot.bundle)
    stack = max(boot.stack_size, MIN_THREAD_STACK)
    threading.stack_size(stack)
    startup_error = None
    try:
        importlib.import_module(_entry_module(boot.manifest))
    except BaseException as exc:
        startup_error = f"the enclave app failed to start: {type(exc).__name__}: {exc}"
        if boot.debug:
            startup_error += "\n" + "".join(traceback.format_exception(exc)).rstrip()
    disp = Dispatcher(ecalls, threads=boot.threads, debug=boot.debug, heap_size=boot.heap_size,
                      startup_error=startup_error)
    if ring is not None:
        switchless.start(disp, ring)
    _limit_heap(boot.heap_size, boot.threads, stack)
    disp.serve()
    os._exit(0)
