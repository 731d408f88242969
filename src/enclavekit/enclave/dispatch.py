"""Ecalls and ocalls inside the enclave: declarations and the TCS-bounded dispatcher.

* ``@ecall`` registers a function the host may call by its exact name; its type hints are
  the boundary's contract (``wire.CallSignature``). Names starting with ``_`` cannot be
  declared, and the host's name is looked up exactly, so ``__init__``, look-alikes, ocall
  names and anything undeclared get ``UnknownEcall`` before any enclave code runs (IF-1).
* ``@ocall`` declares a host function; calling the stub inside an ecall sends an OCALL
  frame with a fresh request id and waits for that reply only. Its result is decoded
  against the declared return hint, so a hostile result is refused with
  ``EcallArgumentError`` inside the enclave (IF-7). Replies with no pending ocall or a
  wrong id are dropped and counted; the real pending ocall is unaffected (IF-11).
* At most ``threads`` (TCS) ecalls run at once; one more is refused with ``EcallError``
  "all N TCS are busy", never queued (IF-12).
* Failures reach the host as ``ErrorInfo``: enclavekit errors keep their class, anything
  else becomes ``EcallError("<Type>: <message>")``; debug enclaves add the trusted
  traceback, production ones never do (IF-8). ``MemoryError`` becomes
  ``EcallError("enclave heap exhausted (heap_size N)")`` and the enclave keeps serving.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import EcallArgumentError, EcallError, EnclaveKitError, ProtocolError, UnknownEcall
from ..vm.protocol import (
    Call,
    CallResult,
    ErrorInfo,
    InterfaceReply,
    Msg,
    rebuild_error,
)
from ..wire import (
    FLAG_ERROR,
    FLAG_REPLY,
    CallSignature,
    Frame,
    FrameReader,
    decode_value,
    encode_value,
    send_frame,
)
from ..wire.schema import signature_schema

__all__ = ["Dispatcher", "Registry", "ecall", "ocall", "ocall_outcome", "serve_ocalls_with"]

F = TypeVar("F", bound=Callable[..., Any])
_OCALL_IDS = itertools.count(1 << 62)  # distinct from any id the host uses for ecalls
_ctx = threading.local()
_NO_ARGS = encode_value({}, dict[str, int])
"""The encoded arguments of a call without any (an empty map)."""


@dataclass
class Registry:
    """Declared ecalls and ocalls (one per enclave; tests make their own)."""

    ecalls: dict[str, tuple[CallSignature, Callable[..., Any]]] = field(default_factory=dict)
    ocalls: dict[str, CallSignature] = field(default_factory=dict)

    def _name(self, fn: Callable[..., Any], kind: str) -> str:
        name = getattr(fn, "__name__", "")
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise TypeError(f"@{kind} {name!r}: names must be identifiers not starting with '_'")
        if name in self.ecalls or name in self.ocalls:
            raise TypeError(f"@{kind} {name!r} is already declared")
        return name

    def ecall(self, fn: F) -> F:
        """Declare ``fn`` as an ecall (type hints required)."""
        name = self._name(fn, "ecall")
        self.ecalls[name] = (CallSignature.from_function(fn, name=name, kind="ecall"), fn)
        return fn

    def ocall(self, fn: F) -> F:
        """Declare an ocall the host implements; calling the stub performs it."""
        name = self._name(fn, "ocall")
        sig = CallSignature.from_function(fn, name=name, kind="ocall")
        self.ocalls[name] = sig

        def stub(*args: object, **kwargs: object) -> object:
            disp: Any = getattr(_ctx, "dispatcher", None)
            if disp is None:
                raise EcallError(f"ocall {name!r} can only be made while an ecall is running")
            return disp.ocall(sig, args, kwargs)

        stub.__name__ = name
        stub.__qualname__ = getattr(fn, "__qualname__", name)
        stub.__doc__ = fn.__doc__
        stub.__wrapped__ = fn  # type: ignore[attr-defined]
        return stub  # type: ignore[return-value]


REGISTRY = Registry()
ecall = REGISTRY.ecall
ocall = REGISTRY.ocall


class _Pending:
    __slots__ = ("event", "frame")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.frame: Frame | None = None


class Dispatcher:
    """Serves INTERFACE and ECALL frames on the ecall socket; sends OCALLs from ecalls."""

    def __init__(self, sock: socket.socket, *, threads: int, debug: bool, heap_size: int = 0,
                 registry: Registry | None = None, startup_error: str | None = None) -> None:
        self.sock = sock
        self.threads = threads
        self.debug = debug
        self.heap_size = heap_size
        self.registry = registry if registry is not None else REGISTRY
        self.startup_error = startup_error
        self.send_lock = threading.Lock()
        self.lock = threading.Lock()
        self._tcs: queue.SimpleQueue[None] = queue.SimpleQueue()  # one token per free TCS
        for _ in range(threads):
            self._tcs.put(None)
        self.pending: dict[int, _Pending] = {}
        self.refused_replies = 0
        self.closed = False
        self.lead = threading.Lock()  # held by the one thread reading the socket (leader)
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self._none_reply: dict[str, bytes] = {}  # ecall -> its reply payload for None

    # ----------------------------------------------------------------- sending

    def _send(self, msg: int, rid: int, payload: bytes, flags: int = 0) -> None:
        with self.send_lock:
            send_frame(self.sock, msg, rid, payload, flags=flags)

    def _fail(self, msg: int, rid: int, exc: BaseException) -> None:
        info = self._error_info(exc)
        with contextlib.suppress(OSError):
            self._send(msg, rid, encode_value(info, ErrorInfo), FLAG_REPLY | FLAG_ERROR)

    def _error_info(self, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, MemoryError):
            return ErrorInfo("EcallError", f"enclave heap exhausted (heap_size {self.heap_size})")
        if isinstance(exc, EnclaveKitError):
            name, message = type(exc).__name__, str(exc)
            code = int(getattr(exc, "code", 0) or 0)
        else:
            name, message, code = "EcallError", f"{type(exc).__name__}: {exc}", 0
        if self.debug and exc.__traceback__ is not None:
            trace = "".join(traceback.format_exception(exc)).rstrip()
            message = f"{message}\n--- enclave traceback (debug enclave) ---\n{trace}"
        return ErrorInfo(name, message, code)

    # ----------------------------------------------------------------- serving

    def serve(self) -> None:
        """Answer frames until the host closes the ecall socket.

        Leader/follower: ``threads`` + 1 threads take turns reading the socket. The reader
        (leader) answers INTERFACE, ocall replies and refusals itself; for an ECALL it
        claims a TCS, hands the socket to the next thread and runs the ecall on its own
        stack, so the fast path has no thread hand-off between receiving the ECALL and
        sending its reply. One thread more than TCS keeps a reader while every TCS is busy
        (ocall replies and "all N TCS are busy" refusals still flow).
        """
        for i in range(self.threads):
            threading.Thread(target=self._follow, daemon=True, name=f"tcs-{i}").start()
        self._follow()

    def _follow(self) -> None:
        try:
            while True:
                with self.lead:
                    if self.closed:
                        return
                    frame = self._next_frame()
                    if frame is None:
                        self.close()
                        return
                    claimed = self._claim(frame)
                if claimed is not None:
                    self._run(frame.request_id, *claimed)
        except BaseException:
            self.close()
            raise

    def _next_frame(self) -> Frame | None:
        """The next frame from the host: one ``recv`` fills the buffer with what arrived."""
        while not self.frames:
            try:
                data = _spin_recv(self.sock)
                if not data:
                    return None
                self.frames = self.reader.feed(data)
            except (OSError, ProtocolError):
                return None
            self.frames.reverse()
        return self.frames.pop()

    def _claim(self, frame: Frame) -> tuple[tuple[CallSignature, Callable[..., Any]],
                                            bytes] | None:
        """(ecall, args) when ``frame`` is an ECALL that got a TCS; else answer it here."""
        if frame.msg_type == Msg.ECALL and not frame.is_reply:
            try:
                return self._ecall(frame)
            except Exception as exc:
                self._fail(frame.msg_type, frame.request_id, exc)
                return None
        self.handle(frame)
        return None

    def close(self) -> None:
        """Stop serving: wake every pending ocall with a failure."""
        with self.lock:
            self.closed = True
            pending = list(self.pending.values())
        for p in pending:
            p.event.set()

    def handle(self, frame: Frame) -> None:
        """One frame from the host."""
        if frame.is_reply:
            self._ocall_reply(frame)
            return
        try:
            if frame.msg_type == Msg.INTERFACE:
                self._interface(frame)
            elif frame.msg_type == Msg.ECALL:
                claimed = self._ecall(frame)
                threading.Thread(target=self._run, args=(frame.request_id, *claimed),
                                 daemon=True).start()
            else:
                raise ProtocolError(f"message type {frame.msg_type} is not served on the "
                                    "ecall socket (expected INTERFACE or ECALL)")
        except Exception as exc:
            self._fail(frame.msg_type, frame.request_id, exc)

    def _interface(self, frame: Frame) -> None:
        if self.startup_error:
            raise EcallError(self.startup_error)
        reply = InterfaceReply(
            [signature_schema(s) for s, _ in self.registry.ecalls.values()],
            [signature_schema(s) for s in self.registry.ocalls.values()])
        self._send(Msg.INTERFACE, frame.request_id, encode_value(reply, InterfaceReply),
                   FLAG_REPLY)

    def _ecall(self, frame: Frame) -> tuple[tuple[CallSignature, Callable[..., Any]], bytes]:
        """Check an ECALL and claim a TCS for it (the caller runs it)."""
        return self.claim_call(decode_value(frame.payload, Call, what="ECALL"))

    def claim_call(self, call: Call) -> tuple[tuple[CallSignature, Callable[..., Any]], bytes]:
        """Look up a decoded ECALL's ecall and claim a TCS for it (the caller runs it)."""
        found = self.lookup(call)
        self.claim_tcs()
        return found

    def lookup(self, call: Call) -> tuple[tuple[CallSignature, Callable[..., Any]], bytes]:
        """A decoded ECALL's declared ecall and its encoded arguments, else ``UnknownEcall``
        (or the app's start-up failure). The same ``call`` always gives the same answer."""
        if self.startup_error:
            raise EcallError(self.startup_error)
        entry = self.registry.ecalls.get(call.name)
        if entry is None or type(call.name) is not str:
            raise UnknownEcall(f"no ecall named {call.name[:80]!r} is declared by this enclave "
                               f"(declared: {', '.join(sorted(self.registry.ecalls)) or 'none'})")
        return entry, call.args

    def claim_tcs(self) -> None:
        """Claim a TCS for an ecall about to run (``execute`` frees it), or refuse."""
        if self.closed:
            raise EcallError("the enclave is shutting down")
        try:
            self._tcs.get_nowait()
        except queue.Empty:
            raise EcallError(f"all {self.threads} TCS are busy; retry when an ecall returns "
                             "(the manifest's 'threads' bounds concurrent ecalls)") from None

    def _run(self, rid: int, entry: tuple[CallSignature, Callable[..., Any]],
             args: bytes) -> None:
        payload, flags = self.execute(entry, args, self)
        with contextlib.suppress(OSError):
            self._send(Msg.ECALL, rid, payload, flags)

    def execute(self, entry: tuple[CallSignature, Callable[..., Any]], args: bytes,
                ocalls: Any) -> tuple[bytes, int]:
        """Run a claimed ecall; its reply payload and flags. The TCS is freed on return;
        ``ocalls`` performs the ecall's ocalls (this dispatcher or a switchless worker), or
        is None when this thread's ocall context is already set (a switchless worker sets
        it once for its thread with :func:`serve_ocalls_with`)."""
        sig, fn = entry
        if ocalls is not None:
            _ctx.dispatcher = ocalls
        try:
            if args == _NO_ARGS and not sig.parameters:  # nothing to decode
                result = fn()
            else:
                bound = sig.decode_args(args)
                result = fn(*bound.args, **bound.kwargs)
            payload = self._none_reply.get(sig.name) if result is None else None
            if payload is None:
                try:
                    data = sig.encode_result(result)
                except EcallArgumentError as exc:
                    detail = f" ({exc})" if self.debug else ""
                    raise EcallError(f"ecall {sig.name!r} returned a value that does not match "
                                     f"its declared return type{detail}") from None
                payload = encode_value(CallResult(data), CallResult)
                if result is None:  # the same bytes every time: kept for the next return
                    self._none_reply[sig.name] = payload
            flags = FLAG_REPLY
        except BaseException as exc:  # every failure goes back typed
            payload = encode_value(self._error_info(exc), ErrorInfo)
            flags = FLAG_REPLY | FLAG_ERROR
        finally:
            if ocalls is not None:
                _ctx.dispatcher = None
            self._tcs.put(None)  # the TCS is free before the host can see the reply
        return payload, flags

    # ----------------------------------------------------------------- ocalls

    def ocall(self, sig: CallSignature, args: tuple[object, ...],
              kwargs: dict[str, object]) -> object:
        """Perform an ocall from the current ecall; the result is checked as hostile input."""
        payload = encode_value(Call(sig.name, sig.encode_args(args, kwargs)), Call)
        rid = next(_OCALL_IDS)
        pending = _Pending()
        with self.lock:
            if self.closed:
                raise EcallError(f"ocall {sig.name!r}: the host closed the ecall socket")
            self.pending[rid] = pending
        try:
            self._send(Msg.OCALL, rid, payload)
            pending.event.wait()
        finally:
            with self.lock:
                self.pending.pop(rid, None)
        frame = pending.frame
        if frame is None:
            raise EcallError(f"ocall {sig.name!r}: the host closed the ecall socket")
        return ocall_outcome(sig, frame)

    def _ocall_reply(self, frame: Frame) -> None:
        with self.lock:
            pending = self.pending.get(frame.request_id)
            if pending is None or pending.frame is not None or frame.msg_type != Msg.OCALL:
                self.refused_replies += 1  # IF-11: unsolicited, repeated or misdirected
                return
            pending.frame = frame
        pending.event.set()


def serve_ocalls_with(ocalls: Any) -> None:
    """Make ``ocalls`` perform the ocalls of every ecall this thread runs (a thread that
    only ever runs ecalls for one lane; ``execute(..., ocalls=None)`` then keeps it)."""
    _ctx.dispatcher = ocalls


def ocall_outcome(sig: CallSignature, frame: Frame) -> object:
    """An ocall's reply frame as the declared result (hostile input: checked), or raise."""
    if frame.is_error:
        raise rebuild_error(decode_value(frame.payload, ErrorInfo,
                                         what=f"ocall {sig.name!r} error"))
    result = decode_value(frame.payload, CallResult, what=f"ocall {sig.name!r} reply")
    return sig.decode_result(result.result)


SPIN = 50e-6
"""Seconds the reading thread polls the ecall socket before blocking (bounded busy wait)."""


def _spin_recv(sock: socket.socket) -> bytes:
    """``recv`` after at most :data:`SPIN` seconds of non-blocking polls (the next request
    of a host calling in a loop usually arrives within that, saving a scheduler wake-up)."""
    deadline = time.perf_counter() + SPIN
    while True:
        try:
            return sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if time.perf_counter() > deadline:
                return sock.recv(1 << 16)
