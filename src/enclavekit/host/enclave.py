"""A loaded enclave on the host: typed ecall proxies, ocall service, debug access.

``enclave.ecalls.NAME(...)`` encodes the arguments with the signature the enclave declared
(fetched once with INTERFACE), sends one ECALL frame on the enclave's ecall socket and
waits for its reply; OCALL frames arriving meanwhile are served by the host functions
registered for them (their arguments decoded against the ocall's declared types). Threads
may call one enclave at once — up to its TCS count run together, one more is refused by
the enclave ("all N TCS are busy"); ``enclave.aecalls.NAME(...)`` runs the same call in a
worker thread for asyncio code.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import EcallError, EnclaveLost, ProtocolError, UnknownEcall
from ..vm import protocol as p
from ..wire import FLAG_ERROR, FLAG_REPLY, CallSignature, Frame, FrameReader, pack_frame
from ..wire.schema import signature_from_schema
from ..wire.values import decode_value, encode_value

if TYPE_CHECKING:
    from .switchless import SwitchlessRing

_EMPTY = encode_value(p.Empty(), p.Empty)
_RECV = 1 << 16
SPIN = 50e-6
"""Seconds a caller polls its ecall socket before blocking (see :func:`_spin_recv`)."""


class Loader(Protocol):
    """What an enclave handle needs of the VM handle that loaded it
    (:class:`enclavekit.host.vm.VM` is one): unload, EDBGRD, why the enclave was lost, and
    the built-in ocalls (quoting) every enclave may make."""

    def _unload(self, enclave_id: int) -> None: ...

    def _debug_read(self, enclave_id: int, linaddr: int, size: int) -> bytes: ...

    def _lost_reason(self, enclave_id: int) -> str: ...

    def _builtin_ocall(self, name: str) -> tuple[CallSignature, Callable[..., Any]] | None: ...


class Enclave:
    """A loaded enclave; a context manager whose exit unloads it."""

    def __init__(self, vm: Loader, reply: p.LoadReply, sock: socket.socket, name: str,
                 ocalls: Mapping[str, Callable[..., Any]] | None = None,
                 switchless: SwitchlessRing | None = None) -> None:
        self._vm = vm
        self._switchless = switchless
        self.enclave_id = reply.enclave_id
        self.mrenclave = reply.mrenclave
        self.mrsigner = reply.mrsigner
        self.debug = reply.debug
        self.threads = reply.threads
        self.name = name
        self._sock = sock
        self._ocall_fns = dict(ocalls or {})
        self._lock = threading.RLock()  # lifecycle and the one-time INTERFACE fetch
        self._state = threading.Condition()  # pending replies, ids, loss
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()  # one reader at a time (leader/follower)
        self._pending: dict[int, Frame | None] = {}
        self._ocalls: deque[Frame] = deque()
        self._reader = FrameReader()
        self._ids = itertools.count(1)
        self._ecall_sigs: dict[str, CallSignature] | None = None
        self._ocall_sigs: dict[str, CallSignature] = {}
        self._lost: str | None = None
        self._lost_gone = True
        self._closed = False
        self.ecalls = _Calls(self, asynchronous=False)
        self.aecalls = _Calls(self, asynchronous=True)

    def __repr__(self) -> str:
        return (f"<Enclave {self.enclave_id} {self.name!r} mrenclave={self.mrenclave.hex()[:16]}"
                f"… {'debug' if self.debug else 'production'}>")

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Unload the enclave (its process stops and its EPC pages are removed)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sock.close()
        self._vm._unload(self.enclave_id)

    def debug_read(self, linaddr: int, size: int) -> bytes:
        """EDBGRD ``size`` bytes at offset ``linaddr`` (refused for production enclaves)."""
        return self._vm._debug_read(self.enclave_id, linaddr, size)

    # ------------------------------------------------------------------ the interface

    def signatures(self) -> dict[str, CallSignature]:
        """The ecalls the enclave declares (fetched once with INTERFACE)."""
        if self._ecall_sigs is None:
            with self._lock:
                if self._ecall_sigs is None:
                    frame = self._exchange(p.Msg.INTERFACE, _EMPTY)
                    reply = decode_value(frame.payload, p.InterfaceReply)
                    ocalls = [signature_from_schema(s) for s in reply.ocalls]
                    self._ocall_sigs = {s.name: s for s in ocalls}
                    self._ecall_sigs = {s.name: s for s in
                                        (signature_from_schema(e) for e in reply.ecalls)}
        return self._ecall_sigs

    def _signature(self, name: str) -> CallSignature:
        sig = self.signatures().get(name)
        if sig is None:
            known = ", ".join(sorted(self.signatures())) or "none"
            raise UnknownEcall(f"enclave {self.name!r} declares no ecall {name!r} "
                               f"(its ecalls: {known})")
        return sig

    def call(self, name: str, args: tuple[Any, ...] = (),
             kwargs: Mapping[str, Any] | None = None) -> Any:
        """Make ecall ``name`` (what ``ecalls.NAME(*args, **kwargs)`` does)."""
        sig = self._signature(name)
        ring = self._switchless  # switchless when a lane is free, else the socket
        if ring is not None:
            return ring.ecall(self, name, sig, *args, **(kwargs or {}))
        return self._socket_call(name, sig, args, kwargs)

    def _socket_call(self, name: str, sig: CallSignature, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any] | None) -> Any:
        data = sig.encode_args(args, kwargs)
        payload = encode_value(p.Call(name, data), p.Call)
        frame = self._exchange(p.Msg.ECALL, payload)
        return sig.decode_result(decode_value(frame.payload, p.CallResult).result)

    # ------------------------------------------------------------------ frames

    def _claim_id(self, *, pending: bool) -> int:
        """A new request id for a call on this enclave (refused once it is closed or lost);
        ``pending`` registers it for a reply on the ecall socket.

        Ids come from one counter (``next`` on it is atomic), so a switchless call, which
        registers nothing, takes its id straight from it (``SwitchlessRing.ecall``) and
        comes here only to raise the closed or lost error.
        """
        with self._state:
            if self._closed:
                raise EcallError(f"enclave {self.enclave_id} ({self.name}) is closed; load it "
                                 "again")
            if self._lost is not None:
                raise EnclaveLost(self._lost)
            rid = next(self._ids)
            if pending:
                self._pending[rid] = None
            return rid

    def _exchange(self, msg_type: int, payload: bytes) -> Frame:
        """Send one request and wait for its reply, serving ocalls meanwhile.

        Several threads may call at once (up to the enclave's TCS count run together):
        whichever waiting thread holds the read lock reads the socket and hands replies to
        their callers; ocalls are queued and served by whichever waiting thread is free.
        """
        rid = self._claim_id(pending=True)
        try:
            with self._send_lock:
                self._send(pack_frame(msg_type, rid, payload))
            while True:
                ocall = None
                with self._state:
                    frame = self._pending.get(rid)
                    if frame is not None:
                        break
                    if self._lost is not None:
                        raise EnclaveLost(self._lost) if self._lost_gone else ProtocolError(
                            self._lost)
                    if self._ocalls:
                        ocall = self._ocalls.popleft()
                    elif not self._read_lock.acquire(blocking=False):
                        self._state.wait(0.05)
                        continue
                if ocall is not None:
                    self._serve_ocall(ocall)  # any waiting thread serves a queued ocall
                    continue
                try:
                    frames = self._read_frames()
                finally:
                    self._read_lock.release()
                self._route(frames)
        finally:
            with self._state:
                self._pending.pop(rid, None)
        if frame.msg_type != msg_type:
            raise self._broken(f"reply {rid} answers message type {frame.msg_type}, not "
                               f"{msg_type}")
        if frame.is_error:
            raise p.rebuild_error(decode_value(frame.payload, p.ErrorInfo))
        return frame

    def _route(self, frames: list[Frame]) -> None:
        """Replies go to the threads waiting for them; ocalls to the queue waiting threads
        serve (so two ocalls read together are served by two threads, not one after the
        other)."""
        with self._state:
            for frame in frames:
                if frame.is_reply:
                    if self._pending.get(frame.request_id, False) is not None:
                        raise self._broken(f"reply {frame.request_id} to a request that was "
                                           "not made")
                    self._pending[frame.request_id] = frame
                elif frame.msg_type == p.Msg.OCALL:
                    self._ocalls.append(frame)
                else:
                    raise self._broken(f"unexpected message type {frame.msg_type}")
            self._state.notify_all()

    def _serve_ocall(self, frame: Frame) -> None:
        out = self._ocall_reply(frame)
        with self._send_lock:
            self._send(out)

    def _ocall_reply(self, frame: Frame) -> bytes:
        """Run the host function an OCALL names; its reply frame (typed error on failure)."""
        try:
            call = decode_value(frame.payload, p.Call)
            sig = self._ocall_sigs.get(call.name)
            fn = self._ocall_fns.get(call.name)
            if sig is None:  # the built-in quoting ocalls every enclave may make
                sig, fn = self._vm._builtin_ocall(call.name) or (None, None)
            if sig is None or fn is None:
                raise UnknownEcall(f"ocall {call.name!r} is not "
                                   f"{'registered on the host' if sig else 'declared'}")
            got = sig.decode_args(call.args)
            out = encode_value(p.CallResult(sig.encode_result(fn(*got.args, **got.kwargs))),
                               p.CallResult)
            flags = FLAG_REPLY
        except Exception as exc:
            out, flags = encode_value(p.error_info(exc), p.ErrorInfo), FLAG_REPLY | FLAG_ERROR
        return pack_frame(p.Msg.OCALL, frame.request_id, out, flags=flags)

    def _send(self, data: bytes) -> None:
        if self._lost is not None:
            raise EnclaveLost(self._lost)
        try:
            self._sock.sendall(data)
        except OSError:
            raise self._gone() from None

    def _read_frames(self) -> list[Frame]:
        """Every frame that has arrived (at least one); the caller holds the read lock."""
        try:
            data = _spin_recv(self._sock)
        except OSError:
            data = b""
        if not data:
            raise self._gone()
        try:
            return self._reader.feed(data)
        except ProtocolError as exc:
            raise self._broken(str(exc)) from None

    def _gone(self) -> EnclaveLost:
        why = self._vm._lost_reason(self.enclave_id) if self._lost is None else ""
        with self._state:
            if self._lost is not None and self._lost_gone:
                return EnclaveLost(self._lost)
            self._lost = (f"enclave {self.enclave_id} ({self.name}) "
                          f"{why or 'is gone: its process exited or its device stopped'}; "
                          "load it again")
            self._lost_gone = True
            self._state.notify_all()
        return EnclaveLost(self._lost)

    def _broken(self, detail: str) -> ProtocolError:
        with self._state:
            self._lost = f"enclave {self.enclave_id} ({self.name}) broke the protocol: {detail}"
            self._lost_gone = False
            self._state.notify_all()
        self._sock.close()
        return ProtocolError(self._lost)


def _spin_recv(sock: socket.socket) -> bytes:
    """``recv`` that first polls without blocking for at most :data:`SPIN` seconds.

    Bounded busy polling: a short ecall's reply usually arrives within a few tens of
    microseconds, and catching it without sleeping saves the scheduler's wake-up latency on
    this side; past the bound the thread blocks as usual (measured in bench/bench_ecall.py).
    """
    deadline = time.perf_counter() + SPIN
    while True:
        try:
            return sock.recv(_RECV, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if time.perf_counter() > deadline:
                return sock.recv(_RECV)


class _Calls:
    """``enclave.ecalls`` / ``enclave.aecalls``: one typed function per declared ecall."""

    def __init__(self, enclave: Enclave, *, asynchronous: bool) -> None:
        self._enclave = enclave
        self._async = asynchronous
        self._made: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        fn = self._made.get(name)
        if fn is None:
            fn = self._make(name, self._enclave._signature(name))
            self._made[name] = fn
        return fn

    def __dir__(self) -> list[str]:
        return sorted(self._enclave.signatures())

    def _make(self, name: str, sig: CallSignature) -> Callable[..., Any]:
        enclave = self._enclave
        call = enclave.call
        if self._async:
            async def proxy(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(call, name, args, kwargs)
            fn: Callable[..., Any] = proxy
        elif enclave._switchless is not None:  # a free lane first, else the socket
            fn = functools.partial(enclave._switchless.ecall, enclave, name, sig)
        else:
            def sync_proxy(*args: Any, **kwargs: Any) -> Any:
                return call(name, args, kwargs)
            fn = sync_proxy
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = (f"Ecall {name!r} of enclave {enclave.name!r} "
                      f"(MRENCLAVE {enclave.mrenclave.hex()[:16]}…).")
        fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            list(sig.parameters), return_annotation=sig.result)
        return fn
