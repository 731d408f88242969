"""An in-process enclave dispatcher over a socketpair, and a host end that speaks frames."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from enclavekit.enclave import api
from enclavekit.enclave.dispatch import Dispatcher, Registry
from enclavekit.sgx.processor import Processor
from enclavekit.vm.protocol import Boot, Call, CallResult, ErrorInfo, Msg, rebuild_error
from enclavekit.wire import (
    FLAG_ERROR,
    FLAG_REPLY,
    Frame,
    decode_value,
    encode_value,
    recv_frame,
    send_frame,
)


class Host:
    """The host's end of the ecall socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ids = iter(range(1, 1 << 30))

    def send_ecall(self, name: str, args: bytes) -> int:
        rid = next(self.ids)
        send_frame(self.sock, Msg.ECALL, rid, encode_value(Call(name, args), Call))
        return rid

    def recv(self) -> Frame:
        frame = recv_frame(self.sock)
        assert frame is not None
        return frame

    def result(self, frame: Frame) -> bytes:
        if frame.flags & FLAG_ERROR:
            raise rebuild_error(decode_value(frame.payload, ErrorInfo))
        return decode_value(frame.payload, CallResult).result

    def reply_ocall(self, rid: int, result: bytes) -> None:
        send_frame(self.sock, Msg.OCALL, rid, encode_value(CallResult(result), CallResult),
                   flags=FLAG_REPLY)


@contextmanager
def dispatcher(reg: Registry, *, threads: int = 1, debug: bool = False) -> Iterator[
        tuple[Host, Dispatcher]]:
    a, b = socket.socketpair()
    a.settimeout(10)
    disp = Dispatcher(b, threads=threads, debug=debug, heap_size=1 << 20, registry=reg)
    t = threading.Thread(target=disp.serve, daemon=True)
    t.start()
    try:
        yield Host(a), disp
    finally:
        a.close()
        t.join(5)
        b.close()


def boot_for(proc: Processor, secs: int, *, debug: bool) -> Boot:
    """The BOOT a device would send for enclave ``secs`` of ``proc`` (identity from its SECS)."""
    ident = proc.identity(secs)
    return Boot(enclave_id=secs, manifest=b"", bundle=b"", mrenclave=ident.mrenclave,
                mrsigner=ident.mrsigner, isvprodid=ident.isvprodid, isvsvn=ident.isvsvn,
                attributes_flags=ident.attributes.flags, attributes_xfrm=ident.attributes.xfrm,
                miscselect=ident.miscselect, threads=1, heap_size=0, stack_size=0,
                debug=debug, runtime_root="")


@contextmanager
def acting_as(channel: object) -> Iterator[None]:
    """Run the block as the enclave whose trusted-API channel is ``channel``."""
    saved = api._channel
    api._channel = channel  # type: ignore[assignment]
    try:
        yield
    finally:
        api._channel = saved
