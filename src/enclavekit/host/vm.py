"""The host SDK's view of a confidential VM: a connection to its device service.

``VM.default()`` needs no set-up: it creates the VM ``default`` (Standard_DC2s_v2) in the
default data directory on first use and starts a private device for this process, stopped
at exit. ``VM.start(name)`` starts a shared device in the background (its pid and socket
in ``<vm dir>/device.json``), ``VM.open(name)`` connects to it, ``vm.stop()`` stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import (
    DeviceError,
    DeviceUnavailable,
    EnclaveKitError,
    ProtocolError,
    VMError,
    VMNotFound,
)
from ..vm import protocol as p
from ..vm.datadir import data_dir
from ..vm.platform import PlatformStore
from ..vm.protocol import VMStatus
from ..vm.sku import DEFAULT_SIZE
from ..wire import CallSignature, Frame, FrameReader, pack_frame
from ..wire.values import decode_value, encode_value
from . import quoting
from .enclave import Enclave
from .image import EnclaveFile
from .switchless import SwitchlessRing

__all__ = ["VM", "VMStatus"]

DEFAULT_VM = "default"
START_TIMEOUT = 20.0
_RECV = 1 << 16

_default: VM | None = None
_default_lock = threading.Lock()


def _device_cmd(store: PlatformStore, name: str, sock: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "enclavekit.vm.device", "--data-dir", str(store.root),
            "--vm", name, "--socket", sock, *extra]


def _is_device(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"enclavekit.vm.device" in cmd


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        elif not _is_device(pid):
            return True
        time.sleep(0.01)
    return False


def _stop_process(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL, a device that did not stop on SHUTDOWN."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _wait_gone(pid, proc, 0 if sig == signal.SIGTERM else 2.0):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, proc, 3.0):
            return


class VM:
    """A connection to a running VM's device service."""

    def __init__(self, name: str, socket_path: str, *, store: PlatformStore,
                 pid: int = 0, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.name = name
        self.socket_path = socket_path
        self.pid = pid
        self._store = store
        self._proc = proc
        self._lock = threading.Lock()
        self._reader = FrameReader()
        self._next_id = 0
        self._sock: socket.socket | None = self._connect()
        self._finalizer: weakref.finalize[Any, VM] | None = None
        hello = decode_value(self._request(p.Msg.HELLO, encode_value(p.Hello(), p.Hello))[0]
                             .payload, p.HelloReply)
        self.size = hello.size

    def __repr__(self) -> str:
        return f"<VM {self.name!r} {self.size} device pid {self.pid}>"

    @property
    def data_dir(self) -> Path:
        """The data directory the VM lives in (its platform, the provisioning PKI)."""
        return self._store.root

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def default(cls) -> VM:
        """VM ``default`` (created on first use, Standard_DC2s_v2).

        If its device was started with ``enclavekit vm start default``, this connects to
        it (programs share the VM); otherwise it starts a device private to this process,
        stopped when the process exits.
        """
        global _default
        with _default_lock:
            if _default is not None and _default._sock is not None:
                return _default
            store = PlatformStore(data_dir())
            try:
                store.load(DEFAULT_VM)
            except VMNotFound:
                store.create(DEFAULT_VM, DEFAULT_SIZE)
            if _device_info(store, DEFAULT_VM) is not None:
                # 'enclavekit vm start default' runs a shared device: use it
                _default = cls.open(DEFAULT_VM, store.root)
            else:
                _default = cls._private(store, DEFAULT_VM)
            return _default

    @classmethod
    def _private(cls, store: PlatformStore, name: str) -> VM:
        tmp = tempfile.mkdtemp(prefix="enclavekit-")
        sock = os.path.join(tmp, "device.sock")
        log = open(os.path.join(tmp, "device.log"), "wb")  # noqa: SIM115 (kept by the child)
        with log:
            proc = subprocess.Popen(
                _device_cmd(store, name, sock, ["--parent-pid", str(os.getpid())]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        try:
            vm = cls._await(store, name, sock, proc, os.path.join(tmp, "device.log"))
        except BaseException:
            _stop_process(proc.pid, proc)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        vm._finalizer = weakref.finalize(vm, _stop_private, vm, tmp)
        return vm

    @classmethod
    def _await(cls, store: PlatformStore, name: str, sock: str,
               proc: subprocess.Popen[bytes], log: str) -> VM:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                lines = Path(log).read_text(errors="replace").strip().splitlines()
                why = lines[-1] if lines else f"exit status {proc.returncode}"
                raise DeviceUnavailable(f"the device of VM {name!r} did not start: {why}")
            if os.path.exists(sock):
                try:
                    return cls(name, sock, store=store, pid=proc.pid, proc=proc)
                except DeviceUnavailable:
                    pass
            if time.monotonic() > deadline:
                raise DeviceUnavailable(f"the device of VM {name!r} did not answer within "
                                        f"{START_TIMEOUT:.0f} s; see {log}")
            time.sleep(0.005)

    @classmethod
    def open(cls, name: str, data_dir: str | os.PathLike[str] | None = None) -> VM:
        """Connect to the running device of VM ``name`` (started with ``VM.start``)."""
        store = _store(data_dir)
        # a device running as a dedicated user ('vm start --user') owns the secrets
        with contextlib.suppress(PermissionError):
            store.load(name)
        info = _device_info(store, name)
        if info is None:
            raise DeviceUnavailable(f"VM {name!r} is not running; start it with "
                                    f"'enclavekit vm start {name}'")
        return cls(name, str(info["socket"]), store=store, pid=int(info["pid"]))

    @classmethod
    def start(cls, name: str, data_dir: str | os.PathLike[str] | None = None, *,
              extra_args: list[str] | None = None) -> VM:
        """Start VM ``name``'s device in the background and connect to it."""
        store = _store(data_dir)
        store.load(name)
        running = _device_info(store, name)
        if running is not None:
            raise VMError(f"VM {name!r} is already served by a device (pid {running['pid']}); "
                          f"stop it with 'enclavekit vm stop {name}'")
        vm_dir = store.path(name).parent
        sock = str(vm_dir / "device.sock")
        if len(sock.encode()) > 100:
            sock = os.path.join(tempfile.mkdtemp(prefix="enclavekit-"), "device.sock")
        log = vm_dir / "device.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                _device_cmd(store, name, sock, ["--publish", *(extra_args or [])]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
                start_new_session=True, cwd="/")
        try:
            return cls._await(store, name, sock, proc, str(log))
        except BaseException:
            if proc.poll() is None:
                _stop_process(proc.pid, proc)
            raise

    # ------------------------------------------------------------------ requests

    def status(self) -> VMStatus:
        """Size, EPC total/used/free and each loaded enclave."""
        frame, _ = self._request(p.Msg.STATUS, encode_value(p.Empty(), p.Empty))
        return decode_value(frame.payload, p.VMStatus)

    def load(self, image: str | os.PathLike[str] | EnclaveFile, *,
             ocalls: Mapping[str, Callable[..., Any]] | None = None) -> Enclave:
        """Load a signed enclave file (path or :class:`EnclaveFile`) and start it.

        Raises:
            InvalidStructure, InvalidSignature: the file is malformed or not signed.
            InvalidMeasurement: a measured byte changed after signing (EINIT refused it).
            InvalidEInitToken: the VM's launch allow-list refuses the signer.
        """
        efile = image if isinstance(image, EnclaveFile) else EnclaveFile.load(image)
        frame, fds = self._request(
            p.Msg.LOAD, encode_value(p.LoadRequest(efile.to_bytes()), p.LoadRequest))
        return self._enclave(frame, fds, efile.name, ocalls)

    def load_bytes(self, image: bytes, *,
                   ocalls: Mapping[str, Callable[..., Any]] | None = None) -> Enclave:
        """Load enclave-file bytes as they are (the device checks them; EINIT decides)."""
        frame, fds = self._request(p.Msg.LOAD, encode_value(p.LoadRequest(image),
                                                            p.LoadRequest))
        return self._enclave(frame, fds, "", ocalls)

    def _enclave(self, frame: Frame, fds: list[int], name: str,
                 ocalls: Mapping[str, Callable[..., Any]] | None) -> Enclave:
        reply = decode_value(frame.payload, p.LoadReply)
        want = 2 if reply.switchless_workers else 1
        if len(fds) != want:
            for fd in fds:
                os.close(fd)
            raise ProtocolError(f"LOAD reply carried {len(fds)} descriptors, expected {want}")
        sock = socket.socket(fileno=fds[0])
        try:
            ring = SwitchlessRing(fds[1], reply.switchless_workers) if want == 2 else None
        except BaseException:
            sock.close()
            raise
        return Enclave(self, reply, sock, name or f"enclave-{reply.enclave_id}", ocalls, ring)

    def _unload(self, enclave_id: int) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(DeviceError, OSError):  # a gone device took the enclave along
            self._request(p.Msg.UNLOAD, encode_value(p.EnclaveRef(enclave_id), p.EnclaveRef))

    def _debug_read(self, enclave_id: int, linaddr: int, size: int) -> bytes:
        frame, _ = self._request(p.Msg.DEBUG_READ,
                                 encode_value(p.DebugRead(enclave_id, linaddr, size), p.DebugRead))
        return decode_value(frame.payload, p.Data).data

    def restart(self) -> int:
        """Power-cycle the VM: its device keeps running with new per-boot keys; every
        enclave loaded on it is lost (their handles raise EnclaveLost) and must be loaded
        again; data sealed before still unseals. Returns how many enclaves were lost."""
        frame, _ = self._request(p.Msg.RESTART, encode_value(p.Empty(), p.Empty))
        return decode_value(frame.payload, p.Restarted).lost

    def _builtin_ocall(self, name: str) -> tuple[CallSignature, Callable[..., Any]] | None:
        """The built-in ocall ``name`` every enclave on this VM may make (quoting), or None."""
        return quoting.builtin_ocall(self, name)  # looked up per call: tests replace it

    def _lost_reason(self, enclave_id: int) -> str:
        """Why the device ended enclave ``enclave_id`` ("" if it does not know)."""
        try:
            frame, _ = self._request(p.Msg.LOST_REASON,
                                     encode_value(p.EnclaveRef(enclave_id), p.EnclaveRef))
        except (EnclaveKitError, OSError):
            return "lost power (its device stopped or was killed)"
        return decode_value(frame.payload, p.LostReason).reason

    def stop(self) -> None:
        """Stop the device (SHUTDOWN; SIGTERM by pid if it does not go)."""
        with contextlib.suppress(DeviceError, OSError):
            self._request(p.Msg.SHUTDOWN, encode_value(p.Empty(), p.Empty))
        self._disconnect()
        if self.pid:
            _stop_process(self.pid, self._proc)
        if self._finalizer is not None:
            self._finalizer()

    def close(self) -> None:
        """Disconnect (this process's private default device is stopped)."""
        if self._finalizer is not None:
            self._finalizer()
        else:
            self._disconnect()

    # ------------------------------------------------------------------ the connection

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise self._unavailable(exc.strerror or str(exc)) from None
        return sock

    def _disconnect(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _unavailable(self, why: str) -> DeviceUnavailable:
        return DeviceUnavailable(f"the device of VM {self.name!r} cannot be reached ({why}); "
                                 f"start it with 'enclavekit vm start {self.name}'")

    def _request(self, msg_type: int, payload: bytes) -> tuple[Frame, list[int]]:
        with self._lock:
            sock = self._sock
            if sock is None:
                raise self._unavailable("this VM handle is closed")
            self._next_id += 1
            rid = self._next_id
            fds: list[int] = []
            try:
                sock.sendall(pack_frame(msg_type, rid, payload))
                frames: list[Frame] = []
                while not frames:
                    data, got, _, _ = socket.recv_fds(sock, _RECV, 4)
                    fds.extend(got)
                    if not data:
                        raise self._unavailable("the device closed the connection")
                    frames = self._reader.feed(data)
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                self._sock = None
                sock.close()
                raise self._unavailable(exc.strerror or str(exc)) from None
        frame = frames[0]
        if frame.request_id != rid or not frame.is_reply:
            raise ProtocolError(f"device replied to request {frame.request_id}, expected {rid}")
        if frame.is_error:
            for fd in fds:
                os.close(fd)
            raise p.rebuild_error(decode_value(frame.payload, p.ErrorInfo))
        return frame, fds


def _stop_private(vm: VM, tmp: str) -> None:
    """Stop a private device and remove its temporary directory (finalizer, at exit)."""
    vm._finalizer = None
    try:
        vm.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _store(override: str | os.PathLike[str] | None) -> PlatformStore:
    return PlatformStore(data_dir(override))


def _device_info(store: PlatformStore, name: str) -> dict[str, Any] | None:
    """``device.json`` of a running device, or None (a stale file of a dead one is ignored)."""
    path = store.path(name).parent / "device.json"
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not _is_device(int(info.get("pid", 0))):
        return None
    return info
