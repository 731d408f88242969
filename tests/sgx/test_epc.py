"""The EPC: memory encryption and integrity (item 6) and EPC capacity (item 7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import EnclaveLost, EPCExhausted, SGXFault
from enclavekit.sgx.epc import DRAM_PAGE_SIZE, EPC
from enclavekit.sgx.processor import EvictedPage
from enclavekit.sgx.signing import SigningKey
from enclavekit.sgx.structs import KeyRequest

from ._cpu import BASE, RW, cpu, enclave, page, secs, signed


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


# ----------------------------------------------------------------------------- the MEE


def test_dram_holds_ciphertext_and_roundtrips_through_the_mee() -> None:
    epc = EPC(4)
    epc.store(1, page(1))
    raw = epc.dram_read(1)
    assert len(raw) == DRAM_PAGE_SIZE and page(1)[:16] not in raw
    assert epc.load(1) == page(1)
    epc.store(1, page(1))
    assert epc.dram_read(1) != raw  # a fresh version each write: same data, new ciphertext


@given(bit=st.integers(0, DRAM_PAGE_SIZE * 8 - 1))
def test_any_bit_flip_in_dram_fails_the_integrity_check(bit: int) -> None:
    epc = EPC(2)
    epc.store(0, page(0))
    raw = bytearray(epc.dram_read(0))
    raw[bit // 8] ^= 1 << (bit % 8)
    epc.dram_write(0, bytes(raw))
    with pytest.raises(EnclaveLost, match="integrity check failed on page 0"):
        epc.load(0)


def test_dram_replay_and_relocation_fail_the_integrity_check() -> None:
    epc = EPC(2)
    epc.store(0, page(0))
    old = epc.dram_read(0)
    epc.store(0, page(1))
    epc.dram_write(0, old)  # replay of an older write of the same page
    with pytest.raises(EnclaveLost):
        epc.load(0)
    epc.store(1, page(1))
    epc.dram_write(0, epc.dram_read(1))  # another frame's (current) contents
    with pytest.raises(EnclaveLost):
        epc.load(0)


def test_cached_pages_are_written_back_before_the_host_sees_dram() -> None:
    epc = EPC(2)
    epc.store(0, page(0), cached=True)
    raw = epc.dram_read(0)  # forces the write-back
    assert len(raw) == DRAM_PAGE_SIZE and page(0)[:16] not in raw
    epc.store(0, page(1), cached=True)
    epc.dram_write(0, raw)  # stale but once genuine
    with pytest.raises(EnclaveLost):
        epc.load(0)


# ----------------------------------------------------------------------------- enclave lost


def _tamper(proc: object, epc_page: int) -> None:
    raw = bytearray(proc.dram_read(epc_page))  # type: ignore[attr-defined]
    raw[100] ^= 0x40
    proc.dram_write(epc_page, bytes(raw))  # type: ignore[attr-defined]


def test_dram_tampering_loses_the_enclave_for_every_later_operation(key: SigningKey) -> None:
    proc = cpu()
    s = enclave(proc, 3)
    proc.einit(s, signed(3, key))  # type: ignore[arg-type]
    victim = proc.pages_of(s)[BASE + 4096]
    _tamper(proc, victim)
    assert proc.read(s, BASE, 4) == page(0)[:4]  # not used yet: not detected yet
    with pytest.raises(EnclaveLost, match=rf"enclave \d+ is lost: .*page {victim}"):
        proc.read(s, BASE + 4096, 4)
    later = [
        lambda: proc.read(s, BASE, 4),
        lambda: proc.write(s, BASE, b"x"),
        lambda: proc.enter(s),
        lambda: proc.egetkey(s, KeyRequest()),
        lambda: proc.etrack(s),
        lambda: proc.eblock(proc.pages_of(s)[BASE]),
        lambda: proc.evict(proc.pages_of(s)[BASE]),
        lambda: proc.edbgrd(s, BASE, 1),
    ]
    for op in later:
        with pytest.raises(EnclaveLost, match="is lost"):
            op()
    for p in list(proc.pages_of(s).values()):  # teardown still works
        proc.eremove(p)
    proc.eremove(s)
    assert proc.free_pages() == proc.epc_pages


def test_dram_replay_of_an_enclave_page_loses_the_enclave(key: SigningKey) -> None:
    proc = cpu()
    s = enclave(proc, 2)
    proc.einit(s, signed(2, key))  # type: ignore[arg-type]
    p = proc.pages_of(s)[BASE]
    old = proc.dram_read(p)
    proc.write(s, BASE, b"balance=0")
    proc.dram_write(p, old)
    with pytest.raises(EnclaveLost):
        proc.read(s, BASE, 9)
    with pytest.raises(EnclaveLost):
        proc.read(s, BASE + 4096, 1)


def test_secs_tampering_loses_the_enclave() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    _tamper(proc, s)
    with pytest.raises(EnclaveLost):
        proc.eadd(None, s, BASE + 0x8000, RW, page(8))
    with pytest.raises(EnclaveLost):
        proc.eextend(s, BASE)


def test_va_page_tampering_refuses_its_use() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    ev = proc.evict(proc.pages_of(s)[BASE])
    _tamper(proc, ev.va_page)
    with pytest.raises(EnclaveLost, match=f"VA page {ev.va_page} is lost"):
        proc.reload(ev)
    with pytest.raises(EnclaveLost, match="VA page"):
        proc.evict(proc.pages_of(s)[BASE + 4096])
    proc.eremove(ev.va_page)  # the OS can drop it; a new VA page works
    proc.evict(proc.pages_of(s)[BASE + 4096])


# ----------------------------------------------------------------------------- capacity


def test_full_epc_is_exhausted_until_a_page_is_evicted() -> None:
    proc = cpu(8)
    s = enclave(proc, 6)
    va = proc.epa()
    assert proc.free_pages() == 0
    with pytest.raises(EPCExhausted, match=r"EPC is full: 8 of 8 pages in use; evict a page"):
        proc.eadd(None, s, BASE + 0x10000, RW, page(9))
    with pytest.raises(EPCExhausted):
        proc.eadd(0, s, BASE + 0x10000, RW, page(9))
    with pytest.raises(EPCExhausted):
        proc.epa()
    victim = proc.choose_victim()
    assert victim is not None
    ev = proc.evict(victim)
    assert ev.va_page == va  # the helper used the VA page the OS made
    added = proc.eadd(None, s, BASE + 0x10000, RW, page(9))
    assert added == victim
    assert proc.edbgrd(s, BASE + 0x10000, 4096) == page(9)


def test_busy_or_out_of_range_page_is_refused_with_a_fault() -> None:
    proc = cpu(8)
    s = enclave(proc, 1)
    with pytest.raises(SGXFault, match=r"EADD: #PF.*in use"):
        proc.eadd(s, s, BASE + 4096, RW, page(1))
    for bad in (8, -1, True):
        with pytest.raises(SGXFault, match=r"#GP.*not an EPC page"):
            proc.eadd(bad, s, BASE + 4096, RW, page(1))  # type: ignore[arg-type]
    with pytest.raises(SGXFault, match="#GP"):
        proc.dram_read(8)


def test_overcommit_keeps_every_page_through_eviction_and_reload() -> None:
    proc = cpu(10)
    proc.epa()
    s = proc.ecreate(secs())
    out: dict[int, EvictedPage] = {}
    n = 40  # 4x the EPC
    for i in range(n):
        if proc.free_pages() == 0:
            victim = proc.choose_victim()
            assert victim is not None
            ev = proc.evict(victim)
            out[ev.linaddr] = ev
        proc.add_page(None, s, BASE + i * 4096, RW, page(i))
    for i in reversed(range(n)):
        linaddr = BASE + i * 4096
        if linaddr not in proc.pages_of(s):
            if proc.free_pages() == 0:
                victim = proc.choose_victim()
                assert victim is not None
                ev = proc.evict(victim)
                out[ev.linaddr] = ev
            proc.reload(out.pop(linaddr))
        assert proc.edbgrd(s, linaddr, 4096) == page(i)


def test_choose_victim_prefers_least_recently_used_page_of_another_enclave() -> None:
    proc = cpu(16)
    a = enclave(proc, 3)
    b = enclave(proc, 3, base=BASE * 2)
    proc.edbgrd(a, BASE, 1)  # touch a's first page
    assert proc.choose_victim(exclude_secs=a) == proc.pages_of(b)[BASE * 2]
    assert proc.choose_victim(exclude_secs=b) == proc.pages_of(a)[BASE + 4096]
