"""The device's EPC manager: build enclaves from an image (ECREATE/EADD/EEXTEND/EINIT),
read their pages, and over-commit the EPC with EWB/ELDU.

The device trusts nothing in an enclave file: it takes only the SGXS stream (what is
EADDed and EEXTENDed) and the SIGSTRUCT; EINIT decides. A changed byte anywhere in the
measured pages fails EINIT with ``SGX_INVALID_MEASUREMENT``. Evicted pages stay in the
device's memory as :class:`~enclavekit.sgx.processor.EvictedPage` blobs and are reloaded
(ELDU) when the enclave's own reads need them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..errors import EPCExhausted, SGXFault
from ..sgx.consts import PAGE_SIZE
from ..sgx.processor import EvictedPage, Processor
from ..sgx.sgxs import SgxsStream, read_sgxs
from ..sgx.structs import SECS, Attributes, SecInfo, SigStruct
from .image_format import image_error, split_image

_CHUNK = 256
_ALL_CHUNKS = 0xFFFF


def parse_image(data: bytes) -> tuple[SgxsStream, SigStruct]:
    """The SGXS stream and SIGSTRUCT of an enclave file (``vm.image_format``).

    Only the container is checked here; the metadata is the host's and is ignored.

    Raises:
        InvalidStructure: the container, the SGXS stream or the SIGSTRUCT is malformed,
            or the image is unsigned.
    """
    parts = split_image(data)
    if not any(parts.sigstruct):
        raise image_error("the image is not signed; sign it with 'enclavekit sign' first")
    return read_sgxs(parts.sgxs), SigStruct.from_bytes(parts.sigstruct)


@dataclass
class Built:
    """One enclave in the EPC: its SECS page, base address and evicted pages."""

    secs_page: int
    baseaddr: int
    size: int
    pages: int
    evicted: dict[int, EvictedPage] = field(default_factory=dict)


class EPCManager:
    """A processor shared by many enclaves, with eviction when the EPC is full (thread-safe)."""

    def __init__(self, cpu: Processor) -> None:
        self.cpu = cpu
        self.lock = threading.RLock()
        self._owner: dict[int, Built] = {}

    # ------------------------------------------------------------------ building

    def build(self, stream: SgxsStream, sigstruct: SigStruct) -> Built:
        """ECREATE, EADD/EEXTEND every page of ``stream``, EINIT with ``sigstruct``.

        On any failure every page already added is removed again.

        Raises:
            InvalidMeasurement, InvalidSignature, InvalidEInitToken, ...: as EINIT returns.
            EPCExhausted: the EPC cannot hold even this enclave's SECS and one page.
        """
        size = stream.size
        secs = SECS(size=size, baseaddr=size, ssaframesize=stream.ssaframesize,
                    attributes=Attributes(flags=sigstruct.attributes.flags,
                                          xfrm=sigstruct.attributes.xfrm),
                    miscselect=sigstruct.miscselect)
        with self.lock:
            self._make_room(1, None)
            built = Built(self.cpu.ecreate(secs), size, size, 1 + len(stream.pages))
            try:
                for page in stream.pages:
                    self._add(built, page.offset, page.flags, page.data, page.measured)
                self.cpu.einit(built.secs_page, sigstruct)
            except BaseException:
                self.remove(built)
                raise
            return built

    def _add(self, built: Built, offset: int, flags: int, data: bytes, measured: int) -> None:
        self._make_room(1, built.secs_page)
        linaddr = built.baseaddr + offset
        info = SecInfo(flags=flags)
        if measured == _ALL_CHUNKS:
            epc = self.cpu.add_page(None, built.secs_page, linaddr, info, data)
        else:
            epc = self.cpu.eadd(None, built.secs_page, linaddr, info, data)
            for i in range(PAGE_SIZE // _CHUNK):
                if measured >> i & 1:
                    self.cpu.eextend(built.secs_page, linaddr + i * _CHUNK)
        self._owner[epc] = built

    # ------------------------------------------------------------------ paging

    def _make_room(self, pages: int, keep: int | None) -> None:
        """Evict least recently used pages until ``pages`` (+1 spare for a VA page) are free."""
        while self.cpu.free_pages() < pages + 1:
            victim = self.cpu.choose_victim(exclude_secs=keep)
            if victim is None:
                if self.cpu.free_pages() >= pages:
                    return
                raise EPCExhausted(f"EPC is full: {self.cpu.epc_pages} pages, none evictable; "
                                   "unload an enclave or use a larger VM size")
            owner = self._owner.pop(victim)
            blob = self.cpu.evict(victim)
            owner.evicted[blob.linaddr] = blob

    def _resident(self, built: Built, page_linaddr: int) -> None:
        blob = built.evicted.pop(page_linaddr, None)
        if blob is None:
            return
        try:
            self._make_room(1, built.secs_page)
            self._owner[self.cpu.reload(blob)] = built
        except BaseException:
            built.evicted[page_linaddr] = blob
            raise

    def _each_page(self, built: Built, offset: int, size: int) -> list[tuple[int, int, int]]:
        """(linaddr, start, length) pieces of ``size`` bytes at ``offset``, page by page."""
        if offset < 0 or size < 0 or offset + size > built.size:
            raise SGXFault("READ", "#PF", f"offset {offset:#x} + {size} is outside the "
                           f"enclave's {built.size:#x}-byte ELRANGE")
        pieces = []
        at, end = built.baseaddr + offset, built.baseaddr + offset + size
        while at < end:
            n = min(end, (at & ~(PAGE_SIZE - 1)) + PAGE_SIZE) - at
            pieces.append((at & ~(PAGE_SIZE - 1), at, n))
            at += n
        return pieces

    def read(self, built: Built, offset: int, size: int, *, debug: bool = False) -> bytes:
        """``size`` bytes at ``offset`` of the enclave, as its own code (or EDBGRD) reads them,
        reloading evicted pages first."""
        out = []
        with self.lock:
            for base, at, n in self._each_page(built, offset, size):
                self._resident(built, base)
                if debug:
                    out.append(self.cpu.edbgrd(built.secs_page, at, n))
                else:
                    out.append(self.cpu.read(built.secs_page, at, n))
        return b"".join(out)

    def debug_write(self, built: Built, offset: int, data: bytes) -> None:
        """EDBGWR ``data`` at ``offset`` (DEBUG enclaves only), reloading pages first."""
        with self.lock:
            done = 0
            for base, at, n in self._each_page(built, offset, len(data)):
                self._resident(built, base)
                self.cpu.edbgwr(built.secs_page, at, data[done : done + n])
                done += n

    def resident_pages(self, built: Built) -> int:
        """Pages of the enclave now in the EPC, its SECS included."""
        with self.lock:
            return len(self.cpu.pages_of(built.secs_page)) + 1

    def remove(self, built: Built) -> None:
        """EREMOVE every resident page, then the SECS; forget the evicted blobs."""
        with self.lock:
            for page in self.cpu.pages_of(built.secs_page).values():
                self.cpu.eremove(page)
                self._owner.pop(page, None)
            built.evicted.clear()
            self.cpu.eremove(built.secs_page)
