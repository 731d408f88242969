"""The device service: one VM's processor, its enclaves and the Unix socket hosts talk to.

``python -m enclavekit.vm.device --data-dir D --vm NAME --socket PATH [--parent-pid PID]``
(see docs/development/architecture.md). The device is the only holder of the platform's
fused secrets and EPC plaintext. Host connections get HELLO, STATUS, LOAD, UNLOAD,
DEBUG_READ, DEBUG_WRITE and SHUTDOWN; EREPORT and EGETKEY are served only on an enclave's
private channel, for that channel's enclave (RT-2). An enclave lives as long as the host
connection that loaded it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fs import atomic_write, remove_stale_temps
from ..errors import DeviceError, EnclaveKitError, InvalidStructure, ProtocolError, VMError
from ..sgx.consts import AttributeFlags
from ..sgx.processor import Processor
from ..sgx.structs import KeyRequest, TargetInfo
from ..wire import FLAG_ERROR, FLAG_REPLY, decode_value, encode_value, pack_frame, recv_frame
from ..wire.ring import ring_header, ring_size
from . import protocol as p
from . import users
from .bootstrap import compiled_runtime, runtime_files
from .counters import COUNTER_MESSAGES, CounterStore, serve_counter
from .identity import PlatformIdentity
from .loader import Built, EPCManager, parse_image
from .platform import PlatformStore
from .spawn import kill_and_reap, runtime, spawn_enclave

PROTOCOL = 1
HOST_MESSAGES = frozenset({p.Msg.HELLO, p.Msg.STATUS, p.Msg.LOAD, p.Msg.UNLOAD,
                           p.Msg.DEBUG_READ, p.Msg.DEBUG_WRITE, p.Msg.SHUTDOWN,
                           p.Msg.RESTART, p.Msg.LOST_REASON})
MAX_DEBUG_IO = 1 << 20
UNLOAD_WAIT = 10.0
"""Seconds a racing UNLOAD waits for the other caller to remove the enclave's pages."""
POWER_LOST = "lost power (vm restart)"
"""Why RESTART ended an enclave (LOST_REASON), completed by the host with '; load it again'."""
_BUNDLE_HEAD = 12


def _msg_name(msg_type: int) -> str:
    try:
        return p.Msg(msg_type).name
    except ValueError:
        return f"type {msg_type}"


@dataclass
class Loaded:
    """One running enclave: EPC state, identity, process and channels."""

    enclave_id: int
    name: str
    built: Built
    mrenclave: bytes
    mrsigner: bytes
    debug: bool
    threads: int
    pid: int
    private: socket.socket
    owner: object
    state: str = "running"
    removed: threading.Event = field(default_factory=threading.Event)
    """Set once the process is reaped and the EPC pages are removed."""


@dataclass
class _Warm:
    """A pre-started enclave process that has loaded the runtime ``pin`` (WARM), no app."""

    pid: int
    private: socket.socket
    call_host: socket.socket
    pin: dict[str, str]
    python: str

    def discard(self) -> None:
        for sock in (self.private, self.call_host):
            sock.close()
        kill_and_reap(self.pid)


def _alive(pid: int) -> bool:
    """Whether our child ``pid`` is still running (reaps it if it exited)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


class Device:
    """The state a device serves: platform, processor, enclaves (thread-safe)."""

    def __init__(self, identity: PlatformIdentity, *, epc_pages: int | None = None,
                 allow_signers: frozenset[bytes] | None = None,
                 spawn: Callable[[int, int], int] | None = None,
                 warm: bool | None = None, counters: CounterStore | None = None,
                 reload_identity: Callable[[], PlatformIdentity] | None = None) -> None:
        """``warm`` (default: on unless ``spawn`` is replaced) keeps one enclave process
        pre-started for the next LOAD (see :mod:`.bootstrap`). ``reload_identity`` re-reads
        the platform at each RESTART, so a TCB recovery (new CPUSVN / PCESVN) takes effect
        at the power cycle, as a microcode update does at reboot."""
        self.identity = identity
        self._reload_identity = reload_identity
        self.counters = counters if counters is not None else CounterStore()
        cpu = Processor(epc_pages or identity.sku.epc_pages, identity.secrets, identity.cpusvn,
                        launch_allowlist=allow_signers)
        self.epc = EPCManager(cpu)
        self._cpu_args = (epc_pages or identity.sku.epc_pages, allow_signers)
        self.boot = 1
        self._lost: dict[int, tuple[object, str]] = {}
        self.enclaves: dict[int, Loaded] = {}
        self._unloading: dict[int, Loaded] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._next_id = 1
        self._spawn = spawn or spawn_enclave
        self._runtime_root: str | None = None
        self._warm: _Warm | None = None
        self._warm_cond = threading.Condition(self._lock)
        self._want_warm = False
        self._closed = False
        self._warmer_on = False
        if spawn is None if warm is None else warm:
            # one long-lived thread spawns every warm process: PR_SET_PDEATHSIG fires when
            # the spawning *thread* ends, so a short-lived thread would kill its child
            self._want_warm = True
            self._warmer_on = True
            threading.Thread(target=self._warmer, daemon=True, name="warmer").start()

    # ------------------------------------------------------------------ host requests

    def handle(self, msg_type: int, payload: bytes,
               owner: object) -> tuple[bytes, int | list[int] | None]:
        """Serve one host request; returns the reply payload and fds to pass with it."""
        if msg_type not in HOST_MESSAGES:
            raise ProtocolError(f"{_msg_name(msg_type)} is not served on the device socket "
                                "(EREPORT and EGETKEY come only from an enclave's own channel)")
        if msg_type == p.Msg.HELLO:
            decode_value(payload, p.Hello)
            return encode_value(p.HelloReply(self.identity.name, self.identity.size, PROTOCOL),
                                p.HelloReply), None
        if msg_type == p.Msg.STATUS:
            decode_value(payload, p.Empty)
            return encode_value(self.status(), p.VMStatus), None
        if msg_type == p.Msg.LOAD:
            reply, fd = self.load(decode_value(payload, p.LoadRequest).image, owner)
            return encode_value(reply, p.LoadReply), fd
        if msg_type == p.Msg.UNLOAD:
            enclave_id = decode_value(payload, p.EnclaveRef).enclave_id
            with self._lock:
                going = self._unloading.get(enclave_id)
            if going is not None and going.owner is owner:
                going.removed.wait(UNLOAD_WAIT)  # its channel saw it exit: wait for the pages
            else:
                self.unload(self._owned(enclave_id, owner))
            return encode_value(p.Empty(), p.Empty), None
        if msg_type == p.Msg.DEBUG_READ:
            req = decode_value(payload, p.DebugRead)
            if not 0 <= req.size <= MAX_DEBUG_IO:
                raise DeviceError(f"DEBUG_READ of {req.size} bytes: at most {MAX_DEBUG_IO}")
            enc = self._owned(req.enclave_id, owner)
            data = self.epc.read(enc.built, req.linaddr, req.size, debug=True)
            return encode_value(p.Data(data), p.Data), None
        if msg_type == p.Msg.DEBUG_WRITE:
            wreq = decode_value(payload, p.DebugWrite)
            enc = self._owned(wreq.enclave_id, owner)
            self.epc.debug_write(enc.built, wreq.linaddr, wreq.data)
            return encode_value(p.Empty(), p.Empty), None
        if msg_type in (p.Msg.RESTART, p.Msg.LOST_REASON):
            return self._power_request(msg_type, payload, owner), None
        decode_value(payload, p.Empty)  # SHUTDOWN
        self.stopping.set()
        return encode_value(p.Empty(), p.Empty), None

    def _power_request(self, msg_type: int, payload: bytes, owner: object) -> bytes:
        if msg_type == p.Msg.RESTART:
            decode_value(payload, p.Empty)
            return encode_value(self.restart(), p.Restarted)
        ref = decode_value(payload, p.EnclaveRef)
        with self._lock:
            lost = self._lost.get(ref.enclave_id)
        reason = lost[1] if lost is not None and lost[0] is owner else ""
        return encode_value(p.LostReason(reason), p.LostReason)

    def restart(self) -> p.Restarted:
        """A power cycle: every enclave and the warm process are killed, and a new
        Processor over the same fused secrets (new per-boot keys, empty EPC) serves on."""
        with self._lock:
            victims = list(self.enclaves.values())
            for enc in victims:
                self._lost[enc.enclave_id] = (enc.owner, POWER_LOST)
            warm, self._warm = self._warm, None
            self.boot += 1
            boot = self.boot
        if warm is not None:
            warm.discard()
        for enc in victims:
            self.unload(enc)
        self._apply_platform_update()
        pages, allow = self._cpu_args
        with self.epc.lock:
            self.epc = EPCManager(Processor(pages, self.identity.secrets, self.identity.cpusvn,
                                            launch_allowlist=allow))
        with self._warm_cond:
            if self._warmer_on and not self._closed:
                self._want_warm = True
                self._warm_cond.notify_all()
        return p.Restarted(len(victims), boot)

    def _apply_platform_update(self) -> None:
        """Take a recovered TCB from the platform file (same fused secrets only)."""
        if self._reload_identity is None:
            return
        try:
            fresh = self._reload_identity()
        except (EnclaveKitError, OSError) as exc:
            print(f"enclavekit device: keeping the current TCB: {exc}", file=sys.stderr)
            return
        if fresh.secrets != self.identity.secrets or fresh.name != self.identity.name:
            print("enclavekit device: the platform file now names other fused secrets; "
                  "keeping the current platform", file=sys.stderr)
            return
        self.identity = fresh

    def _owned(self, enclave_id: int, owner: object) -> Loaded:
        with self._lock:
            enc = self.enclaves.get(enclave_id)
        if enc is None or enc.owner is not owner:
            raise DeviceError(f"no enclave {enclave_id} was loaded on this connection")
        return enc

    def status(self) -> p.VMStatus:
        """The VM's EPC use and each enclave's pages."""
        with self._lock:
            loaded = list(self.enclaves.values())
        cpu = self.epc.cpu
        with self.epc.lock:
            free = cpu.free_pages()
            rows = [p.EnclaveStatus(e.enclave_id, e.name, e.mrenclave, e.mrsigner, e.debug,
                                    e.built.pages, self.epc.resident_pages(e.built), e.state,
                                    e.pid) for e in loaded]
        return p.VMStatus(self.identity.name, self.identity.size, cpu.epc_pages,
                          cpu.epc_pages - free, free, rows)

    def load(self, image: bytes, owner: object) -> tuple[p.LoadReply, list[int]]:
        """Build, EINIT and start an enclave; returns the reply and the host's ecall fd
        (and its switchless ring memfd when the manifest asks for switchless workers)."""
        stream, sigstruct = parse_image(image)
        built = self.epc.build(stream, sigstruct)
        try:
            boot = self._boot(built)
        except BaseException:
            self.epc.remove(built)
            raise
        with self._lock:
            eid = self._next_id
            self._next_id += 1
        boot.enclave_id = eid
        runtime_pin = json.loads(boot.manifest[12:]).get("runtime", {})
        warm = self._take_warm(runtime_pin.get("pin"), runtime_pin.get("python"))
        if warm is not None:
            boot.runtime_code = b""  # the warm process already holds the compiled runtime
            pid, priv_dev, call_host = warm.pid, warm.private, warm.call_host
        else:
            priv_dev, priv_enc = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            call_host, call_enc = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                pid = self._spawn(priv_enc.fileno(), call_enc.fileno())
            except BaseException:
                for s in (priv_dev, call_host, priv_enc, call_enc):
                    s.close()
                self.epc.remove(built)
                raise
            priv_enc.close()
            call_enc.close()
        try:
            frame = pack_frame(p.Msg.BOOT, 0, encode_value(boot, p.Boot))
        except BaseException:
            kill_and_reap(pid)
            for s in (priv_dev, call_host):
                s.close()
            self.epc.remove(built)
            raise
        name = json.loads(boot.manifest[12:]).get("name", "")
        enc = Loaded(eid, str(name), built, boot.mrenclave, boot.mrsigner, boot.debug,
                     boot.threads, pid, priv_dev, owner)
        with self._lock:
            self.enclaves[eid] = enc
        # BOOT (~300 KiB with the compiled runtime) is sent by the channel's thread: it fills
        # the socket buffer, and the enclave reads it only once its interpreter is up, while
        # the host can already be told the enclave id.
        workers = _switchless_workers(boot.manifest)
        ring = _ring_memfd(workers) if workers else None
        # the host's copy of the ring is made before the channel thread starts: that thread
        # closes ``ring`` when the enclave ends, which may be at once
        fds = [call_host.detach()] + ([os.dup(ring)] if ring is not None else [])
        threading.Thread(target=self._serve_private, args=(enc, frame, ring, workers),
                         daemon=True, name=f"enclave-{eid}").start()
        return p.LoadReply(eid, boot.mrenclave, boot.mrsigner, boot.debug, boot.threads,
                           workers), fds

    # ------------------------------------------------------------------ warm process

    def warm_pid(self, wait: float = 0.0) -> int | None:
        """The pid of the ready warm enclave process (waiting up to ``wait`` s), or None."""
        with self._warm_cond:
            self._warm_cond.wait_for(lambda: self._warm is not None or self._closed, wait)
            return None if self._warm is None else self._warm.pid

    def _take_warm(self, pin: object, python: object) -> _Warm | None:
        """The warm process if it loaded exactly ``pin`` for ``python`` and is alive."""
        with self._lock:
            warm = self._warm
            if warm is None or warm.pin != pin or warm.python != python:
                return None
            self._warm = None
            self._want_warm = True
            self._warm_cond.notify_all()
        if _alive(warm.pid):
            return warm
        warm.discard()  # it died: the caller spawns a cold process, the warmer a new one
        return None

    def _warmer(self) -> None:
        """Keep one warm enclave process ready until the device closes."""
        while True:
            with self._warm_cond:
                self._warm_cond.wait_for(lambda: self._want_warm or self._closed)
                if self._closed:
                    return
                self._want_warm = False
            warm: _Warm | None = None
            try:
                warm = self._start_warm()
            except Exception as exc:
                print(f"device: no warm enclave process ({type(exc).__name__}: {exc})",
                      file=sys.stderr, flush=True)
                continue
            with self._warm_cond:
                if not self._closed and self._warm is None:
                    self._warm, warm = warm, None
                    self._warm_cond.notify_all()
            if warm is not None:
                warm.discard()

    def _start_warm(self) -> _Warm:
        """Spawn an enclave process and send it WARM (the device's runtime pin)."""
        if self._runtime_root is None:
            self._runtime_root = runtime()[1]
        pin = runtime_files()
        python = "{}.{}".format(*sys.version_info[:2])
        warm_msg = p.Warm(json.dumps(pin, sort_keys=True, separators=(",", ":")).encode(),
                          python, self._runtime_root, compiled_runtime(pin, self._runtime_root))
        frame = pack_frame(p.Msg.WARM, 0, encode_value(warm_msg, p.Warm))
        priv_dev, priv_enc = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        call_host, call_enc = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = self._spawn(priv_enc.fileno(), call_enc.fileno())
        except BaseException:
            for s in (priv_dev, call_host):
                s.close()
            raise
        finally:
            priv_enc.close()
            call_enc.close()
        warm = _Warm(pid, priv_dev, call_host, pin, python)
        try:
            priv_dev.sendall(frame)  # returns once the process is up and reading it
        except BaseException:
            warm.discard()
            raise
        return warm

    def _boot(self, built: Built) -> p.Boot:
        """BOOT from the enclave's own pages and its SECS after EINIT."""
        head = self.epc.read(built, 0, 12)
        if head[:8] != b"EKMANIF1":
            raise InvalidStructure("enclave image", "the first page is not a measured manifest")
        mlen = int.from_bytes(head[8:12], "little")
        manifest_json = self.epc.read(built, 12, mlen)
        try:
            manifest: dict[str, Any] = json.loads(manifest_json)
        except ValueError as exc:
            raise InvalidStructure("enclave image", f"measured manifest is not JSON: {exc}") \
                from None
        bundle = self._bundle(built, -(-(12 + mlen) // 4096) * 4096)
        ident = self.epc.cpu.identity(built.secs_page)
        if self._runtime_root is None:
            self._runtime_root = runtime()[1]
        flags = int(ident.attributes.flags)
        pin = manifest.get("runtime", {}).get("pin", {})
        code = compiled_runtime(pin, self._runtime_root) if isinstance(pin, dict) else b""
        return p.Boot(
            enclave_id=0, manifest=head + manifest_json, bundle=bundle, mrenclave=ident.mrenclave,
            mrsigner=ident.mrsigner, isvprodid=ident.isvprodid, isvsvn=ident.isvsvn,
            attributes_flags=flags, attributes_xfrm=int(ident.attributes.xfrm),
            miscselect=int(ident.miscselect), threads=int(manifest.get("threads", 1)),
            heap_size=int(manifest.get("heap_size", 0)),
            stack_size=int(manifest.get("stack_size", 0)),
            debug=bool(flags & AttributeFlags.DEBUG), runtime_root=self._runtime_root,
            runtime_code=code,
        )

    def _bundle(self, built: Built, at: int) -> bytes:
        head = self.epc.read(built, at, _BUNDLE_HEAD)
        if head[:8] != b"EKBUNDL1":
            raise InvalidStructure("enclave image", "the bundle region does not start EKBUNDL1")
        pos, total = at + _BUNDLE_HEAD, 0
        for _ in range(int.from_bytes(head[8:12], "little")):
            plen = int.from_bytes(self.epc.read(built, pos, 2), "little")
            pos += 2 + plen
            total += int.from_bytes(self.epc.read(built, pos, 8), "little")
            pos += 40
        return self.epc.read(built, at, pos - at + total)

    def unload(self, enc: Loaded) -> None:
        """Stop the enclave's process and EREMOVE its pages (idempotent).

        A second caller (the enclave's channel thread seeing the process exit, racing a
        host's UNLOAD) returns only once the first has removed the pages.
        """
        with self._lock:
            if self.enclaves.pop(enc.enclave_id, None) is None:
                enc.removed.wait(UNLOAD_WAIT)
                return
            self._unloading[enc.enclave_id] = enc
        try:
            enc.state = "unloaded"
            with contextlib.suppress(OSError):
                enc.private.shutdown(socket.SHUT_RDWR)
            enc.private.close()
            kill_and_reap(enc.pid)
            self.epc.remove(enc.built)
        finally:
            with self._lock:
                self._unloading.pop(enc.enclave_id, None)
            enc.removed.set()

    def drop_owner(self, owner: object) -> None:
        """Unload every enclave a closed host connection loaded."""
        with self._lock:
            mine = [e for e in self.enclaves.values() if e.owner is owner]
        for enc in mine:
            self.unload(enc)
        with self._lock:
            for eid in [i for i, (o, _) in self._lost.items() if o is owner]:
                del self._lost[eid]

    def close(self) -> None:
        """Unload everything and stop the warm process."""
        with self._lock:
            every = list(self.enclaves.values())
            self._closed = True
            warm, self._warm = self._warm, None
            self._warm_cond.notify_all()
        if warm is not None:
            warm.discard()
        for enc in every:
            self.unload(enc)

    # ------------------------------------------------------------------ enclave channel

    def _serve_private(self, enc: Loaded, boot: bytes = b"", ring: int | None = None,
                       workers: int = 0) -> None:
        """Send BOOT (and SWITCHLESS with the ring), then serve EREPORT / EGETKEY for
        ``enc`` only; the identity is the channel's (RT-2)."""
        sock, last = enc.private, 0
        try:
            if boot:
                sock.sendall(boot)
            if ring is not None:
                fd, ring = ring, None  # _send closes it
                _send(sock, p.Msg.SWITCHLESS, 0, encode_value(p.SwitchlessSetup(workers),
                                                              p.SwitchlessSetup), 0, fd)
            while True:
                frame = recv_frame(sock, max_payload=4096)
                if frame is None:
                    break
                if frame.is_reply:
                    if frame.is_error:
                        break  # the runtime refused its BOOT
                    continue
                try:
                    if frame.request_id <= last:
                        raise ProtocolError(f"request id {frame.request_id} is not above "
                                            f"{last}: a replayed or reordered frame")
                    last = frame.request_id
                    out = encode_value(p.Data(self._enclave_request(enc, frame.msg_type,
                                                                    frame.payload)), p.Data)
                    flags = FLAG_REPLY
                except Exception as exc:
                    out, flags = encode_value(p.error_info(exc), p.ErrorInfo), \
                        FLAG_REPLY | FLAG_ERROR
                sock.sendall(pack_frame(frame.msg_type, frame.request_id, out, flags=flags))
        except (OSError, EnclaveKitError):
            pass
        if ring is not None:
            os.close(ring)
        if enc.state == "running":
            enc.state = "exited"
            self.unload(enc)

    def _enclave_request(self, enc: Loaded, msg_type: int, payload: bytes) -> bytes:
        secs = enc.built.secs_page
        if msg_type == p.Msg.EREPORT:
            req = decode_value(payload, p.EReportRequest)
            target = TargetInfo.from_bytes(req.targetinfo)
            with self.epc.lock:
                return self.epc.cpu.ereport(secs, target, req.reportdata).to_bytes()
        if msg_type == p.Msg.EGETKEY:
            kreq = KeyRequest.from_bytes(decode_value(payload, p.EGetKeyRequest).keyrequest)
            with self.epc.lock:
                return self.epc.cpu.egetkey(secs, kreq)
        if msg_type in COUNTER_MESSAGES:
            return serve_counter(self.counters, enc.mrsigner, msg_type, payload)
        raise ProtocolError(f"{_msg_name(msg_type)} is not served on an enclave's channel")


# --------------------------------------------------------------------------- the server


def _send(conn: socket.socket, msg_type: int, request_id: int, payload: bytes, flags: int,
          fd: int | list[int] | None) -> None:
    frame = pack_frame(msg_type, request_id, payload, flags=flags)
    if fd is None:
        conn.sendall(frame)
        return
    fds = [fd] if isinstance(fd, int) else fd
    try:
        sent = socket.send_fds(conn, [frame], fds)
        if sent < len(frame):
            conn.sendall(frame[sent:])
    finally:
        for one in fds:
            os.close(one)


def _switchless_workers(manifest_blob: bytes) -> int:
    value = json.loads(manifest_blob[12:]).get("switchless_workers", 0)
    return value if type(value) is int and value > 0 else 0


def _ring_memfd(workers: int) -> int:
    """A zeroed switchless ring memfd (``wire.ring``), sealed so that neither the host nor
    the enclave can shrink or grow it under the other's mapping."""
    fd = os.memfd_create("enclavekit-switchless", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        size = ring_size(workers)
        os.ftruncate(fd, size)
        os.pwrite(fd, ring_header(workers), 0)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def serve_connection(device: Device, conn: socket.socket) -> None:
    """Serve one host connection until it closes; then unload what it loaded."""
    owner, last = object(), 0
    try:
        while not device.stopping.is_set():
            try:
                frame = recv_frame(conn)
            except ProtocolError as exc:
                _send(conn, 0, 0, encode_value(p.error_info(exc), p.ErrorInfo),
                      FLAG_REPLY | FLAG_ERROR, None)
                break
            if frame is None:
                break
            fd: int | list[int] | None = None
            try:
                if frame.is_reply:
                    raise ProtocolError("a reply frame was sent as a request")
                if frame.request_id <= last:
                    raise ProtocolError(f"request id {frame.request_id} is not above {last}: "
                                        "a replayed or reordered frame")
                last = frame.request_id
                out, fd = device.handle(frame.msg_type, frame.payload, owner)
                flags = FLAG_REPLY
            except Exception as exc:
                out, flags = encode_value(p.error_info(exc), p.ErrorInfo), FLAG_REPLY | FLAG_ERROR
            _send(conn, frame.msg_type, frame.request_id, out, flags, fd)
    except OSError:
        pass
    finally:
        conn.close()
        device.drop_owner(owner)


def _parent_watch(device: Device, ppid: int) -> None:
    """Stop the device when process ``ppid`` is gone (or we were re-parented)."""
    was_child = os.getppid() == ppid
    while not device.stopping.wait(0.1):
        if was_child and os.getppid() != ppid:
            break
        try:
            os.kill(ppid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
    device.stopping.set()


def _lock_vm(vm_dir: Path, name: str) -> int:
    fd = os.open(vm_dir / "device.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise VMError(f"VM {name!r} is already served by another device (one started "
                          f"with 'enclavekit vm start {name}', stopped with 'enclavekit vm stop "
                          f"{name}', or another program's private device)") from None
        raise
    return fd


def _listen(path: str) -> socket.socket:
    if os.path.exists(path):
        os.unlink(path)  # a stale socket of a dead device (we hold the VM lock)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.settimeout(0.1)
    return sock


def _not_dumpable() -> None:
    """PR_SET_DUMPABLE 0: the host's user cannot ptrace or read the device's memory (RT-1)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)


def run(args: argparse.Namespace) -> int:
    """Serve until SHUTDOWN, SIGTERM or the parent's death."""
    store = PlatformStore(Path(args.data_dir).resolve())
    identity = store.load(args.vm)
    vm_dir = store.path(args.vm).parent
    socket_path = os.path.abspath(args.socket)
    lock_fd = _lock_vm(vm_dir, args.vm)
    remove_stale_temps(vm_dir)  # platform.json, counters.json, device.json
    if args.user:
        uid, gid = users.resolve(args.user)
        users.hand_over(vm_dir, uid, gid)
        users.drop_privileges(uid, gid)
    allow = frozenset(bytes.fromhex(h) for h in args.allow_signer) if args.allow_signer else None
    device = Device(identity, epc_pages=args.epc_pages, allow_signers=allow,
                    counters=CounterStore(vm_dir / "counters.json"),
                    warm=not args.no_warm, reload_identity=lambda: store.load(args.vm))
    _not_dumpable()
    signal.signal(signal.SIGTERM, lambda *_: device.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: device.stopping.set())
    os.chdir("/")
    listener = _listen(socket_path)
    if args.user:
        os.chmod(socket_path, users.SOCKET_MODE)  # hosts of other users connect
    info = vm_dir / "device.json"
    if args.publish:
        atomic_write(info, json.dumps({"pid": os.getpid(), "socket": socket_path}).encode(),
                     mode=users.INFO_MODE if args.user else 0o600)
    if args.parent_pid:
        threading.Thread(target=_parent_watch, args=(device, args.parent_pid),
                         daemon=True).start()
    try:
        while not device.stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=serve_connection, args=(device, conn), daemon=True).start()
    finally:
        listener.close()
        for path in (socket_path, str(info) if args.publish else None):
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        device.close()
        os.close(lock_fd)
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The device's command line."""
    ap = argparse.ArgumentParser(prog="python -m enclavekit.vm.device",
                                 description="Serve one VM's SGX device on a Unix socket.")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--vm", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--parent-pid", type=int, default=0)
    ap.add_argument("--publish", action="store_true",
                    help="write <vm dir>/device.json (pid and socket) for 'VM.open'")
    ap.add_argument("--allow-signer", action="append", default=[],
                    help="launch allow-list: an MRSIGNER in hex (repeatable)")
    ap.add_argument("--no-warm", action="store_true",
                    help="do not keep an enclave process pre-started (every LOAD cold-starts)")
    ap.add_argument("--user", default="",
                    help="run as this unprivileged user after reading the platform (root only)")
    ap.add_argument("--epc-pages", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors are one line on stderr and exit 1."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except (EnclaveKitError, OSError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
