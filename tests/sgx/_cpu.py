"""Shared builders for the processor tests: a small EPC, one enclave, page contents."""

from __future__ import annotations

from enclavekit.sgx.consts import AttributeFlags, PageType, SecInfoFlags, secinfo_flags
from enclavekit.sgx.keys import FusedSecrets
from enclavekit.sgx.processor import Processor
from enclavekit.sgx.structs import SECS, Attributes, SecInfo

BASE = 0x40_0000
SIZE = 0x4_0000  # 64 pages of ELRANGE
CPUSVN = bytes(range(16))
RW = SecInfo(flags=secinfo_flags(PageType.PT_REG, SecInfoFlags.R | SecInfoFlags.W))
RO = SecInfo(flags=secinfo_flags(PageType.PT_REG, SecInfoFlags.R))
TCS_INFO = SecInfo(flags=secinfo_flags(PageType.PT_TCS))


def cpu(pages: int = 64, secrets: FusedSecrets | None = None, **kw: object) -> Processor:
    """A processor with ``pages`` EPC pages."""
    return Processor(pages, secrets or FusedSecrets.generate(), CPUSVN, **kw)  # type: ignore[arg-type]


def secs(*, debug: bool = True, base: int = BASE, size: int = SIZE) -> SECS:
    """A 64-bit SECS, DEBUG unless told otherwise."""
    flags = AttributeFlags.MODE64BIT | (AttributeFlags.DEBUG if debug else 0)
    return SECS(size=size, baseaddr=base, ssaframesize=1,
                attributes=Attributes(flags=int(flags), xfrm=0x3))


def page(tag: int) -> bytes:
    """A recognisable, non-repeating 4 KiB page for ``tag``."""
    head = f"page-{tag:06d}|".encode()
    return (head * (4096 // len(head) + 1))[:4096]


def enclave(proc: Processor, npages: int, *, debug: bool = True, base: int = BASE) -> int:
    """ECREATE and EADD+EEXTEND ``npages`` RW pages at BASE, BASE+4K, ...; returns the SECS page."""
    s = proc.ecreate(secs(debug=debug, base=base))
    for i in range(npages):
        proc.add_page(None, s, base + i * 4096, RW, page(i))
    return s


def mrenclave(npages: int, *, base: int = BASE) -> bytes:
    """The MRENCLAVE ``enclave(proc, npages)`` builds, computed independently of the processor."""
    from enclavekit.sgx.measure import Measurement

    m = Measurement()
    m.ecreate(1, SIZE)
    for i in range(npages):
        m.add_page(i * 4096, RW.flags, page(i))
    return m.digest()


def signed(npages: int, key: object, **kw: object) -> object:
    """A SIGSTRUCT for ``enclave(proc, npages)`` signed with ``key``."""
    from enclavekit.sgx.sigstruct import build_sigstruct, sign

    return sign(build_sigstruct(mrenclave(npages), **kw), key)  # type: ignore[arg-type]
