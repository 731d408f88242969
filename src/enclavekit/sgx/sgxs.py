"""SGXS: the MRENCLAVE record stream as a file (Fortanix's interchange format).

An SGXS stream is exactly what ECREATE / EADD / EEXTEND hash (sgx-spec.md §2):
one 64-byte ECREATE record, then per page an EADD record and, for each measured
256-byte chunk, an EEXTEND header followed by the chunk. Its SHA-256 is MRENCLAVE.

Fortanix's enhanced form (ESGXS, rust-sgx ``doc/SGXS.md``) adds two records:
``UNMEASRD`` (laid out like EEXTEND: header + 256 bytes of page data that is
loaded but not measured; skipped when measuring) and ``UNSIZED`` (an ECREATE
whose size is not fixed yet; such a stream cannot be measured, so it is refused).

Two readings of a stream (``docs/sgx/sgxs.md``):

* **Valid** — what the processor would accept in this order: ECREATE first and
  once; each EADD of a new page-aligned offset inside SIZE with FLAGS EADD
  allows; each EEXTEND (or UNMEASRD) of a 256-byte chunk of a page EADDed
  *before* it, in any order and any number of times, as long as every record of
  one chunk carries the same 256 bytes (the stream describes one load, in which
  EADD copied each page once: two contents for a chunk are no page to load).
  :func:`measure_sgxs` measures every valid stream: MRENCLAVE is the SHA-256 of
  its measured records, in the order they appear.
* **Canonical** (page-ordered) — valid, and each page's chunk records follow
  its EADD directly, each chunk at most once, in ascending chunk order. This is
  what :func:`write_sgxs` writes and what known tools emit (sgx-spec.md §2.1),
  and only this form is modelled by :class:`SgxsStream` (ECREATE parameters
  plus pages with chunk masks) without loss: re-exporting it reproduces the same
  bytes and MRENCLAVE. :func:`read_sgxs` therefore refuses a valid stream that
  is not canonical, saying so; enclave images hold canonical streams.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InvalidStructure
from .consts import EEXTEND_CHUNK, PAGE_SIZE, SECINFO_RWX, PageType, SecInfoFlags
from .consts import secinfo_page_type as _page_type
from .measure import (
    CHUNKS_PER_PAGE,
    EADD_TAG,
    ECREATE_TAG,
    EEXTEND_TAG,
    RECORD_SIZE,
    Measurement,
    eadd_record,
    ecreate_record,
    eextend_record,
)

UNMEASRD_TAG = b"UNMEASRD"
"""ESGXS record tag (u64 0x44525341454d4e55): 256 bytes loaded but not measured."""
UNSIZED_TAG = b"UNSIZED\0"
"""ESGXS record tag (u64 0x0044455a49534e55): an ECREATE whose SIZE is not fixed yet."""
ALL_CHUNKS = (1 << CHUNKS_PER_PAGE) - 1
"""Chunk mask of a page whose 16 chunks are all present."""

_EADD_TYPES = (PageType.PT_REG, PageType.PT_TCS, PageType.PT_SS_FIRST, PageType.PT_SS_REST)
_EEXTEND_TYPES = (PageType.PT_REG, PageType.PT_TCS)
_STATE_BITS = 0xF8  # PENDING, MODIFIED, PR and the unnamed bits 6..7
_ZERO_CHUNK = bytes(EEXTEND_CHUNK)
_CHUNK_RECORD = RECORD_SIZE + EEXTEND_CHUNK
_U32_U64 = struct.Struct("<IQ")
_U64 = struct.Struct("<Q")
_U64_U64 = struct.Struct("<QQ")


def _flags_problem(flags: int) -> str | None:
    """Why EADD would refuse these SECINFO.FLAGS, or None."""
    if not 0 <= flags < 1 << 64:
        return f"SECINFO.FLAGS {flags:#x} does not fit in 64 bits"
    page_type = _page_type(flags)
    if page_type not in _EADD_TYPES:
        return (f"page type {page_type} in SECINFO.FLAGS {flags:#x} cannot be EADDed "
                "(expected PT_REG or PT_TCS)")
    if flags >> 16 or flags & _STATE_BITS:
        return (f"SECINFO.FLAGS {flags:#x} has reserved or state bits set "
                "(only R/W/X and the page type are allowed)")
    if page_type == PageType.PT_REG and flags & SecInfoFlags.W and not flags & SecInfoFlags.R:
        return f"SECINFO.FLAGS {flags:#x}: a PT_REG page cannot be writable without being readable"
    return None


def _ecreate_problem(ssaframesize: int, size: int) -> str | None:
    """Why ECREATE would refuse this SSAFRAMESIZE and SIZE, or None."""
    if not 1 <= ssaframesize < 1 << 32:
        return f"SSAFRAMESIZE must be 1..2^32-1 pages, found {ssaframesize}"
    if size < 2 * PAGE_SIZE or size >= 1 << 64 or size & (size - 1):
        return f"SIZE must be a power of two of at least 8192 bytes, found {size:#x}"
    return None


def _chunk_mask_problem(name: str, mask: int) -> str | None:
    if not 0 <= mask <= ALL_CHUNKS:
        return f"{name} chunk mask {mask:#x} is not a 16-bit mask"
    return None


@dataclass(frozen=True, slots=True)
class SgxsPage:
    """One EADDed page: its offset from BASEADDR, SECINFO.FLAGS and 4 KiB of contents.

    ``measured`` and ``unmeasured`` are 16-bit masks (bit i = bytes 256*i..256*i+255):
    chunks that are EEXTENDed, and chunks whose data is only loaded (ESGXS UNMEASRD).
    Chunks in neither mask are not in the stream and must be zero. FLAGS are kept
    as the processor records them: a TCS has R/W/X cleared.
    """

    offset: int
    flags: int
    data: bytes = bytes(PAGE_SIZE)
    measured: int = ALL_CHUNKS
    unmeasured: int = 0

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise InvalidStructure("SGXS", f"page at offset {self.offset:#x}: {problem}")
        if _page_type(self.flags) == PageType.PT_TCS and self.flags & SECINFO_RWX:
            object.__setattr__(self, "flags", self.flags & ~SECINFO_RWX)
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))

    def _problem(self) -> str | None:
        if self.offset % PAGE_SIZE or not 0 <= self.offset < 1 << 64:
            return "the offset is not a page-aligned 64-bit value"
        if len(self.data) != PAGE_SIZE:
            return f"page data must be {PAGE_SIZE} bytes, found {len(self.data)}"
        problem = (
            _flags_problem(self.flags)
            or _chunk_mask_problem("measured", self.measured)
            or _chunk_mask_problem("unmeasured", self.unmeasured)
        )
        if problem:
            return problem
        if self.measured & self.unmeasured:
            return f"chunks {self.measured & self.unmeasured:#06x} are both measured and unmeasured"
        if self.measured and _page_type(self.flags) not in _EEXTEND_TYPES:
            return "only PT_REG and PT_TCS pages can be EEXTENDed"
        absent = ALL_CHUNKS & ~(self.measured | self.unmeasured)
        for i in _bits(absent):
            if self.data[i * EEXTEND_CHUNK : (i + 1) * EEXTEND_CHUNK] != _ZERO_CHUNK:
                return (f"chunk {i} holds data but is neither measured nor unmeasured, "
                        "so SGXS cannot carry it; mark it in one of the masks")
        return None

    @property
    def loaded(self) -> int:
        """Mask of the chunks whose data the stream carries (measured or not)."""
        return self.measured | self.unmeasured

    def chunk(self, index: int) -> bytes:
        """The 256 bytes of chunk ``index`` (0..15)."""
        return self.data[index * EEXTEND_CHUNK : (index + 1) * EEXTEND_CHUNK]


@dataclass(frozen=True, slots=True)
class SgxsStream:
    """An enclave's measured build: ECREATE's SSAFRAMESIZE and SIZE, then pages in EADD order."""

    ssaframesize: int
    size: int
    pages: tuple[SgxsPage, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.pages, tuple):
            object.__setattr__(self, "pages", tuple(self.pages))
        problem = _ecreate_problem(self.ssaframesize, self.size)
        if problem:
            raise InvalidStructure("SGXS", f"ECREATE: {problem}")
        seen: set[int] = set()
        for page in self.pages:
            if page.offset in seen:
                raise InvalidStructure("SGXS", f"page offset {page.offset:#x} is added twice")
            if page.offset + PAGE_SIZE > self.size:
                raise InvalidStructure("SGXS", f"page offset {page.offset:#x} lies outside the "
                                       f"enclave (SIZE {self.size:#x})")
            seen.add(page.offset)

    def measurement(self) -> Measurement:
        """The running measurement after ECREATE and every page (before EINIT)."""
        m = Measurement()
        m.ecreate(self.ssaframesize, self.size)
        run: list[SgxsPage] = []
        for page in self.pages:
            if run and not (page.measured == ALL_CHUNKS and page.flags == run[0].flags
                            and page.offset == run[-1].offset + PAGE_SIZE):
                _measure_run(m, run)
                run = []
            if page.measured == ALL_CHUNKS:
                run.append(page)
            else:
                m.eadd(page.offset, page.flags)
                for i in _bits(page.measured):
                    m.eextend(page.offset + i * EEXTEND_CHUNK, page.chunk(i))
        _measure_run(m, run)
        return m

    def mrenclave(self) -> bytes:
        """MRENCLAVE: the SHA-256 of the measured records."""
        return self.measurement().digest()

    def to_bytes(self, *, unmeasured: bool = False) -> bytes:
        """The SGXS stream; with ``unmeasured`` also the UNMEASRD records (ESGXS)."""
        return write_sgxs(self.pages, ssaframesize=self.ssaframesize, size=self.size,
                          unmeasured=unmeasured)


def _measure_run(m: Measurement, run: list[SgxsPage]) -> None:
    """Measure fully-measured contiguous pages of one FLAGS through the bulk path."""
    if run:
        m.add_pages(run[0].offset, run[0].flags, b"".join(p.data for p in run))


def _bits(mask: int) -> list[int]:
    return [i for i in range(CHUNKS_PER_PAGE) if mask >> i & 1]


def write_sgxs(
    pages: Iterable[SgxsPage], *, ssaframesize: int, size: int, unmeasured: bool = False
) -> bytes:
    """The SGXS stream of pages in the given EADD order, each page's chunks ascending.

    Without ``unmeasured`` the result is canonical SGXS (its SHA-256 is MRENCLAVE);
    with it, chunks in a page's ``unmeasured`` mask are written as UNMEASRD records.
    """
    stream = SgxsStream(ssaframesize, size, tuple(pages))
    parts = [ecreate_record(ssaframesize, size)]
    for page in stream.pages:
        parts.append(eadd_record(page.offset, page.flags))
        wanted = page.loaded if unmeasured else page.measured
        if wanted == ALL_CHUNKS and not page.unmeasured:
            for i in range(CHUNKS_PER_PAGE):
                parts.append(eextend_record(page.offset + i * EEXTEND_CHUNK))
                parts.append(page.chunk(i))
            continue
        for i in _bits(wanted):
            header = eextend_record(page.offset + i * EEXTEND_CHUNK)
            if not page.measured >> i & 1:
                header = UNMEASRD_TAG + header[8:]
            parts.append(header)
            parts.append(page.chunk(i))
    return b"".join(parts)


def read_sgxs(data: bytes | bytearray | memoryview) -> SgxsStream:
    """Parse a canonical SGXS (or ESGXS) stream into its page model.

    Raises:
        InvalidStructure: the stream is malformed, or valid but not canonical
            (:func:`measure_sgxs` measures those).
    """
    reader = _Reader(bytes(data), canonical=True)
    reader.read()
    return SgxsStream(reader.ssaframesize, reader.size,
                      tuple(page.close() for page in reader.pages.values()))


def measure_sgxs(data: bytes | bytearray | memoryview) -> bytes:
    """MRENCLAVE of any valid SGXS stream: the SHA-256 of its measured records, in order.

    Chunks may come in any order, from any page added before them, and more than once
    (as the processor measures them); UNMEASRD records are skipped.

    Raises:
        InvalidStructure: a record the processor would refuse, or two contents for one chunk.
    """
    raw = bytes(data)
    reader = _Reader(raw, canonical=False)
    reader.read()
    h = hashlib.sha256()
    view = memoryview(raw)
    pos = 0
    for start in reader.unmeasured_at:
        h.update(view[pos:start])
        pos = start + _CHUNK_RECORD
    h.update(view[pos:])
    return h.digest()


_NOT_CANONICAL = ("the processor measures this (sgxs measure gives its MRENCLAVE), but it is "
                  "not canonical SGXS: each page's chunks once, ascending, right after its EADD")


class _Reader:
    """One pass over a stream, checking each record as the processor and Fortanix would.

    With ``canonical`` it also refuses what :class:`SgxsStream` cannot model.
    """

    def __init__(self, data: bytes, *, canonical: bool) -> None:
        self.data = data
        self.canonical = canonical
        self.pos = 0
        self.index = 0
        self.ssaframesize = 0
        self.size = 0
        self.unmeasured_at: list[int] = []
        self.pages: dict[int, _OpenPage] = {}

    def fail(self, detail: str) -> InvalidStructure:
        return InvalidStructure("SGXS", f"record {self.index} at byte offset {self.pos}: {detail}")

    def read(self) -> None:
        data, end = self.data, len(self.data)
        if end < RECORD_SIZE:
            raise self.fail(f"truncated: an SGXS stream starts with a 64-byte ECREATE record, "
                            f"found {end} bytes")
        self.ssaframesize, self.size = self._ecreate()
        last: _OpenPage | None = None
        self.pos, self.index = RECORD_SIZE, 1
        while self.pos < end:
            pos = self.pos
            if end - pos < RECORD_SIZE:
                raise self.fail(f"truncated record: {end - pos} bytes left, a record is 64")
            tag = data[pos : pos + 8]
            if tag in (EEXTEND_TAG, UNMEASRD_TAG):
                if last is None:
                    raise self.fail(f"{_name(tag)} before any EADD record")
                self._chunk(last, tag == EEXTEND_TAG, end)
                self.pos = pos + _CHUNK_RECORD
            elif tag == EADD_TAG:
                last = self._eadd()
                self.pos = pos + RECORD_SIZE
            elif tag in (ECREATE_TAG, UNSIZED_TAG):
                raise self.fail(f"a second {_name(tag)} record; only the first record creates")
            else:
                raise self.fail(f"unknown record tag {tag.hex()} ({_name(tag)}); expected EADD, "
                                "EEXTEND or UNMEASRD")
            self.index += 1

    def _ecreate(self) -> tuple[int, int]:
        tag = self.data[:8]
        if tag == UNSIZED_TAG:
            raise self.fail("UNSIZED record: the enclave SIZE is not fixed yet, so the stream "
                            "cannot be measured; finalise it with an ECREATE record")
        if tag != ECREATE_TAG:
            raise self.fail(f"expected an ECREATE record first, found tag {tag.hex()} "
                            f"({_name(tag)}); is this an SGXS file?")
        ssaframesize, size = _U32_U64.unpack_from(self.data, 8)
        if any(self.data[20:RECORD_SIZE]):
            raise self.fail("ECREATE bytes 20..63 must be zero (CET legacy-bitmap offset "
                            "is not supported)")
        problem = _ecreate_problem(ssaframesize, size)
        if problem:
            raise self.fail(f"ECREATE: {problem}")
        return ssaframesize, size

    def _eadd(self) -> _OpenPage:
        data, pos, size = self.data, self.pos, self.size
        offset, flags = _U64_U64.unpack_from(data, pos + 8)
        if any(data[pos + 24 : pos + RECORD_SIZE]):
            raise self.fail("EADD bytes 24..63 (SECINFO reserved) must be zero")
        if offset % PAGE_SIZE:
            raise self.fail(f"EADD offset {offset:#x} is not page aligned")
        if offset + PAGE_SIZE > size:
            raise self.fail(f"EADD offset {offset:#x} lies outside the enclave (SIZE {size:#x})")
        if offset in self.pages:
            raise self.fail(f"EADD offset {offset:#x} was already added")
        problem = _flags_problem(flags)
        if problem:
            raise self.fail(f"EADD: {problem}")
        if _page_type(flags) == PageType.PT_TCS and flags & SECINFO_RWX:
            raise self.fail(f"EADD of a TCS records FLAGS {flags:#x}, but the processor clears "
                            "R/W/X of a TCS (expected 0x100); the stream cannot be a measurement")
        page = self.pages[offset] = _OpenPage(offset, flags)
        return page

    def _chunk(self, last: _OpenPage, measured: bool, end: int) -> None:
        data, pos = self.data, self.pos
        name = "EEXTEND" if measured else "UNMEASRD"
        if end - pos < _CHUNK_RECORD:
            raise self.fail(f"truncated {name}: its header needs 256 data bytes after it, "
                            f"found {end - pos - RECORD_SIZE}")
        (offset,) = _U64.unpack_from(data, pos + 8)
        if any(data[pos + 16 : pos + RECORD_SIZE]):
            raise self.fail(f"{name} header bytes 16..63 must be zero")
        if offset % EEXTEND_CHUNK:
            raise self.fail(f"{name} offset {offset:#x} is not 256-byte aligned")
        page = self.pages.get(offset - offset % PAGE_SIZE)
        if page is None:
            raise self.fail(f"{name} offset {offset:#x} is not inside any page EADDed before it")
        if measured and _page_type(page.flags) not in _EEXTEND_TYPES:
            raise self.fail(f"EEXTEND of a page of type {_page_type(page.flags)}; only PT_REG "
                            "and PT_TCS pages are measured")
        index = (offset % PAGE_SIZE) // EEXTEND_CHUNK
        start = index * EEXTEND_CHUNK
        chunk = data[pos + RECORD_SIZE : pos + _CHUNK_RECORD]
        bit = 1 << index
        if page.loaded & bit and page.data[start : start + EEXTEND_CHUNK] != chunk:
            raise self.fail(f"{name} of chunk {index} of the page at {page.offset:#x} carries "
                            "other bytes than an earlier record of that chunk; a stream describes "
                            "one load, in which EADD copied each page once")
        if self.canonical:
            if page is not last:
                raise self.fail(f"{name} of the page at {page.offset:#x} after the EADD of "
                                f"{last.offset:#x}; {_NOT_CANONICAL}")
            if index <= page.last:
                raise self.fail(f"{name} of chunk {index} after chunk {page.last} of the same "
                                f"page; {_NOT_CANONICAL}")
        page.last = index
        page.data[start : start + EEXTEND_CHUNK] = chunk
        page.loaded |= bit
        if measured:
            page.measured |= bit
        else:
            page.unmeasured |= bit
            self.unmeasured_at.append(pos)


class _OpenPage:
    """A page being read: chunks arrive one record at a time."""

    __slots__ = ("data", "flags", "last", "loaded", "measured", "offset", "unmeasured")

    def __init__(self, offset: int, flags: int) -> None:
        self.offset = offset
        self.flags = flags
        self.data = bytearray(PAGE_SIZE)
        self.measured = 0
        self.unmeasured = 0
        self.loaded = 0
        self.last = -1

    def close(self) -> SgxsPage:
        return SgxsPage(self.offset, self.flags, bytes(self.data), self.measured, self.unmeasured)


def _name(tag: bytes) -> str:
    """A tag as readable text, e.g. b"EADD\\0\\0\\0\\0" -> "EADD"."""
    text = tag.rstrip(b"\0")
    if not text:
        return "all zero"
    if all(32 <= c < 127 for c in text):
        return text.decode("ascii")
    return "not text"
