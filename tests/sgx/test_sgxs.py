"""SGXS streams: the published vectors, round trips, UNMEASRD records and every malformed input."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import InvalidStructure
from enclavekit.sgx.sgxs import (
    ALL_CHUNKS,
    UNMEASRD_TAG,
    UNSIZED_TAG,
    SgxsPage,
    SgxsStream,
    measure_sgxs,
    read_sgxs,
    write_sgxs,
)
from tests.sgx.test_measure import reference_mrenclave
from tests.vectors import cases, entry, vector

SGXS_CASES = cases("measurement_vectors", "sgxs")
ENARX = entry("measurement_vectors", "image")


def record(tag: bytes, *fields: int, fmt: str = "<Q") -> bytes:
    body = struct.pack(fmt, *fields) if fields else b""
    return tag + body + bytes(56 - len(body))


def ecreate(ssaframesize: int = 1, size: int = 0x10000) -> bytes:
    return record(b"ECREATE\0", ssaframesize, size, fmt="<IQ")


def eadd(offset: int, flags: int = 0x203) -> bytes:
    return record(b"EADD\0\0\0\0", offset, flags, fmt="<QQ")


def eextend(offset: int, fill: int = 0xAB) -> bytes:
    return record(b"EEXTEND\0", offset) + bytes([fill]) * 256


def full_page(offset: int, flags: int = 0x203) -> bytes:
    return eadd(offset, flags) + b"".join(eextend(offset + i * 256, i) for i in range(16))


# ----------------------------------------------------------------------------- published vectors


@pytest.mark.parametrize("v", SGXS_CASES)
def test_fortanix_stream_measures_to_its_sigstruct_enclavehash(v: dict[str, str]) -> None:
    raw = vector(v["sgxs"]).read_bytes()
    enclavehash = vector(v["sigstruct"]).read_bytes()[960:992]
    stream = read_sgxs(raw)
    assert stream.mrenclave().hex() == v["mrenclave"]
    assert measure_sgxs(raw) == enclavehash == stream.mrenclave()


@pytest.mark.parametrize("v", SGXS_CASES)
def test_fortanix_stream_round_trips_byte_for_byte(v: dict[str, str]) -> None:
    raw = vector(v["sgxs"]).read_bytes()
    stream = read_sgxs(raw)
    # README §4b: 1 ECREATE, 9 EADD, 144 EEXTEND.
    assert len(stream.pages) == 9
    assert sum(bin(p.measured).count("1") for p in stream.pages) == 144
    assert stream.to_bytes() == raw
    assert stream.to_bytes(unmeasured=True) == raw


def test_enarx_image_exported_as_sgxs_gives_the_published_mrenclave() -> None:
    image = vector(ENARX["image"]).read_bytes()
    pages = [
        SgxsPage(i * 4096, 0x100 if i == 0 else 0x207, image[i * 4096 : (i + 1) * 4096])
        for i in range(6)
    ]
    raw = write_sgxs(pages, ssaframesize=1, size=32768)
    assert hashlib.sha256(raw).hexdigest() == ENARX["mrenclave"]
    assert read_sgxs(raw).mrenclave().hex() == ENARX["mrenclave"]
    # sgx-spec.md Appendix C: ECREATE and the TCS's EADD record.
    assert raw[:16].hex() == "45435245415445000100000000800000"
    assert raw[64:96].hex() == "45414444000000000000000000000000" "00010000000000000000000000000000"
    assert len(raw) == 64 + 6 * (64 + 16 * 320)


# ----------------------------------------------------------------------------- format details


def test_esgxs_tags_match_fortanix_constants() -> None:
    # rust-sgx sgxs.rs: MEAS_UNMEASRD = 0x44525341454d4e55, MEAS_UNSIZED = 0x0044455a49534e55.
    assert (0x44525341454D4E55).to_bytes(8, "little") == UNMEASRD_TAG
    assert (0x0044455A49534E55).to_bytes(8, "little") == UNSIZED_TAG


def test_unmeasured_chunks_are_carried_but_not_measured() -> None:
    data = bytes(range(256)) * 16
    page = SgxsPage(0x1000, 0x203, data, measured=0x00FF, unmeasured=0xFF00)
    stream = SgxsStream(1, 0x10000, (page,))
    esgxs = stream.to_bytes(unmeasured=True)
    sgxs = stream.to_bytes()
    assert esgxs.count(UNMEASRD_TAG) == 8 and UNMEASRD_TAG not in sgxs
    assert len(esgxs) == len(sgxs) + 8 * 320
    expected = hashlib.sha256(sgxs).digest()
    assert measure_sgxs(esgxs) == measure_sgxs(sgxs) == stream.mrenclave() == expected
    assert hashlib.sha256(esgxs).digest() != expected
    assert read_sgxs(esgxs) == stream
    dropped = read_sgxs(sgxs).pages[0]
    assert (dropped.measured, dropped.unmeasured) == (0x00FF, 0)
    assert dropped.data == data[:2048] + bytes(2048)


def test_unmeasured_data_change_keeps_mrenclave() -> None:
    base = SgxsPage(0, 0x203, bytes(4096), measured=0, unmeasured=ALL_CHUNKS)
    other = SgxsPage(0, 0x203, b"\xff" * 4096, measured=0, unmeasured=ALL_CHUNKS)
    a, b = SgxsStream(1, 0x2000, (base,)), SgxsStream(1, 0x2000, (other,))
    assert a.mrenclave() == b.mrenclave()
    assert measure_sgxs(a.to_bytes(unmeasured=True)) == measure_sgxs(b.to_bytes(unmeasured=True))


def test_eadd_only_page_round_trips() -> None:
    stream = SgxsStream(1, 0x4000, (SgxsPage(0x3000, 0x207, measured=0),))
    raw = stream.to_bytes()
    assert raw == ecreate(1, 0x4000) + eadd(0x3000, 0x207)
    assert read_sgxs(raw) == stream


def test_stream_with_only_ecreate_is_valid() -> None:
    assert read_sgxs(ecreate()) == SgxsStream(1, 0x10000)
    assert measure_sgxs(ecreate()) == hashlib.sha256(ecreate()).digest()


def test_pages_keep_eadd_order_even_when_descending() -> None:
    raw = ecreate() + full_page(0x5000) + full_page(0x2000, 0x100)
    stream = read_sgxs(raw)
    assert [p.offset for p in stream.pages] == [0x5000, 0x2000]
    assert stream.to_bytes() == raw
    assert stream.mrenclave() == hashlib.sha256(raw).digest()


def test_page_with_tcs_permissions_is_stored_as_the_processor_records_it() -> None:
    page = SgxsPage(0, 0x107)
    assert page.flags == 0x100
    raw = write_sgxs([page], ssaframesize=1, size=0x2000)
    assert raw[64 + 16 : 64 + 24] == (0x100).to_bytes(8, "little")


# ----------------------------------------------------------------------------- malformed streams

BAD_STREAMS = {
    "empty": (b"", "record 0 at byte offset 0: truncated"),
    "short header": (ecreate()[:40], "record 0 at byte offset 0: truncated"),
    "not sgxs": (b"\x7fELF" + bytes(60), "expected an ECREATE record first"),
    "unsized": (record(UNSIZED_TAG, 1, 0x40, fmt="<IQ"), "UNSIZED record"),
    "size not power of two": (ecreate(1, 0x3000), "power of two"),
    "size too small": (ecreate(1, 0x1000), "power of two"),
    "ssaframesize zero": (ecreate(0, 0x10000), "SSAFRAMESIZE"),
    "ecreate reserved": (ecreate()[:30] + b"\x01" + bytes(33), "ECREATE bytes 20..63"),
    "second ecreate": (ecreate() + ecreate(), "record 1 at byte offset 64: a second ECREATE"),
    "unknown tag": (ecreate() + record(b"EBLAH\0\0\0"), "unknown record tag"),
    "trailing partial": (ecreate() + full_page(0) + b"\0" * 10, "truncated record: 10 bytes"),
    "eextend data cut": (ecreate() + eadd(0) + eextend(0)[:200], "truncated EEXTEND"),
    "eextend before eadd": (ecreate() + eextend(0), "EEXTEND before any EADD"),
    "eextend other page": (
        ecreate() + eadd(0) + eextend(0x1000), "0x1000 is not inside any page EADDed before it"),
    "eextend before its eadd": (
        ecreate() + eadd(0) + eextend(0x1000) + eadd(0x1000), "not inside any page EADDed"),
    "eextend misaligned": (ecreate() + eadd(0) + eextend(0x80), "not 256-byte aligned"),
    "chunk twice, other bytes": (
        ecreate() + eadd(0) + eextend(0x100, 1) + eextend(0x100, 2), "carries other bytes"),
    "unmeasured then measured, other bytes": (
        ecreate() + eadd(0) + UNMEASRD_TAG + eextend(0x100, 1)[8:] + eextend(0x100, 2),
        "EEXTEND of chunk 1 of the page at 0x0 carries other bytes"),
    "chunk twice across pages, other bytes": (
        ecreate() + eadd(0) + eextend(0x100, 1) + eadd(0x1000) + eextend(0x100, 2),
        "carries other bytes"),
    "eextend reserved": (
        ecreate() + eadd(0) + eextend(0)[:20] + b"\x01" + eextend(0)[21:], "bytes 16..63"),
    "eadd twice": (ecreate() + eadd(0x1000) + eadd(0x1000), "already added"),
    "eadd misaligned": (ecreate() + eadd(0x1800), "not page aligned"),
    "eadd outside": (ecreate(1, 0x2000) + eadd(0x2000), "outside the enclave"),
    "eadd reserved": (ecreate() + eadd(0)[:40] + b"\x01" + bytes(23), "bytes 24..63"),
    "tcs with rwx": (ecreate() + eadd(0, 0x107), "clears R/W/X of a TCS"),
    "secs page type": (ecreate() + eadd(0, 0x003), "page type 0"),
    "va page type": (ecreate() + eadd(0, 0x300), "page type 3"),
    "pending bit": (ecreate() + eadd(0, 0x20B), "state bits"),
    "high flag bits": (ecreate() + eadd(0, 0x1_0000_0203), "reserved or state bits"),
    "write without read": (ecreate() + eadd(0, 0x202), "writable without being readable"),
    "eextend shadow stack": (ecreate() + eadd(0, 0x503) + eextend(0), "only PT_REG and PT_TCS"),
}


@pytest.mark.parametrize("name", sorted(BAD_STREAMS))
def test_malformed_stream_is_refused_with_its_record(name: str) -> None:
    raw, match = BAD_STREAMS[name]
    for parse in (read_sgxs, measure_sgxs):
        with pytest.raises(InvalidStructure, match=match) as info:
            parse(raw)
        message = str(info.value)
        assert message.startswith("SGXS: record ")
        assert "\n" not in message


def test_error_names_the_failing_record_and_offset() -> None:
    raw = ecreate() + full_page(0) + full_page(0x1000) + record(b"XXXXXXXX")
    with pytest.raises(InvalidStructure, match=r"record 35 at byte offset 10432: unknown"):
        read_sgxs(raw)


def test_every_truncation_of_the_fortanix_stream_is_refused_or_a_prefix_of_records() -> None:
    raw = vector(entry("measurement_vectors", "sgxs")["sgxs"]).read_bytes()
    for cut in range(0, len(raw), 37):
        try:
            stream = read_sgxs(raw[:cut])
        except InvalidStructure:
            continue
        # Only cuts on a record boundary parse, and they measure what they contain.
        assert stream.mrenclave() == hashlib.sha256(raw[:cut]).digest()


@given(position=st.integers(0, 46719), bit=st.integers(0, 7))
def test_a_flipped_bit_is_refused_or_changes_mrenclave(position: int, bit: int) -> None:
    v = entry("measurement_vectors", "sgxs")
    raw = bytearray(vector(v["sgxs"]).read_bytes())
    raw[position] ^= 1 << bit
    try:
        digest = measure_sgxs(bytes(raw))
    except InvalidStructure:
        return
    assert digest.hex() != v["mrenclave"]


# ----------------------------------------------------------------------------- any valid order
# The processor measures EEXTEND of any chunk of any page EADDed before it, in any order and
# repeatedly. The expected MRENCLAVE here is hashlib over the records each test builds itself.


def unmeasrd(offset: int, fill: int = 0xAB) -> bytes:
    return UNMEASRD_TAG + eextend(offset, fill)[8:]


NONCANONICAL_STREAMS = {
    "chunk twice": (
        [ecreate(), eadd(0), eextend(0x100), eextend(0x100)], "chunk 1 after chunk 1"),
    "chunks descending": (
        [ecreate(), eadd(0), eextend(0x200), eextend(0x100)], "chunk 1 after chunk 2"),
    "unmeasured twice": (
        [ecreate(), eadd(0), eextend(0x100), unmeasrd(0x100)], "UNMEASRD of chunk 1 after chunk 1"),
    "unmeasured then measured": (
        [ecreate(), eadd(0), unmeasrd(0x100), eextend(0x100)], "EEXTEND of chunk 1 after chunk 1"),
    "eextend earlier page": (
        [ecreate(), eadd(0), eadd(0x1000), eextend(0x100)],
        "EEXTEND of the page at 0x0 after the EADD of 0x1000"),
    "whole page reversed": (
        [ecreate(), eadd(0x3000, 0x100),
         *(eextend(0x3000 + i * 256, i) for i in range(15, -1, -1))],
        "chunk 14 after chunk 15"),
}


@pytest.mark.parametrize("name", sorted(NONCANONICAL_STREAMS))
def test_valid_noncanonical_stream_is_measured_but_not_modelled(name: str) -> None:
    records, match = NONCANONICAL_STREAMS[name]
    raw = b"".join(records)
    measured = b"".join(r for r in records if not r.startswith(UNMEASRD_TAG))
    assert measure_sgxs(raw) == hashlib.sha256(measured).digest()
    with pytest.raises(InvalidStructure, match=match) as info:
        read_sgxs(raw)
    assert "not canonical SGXS" in str(info.value)
    assert "\n" not in str(info.value)


def test_order_is_part_of_the_measurement() -> None:
    ascending = ecreate() + full_page(0)
    descending = ecreate() + eadd(0) + b"".join(eextend(i * 256, i) for i in range(15, -1, -1))
    assert sorted(ascending) == sorted(descending)  # the same bytes, in another order
    assert measure_sgxs(descending) == hashlib.sha256(descending).digest()
    assert measure_sgxs(descending) != measure_sgxs(ascending)
    assert read_sgxs(ascending).mrenclave() == measure_sgxs(ascending)


def _chunk_data(offset: int) -> bytes:
    """256 bytes that depend on the chunk's offset (so a repeat carries the same bytes)."""
    return hashlib.sha256(offset.to_bytes(8, "little")).digest() * 8


@st.composite
def any_order_streams(draw: st.DrawFn) -> tuple[list[tuple[bytes, bool]], bool]:
    """Records of a valid stream, each with whether it is measured, and whether it is canonical.

    Pages are EADDed in a random order; chunk records of any page come anywhere after its
    EADD, in any order, some repeated, some UNMEASRD.
    """
    slots = draw(st.permutations(range(16)))[: draw(st.integers(1, 6))]
    flags = [draw(st.sampled_from([0x203, 0x201, 0x207, 0x100])) for _ in slots]
    ops = draw(st.lists(st.tuples(st.integers(0, len(slots) - 1), st.integers(0, 15),
                                  st.booleans(), st.integers(0, 5)), max_size=60))
    after: list[list[tuple[int, int, bool]]] = [[] for _ in slots]
    for page, chunk, measured, delay in ops:
        after[min(page + delay, len(slots) - 1)].append((page, chunk, measured))
    records: list[tuple[bytes, bool]] = [(ecreate(), True)]
    canonical = True
    for position, slot in enumerate(slots):
        records.append((eadd(slot * 4096, flags[position]), True))
        last = -1
        for page, chunk, measured in after[position]:
            offset = slots[page] * 4096 + chunk * 256
            tag = b"EEXTEND\0" if measured else UNMEASRD_TAG
            records.append((record(tag, offset) + _chunk_data(offset), measured))
            canonical &= page == position and chunk > last
            last = chunk if page == position else last
    return records, canonical


@given(any_order_streams())
def test_any_valid_order_measures_to_sha256_of_its_measured_records(
    built: tuple[list[tuple[bytes, bool]], bool],
) -> None:
    records, canonical = built
    raw = b"".join(r for r, _ in records)
    expected = hashlib.sha256(b"".join(r for r, measured in records if measured)).digest()
    assert measure_sgxs(raw) == expected
    if canonical:
        stream = read_sgxs(raw)
        assert stream.mrenclave() == expected
        assert stream.to_bytes(unmeasured=True) == raw
    else:
        with pytest.raises(InvalidStructure, match="not canonical SGXS"):
            read_sgxs(raw)


# ----------------------------------------------------------------------------- page model


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"offset": 0x800, "flags": 0x203}, "page-aligned"),
        ({"offset": 0, "flags": 0x203, "data": bytes(100)}, "4096 bytes, found 100"),
        ({"offset": 0, "flags": 0x203, "measured": 0x1_0000}, "16-bit mask"),
        ({"offset": 0, "flags": 0x203, "measured": 3, "unmeasured": 2}, "both measured"),
        ({"offset": 0, "flags": 0x203, "data": b"\1" * 4096, "measured": 1}, "chunk 1 holds"),
        ({"offset": 0, "flags": 0x302}, "cannot be EADDed"),
    ],
)
def test_invalid_page_is_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidStructure, match=match):
        SgxsPage(**kwargs)  # type: ignore[arg-type]


def test_invalid_stream_layout_is_refused() -> None:
    with pytest.raises(InvalidStructure, match="added twice"):
        SgxsStream(1, 0x4000, (SgxsPage(0, 0x203), SgxsPage(0, 0x201)))
    with pytest.raises(InvalidStructure, match="outside the enclave"):
        SgxsStream(1, 0x4000, (SgxsPage(0x4000, 0x203),))
    with pytest.raises(InvalidStructure, match="power of two"):
        write_sgxs([], ssaframesize=1, size=0x5000)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, int, list[SgxsPage]]:
    """A random enclave: SIZE, SSAFRAMESIZE and pages in a random (or ascending) EADD order."""
    size = 1 << draw(st.integers(13, 18))
    slots = size // 4096
    order = draw(st.permutations(range(slots)))[: draw(st.integers(0, slots))]
    if draw(st.booleans()):
        order = sorted(order)  # ascending runs exercise the bulk path
    common = draw(st.sampled_from([0x203, 0x207, 0x201]))
    pages = []
    for slot in order:
        flags = draw(st.sampled_from([common, common, common, 0x100, 0x107, 0x205]))
        measured = draw(st.sampled_from([ALL_CHUNKS, ALL_CHUNKS, 0]) | st.integers(0, ALL_CHUNKS))
        unmeasured = draw(st.integers(0, ALL_CHUNKS)) & ~measured
        seed = draw(st.binary(min_size=1, max_size=16))
        data = bytearray((seed * (4096 // len(seed) + 1))[:4096])
        for i in range(16):
            if not (measured | unmeasured) >> i & 1:
                data[i * 256 : (i + 1) * 256] = bytes(256)
        pages.append(SgxsPage(slot * 4096, flags, bytes(data), measured, unmeasured))
    return draw(st.integers(1, 4)), size, pages


@given(layouts())
def test_random_layout_mrenclave_is_sha256_of_exported_stream(
    layout: tuple[int, int, list[SgxsPage]],
) -> None:
    ssaframesize, size, pages = layout
    stream = SgxsStream(ssaframesize, size, tuple(pages))
    sgxs = stream.to_bytes()
    esgxs = stream.to_bytes(unmeasured=True)
    expected = hashlib.sha256(sgxs).digest()
    assert stream.mrenclave() == expected  # bulk runs + per-chunk path
    assert read_sgxs(sgxs).mrenclave() == expected
    assert measure_sgxs(esgxs) == measure_sgxs(sgxs) == expected
    assert read_sgxs(esgxs) == stream
    chunk_pages = [
        (p.offset, p.flags, p.data, True) for p in pages if p.measured == ALL_CHUNKS
    ]
    if len(chunk_pages) == len(pages):  # the §2.2 reference only knows whole-page EEXTEND
        assert reference_mrenclave(ssaframesize, size, chunk_pages) == expected


@given(layouts())
def test_reimported_canonical_stream_keeps_the_measured_pages(
    layout: tuple[int, int, list[SgxsPage]],
) -> None:
    ssaframesize, size, pages = layout
    again = read_sgxs(write_sgxs(pages, ssaframesize=ssaframesize, size=size))
    assert (again.ssaframesize, again.size) == (ssaframesize, size)
    assert [(p.offset, p.flags, p.measured) for p in again.pages] == [
        (p.offset, p.flags, p.measured) for p in pages
    ]
    for old, new in zip(pages, again.pages, strict=True):
        assert new.unmeasured == 0
        for i in range(16):
            expected = old.chunk(i) if old.measured >> i & 1 else bytes(256)
            assert new.chunk(i) == expected
