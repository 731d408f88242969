"""EWB / ELDU cryptography and the paging leaves' state rules (sgx-spec.md §5.1–§5.2)."""

from __future__ import annotations

import pytest

from enclavekit.errors import (
    BlockState,
    MACCompareFail,
    NotBlockable,
    PageInvalid,
    PageIsSECS,
    PrevTrackIncomplete,
    SGXFault,
)
from enclavekit.sgx.consts import PageType
from enclavekit.sgx.keys import FusedSecrets
from enclavekit.sgx.paging import MAC_HEADER, PCMD_LAYOUT, PagingCrypto
from enclavekit.sgx.signing import SigningKey
from enclavekit.sgx.structs import PCMD, SecInfo

from ._cpu import BASE, cpu, enclave, page, signed

SECINFO = SecInfo(flags=0x203).to_bytes()


# ----------------------------------------------------------------------------- crypto


def test_layouts_match_the_pcmd_structure_and_spec() -> None:
    assert PCMD_LAYOUT.size == PCMD.SIZE == 128
    assert PCMD.OFFSETS == {"secinfo": 0, "enclaveid": 64, "reserved": 72, "mac": 112}
    header = MAC_HEADER.pack(7, SECINFO, 0x1000, b"r" * 40)
    assert header[:8] == (7).to_bytes(8, "little") and header[8:72] == SECINFO
    assert header[72:80] == (0x1000).to_bytes(8, "little") and header[80:120] == b"r" * 40


def test_seal_open_roundtrip_and_every_bound_input_matters() -> None:
    crypto = PagingCrypto()
    v = crypto.next_version()
    ct, tag = crypto.seal(v, 5, SECINFO, BASE, bytes(40), page(1))
    assert crypto.open("ELDU", v, 5, SECINFO, BASE, bytes(40), ct, tag) == page(1)
    variants = [
        (v + 1, 5, SECINFO, BASE, bytes(40), ct, tag),
        (v, 6, SECINFO, BASE, bytes(40), ct, tag),
        (v, 5, SecInfo(flags=0x207).to_bytes(), BASE, bytes(40), ct, tag),
        (v, 5, SECINFO, BASE + 4096, bytes(40), ct, tag),
        (v, 5, SECINFO, BASE, b"\1" + bytes(39), ct, tag),
        (v, 5, SECINFO, BASE, bytes(40), ct[:-1] + bytes([ct[-1] ^ 1]), tag),
        (v, 5, SECINFO, BASE, bytes(40), ct, bytes(16)),
        (0, 5, SECINFO, BASE, bytes(40), ct, tag),
    ]
    for args in variants:
        with pytest.raises(MACCompareFail, match="ELDU: SGX_MAC_COMPARE_FAIL"):
            crypto.open("ELDU", *args)


def test_versions_are_fresh_and_paging_keys_differ_per_boot() -> None:
    a, b = PagingCrypto(), PagingCrypto()
    versions = [a.next_version() for _ in range(1000)]
    assert versions == sorted(set(versions)) and versions[0] >= 1
    ct, tag = a.seal(1, 0, SECINFO, 0, bytes(40), page(0))
    with pytest.raises(MACCompareFail):
        b.open("ELDU", 1, 0, SECINFO, 0, bytes(40), ct, tag)


# ----------------------------------------------------------------------------- leaves


def test_ewb_pcmd_records_secinfo_and_enclaveid_and_eldu_clears_the_slot() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    ev = proc.evict(proc.pages_of(s)[BASE + 4096])
    pcmd = ev.pcmd
    assert pcmd.secinfo.flags == 0x203 and pcmd.enclaveid >= 1 and ev.linaddr == BASE + 4096
    assert pcmd.reserved == bytes(40)
    assert BASE + 4096 not in proc.pages_of(s)
    new = proc.eldu(None, s, ev.linaddr, ev.ciphertext, pcmd, ev.va_page, ev.slot)
    assert proc.pages_of(s)[BASE + 4096] == new
    with pytest.raises(MACCompareFail):  # slot is 0 now
        proc.eldu(None, s, ev.linaddr, ev.ciphertext, pcmd, ev.va_page, ev.slot)


def test_eldb_reloads_blocked() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    ev = proc.evict(proc.pages_of(s)[BASE])
    p = proc.eldb(None, s, ev.linaddr, ev.ciphertext, ev.pcmd_bytes, ev.va_page, ev.slot)
    assert proc.eblock(p) is False  # already blocked: SGX_BLKSTATE is informational
    assert proc.edbgrd(s, BASE, 4096) == page(0)


def test_eblock_codes() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    va = proc.epa()
    free = proc.epc_pages - 1
    with pytest.raises(PageInvalid):
        proc.eblock(free)
    with pytest.raises(PageIsSECS):
        proc.eblock(s)
    with pytest.raises(NotBlockable):
        proc.eblock(va)
    assert proc.eblock(proc.pages_of(s)[BASE]) is True
    assert BlockState.code == 3  # the informational code eblock reports as False


def test_etrack_refuses_while_previous_cycle_is_incomplete() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    key = SigningKey.generate()
    proc.einit(s, signed(2, key))  # type: ignore[arg-type]
    first = proc.enter(s)
    proc.etrack(s)
    second = proc.enter(s)  # entered after the ETRACK: not waited for
    with pytest.raises(PrevTrackIncomplete, match="SGX_PREV_TRK_INCMPL"):
        proc.etrack(s)
    proc.exit(s, first)
    proc.etrack(s)  # previous cycle complete; this one waits for `second`
    victim = proc.pages_of(s)[BASE]
    proc.eblock(victim)
    proc.exit(s, second)
    proc.etrack(s)
    proc.ewb(victim, proc.epa(), 0)


def test_ewb_operand_faults() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    va = proc.epa()
    p = proc.pages_of(s)[BASE]
    with pytest.raises(SGXFault, match=r"EWB: #PF.*not a VA page"):
        proc.ewb(p, s, 0)
    with pytest.raises(SGXFault, match=r"EWB: #GP.*VA slot"):
        proc.ewb(p, va, 512)
    with pytest.raises(SGXFault, match=r"EWB: #PF.*free"):
        proc.ewb(proc.epc_pages - 1, va, 0)


def test_secs_and_va_pages_are_evicted_and_reloaded() -> None:
    proc = cpu()
    s = enclave(proc, 2)
    children = [proc.evict(p) for p in list(proc.pages_of(s).values())]
    secs_blob = proc.evict(s)
    assert secs_blob.page_type == PageType.PT_SECS and secs_blob.enclaveid >= 1
    with pytest.raises(SGXFault, match=r"SECS .* not in the EPC"):
        proc.reload(children[0])
    va2 = proc.epa()
    va_blob = proc.ewb(children[0].va_page, va2, 3)  # the VA page holding the versions
    assert va_blob.page_type == PageType.PT_VA
    new_va = proc.eldu(None, None, 0, va_blob.ciphertext, va_blob.pcmd_bytes, va2, 3)
    assert secs_blob.va_page == children[0].va_page  # one VA page holds all three versions
    new_secs = proc.eldu(None, None, 0, secs_blob.ciphertext, secs_blob.pcmd_bytes, new_va,
                         secs_blob.slot)
    for c in children:
        proc.eldu(None, new_secs, c.linaddr, c.ciphertext, c.pcmd_bytes, new_va, c.slot)
    assert proc.edbgrd(new_secs, BASE + 4096, 4096) == page(1)


def test_power_cycle_forgets_the_epc_and_old_blobs_do_not_load() -> None:
    secrets = FusedSecrets.generate()
    before = cpu(secrets=secrets)
    s = enclave(before, 1)
    ev = before.evict(before.pages_of(s)[BASE])
    after = cpu(secrets=secrets)
    assert after.free_pages() == after.epc_pages
    s2 = enclave(after, 0)
    va = after.epa()
    with pytest.raises(MACCompareFail):
        after.eldu(None, s2, ev.linaddr, ev.ciphertext, ev.pcmd_bytes, va, ev.slot)
