"""Switchless ecalls on the host: the caller's side of the shared ring.

An enclave whose measured manifest sets ``switchless_workers = N`` comes with a ring
memfd (second descriptor of the LOAD reply, see ``wire.ring``). ``enclave.ecalls.NAME``
then claims a free lane (a non-blocking lock per lane), writes the ECALL frame into it and
spins for the reply - no system call on the fast path (a call without arguments reuses
its encoded payload; small frames are packed straight into the mailbox). OCALL frames that
arrive meanwhile are served by the waiting caller (it is the lane's ocall worker) with the
same code as the socket path, and the reply goes back through the lane. When every lane
is busy the call takes the ordinary socket path. A lane that saw a malformed frame, a
wrong request id or an interrupted exchange is retired (later calls use the other lanes or
the socket); a dead enclave is noticed by a non-blocking peek at its ecall socket while
waiting.
"""

from __future__ import annotations

import mmap
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from ..errors import EcallError, EnclaveLost, ProtocolError
from ..vm import protocol as p
from ..wire import FLAG_ERROR, FLAG_REPLY, CallSignature, Frame, decode_value, encode_value
from ..wire.frame import DEFAULT_MAX_PAYLOAD, HEADER_SIZE
from ..wire.ring import Lane, Ring, ring_size

__all__ = ["Caller", "SwitchlessRing"]

LIMIT = DEFAULT_MAX_PAYLOAD + HEADER_SIZE


_NONE_RESULT = encode_value(p.CallResult(encode_value(None, type(None))), p.CallResult)
"""The reply payload of an ecall that returned None."""
_CACHE = 256
_ECALL = int(p.Msg.ECALL)


class Caller(Protocol):
    """The enclave handle a ring's call serves (:class:`enclavekit.host.enclave.Enclave` is
    one): the socket path it falls back to and serves ocalls with, its request ids, its
    closed/lost state and its ecall socket (peeked to notice a dead enclave)."""

    @property
    def enclave_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def _closed(self) -> bool: ...
    @property
    def _lost(self) -> str | None: ...
    @property
    def _ids(self) -> Iterator[int]: ...
    @property
    def _sock(self) -> socket.socket: ...

    def _socket_call(self, name: str, sig: CallSignature, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any] | None) -> Any: ...

    def _claim_id(self, *, pending: bool) -> int: ...

    def _ocall_reply(self, frame: Frame) -> bytes: ...

    def _gone(self) -> EnclaveLost: ...


class SwitchlessRing:
    """The host's mapping of an enclave's switchless ring and its lane locks."""

    def __init__(self, fd: int, workers: int) -> None:
        """Map the ring memfd ``fd`` (taken over: closed here) of ``workers`` lanes."""
        try:
            size = ring_size(workers)
            if os.fstat(fd).st_size != size:
                raise ProtocolError(f"the switchless ring is {os.fstat(fd).st_size} bytes, "
                                    f"expected {size} for {workers} workers")
            self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except ValueError as exc:
            raise ProtocolError(f"switchless ring: {exc}") from None
        finally:
            os.close(fd)
        self.ring = Ring.attach(memoryview(self._mm), workers)
        self._locks = [threading.Lock() for _ in range(workers)]
        self._retired: set[int] = set()
        self._free = [(i, lane, self._locks[i]) for i, lane in enumerate(self.ring.lanes)]
        """Lanes not retired: (index, lane, lock), tried in order."""
        self._check: Callable[[], None] | None = None
        self._bare: dict[str, bytes] = {}  # ecall name -> its ECALL payload without arguments
        self._none_ok: set[str] = set()  # ecalls whose signature decodes _NONE_RESULT to None

    @property
    def usable_lanes(self) -> int:
        """Lanes not retired after a protocol fault."""
        return self.ring.workers - len(self._retired)

    def ecall(self, enclave: Caller, name: str, sig: CallSignature, /, *args: Any,
              **kwargs: Any) -> Any:
        """Ecall ``name(*args, **kwargs)`` through a free lane, or through the enclave's
        socket when every lane is busy; its result. (``enclave.ecalls.NAME`` of a switchless
        enclave is this method with the first three arguments bound: no other Python frame
        on the fast path.)

        Raises like the socket path: the enclave's typed error, ``EnclaveLost`` when it is
        gone, ``ProtocolError`` when the lane carried a malformed or misdirected frame (the
        lane is then retired: its state is unknown, it is never used again).

        The fast path of a call without arguments reuses its encoded ECALL payload, and a
        reply that is exactly "returned None" is not decoded again once this signature
        decoded it to None: the same bytes always decode the same way.
        """
        if args or kwargs:
            payload = encode_value(p.Call(name, sig.encode_args(args, kwargs)), p.Call)
        else:
            payload = self._bare.get(name)  # type: ignore[assignment]
            if payload is None:
                payload = encode_value(p.Call(name, sig.encode_args((), None)), p.Call)
                if len(self._bare) < _CACHE:
                    self._bare[name] = payload
        for index, lane, lock in self._free:  # noqa: B007 - the lane claimed is used below
            if lock.acquire(False):
                break
        else:
            return enclave._socket_call(name, sig, args, kwargs)
        try:
            if index in self._retired:
                return enclave._socket_call(name, sig, args, kwargs)
            if enclave._closed or enclave._lost is not None:
                enclave._claim_id(pending=False)  # raises the closed or lost error
            rid = next(enclave._ids)
            check = self._check
            if check is None:
                check = self._check = _liveness(enclave)
            try:
                lane.to_enclave.send_frame(_ECALL, rid, payload, 0, check)
                frame = lane.to_host.take(LIMIT, check)
                if frame[0] != _ECALL or frame[1] != rid or frame[3] != FLAG_REPLY:
                    frame = self._finish(enclave, index, lane, rid, Frame(*frame), check)
            except BaseException:
                self._retire(index)
                raise
        finally:
            lock.release()
        reply = frame[2]
        if frame[3] & FLAG_ERROR:
            raise p.rebuild_error(decode_value(reply, p.ErrorInfo))
        if reply == _NONE_RESULT and name in self._none_ok:
            return None
        result = sig.decode_result(decode_value(reply, p.CallResult).result)
        if result is None and reply == _NONE_RESULT and len(self._none_ok) < _CACHE:
            self._none_ok.add(name)
        return result

    def _finish(self, enclave: Caller, index: int, lane: Lane, rid: int, frame: Frame,
                check: Callable[[], None]) -> Frame:
        """Serve the ocalls of ECALL ``rid`` until its reply arrives; that reply frame."""
        while frame.msg_type == p.Msg.OCALL and not frame.is_reply:
            lane.to_enclave.send(enclave._ocall_reply(frame), check)
            frame = lane.to_host.recv_frame(LIMIT, check)
        if not frame.is_reply or frame.msg_type != p.Msg.ECALL or frame.request_id != rid:
            raise ProtocolError(f"switchless lane {index}: expected the reply to ECALL "
                                f"{rid}, found message {frame.msg_type} id "
                                f"{frame.request_id}")
        return frame

    def _retire(self, index: int) -> None:
        self._retired.add(index)
        self._free = [entry for entry in self._free if entry[0] != index]


def _liveness(enclave: Caller) -> Callable[[], None]:
    """A ``check`` for ring waits: raises once the enclave is closed, lost or gone."""

    def check() -> None:
        if enclave._lost is not None:
            raise EnclaveLost(enclave._lost)
        if enclave._closed:
            raise EcallError(f"enclave {enclave.enclave_id} ({enclave.name}) was closed "
                             "during a switchless call")
        try:
            if enclave._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                raise enclave._gone()
        except BlockingIOError:
            return
        except OSError:
            raise enclave._gone() from None

    return check
