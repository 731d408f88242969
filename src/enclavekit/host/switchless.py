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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import EcallError, EnclaveLost, ProtocolError
from ..vm import protocol as p
from ..wire import FLAG_REPLY, CallSignature, Frame, decode_value, encode_value
from ..wire.frame import DEFAULT_MAX_PAYLOAD, HEADER_SIZE
from ..wire.ring import Ring, ring_size

if TYPE_CHECKING:
    from .enclave import Enclave

__all__ = ["SwitchlessRing"]

LIMIT = DEFAULT_MAX_PAYLOAD + HEADER_SIZE


_NONE_RESULT = encode_value(p.CallResult(encode_value(None, type(None))), p.CallResult)
"""The reply payload of an ecall that returned None."""
_CACHE = 256


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
        self._check: Callable[[], None] | None = None
        self._bare: dict[str, bytes] = {}  # ecall name -> its ECALL payload without arguments
        self._none_ok: set[str] = set()  # ecalls whose signature decodes _NONE_RESULT to None

    @property
    def usable_lanes(self) -> int:
        """Lanes not retired after a protocol fault."""
        return self.ring.workers - len(self._retired)

    def ecall(self, enclave: Enclave, name: str, sig: CallSignature, args: tuple[Any, ...],
              kwargs: Mapping[str, Any] | None) -> tuple[bool, Any]:
        """Ecall ``name`` through a free lane: ``(True, result)``, or ``(False, None)`` when
        every lane is busy (the caller then takes the socket).

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
        frame = self.call(enclave, payload)
        if frame is None:
            return False, None
        if frame.payload == _NONE_RESULT and name in self._none_ok:
            return True, None
        result = sig.decode_result(decode_value(frame.payload, p.CallResult).result)
        if result is None and frame.payload == _NONE_RESULT and len(self._none_ok) < _CACHE:
            self._none_ok.add(name)
        return True, result

    def call(self, enclave: Enclave, payload: bytes) -> Frame | None:
        """ECALL ``payload`` through a free lane; the reply frame, or None if all are busy.

        Raises like the socket path: the enclave's typed error, ``EnclaveLost`` when it is
        gone, ``ProtocolError`` when the lane carried a malformed or misdirected frame.
        """
        for index, lock in enumerate(self._locks):
            if index not in self._retired and lock.acquire(blocking=False):
                break
        else:
            return None
        try:
            if index in self._retired:
                return None
            rid = enclave._claim_id(pending=False)
            return self._exchange(enclave, index, rid, payload)
        finally:
            lock.release()

    def _exchange(self, enclave: Enclave, index: int, rid: int, payload: bytes) -> Frame:
        lane = self.ring.lanes[index]
        check = self._check
        if check is None:
            check = self._check = _liveness(enclave)
        ok = False
        try:
            lane.to_enclave.send_frame(p.Msg.ECALL, rid, payload, 0, check)
            while True:
                frame = lane.to_host.recv_frame(LIMIT, check)
                if frame.msg_type == p.Msg.OCALL and not frame.is_reply:
                    lane.to_enclave.send(enclave._ocall_reply(frame), check)
                    continue
                if not frame.is_reply or frame.msg_type != p.Msg.ECALL \
                        or frame.request_id != rid:
                    raise ProtocolError(f"switchless lane {index}: expected the reply to ECALL "
                                        f"{rid}, found message {frame.msg_type} id "
                                        f"{frame.request_id}")
                ok = True
                break
        finally:
            if not ok:
                self._retired.add(index)  # its state is unknown: never used again
        if frame.is_error:
            raise p.rebuild_error(decode_value(frame.payload, p.ErrorInfo))
        if not frame.flags & FLAG_REPLY:  # pragma: no cover - checked above
            raise ProtocolError("switchless reply without FLAG_REPLY")
        return frame


def _liveness(enclave: Enclave) -> Callable[[], None]:
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
