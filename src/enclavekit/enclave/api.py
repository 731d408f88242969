"""The trusted API: this enclave's identity, EREPORT, REPORT verification and EGETKEY.

EREPORT and EGETKEY go to the device over the private channel (fd 3); the device takes
the enclave's identity from the channel, never from the request (RT-2). REPORT
verification happens here, inside the enclave: EGETKEY(REPORT) then AES-CMAC over the
REPORTBODY (pyca ``cryptography``).
"""

from __future__ import annotations

import itertools
import socket
import threading
from dataclasses import dataclass

from ..errors import EnclaveKitError, IntegrityError, InvalidStructure
from ..sgx.consts import AttributeFlags, KeyName, KeyPolicy
from ..vm.protocol import Boot, Data, EGetKeyRequest, EReportRequest, ErrorInfo, Msg, raise_error
from ..wire import FLAG_ERROR, FLAG_REPLY, decode_value, encode_value, recv_frame, send_frame

__all__ = ["Identity", "ReportInfo", "get_key", "identity", "report", "target_info",
           "verify_report"]


@dataclass(frozen=True)
class Identity:
    """An enclave's identity as EINIT fixed it."""

    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    debug: bool
    attributes_flags: int
    miscselect: int


@dataclass(frozen=True)
class ReportInfo:
    """A verified REPORT: who made it (MRENCLAVE, MRSIGNER, ...) and its REPORTDATA."""

    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    debug: bool
    attributes_flags: int
    miscselect: int
    cpusvn: bytes
    report_data: bytes


class _Channel:
    """The private channel to the device: one request at a time, replies matched by id."""

    def __init__(self, sock: socket.socket, boot: Boot) -> None:
        self.sock = sock
        self.boot = boot
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.cpusvn: bytes | None = None

    def call(self, msg: Msg, payload: bytes) -> bytes:
        with self.lock:
            rid = next(self.ids)
            send_frame(self.sock, msg, rid, payload)
            frame = recv_frame(self.sock)
            if frame is None:
                raise EnclaveKitError("the device closed the private channel")
            if not frame.is_reply or frame.request_id != rid or frame.msg_type != msg:
                raise EnclaveKitError(f"private channel out of step: expected the reply to "
                                      f"request {rid}, found message {frame.msg_type} id "
                                      f"{frame.request_id}")
        if frame.flags & FLAG_ERROR:
            raise_error(decode_value(frame.payload, ErrorInfo, what="device error"))
        assert frame.flags & FLAG_REPLY
        return decode_value(frame.payload, Data, what=f"{msg.name} reply").data


_channel: _Channel | None = None


def _connect(sock: socket.socket, boot: Boot) -> None:
    """Set up the private channel (the dispatcher does this once, at boot)."""
    global _channel
    _channel = _Channel(sock, boot)


def _chan() -> _Channel:
    if _channel is None:
        raise EnclaveKitError("not inside an enclave: the trusted API works only in an "
                              "enclave process")
    return _channel


def identity() -> Identity:
    """This enclave's MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN, DEBUG, ATTRIBUTES and MISCSELECT."""
    b = _chan().boot
    return Identity(b.mrenclave, b.mrsigner, b.isvprodid, b.isvsvn, b.debug,
                    b.attributes_flags, b.miscselect)


def target_info() -> bytes:
    """This enclave's 512-byte TARGETINFO (for a peer to make a REPORT for it)."""
    from ..sgx.structs import Attributes, TargetInfo  # lazy: ~15 ms of enclave start-up

    b = _chan().boot
    return TargetInfo(measurement=b.mrenclave,
                      attributes=Attributes(flags=b.attributes_flags, xfrm=b.attributes_xfrm),
                      miscselect=b.miscselect).to_bytes()


def report(target_info: bytes, report_data: bytes) -> bytes:
    """A 432-byte REPORT of this enclave for the enclave ``target_info`` names (EREPORT).

    ``report_data`` (at most 64 bytes) is zero-padded to REPORTDATA's 64 bytes.
    """
    if type(target_info) is not bytes or len(target_info) != 512:
        raise InvalidStructure("TARGETINFO", "expected 512 bytes")
    if type(report_data) is not bytes or len(report_data) > 64:
        raise InvalidStructure("REPORTDATA", "expected at most 64 bytes")
    request = EReportRequest(target_info, report_data.ljust(64, b"\0"))
    data = _chan().call(Msg.EREPORT, encode_value(request, EReportRequest))
    if len(data) != 432:
        raise InvalidStructure("REPORT", f"the device returned {len(data)} bytes, expected 432")
    return data


def _own_cpusvn() -> bytes:
    from ..sgx.structs import Report

    chan = _chan()
    if chan.cpusvn is None:
        chan.cpusvn = Report.from_bytes(report(target_info(), b"")).body.cpusvn
    return chan.cpusvn


def get_key(keyname: KeyName | int, keypolicy: KeyPolicy | int = KeyPolicy.MRENCLAVE, *,
            keyid: bytes = bytes(32), isvsvn: int | None = None, cpusvn: bytes | None = None,
            attributemask: int | None = None, miscmask: int = 0xFFFFFFFF) -> bytes:
    """EGETKEY: a 16-byte key bound to this enclave (SEAL, REPORT, ...).

    ``isvsvn`` and ``cpusvn`` default to this enclave's own; ``attributemask`` to
    INIT | DEBUG | MODE64BIT (always bound bits plus the mode).
    """
    from ..sgx.structs import Attributes, KeyRequest

    b = _chan().boot
    mask = attributemask if attributemask is not None else int(
        AttributeFlags.INIT | AttributeFlags.DEBUG | AttributeFlags.MODE64BIT)
    if int(keyname) == KeyName.REPORT:
        svn = cpusvn if cpusvn is not None else bytes(16)
    else:
        svn = cpusvn if cpusvn is not None else _own_cpusvn()
    request = KeyRequest(keyname=int(keyname), keypolicy=int(keypolicy),
                         isvsvn=b.isvsvn if isvsvn is None else isvsvn, cpusvn=svn,
                         attributemask=Attributes(flags=mask, xfrm=0), keyid=keyid,
                         miscmask=miscmask)
    payload = encode_value(EGetKeyRequest(request.to_bytes()), EGetKeyRequest)
    return _chan().call(Msg.EGETKEY, payload)


def verify_report(report: bytes) -> ReportInfo:
    """Check that ``report`` was made for this enclave on this platform; who made it.

    Raises:
        IntegrityError: the MAC does not verify (forged, modified, or made for another
            enclave or platform).
        InvalidStructure: ``report`` is not a 432-byte REPORT.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    from ..sgx.structs import Report

    if type(report) is not bytes or len(report) != 432:
        raise InvalidStructure("REPORT", f"expected 432 bytes, found {len(report)}"
                               if isinstance(report, bytes) else "expected bytes")
    parsed = Report.from_bytes(report)
    key = get_key(KeyName.REPORT, 0, keyid=parsed.keyid)
    mac = cmac.CMAC(algorithms.AES128(key))
    mac.update(report[:384])
    try:
        mac.verify(parsed.mac)
    except InvalidSignature:
        raise IntegrityError("REPORT: MAC does not verify: it was not made for this enclave "
                             "on this platform, or it was modified") from None
    body = parsed.body
    return ReportInfo(
        mrenclave=body.mrenclave, mrsigner=body.mrsigner, isvprodid=body.isvprodid,
        isvsvn=body.isvsvn, debug=bool(body.attributes.flags & AttributeFlags.DEBUG),
        attributes_flags=body.attributes.flags, miscselect=body.miscselect,
        cpusvn=body.cpusvn, report_data=body.reportdata)
