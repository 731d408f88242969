"""MRENCLAVE records, incremental and bulk measurement: sgx-spec.md §2 and the enarx vector."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import SGXFault
from enclavekit.sgx.measure import Measurement, eadd_record, ecreate_record, eextend_record
from tests.vectors import entry, vector

ENARX = entry("measurement_vectors", "image")

# sgx-spec.md Appendix C: the exact record bytes for the enarx inputs (typed from the spec).
APPENDIX_C = {
    "ecreate": "45435245415445000100000000800000" + "00" * 48,
    "eadd_tcs": "45414444000000000000000000000000" "00010000000000000000000000000000" + "00" * 32,
    "eadd_reg": "45414444000000000010000000000000" "07020000000000000000000000000000" + "00" * 32,
    "eextend_100": "45455854454e44000001000000000000" + "00" * 48,
}


def reference_mrenclave(
    ssaframesize: int, size: int, pages: list[tuple[int, int, bytes, bool]]
) -> bytes:
    """sgx-spec.md §2.2, written out independently of the code under test."""
    h = hashlib.sha256(b"ECREATE\0" + struct.pack("<IQ", ssaframesize, size) + bytes(44))
    for offset, flags, data, measure in pages:
        if (flags >> 8) & 0xFF == 1:
            flags &= ~0x7
        h.update(b"EADD\0\0\0\0" + struct.pack("<QQ", offset, flags) + bytes(40))
        if measure:
            for i in range(0, 4096, 256):
                h.update(b"EEXTEND\0" + struct.pack("<Q", offset + i) + bytes(48))
                h.update(data[i : i + 256])
    return h.digest()


def enarx_pages() -> list[tuple[int, int, bytes, bool]]:
    image = vector(ENARX["image"]).read_bytes()
    return [
        (i * 4096, 0x100 if i == 0 else 0x207, image[i * 4096 : (i + 1) * 4096], True)
        for i in range(len(image) // 4096)
    ]


def test_records_match_appendix_c_bytes() -> None:
    assert ecreate_record(1, 0x8000).hex() == APPENDIX_C["ecreate"]
    assert eadd_record(0, 0x100).hex() == APPENDIX_C["eadd_tcs"]
    assert eadd_record(0x1000, 0x207).hex() == APPENDIX_C["eadd_reg"]
    assert eextend_record(0x100).hex() == APPENDIX_C["eextend_100"]


def test_enarx_vector_per_page_and_bulk() -> None:
    pages = enarx_pages()
    per_page = Measurement()
    per_page.ecreate(1, 32768)
    for offset, flags, data, _ in pages:
        per_page.add_page(offset, flags, data)
    bulk = Measurement()
    bulk.ecreate(1, 32768)
    bulk.add_pages(0, 0x100, pages[0][2])
    bulk.add_pages(0x1000, 0x207, b"".join(p[2] for p in pages[1:]))
    assert per_page.hexdigest() == ENARX["mrenclave"]
    assert bulk.hexdigest() == ENARX["mrenclave"]
    assert reference_mrenclave(1, 32768, pages).hex() == ENARX["mrenclave"]


def test_enarx_vector_matches_sigstruct_enclavehash() -> None:
    enclavehash = vector(ENARX["sigstruct"]).read_bytes()[960:992]
    m = Measurement()
    m.ecreate(1, 32768)
    for offset, flags, data, _ in enarx_pages():
        m.add_page(offset, flags, data)
    assert m.digest() == enclavehash


@pytest.mark.parametrize("perms", [1, 2, 3, 4, 5, 6, 7])
def test_tcs_permissions_are_cleared_before_hashing(perms: int) -> None:
    assert eadd_record(0x2000, 0x100 | perms) == eadd_record(0x2000, 0x100)
    a, b = Measurement(), Measurement()
    for m in (a, b):
        m.ecreate(1, 1 << 20)
    a.add_page(0, 0x100 | perms, bytes(4096))
    b.add_pages(0, 0x100 | perms, bytes(4096))
    expected = reference_mrenclave(1, 1 << 20, [(0, 0x100, bytes(4096), True)])
    assert a.digest() == b.digest() == expected


def test_regular_page_permissions_are_measured() -> None:
    a, b = Measurement(), Measurement()
    for m in (a, b):
        m.ecreate(1, 1 << 20)
    a.add_page(0, 0x201, bytes(4096))
    b.add_page(0, 0x203, bytes(4096))
    assert a.digest() != b.digest()


def test_digest_does_not_finalise_and_copy_is_independent() -> None:
    m = Measurement()
    m.ecreate(2, 1 << 16)
    first = m.digest()
    clone = m.copy()
    m.add_page(0, 0x203, bytes(4096))
    assert clone.digest() == first != m.digest()
    assert m.hexdigest() == m.digest().hex()


def test_unmeasured_bulk_pages_bind_only_offset_and_flags() -> None:
    a, b = Measurement(), Measurement()
    for m in (a, b):
        m.ecreate(1, 1 << 20)
    a.add_pages(0x4000, 0x203, b"\x01" * 3 * 4096, measured=False)
    b.add_pages(0x4000, 0x203, b"\x02" * 3 * 4096, measured=False)
    expected = reference_mrenclave(
        1, 1 << 20, [(0x4000 + i * 4096, 0x203, b"", False) for i in range(3)]
    )
    assert a.digest() == b.digest() == expected


page_flags = st.sampled_from([0x201, 0x203, 0x205, 0x207, 0x100, 0x107])


@given(
    first_page=st.integers(0, 1 << 20),
    flags=page_flags,
    measured=st.booleans(),
    seed=st.binary(min_size=1, max_size=64),
    pages=st.integers(0, 140),
)
def test_bulk_equals_per_page(
    first_page: int, flags: int, measured: bool, seed: bytes, pages: int
) -> None:
    data = (seed * (pages * 4096 // len(seed) + 1))[: pages * 4096]
    bulk, per_page = Measurement(), Measurement()
    for m in (bulk, per_page):
        m.ecreate(1, 1 << 40)
    bulk.add_pages(first_page * 4096, flags, memoryview(data), measured=measured)
    for i in range(pages):
        per_page.add_page((first_page + i) * 4096, flags, data[i * 4096 : (i + 1) * 4096],
                          measured=measured)
    assert bulk.digest() == per_page.digest()
    reference = [((first_page + i) * 4096, flags, data[i * 4096 : (i + 1) * 4096], measured)
                 for i in range(pages)]
    assert bulk.digest() == reference_mrenclave(1, 1 << 40, reference)


def test_bulk_batches_are_hashed_in_order() -> None:
    # 300 pages span three batches; every page differs, so a batch mix-up changes the digest.
    data = b"".join(i.to_bytes(2, "little") * 2048 for i in range(300))
    bulk, per_page = Measurement(), Measurement()
    for m in (bulk, per_page):
        m.ecreate(1, 1 << 30)
    bulk.add_pages(0x10000, 0x203, data)
    for i in range(300):
        per_page.add_page(0x10000 + i * 4096, 0x203, data[i * 4096 : (i + 1) * 4096])
    assert bulk.digest() == per_page.digest()


@pytest.mark.parametrize(
    ("offset", "length", "match"),
    [
        (0, 4095, "multiple of 4096"),
        (0, 4097, "multiple of 4096"),
        (0x800, 4096, "not page aligned"),
        ((1 << 64) - 4096, 8192, "64-bit address space"),
    ],
)
def test_bulk_refuses_bad_pages(offset: int, length: int, match: str) -> None:
    m = Measurement()
    m.ecreate(1, 1 << 20)
    with pytest.raises(SGXFault, match=match):
        m.add_pages(offset, 0x203, bytes(length))


def test_instructions_need_ecreate_first_and_only_once() -> None:
    m = Measurement()
    with pytest.raises(SGXFault, match="no ECREATE"):
        m.add_pages(0, 0x203, bytes(4096))
    with pytest.raises(SGXFault, match="no ECREATE"):
        m.eadd(0, 0x203)
    m.ecreate(1, 1 << 20)
    with pytest.raises(SGXFault, match="already been started"):
        m.ecreate(1, 1 << 20)


@pytest.mark.parametrize(("offset", "length"), [(0x80, 256), (0, 255), (0, 257)])
def test_eextend_needs_256_aligned_bytes(offset: int, length: int) -> None:
    m = Measurement()
    m.ecreate(1, 1 << 20)
    m.eadd(0, 0x203)
    with pytest.raises(SGXFault, match="256 aligned bytes"):
        m.eextend(offset, bytes(length))
