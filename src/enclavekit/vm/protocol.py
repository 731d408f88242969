"""The device protocol's message catalogue: frame types and their payloads.

Every channel (host ↔ device, device ↔ enclave, host ↔ enclave) carries
:mod:`enclavekit.wire.frame` frames whose payload is one of the dataclasses below,
encoded with :func:`enclavekit.wire.encode_value` and checked on receipt with
:func:`enclavekit.wire.decode_value` against the dataclass the message type names.
See ``docs/development/architecture.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NoReturn

from .. import errors as _errors
from ..errors import DeviceError, EnclaveKitError, SGXError


class Msg(enum.IntEnum):
    """Frame message types."""

    # host → device
    HELLO = 1
    STATUS = 2
    LOAD = 3
    UNLOAD = 4
    DEBUG_READ = 5
    DEBUG_WRITE = 6
    SHUTDOWN = 7
    RESTART = 8
    LOST_REASON = 9
    # device → enclave (private channel)
    BOOT = 20
    WARM = 23
    SWITCHLESS = 24
    # enclave → device (private channel)
    EREPORT = 21
    EGETKEY = 22
    COUNTER_CREATE = 30
    COUNTER_READ = 31
    COUNTER_INCREMENT = 32
    COUNTER_DESTROY = 33
    # host ↔ enclave (ecall socket)
    INTERFACE = 40
    ECALL = 41
    OCALL = 42


# --------------------------------------------------------------------------- errors


@dataclass
class ErrorInfo:
    """A failure reply: an enclavekit error class name, its message, the SGX code or 0."""

    type: str
    message: str
    code: int = 0


def error_info(exc: BaseException) -> ErrorInfo:
    """The wire form of an exception (only our own classes keep their name)."""
    if isinstance(exc, EnclaveKitError):
        code = exc.code if isinstance(exc, SGXError) else 0
        return ErrorInfo(type(exc).__name__, str(exc), code)
    return ErrorInfo("DeviceError", f"{type(exc).__name__}: {exc}")


def raise_error(info: ErrorInfo) -> NoReturn:
    """Re-raise a received failure as the named enclavekit error (else DeviceError)."""
    raise rebuild_error(info)


def rebuild_error(info: ErrorInfo) -> EnclaveKitError:
    """The exception a failure reply names, with the sender's message unchanged."""
    cls = getattr(_errors, info.type, None)
    if not (isinstance(cls, type) and issubclass(cls, EnclaveKitError)):
        return DeviceError(info.message)
    exc = cls.__new__(cls)
    Exception.__init__(exc, info.message)
    if isinstance(exc, SGXError):
        exc.leaf = info.message.split(":", 1)[0]
        exc.detail = info.message
    return exc


# --------------------------------------------------------------------------- host ↔ device


@dataclass
class Hello:
    """HELLO request: who is asking."""

    client: str = "enclavekit"


@dataclass
class HelloReply:
    """HELLO reply: the VM this device serves."""

    vm: str
    size: str
    protocol: int


@dataclass
class Empty:
    """A request or reply without fields."""


@dataclass
class EnclaveStatus:
    """One loaded enclave as STATUS reports it."""

    enclave_id: int
    name: str
    mrenclave: bytes
    mrsigner: bytes
    debug: bool
    pages: int
    pages_resident: int
    state: str
    pid: int


@dataclass
class VMStatus:
    """STATUS reply: the VM's size and EPC use, enclave by enclave."""

    name: str
    size: str
    epc_total_pages: int
    epc_used_pages: int
    epc_free_pages: int
    enclaves: list[EnclaveStatus] = field(default_factory=list)


@dataclass
class LoadRequest:
    """LOAD request: a signed enclave file (``host.image.EnclaveFile`` bytes)."""

    image: bytes


@dataclass
class LoadReply:
    """LOAD reply; the host's end of the ecall socket comes with it (SCM_RIGHTS)."""

    enclave_id: int
    mrenclave: bytes
    mrsigner: bytes
    debug: bool
    threads: int
    switchless_workers: int = 0
    """Lanes of the enclave's switchless ring; when > 0 its memfd is the second descriptor."""


@dataclass
class EnclaveRef:
    """UNLOAD request."""

    enclave_id: int


@dataclass
class DebugRead:
    """DEBUG_READ request (EDBGRD): ``size`` bytes at offset ``linaddr`` of the enclave."""

    enclave_id: int
    linaddr: int
    size: int


@dataclass
class DebugWrite:
    """DEBUG_WRITE request (EDBGWR)."""

    enclave_id: int
    linaddr: int
    data: bytes


@dataclass
class Data:
    """A reply carrying bytes."""

    data: bytes


# --------------------------------------------------------------------------- device ↔ enclave


@dataclass
class Boot:
    """BOOT: everything the enclave process needs, read from its EPC pages by the device.

    ``manifest`` is the measured manifest blob (``EKMANIF1``, u32 length, canonical JSON),
    ``bundle`` the whole measured bundle (``EKBUNDL1`` ...), both read
    with the enclave's own access (``Processor.read``); identity fields come from the
    SECS after EINIT, limits from the measured manifest. Sent once, request id 0, no reply.
    EREPORT and EGETKEY replies on the private channel carry :class:`Data` (the 432-byte
    REPORT, the 16-byte key).
    """

    enclave_id: int
    manifest: bytes
    bundle: bytes
    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    attributes_flags: int
    attributes_xfrm: int
    miscselect: int
    threads: int
    heap_size: int
    stack_size: int
    debug: bool
    runtime_root: str
    runtime_code: bytes = b""
    """The device's compiled copy of pinned runtime files (``vm.bootstrap.compiled_runtime``)."""


@dataclass
class Warm:
    """WARM: what a pre-started ("warm") enclave process may load before its BOOT.

    Sent once, request id 0, no reply, as the first frame of a warm process (BOOT follows
    when a LOAD uses it). ``pin`` is the device's runtime pin (``vm.bootstrap.runtime_files``)
    as canonical JSON, ``python`` the interpreter's ``"X.Y"``, ``runtime_code`` the device's
    compiled copy of those files (``vm.bootstrap.compiled_runtime``). No enclave secret, no
    identity and no app code: a BOOT is accepted only if its measured manifest pins exactly
    this runtime.
    """

    pin: bytes
    python: str
    runtime_root: str
    runtime_code: bytes = b""


@dataclass
class EReportRequest:
    """EREPORT request: TARGETINFO (512 B) and REPORTDATA (64 B)."""

    targetinfo: bytes
    reportdata: bytes


@dataclass
class EGetKeyRequest:
    """EGETKEY request: a KEYREQUEST (512 B)."""

    keyrequest: bytes


# --------------------------------------------------------------------------- host ↔ enclave


@dataclass
class InterfaceReply:
    """INTERFACE reply: each declared ecall and ocall as a JSON schema (``wire.schema``)."""

    ecalls: list[bytes]
    ocalls: list[bytes]


@dataclass
class Call:
    """ECALL / OCALL request: the call's name and its encoded arguments."""

    name: str
    args: bytes


@dataclass
class CallResult:
    """ECALL / OCALL reply: the encoded result."""

    result: bytes


# --------------------------------------------------------------------------- power events


@dataclass
class Restarted:
    """RESTART reply (a power cycle): the enclaves it killed and the device's boot count."""

    lost: int
    boot: int


@dataclass
class LostReason:
    """LOST_REASON reply: why enclave ``enclave_id`` of this connection is gone, or ""."""

    reason: str


# --------------------------------------------------------------------------- monotonic counters


@dataclass
class CounterRef:
    """COUNTER_READ / COUNTER_DESTROY request: a counter of the calling enclave's MRSIGNER."""

    counter_id: bytes


@dataclass
class CounterIncrement:
    """COUNTER_INCREMENT request: add 1 if the value is ``expected``; record ``tag`` with it."""

    counter_id: bytes
    expected: int
    tag: bytes = b""


@dataclass
class CounterValue:
    """A counter's state (inside the :class:`Data` reply of every COUNTER_* request)."""

    counter_id: bytes
    value: int
    tag: bytes = b""


@dataclass
class SwitchlessSetup:
    """SWITCHLESS (device → enclave, right after BOOT, request id 0, no reply): the ring's
    memfd comes with it (SCM_RIGHTS); ``workers`` must equal the measured manifest's."""

    workers: int
