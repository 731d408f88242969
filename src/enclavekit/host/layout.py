"""The enclave image laid out in 4 KiB pages, and its MRENCLAVE.

Order from offset 0: the canonical manifest (PT_REG R, measured), the bundle of trusted
files (PT_REG R, measured), then per thread a TCS, two SSA frames, a guard gap (not
added) and the stack (PT_REG RW, measured zero), then the heap (PT_REG RW, EADD only:
unmeasured and without data). SECS.SIZE is the next power of two ≥ the laid-out size.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidStructure, ManifestError
from ..sgx.consts import PAGE_SIZE, PageType, SecInfoFlags, secinfo_flags
from ..sgx.measure import Measurement
from ..sgx.sgxs import SgxsPage, SgxsStream, write_sgxs
from ..sgx.structs import TCS
from .manifest import Manifest

BUNDLE_MAGIC = b"EKBUNDL1"
MANIFEST_MAGIC = b"EKMANIF1"
SSAFRAMESIZE = 1
NSSA = 2
FLAGS_R = secinfo_flags(PageType.PT_REG, SecInfoFlags.R)
FLAGS_RW = secinfo_flags(PageType.PT_REG, SecInfoFlags.R | SecInfoFlags.W)
FLAGS_TCS = secinfo_flags(PageType.PT_TCS)
_ZERO_PAGE = bytes(PAGE_SIZE)
_UNMEASURED_BATCH = 4096
"""Heap pages per EADD-only batch (only their count matters; 16 MiB of zeros at most)."""
_U32 = struct.Struct("<I")
_FILE_HEAD = struct.Struct("<H")
_FILE_TAIL = struct.Struct("<Q32s")

Progress = Callable[[int, int], None]
"""Called with (pages done, pages total) while measuring."""


@dataclass(frozen=True, slots=True)
class Region:
    """A named run of pages: offset from BASEADDR, page count, SECINFO.FLAGS, measured or not."""

    name: str
    offset: int
    pages: int
    flags: int
    measured: bool

    def to_dict(self) -> dict[str, Any]:
        """The region as JSON values."""
        return {"name": self.name, "offset": self.offset, "pages": self.pages,
                "flags": self.flags, "measured": self.measured}

    @classmethod
    def from_dict(cls, raw: Any) -> Region:
        """A region from :meth:`to_dict` output.

        Raises:
            InvalidStructure: a field is missing or of the wrong type.
        """
        try:
            region = cls(str(raw["name"]), int(raw["offset"]), int(raw["pages"]),
                         int(raw["flags"]), bool(raw["measured"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidStructure("enclave image", f"bad region entry {raw!r}") from exc
        return region


@dataclass(frozen=True, slots=True)
class Layout:
    """An enclave image in pages: ECREATE parameters, regions, pages and MRENCLAVE."""

    size: int
    ssaframesize: int
    regions: tuple[Region, ...]
    pages: tuple[SgxsPage, ...]
    mrenclave: bytes

    @property
    def epc_pages(self) -> int:
        """EPC pages the enclave commits: every EADDed page plus one for the SECS."""
        return len(self.pages) + 1

    @property
    def epc_bytes(self) -> int:
        """EPC bytes the enclave commits."""
        return self.epc_pages * PAGE_SIZE

    def to_sgxs(self) -> bytes:
        """The canonical SGXS stream; its SHA-256 is MRENCLAVE."""
        return write_sgxs(self.pages, ssaframesize=self.ssaframesize, size=self.size)

    def stream(self) -> SgxsStream:
        """The layout as an :class:`SgxsStream`."""
        return SgxsStream(self.ssaframesize, self.size, self.pages)


def bundle(manifest: Manifest) -> bytes:
    """The trusted files as one deterministic blob (sorted paths, sizes, SHA-256s, contents).

    Raises:
        ManifestError: a trusted file cannot be read.
    """
    heads: list[bytes] = [BUNDLE_MAGIC, _U32.pack(len(manifest.trusted))]
    bodies: list[bytes] = []
    for rel in manifest.trusted:  # already sorted
        try:
            data = (manifest.root / rel).read_bytes()
        except OSError as exc:
            raise ManifestError(f"{manifest.root / rel}: trusted file cannot be read: "
                                f"{exc.strerror}") from exc
        path = rel.encode()
        heads += [_FILE_HEAD.pack(len(path)), path,
                  _FILE_TAIL.pack(len(data), hashlib.sha256(data).digest())]
        bodies.append(data)
    return b"".join(heads + bodies)


def manifest_blob(manifest: Manifest) -> bytes:
    """The measured manifest copy: magic, u32 length, canonical JSON."""
    text = manifest.canonical_json()
    return MANIFEST_MAGIC + _U32.pack(len(text)) + text


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % PAGE_SIZE)


def _next_pow2(n: int) -> int:
    size = 2 * PAGE_SIZE
    while size < n:
        size <<= 1
    return size


def _data_pages(offset: int, flags: int, data: bytes) -> list[SgxsPage]:
    return [SgxsPage(offset + i, flags, data[i : i + PAGE_SIZE])
            for i in range(0, len(data), PAGE_SIZE)]


def build_layout(manifest: Manifest, *, progress: Progress | None = None) -> Layout:
    """Lay out and measure the enclave image of an app.

    Raises:
        ManifestError: a trusted file cannot be read.
    """
    regions: list[Region] = []
    pages: list[SgxsPage] = []
    offset = 0

    def region(name: str, flags: int, new: list[SgxsPage], measured: bool) -> None:
        nonlocal offset
        regions.append(Region(name, offset, len(new), flags, measured))
        pages.extend(new)
        offset += len(new) * PAGE_SIZE

    region("manifest", FLAGS_R, _data_pages(offset, FLAGS_R, _pad(manifest_blob(manifest))), True)
    region("bundle", FLAGS_R, _data_pages(offset, FLAGS_R, _pad(bundle(manifest))), True)
    stack_pages = manifest.stack_size // PAGE_SIZE
    for t in range(manifest.threads):
        tcs = TCS(ossa=offset + PAGE_SIZE, nssa=NSSA, oentry=0, fslimit=0xFFF, gslimit=0xFFF)
        region(f"tcs{t}", FLAGS_TCS, [SgxsPage(offset, FLAGS_TCS, tcs.to_bytes())], True)
        region(f"ssa{t}", FLAGS_RW,
               [SgxsPage(offset + i * PAGE_SIZE, FLAGS_RW, _ZERO_PAGE) for i in range(NSSA)],
               True)
        offset += PAGE_SIZE  # guard page: left out of the enclave
        region(f"stack{t}", FLAGS_RW,
               [SgxsPage(offset + i * PAGE_SIZE, FLAGS_RW, _ZERO_PAGE)
                for i in range(stack_pages)], True)
    heap = [SgxsPage(offset + i * PAGE_SIZE, FLAGS_RW, _ZERO_PAGE, measured=0)
            for i in range(manifest.heap_size // PAGE_SIZE)]
    region("heap", FLAGS_RW, heap, False)
    size = _next_pow2(offset)
    mrenclave = _measure(size, regions, pages, progress)
    return Layout(size, SSAFRAMESIZE, tuple(regions), tuple(pages), mrenclave)


def _measure(size: int, regions: list[Region], pages: list[SgxsPage],
             progress: Progress | None) -> bytes:
    """MRENCLAVE of the pages, one bulk ``add_pages`` call per region."""
    m = Measurement()
    m.ecreate(SSAFRAMESIZE, size)
    total = len(pages)
    done = 0
    for r in regions:
        run = pages[done : done + r.pages]
        if r.measured:
            m.add_pages(r.offset, r.flags, b"".join(p.data for p in run))
        elif run:
            zeros = memoryview(bytes(min(r.pages, _UNMEASURED_BATCH) * PAGE_SIZE))
            for first in range(0, r.pages, _UNMEASURED_BATCH):
                n = min(_UNMEASURED_BATCH, r.pages - first)
                m.add_pages(r.offset + first * PAGE_SIZE, r.flags, zeros[: n * PAGE_SIZE],
                            measured=False)
        done += r.pages
        if progress is not None:
            progress(done, total)
    return m.digest()
