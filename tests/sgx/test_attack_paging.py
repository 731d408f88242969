"""Attack classes EP-1 … EP-5 (attacks.md §4): the host pages enclave memory out and back in.

The host is the OS: it holds every evicted blob, PCMD and chooses LINADDR, SECS and VA
slot at reload. Each test attempts the attack and expects the refusal attacks.md gives.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import ChildPresent, MACCompareFail, NotTracked, PageNotBlocked
from enclavekit.sgx.processor import EvictedPage, Processor
from enclavekit.sgx.signing import SigningKey

from ._cpu import BASE, cpu, enclave, page, signed

PCMD_BITS = 128 * 8
PAGE_BITS = 4096 * 8
ENCLAVEID = range(64 * 8, 72 * 8)
"""PCMD.ENCLAVEID bits: informational, not covered by the MAC (SDM EWB/ELDU)."""


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@cache
def _victim() -> tuple[Processor, int, EvictedPage]:
    """One enclave page evicted once. Failed reloads change nothing, so this is shared."""
    proc = cpu()
    s = enclave(proc, 4)
    ev = proc.evict(proc.pages_of(s)[BASE + 0x1000])
    return proc, s, ev


def _reload(proc: Processor, s: int | None, ev: EvictedPage, **change: Any) -> int:
    fields = {"linaddr": ev.linaddr, "ciphertext": ev.ciphertext, "pcmd": ev.pcmd_bytes,
              "va_page": ev.va_page, "slot": ev.slot, **change}
    return proc.eldu(None, s, fields["linaddr"], fields["ciphertext"], fields["pcmd"],
                     fields["va_page"], fields["slot"])


def _still_loads(proc: Processor, s: int, ev: EvictedPage) -> None:
    """The untouched blob still loads: the failed attempts left the VA slot unchanged."""
    _reload(proc, s, ev)
    assert proc.edbgrd(s, ev.linaddr, 4096) == page(1)


# ----------------------------------------------------------------------------- EP-1 replay


def test_ep1_replay_of_older_blob_is_refused_and_slot_kept() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    target = BASE + 0x1000
    old = proc.evict(proc.pages_of(s)[target])
    proc.reload(old)
    proc.edbgwr(s, target, b"NEW CONTENT")
    new = proc.evict(proc.pages_of(s)[target])
    for slot_of in (old, new):  # the old blob through its own (now empty) slot and the new one
        with pytest.raises(MACCompareFail, match="SGX_MAC_COMPARE_FAIL"):
            _reload(proc, s, old, va_page=slot_of.va_page, slot=slot_of.slot)
    proc.reload(new)
    assert proc.edbgrd(s, target, 11) == b"NEW CONTENT"


def test_ep1_loading_the_same_blob_twice_is_refused() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    ev = proc.evict(proc.pages_of(s)[BASE])
    proc.reload(ev)
    with pytest.raises(MACCompareFail):
        proc.reload(ev)
    again = proc.evict(proc.pages_of(s)[BASE])  # evict once more: the slot is reused
    with pytest.raises(MACCompareFail):
        proc.reload(ev)  # the old blob of the same page does not load in its place
    proc.reload(again)
    assert proc.edbgrd(s, BASE, 4096) == page(0)


@given(rounds=st.integers(2, 5), data=st.data())
def test_ep1_any_older_copy_is_refused(rounds: int, data: st.DataObject) -> None:
    """Evict/reload the same page ``rounds`` times (its contents changing in between); every
    copy but the newest is refused through the newest copy's slot, which stays usable."""
    proc = cpu(16)
    s = enclave(proc, 1)
    copies = []
    for r in range(rounds):
        copies.append(proc.evict(proc.pages_of(s)[BASE]))
        if r < rounds - 1:
            proc.reload(copies[-1])
            proc.edbgwr(s, BASE, f"round {r}".encode())
    newest = copies[-1]
    old = copies[data.draw(st.integers(0, rounds - 2))]
    with pytest.raises(MACCompareFail):
        _reload(proc, s, old, va_page=newest.va_page, slot=newest.slot)
    proc.reload(newest)
    assert proc.edbgrd(s, BASE, 7) == f"round {rounds - 2}".encode()


# ----------------------------------------------------------------------------- EP-2 relocation


def test_ep2_reload_at_another_linaddr_is_refused() -> None:
    proc, s, ev = _victim()
    for linaddr in (BASE, BASE + 0x2000, BASE + 0x1000 + 0x40_0000, ev.linaddr ^ 1 << 40):
        with pytest.raises(MACCompareFail):
            _reload(proc, s, ev, linaddr=linaddr)


def test_ep2_reload_into_another_enclave_is_refused() -> None:
    proc, _, ev = _victim()
    other = enclave(proc, 0, base=BASE)  # same layout, other SECS (other EID)
    with pytest.raises(MACCompareFail):
        _reload(proc, other, ev)
    with pytest.raises(MACCompareFail):
        _reload(proc, None, ev)  # as if it were a SECS or VA page (EID 0)
    assert proc.pages_of(other) == {}


@given(slot=st.integers(0, 511))
def test_ep2_reload_through_another_va_slot_is_refused(slot: int) -> None:
    proc, s, ev = _victim()
    if slot == ev.slot:
        slot = (slot + 1) % 512
    with pytest.raises(MACCompareFail):
        _reload(proc, s, ev, slot=slot)


def test_ep2_reload_through_a_slot_of_another_va_page_is_refused() -> None:
    proc = cpu()
    s = enclave(proc, 3)
    a = proc.evict(proc.pages_of(s)[BASE])
    other_va = proc.epa()
    b = proc.evict(proc.pages_of(s)[BASE + 0x1000])
    for va in (other_va, b.va_page):
        for slot in (a.slot, b.slot):
            if (va, slot) != (a.va_page, a.slot):
                with pytest.raises(MACCompareFail):
                    _reload(proc, s, a, va_page=va, slot=slot)
    proc.reload(a)
    proc.reload(b)


# ----------------------------------------------------------------------------- EP-3 metadata


def test_ep3_every_pcmd_bit_flip_is_refused_except_enclaveid() -> None:
    """All 1024 PCMD bits: SECINFO (type, permissions, reserved), reserved bytes and MAC are
    authenticated; ENCLAVEID is not (the SDM takes the EID from PAGEINFO.SECS instead), so a
    flipped ENCLAVEID is ignored and the page loads with its original contents."""
    proc, s, ev = _victim()
    for bit in range(PCMD_BITS):
        if bit in ENCLAVEID:
            continue
        with pytest.raises(MACCompareFail):
            _reload(proc, s, ev, pcmd=flip(ev.pcmd_bytes, bit))
    fresh = cpu()
    fs = enclave(fresh, 2)
    for bit in (ENCLAVEID.start, ENCLAVEID.start + 9, ENCLAVEID.stop - 1):
        e = fresh.evict(fresh.pages_of(fs)[BASE + 0x1000])
        _reload(fresh, fs, e, pcmd=flip(e.pcmd_bytes, bit))
        assert fresh.edbgrd(fs, BASE + 0x1000, 4096) == page(1)


@pytest.mark.parametrize(("old", "new"), [(0x203, 0x100), (0x203, 0x207), (0x203, 0x201),
                                          (0x203, 0x303), (0x203, 0x003)])
def test_ep3_secinfo_escalation_is_refused(old: int, new: int) -> None:
    """REG→TCS, RW→RWX, RW→R, REG→VA, REG→SECS in PCMD.SECINFO.FLAGS."""
    proc, s, ev = _victim()
    assert int.from_bytes(ev.pcmd_bytes[:8], "little") == old
    with pytest.raises(MACCompareFail):
        _reload(proc, s, ev, pcmd=new.to_bytes(8, "little") + ev.pcmd_bytes[8:])


@given(bit=st.integers(0, PAGE_BITS + PCMD_BITS - 1))
def test_ep3_single_bit_flip_in_page_or_pcmd_is_refused(bit: int) -> None:
    proc, s, ev = _victim()
    if bit < PAGE_BITS:
        change = {"ciphertext": flip(ev.ciphertext, bit)}
    else:
        pbit = bit - PAGE_BITS
        if pbit in ENCLAVEID:
            return
        change = {"pcmd": flip(ev.pcmd_bytes, pbit)}
    with pytest.raises(MACCompareFail):
        _reload(proc, s, ev, **change)


@pytest.mark.slow
def test_ep3_every_bit_of_page_and_pcmd_exhaustively() -> None:
    """≥ 10 000 cases: all 32 768 ciphertext bits and 960 authenticated PCMD bits."""
    proc, s, ev = _victim.__wrapped__()
    cases = 0
    for bit in range(PAGE_BITS):
        with pytest.raises(MACCompareFail):
            _reload(proc, s, ev, ciphertext=flip(ev.ciphertext, bit))
        cases += 1
    for bit in range(PCMD_BITS):
        if bit not in ENCLAVEID:
            with pytest.raises(MACCompareFail):
                _reload(proc, s, ev, pcmd=flip(ev.pcmd_bytes, bit))
            cases += 1
    assert cases >= 10_000
    _still_loads(proc, s, ev)


def test_ep3_truncated_or_extended_ciphertext_is_refused() -> None:
    proc, s, ev = _victim()
    for bad in (ev.ciphertext[:-1], ev.ciphertext + b"\0", b"", bytes(4096)):
        with pytest.raises(MACCompareFail):
            _reload(proc, s, ev, ciphertext=bad)


def test_ep3_failed_attempts_leave_the_slot_so_the_real_page_loads() -> None:
    proc, s, ev = _victim.__wrapped__()
    for bit in (0, 1000, PAGE_BITS - 1):
        with pytest.raises(MACCompareFail):
            _reload(proc, s, ev, ciphertext=flip(ev.ciphertext, bit))
    _still_loads(proc, s, ev)


# ----------------------------------------------------------------------------- EP-4 ordering


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def test_ep4_ewb_of_an_unblocked_page_is_refused() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    va = proc.epa()
    with pytest.raises(PageNotBlocked, match=r"must be blocked with EBLOCK before EWB"):
        proc.ewb(proc.pages_of(s)[BASE], va, 0)
    assert proc.pages_of(s) == {BASE: proc.pages_of(s)[BASE]}


def test_ep4_ewb_without_etrack_or_with_thread_inside_is_refused(key: SigningKey) -> None:
    proc = cpu()
    s = enclave(proc, 2)
    proc.einit(s, signed(2, key))  # type: ignore[arg-type]
    va = proc.epa()
    victim = proc.pages_of(s)[BASE]
    proc.eblock(victim)
    with pytest.raises(NotTracked):  # no ETRACK at all
        proc.ewb(victim, va, 0)
    thread = proc.enter(s)
    proc.etrack(s)
    with pytest.raises(NotTracked, match="SGX_NOT_TRACKED"):  # a thread may hold a stale TLB entry
        proc.ewb(victim, va, 0)
    proc.exit(s, thread)
    proc.ewb(victim, va, 0)  # the cycle completed when the thread left


def test_ep4_etrack_before_eblock_does_not_count() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    va = proc.epa()
    proc.etrack(s)
    victim = proc.pages_of(s)[BASE]
    proc.eblock(victim)
    with pytest.raises(NotTracked):
        proc.ewb(victim, va, 0)


def test_ep4_ewb_of_secs_with_children_is_refused() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    va = proc.epa()
    with pytest.raises(ChildPresent, match="SGX_CHILD_PRESENT"):
        proc.ewb(s, va, 0)
    for p in list(proc.pages_of(s).values()):
        proc.evict(p)
    secs_blob = proc.ewb(s, va, 0)
    assert secs_blob.page_type == 0
    with pytest.raises(MACCompareFail):  # a SECS cannot come back as a child page
        proc.eldu(None, None, 0x1000, secs_blob.ciphertext, secs_blob.pcmd_bytes, va, 1)


def test_ep4_ewb_into_an_occupied_slot_flags_it_and_the_overwritten_page_is_lost() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    va = proc.epa()
    first, second = proc.pages_of(s)[BASE], proc.pages_of(s)[BASE + 0x1000]
    blobs = []
    for p in (first, second):
        proc.eblock(p)
        proc.etrack(s)
        blobs.append(proc.ewb(p, va, 7))
    assert not blobs[0].va_slot_occupied
    assert blobs[1].va_slot_occupied  # SGX_VA_SLOT_OCCUPIED: informational, EWB completed
    assert proc.pages_of(s) == {}
    with pytest.raises(MACCompareFail):
        proc.reload(blobs[0])
    proc.reload(blobs[1])


# ----------------------------------------------------------------------------- EP-5 secrecy


def test_ep5_same_page_evicted_twice_gives_different_ciphertexts() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    first = proc.evict(proc.pages_of(s)[BASE])
    proc.reload(first)
    second = proc.evict(proc.pages_of(s)[BASE])
    assert first.ciphertext != second.ciphertext
    assert first.pcmd_bytes[112:] != second.pcmd_bytes[112:]  # the MACs differ too


def test_ep5_no_plaintext_in_blobs_or_dram() -> None:
    proc = cpu()
    s = enclave(proc, 4)
    needles = [page(i)[:12] for i in range(4)]
    blobs = [proc.evict(p) for p in list(proc.pages_of(s).values())[:2]]
    seen = b"".join(b.ciphertext + b.pcmd_bytes for b in blobs)
    seen += b"".join(proc.dram_read(i) for i in range(proc.epc_pages))
    for needle in needles:
        assert needle not in seen
    for i in range(4):  # the processor itself still has the pages
        if BASE + i * 4096 in proc.pages_of(s):
            assert proc.edbgrd(s, BASE + i * 4096, 4096) == page(i)
