"""Switchless ecalls inside the enclave: worker threads serving the shared ring.

With ``switchless_workers = N`` in the measured manifest, the device sends SWITCHLESS
right after BOOT with the ring's memfd (sealed against shrinking and growing, so the host
cannot make the enclave's mapping fault). The enclave checks the seals, the size and the
header against its own manifest, maps it and starts N workers. Each worker spins on its
lane for an ECALL frame, copies it out once (``wire.ring``) and handles the copy exactly
like the socket path: ``Dispatcher.lookup`` (name lookup; a small payload that named a
declared ecall is remembered), ``Dispatcher.claim_tcs`` ("all N TCS are busy"),
``Dispatcher.execute`` (argument checks, error mapping) - so the typed semantics are the
ordinary ones. Ocalls made by a switchless ecall go through the same lane to the waiting
host caller, and their replies are checked as hostile input (``ocall_outcome``).
Request ids on a lane must increase (a replayed frame is refused). Workers stop when the
dispatcher closes; they are daemon threads of the enclave process, which exits with it.
"""

from __future__ import annotations

import fcntl
import itertools
import mmap
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ProtocolError
from ..vm.protocol import Call, ErrorInfo, Msg, SwitchlessSetup
from ..wire import (
    FLAG_ERROR,
    FLAG_REPLY,
    CallSignature,
    FrameReader,
    decode_value,
    encode_value,
    pack_frame,
)
from ..wire.frame import DEFAULT_MAX_PAYLOAD, HEADER_SIZE
from ..wire.ring import Lane, Ring, one_frame, ring_size
from .dispatch import Dispatcher, ocall_outcome, serve_ocalls_with

__all__ = ["LIMIT", "Worker", "attach", "start"]

LIMIT = DEFAULT_MAX_PAYLOAD + HEADER_SIZE
_CACHED_PAYLOAD = 256
_CACHED_CALLS = 64
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
_OCALL_IDS = itertools.count(1 << 61)
_ECALL = int(Msg.ECALL)
Found = tuple[tuple[CallSignature, Callable[..., Any]], bytes]
"""A looked-up ECALL: its (signature, function) and encoded arguments."""


class _Stop(Exception):
    """The dispatcher closed: the worker returns."""


def attach(private: socket.socket, workers: int) -> Ring:
    """Receive SWITCHLESS and its memfd from the device; check it and map it."""
    data, fds = b"", []
    while len(data) < HEADER_SIZE:
        got, new, _, _ = socket.recv_fds(private, HEADER_SIZE - len(data), 1)
        fds += new
        if not got:
            raise ProtocolError("the private channel closed before SWITCHLESS arrived")
        data += got
    try:
        reader = FrameReader(max_payload=64)
        frames = reader.feed(data)
        while not frames:
            more = private.recv(64)
            if not more:
                raise ProtocolError("the private channel closed inside SWITCHLESS")
            frames = reader.feed(more)
        frame = frames[0]
        if frame.msg_type != Msg.SWITCHLESS or len(fds) != 1:
            raise ProtocolError(f"expected SWITCHLESS with one descriptor after BOOT, found "
                                f"message {frame.msg_type} with {len(fds)}")
        setup = decode_value(frame.payload, SwitchlessSetup, what="SWITCHLESS")
        if setup.workers != workers:
            raise ProtocolError(f"SWITCHLESS names {setup.workers} workers, the measured "
                                f"manifest {workers}")
        size = ring_size(workers)
        seals = fcntl.fcntl(fds[0], fcntl.F_GET_SEALS)
        if seals & _SEALS != _SEALS or os.fstat(fds[0]).st_size != size:
            raise ProtocolError(f"the switchless ring is not a sealed {size}-byte memfd")
        mm = mmap.mmap(fds[0], size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        for fd in fds:
            os.close(fd)
    return Ring.attach(memoryview(mm), workers)


class Worker:
    """Serves ECALL frames from one lane; performs its ecalls' ocalls on the same lane."""

    def __init__(self, disp: Dispatcher, lane: Lane) -> None:
        self.disp = disp
        self.lane = lane
        self.last = 0
        self.calls: dict[bytes, Found] = {}  # small ECALL payloads already looked up
        self._stop_check = self._check  # bound once: the hot path passes it on every wait
        self._recv = lane.to_enclave.take
        self._send = lane.to_host.send_frame

    def _check(self) -> None:
        if self.disp.closed:
            raise _Stop

    def serve(self) -> None:
        """Answer requests until the dispatcher closes (this thread's ocalls go to the lane)."""
        serve_ocalls_with(self)
        try:
            while True:
                self.serve_one()
        except _Stop:
            return

    def serve_one(self) -> None:
        """Take one request from the lane and send its reply (on the thread :meth:`serve`
        runs, whose ocall context is this worker)."""
        disp, check, rid = self.disp, self._stop_check, 0
        try:
            msg_type, rid, payload, flags, _ = self._recv(LIMIT, check)
            if flags & FLAG_REPLY or msg_type != _ECALL:
                raise ProtocolError(f"message type {msg_type} is not served on a "
                                    "switchless lane (expected ECALL)")
            if rid <= self.last:
                raise ProtocolError(f"request id {rid} is not above {self.last}: a replayed "
                                    "or reordered frame")
            self.last = rid
            found = self.calls.get(payload)
            if found is None:
                found = disp.lookup(decode_value(payload, Call, what="ECALL"))
                if len(payload) <= _CACHED_PAYLOAD and len(self.calls) < _CACHED_CALLS:
                    self.calls[payload] = found  # the same bytes find the same ecall
            disp.claim_tcs()
        except _Stop:
            raise
        except Exception as exc:
            out = encode_value(disp._error_info(exc), ErrorInfo)
            self._send(_ECALL, rid, out, FLAG_REPLY | FLAG_ERROR, check)
            return
        reply, reply_flags = disp.execute(found[0], found[1], None)
        self._send(_ECALL, rid, reply, reply_flags, check)

    def ocall(self, sig: CallSignature, args: tuple[object, ...],
              kwargs: dict[str, object]) -> object:
        """An ocall of the running switchless ecall, through the lane to the host caller."""
        rid = next(_OCALL_IDS)
        payload = encode_value(Call(sig.name, sig.encode_args(args, kwargs)), Call)
        self.lane.to_host.send(pack_frame(Msg.OCALL, rid, payload), self._stop_check)
        frame = one_frame(self.lane.to_enclave.recv(LIMIT, self._stop_check))
        if not frame.is_reply or frame.msg_type != Msg.OCALL or frame.request_id != rid:
            raise ProtocolError(f"ocall {sig.name!r}: expected the reply to ocall {rid}, found "
                                f"message {frame.msg_type} id {frame.request_id}")
        return ocall_outcome(sig, frame)


def start(disp: Dispatcher, ring: Ring) -> list[threading.Thread]:
    """Start one daemon worker thread per lane."""
    threads = []
    for lane in ring.lanes:
        t = threading.Thread(target=Worker(disp, lane).serve, daemon=True,
                             name=f"switchless-{lane.index}")
        t.start()
        threads.append(t)
    return threads
