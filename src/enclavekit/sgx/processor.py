"""The processor: ENCLS/ENCLU leaves over an emulated, encrypted EPC (``sgx-spec.md`` §1, §3–§5).

The OS (the caller) picks EPC pages by index ``0 … epc_pages-1``; enclave pages are
named by their SECS page and linear address. Leaves are methods named after the
instruction. A leaf that returns an SGX code raises the matching :class:`SGXError`;
a leaf that faults raises :class:`SGXFault` (``#GP`` / ``#PF``). Two codes are
informational on hardware and are returned instead of raised: ``eblock`` returns
``False`` for SGX_BLKSTATE (already blocked) and ``ewb`` sets
``EvictedPage.va_slot_occupied`` for SGX_VA_SLOT_OCCUPIED (the old version was
overwritten and the eviction still completed).

Per-boot secrets (memory-encryption key, paging key, CR_REPORT_KEYID, version and EID
counters) are made by the constructor: a new ``Processor`` over the same
:class:`~enclavekit.sgx.keys.FusedSecrets` is a power cycle: derived keys stay equal,
the EPC is empty and nothing evicted before can be reloaded.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from ..errors import (
    ChildPresent,
    EnclaveAct,
    EnclaveLost,
    EPCExhausted,
    NotBlockable,
    NotTracked,
    PageInvalid,
    PageIsSECS,
    PageNotBlocked,
    PageNotDebuggable,
    PrevTrackIncomplete,
    SGXFault,
)
from . import keys
from .build_checks import check_secinfo, check_secs, check_tcs
from .consts import (
    EEXTEND_CHUNK,
    PAGE_SIZE,
    SECINFO_PT_SHIFT,
    SECINFO_RWX,
    VA_SLOTS_PER_PAGE,
    AttributeFlags,
    PageType,
    SecInfoFlags,
    secinfo_flags,
)
from .enclave_state import EnclaveState
from .epc import EPC, EPCMEntry
from .keys import EnclaveIdentity, FusedSecrets
from .launch import check_einit
from .paging import PCMD_LAYOUT, VA_SLOT, PagingCrypto
from .structs import PCMD, SECS, EInitToken, KeyRequest, Report, SecInfo, SigStruct, TargetInfo

_SECS_T = int(PageType.PT_SECS)
_TCS_T = int(PageType.PT_TCS)
_REG_T = int(PageType.PT_REG)
_VA_T = int(PageType.PT_VA)
_CHILD_TYPES = frozenset((_REG_T, _TCS_T, int(PageType.PT_TRIM), int(PageType.PT_SS_FIRST),
                          int(PageType.PT_SS_REST)))
_SECINFO = struct.Struct("<Q56x")
_RSVD = bytes(40)
_PAGE_MASK = ~(PAGE_SIZE - 1)
_ZERO_PAGE = bytes(PAGE_SIZE)


class EvictedPage(NamedTuple):
    """What EWB writes outside the EPC: the encrypted page, its PCMD and where its version is.

    ``pcmd_bytes`` is the 128-byte PCMD as written (``pcmd`` parses it). ``va_page`` and
    ``slot`` name the Version Array slot holding the version; ``va_slot_occupied`` is
    SGX_VA_SLOT_OCCUPIED (informational: the slot held an older version, now overwritten).
    """

    ciphertext: bytes
    pcmd_bytes: bytes
    linaddr: int
    va_page: int
    slot: int
    va_slot_occupied: bool = False

    @property
    def pcmd(self) -> PCMD:
        """The PCMD as a structure (parsed leniently, as the processor reads it)."""
        return PCMD.from_bytes(self.pcmd_bytes, strict=False)

    @property
    def page_type(self) -> int:
        """The page type recorded in PCMD.SECINFO."""
        flags: int = _SECINFO.unpack_from(self.pcmd_bytes)[0]
        return (flags >> SECINFO_PT_SHIFT) & 0xFF

    @property
    def enclaveid(self) -> int:
        """PCMD.ENCLAVEID: the owner's EID (informational, not authenticated)."""
        return int(PCMD_LAYOUT.unpack(self.pcmd_bytes)[1])

    def __repr__(self) -> str:
        return (f"EvictedPage(linaddr={self.linaddr:#x}, type={self.page_type}, "
                f"enclaveid={self.enclaveid}, va_page={self.va_page}, slot={self.slot})")


class Processor:
    """An SGX processor with ``epc_pages`` EPC pages, fused ``secrets`` and a CPUSVN.

    ``launch_allowlist``: ``None`` lets any signer launch; a set of MRSIGNER values
    restricts EINIT to those signers (others get SGX_INVALID_EINITTOKEN).
    """

    def __init__(
        self,
        epc_pages: int,
        secrets: FusedSecrets,
        cpusvn: bytes,
        *,
        launch_allowlist: frozenset[bytes] | None = None,
    ) -> None:
        if not isinstance(cpusvn, bytes) or len(cpusvn) != 16:
            raise SGXFault("CPU", "#GP", "CPUSVN must be 16 bytes")
        self._epc = EPC(epc_pages)
        self._entries = self._epc.entries
        self._paging = PagingCrypto()
        self._secrets = secrets
        self._cpusvn = cpusvn
        self._report_keyid = os.urandom(32)
        self._allowlist = None if launch_allowlist is None else frozenset(launch_allowlist)
        self._lepubkeyhash: bytes | None = None
        self._next_eid = 1
        self._next_thread = 1
        self._tick = 0
        self._enclaves: dict[int, EnclaveState] = {}
        self._parked: dict[int, EnclaveState] = {}
        self._poisoned_va: set[int] = set()
        self._helper_slots: dict[int, list[int]] = {}

    # ------------------------------------------------------------------ properties

    @property
    def epc_pages(self) -> int:
        """Number of EPC pages."""
        return self._epc.size

    @property
    def cpusvn(self) -> bytes:
        """The platform's current CPUSVN."""
        return self._cpusvn

    def free_pages(self) -> int:
        """How many EPC pages are free."""
        return self._epc.free_count()

    def pages_of(self, secs_page: int) -> dict[int, int]:
        """The enclave's resident pages: linear address → EPC page (evicted pages absent)."""
        return dict(self._state("EPC", secs_page).pages)

    def page_type(self, epc_page: int) -> PageType | None:
        """The EPCM page type of an EPC page, or ``None`` if the page is free."""
        entry = self._entry("EPC", epc_page)
        return PageType(entry.page_type) if entry.valid else None

    def write_lepubkeyhash(self, value: bytes | None) -> None:
        """Write IA32_SGXLEPUBKEYHASH (FLC). ``None``: the OS writes each enclave's MRSIGNER."""
        if value is not None and (not isinstance(value, bytes) or len(value) != 32):
            raise SGXFault("WRMSR", "#GP", "IA32_SGXLEPUBKEYHASH is 32 bytes")
        self._lepubkeyhash = value

    # ------------------------------------------------------------------ DRAM (attacker view)

    def dram_read(self, epc_page: int) -> bytes:
        """An EPC page's DRAM bytes as a host sees them: ciphertext and MAC, never plaintext."""
        return self._epc.dram_read(epc_page)

    def dram_write(self, epc_page: int, data: bytes) -> None:
        """Overwrite an EPC page's DRAM bytes (what a host or physical attacker can do).

        The change is detected on the page's next use: its enclave is lost (or, for a
        VA page, operations using it are refused).
        """
        self._epc.dram_write(epc_page, data)

    # ------------------------------------------------------------------ build: ENCLS

    def ecreate(self, secs: SECS, epc_page: int | None = None) -> int:
        """ECREATE: install ``secs`` in a free EPC page and start the measurement.

        Returns the SECS page. ``epc_page`` ``None`` takes the lowest free page.

        Raises:
            SGXFault: ``#GP`` for an invalid SECS, ``#PF`` for a busy page.
            EPCExhausted: no EPC page is free.
        """
        if not isinstance(secs, SECS):
            raise SGXFault("ECREATE", "#GP", f"expected a SECS, found {type(secs).__name__}")
        check_secs(secs)
        page = self._target("ECREATE", epc_page)
        eid = self._next_eid
        self._next_eid += 1
        secs = secs.replace(isvprodid=0, isvsvn=0, mrenclave=bytes(32), mrsigner=bytes(32))
        state = EnclaveState(eid, secs, page)
        state.measurement.ecreate(secs.ssaframesize, secs.size)
        self._epc.claim(page, _SECS_T, secinfo_flags(PageType.PT_SECS), state, 0)
        self._epc.store(page, secs.to_bytes(), cached=True)
        self._enclaves[eid] = state
        return page

    def eadd(
        self, epc_page: int | None, secs_page: int, linaddr: int, secinfo: SecInfo, data: bytes
    ) -> int:
        """EADD: copy a 4 KiB page into the EPC as enclave page ``linaddr`` (not measured).

        Returns the EPC page used.

        Raises:
            SGXFault: ``#GP`` for a bad SECINFO, address, TCS or an initialised enclave;
                ``#PF`` for a busy page or a ``secs_page`` that is not a SECS.
            EPCExhausted: no EPC page is free.
            EnclaveLost: the enclave was lost.
        """
        leaf = "EADD"
        page = self._target(leaf, epc_page)
        state = self._secs(leaf, secs_page)
        if state.initialised:
            raise SGXFault(leaf, "#GP", f"enclave {state.eid} is initialised; EADD is "
                           "allowed only before EINIT")
        if not isinstance(data, (bytes, bytearray)) or len(data) != PAGE_SIZE:
            raise SGXFault(leaf, "#GP", f"a page is {PAGE_SIZE} bytes, found "
                           f"{len(data) if isinstance(data, (bytes, bytearray)) else data!r}")
        flags = check_secinfo(leaf, secinfo)
        offset = self._check_linaddr(leaf, state, linaddr)
        if linaddr in state.pages:
            raise SGXFault(leaf, "#GP", f"LINADDR {linaddr:#x} of enclave {state.eid} "
                           "already has a page")
        content = bytes(data)
        if (flags >> SECINFO_PT_SHIFT) & 0xFF == _TCS_T:
            flags &= ~SECINFO_RWX
            content = check_tcs(leaf, content)
        state.measurement.eadd(offset, flags)
        entry = self._epc.claim(page, flags >> SECINFO_PT_SHIFT, flags, state, linaddr)
        self._epc.store(page, content)
        state.pages[linaddr] = page
        entry.last_used = self._next_tick()
        return page

    def eextend(self, secs_page: int, linaddr: int) -> None:
        """EEXTEND: measure the 256 bytes at ``linaddr`` (256-aligned) of an enclave page.

        Raises:
            SGXFault: ``#GP`` for a misaligned address or an initialised enclave, ``#PF`` if
                the page is not in the EPC.
        """
        leaf = "EEXTEND"
        state = self._secs(leaf, secs_page)
        if state.initialised:
            raise SGXFault(leaf, "#GP", f"enclave {state.eid} is initialised; EEXTEND is "
                           "allowed only before EINIT")
        if not isinstance(linaddr, int) or linaddr % EEXTEND_CHUNK:
            raise SGXFault(leaf, "#GP", f"LINADDR {linaddr!r} is not 256-byte aligned")
        base = linaddr & _PAGE_MASK
        page, entry = self._resident(leaf, state, base)
        plain = self._load(leaf, page, entry)
        at = linaddr - base
        state.measurement.eextend(linaddr - state.secs.baseaddr, plain[at:at + EEXTEND_CHUNK])

    def add_page(
        self, epc_page: int | None, secs_page: int, linaddr: int, secinfo: SecInfo,
        data: bytes, *, measured: bool = True,
    ) -> int:
        """EADD a page and, if ``measured``, EEXTEND its 16 chunks in ascending order."""
        page = self.eadd(epc_page, secs_page, linaddr, secinfo, data)
        if measured:
            state = self._entries[page].owner
            plain = self._load("EEXTEND", page, self._entries[page])
            offset = linaddr - state.secs.baseaddr
            for at in range(0, PAGE_SIZE, EEXTEND_CHUNK):
                state.measurement.eextend(offset + at, plain[at:at + EEXTEND_CHUNK])
        return page

    def einit(self, secs_page: int, sigstruct: SigStruct, token: EInitToken | None = None) -> None:
        """EINIT: check SIGSTRUCT, measurement, attributes and launch control; initialise.

        Raises:
            InvalidSigStruct, InvalidSignature, InvalidMeasurement, InvalidAttribute,
            InvalidEInitToken, InvalidCPUSVN: as EINIT returns them (§3.6 order).
            SGXFault: ``#GP`` if the enclave is already initialised.
        """
        leaf = "EINIT"
        state = self._secs(leaf, secs_page)
        if state.initialised:
            raise SGXFault(leaf, "#GP", f"enclave {state.eid} is already initialised")
        secs = state.secs
        measured = state.measurement.digest()
        mrsigner = check_einit(
            secs, measured, sigstruct, EInitToken() if token is None else token,
            secrets=self._secrets, cpusvn=self._cpusvn, lepubkeyhash=self._lepubkeyhash,
            allowlist=self._allowlist,
        )
        attributes = secs.attributes.replace(flags=secs.attributes.flags | AttributeFlags.INIT)
        state.secs = secs.replace(
            mrenclave=measured, mrsigner=mrsigner, isvprodid=sigstruct.isvprodid,
            isvsvn=sigstruct.isvsvn, attributes=attributes,
        )
        kss = bool(secs.attributes.flags & AttributeFlags.KSS)
        state.identity = EnclaveIdentity(
            mrenclave=measured, mrsigner=mrsigner, attributes=attributes,
            miscselect=secs.miscselect, isvprodid=sigstruct.isvprodid,
            isvsvn=sigstruct.isvsvn, configid=secs.configid, configsvn=secs.configsvn,
            isvfamilyid=sigstruct.isvfamilyid if kss else bytes(16),
            isvextprodid=sigstruct.isvextprodid if kss else bytes(16),
            cet_attributes=secs.cet_attributes,
        )
        self._epc.store(secs_page, state.secs.to_bytes(), cached=True)

    def eremove(self, epc_page: int) -> None:
        """EREMOVE: free an EPC page (a free page is left as it is).

        Pages of a lost enclave can always be removed (that is how it is torn down).

        Raises:
            ChildPresent: a SECS whose enclave still has pages in the EPC.
            EnclaveAct: a page of an enclave with a thread inside.
        """
        leaf = "EREMOVE"
        entry = self._entry(leaf, epc_page)
        if not entry.valid:
            return
        state: EnclaveState | None = entry.owner
        if entry.page_type == _SECS_T and state is not None:
            if state.pages:
                raise ChildPresent(leaf, f"enclave {state.eid} still has {len(state.pages)} "
                                   "pages in the EPC; EREMOVE them first")
            self._enclaves.pop(state.eid, None)
            state.secs_page = None
        elif state is not None:
            if state.threads and state.lost is None:
                raise EnclaveAct(leaf, f"{len(state.threads)} thread(s) are inside enclave "
                                 f"{state.eid}; let them exit first")
            state.pages.pop(entry.linaddr, None)
        else:
            self._poisoned_va.discard(epc_page)
            self._helper_slots.pop(epc_page, None)
        self._epc.release(epc_page)

    # ------------------------------------------------------------------ debug

    def edbgrd(self, secs_page: int, linaddr: int, size: int = 8) -> bytes:
        """EDBGRD: read enclave memory from outside; only for DEBUG enclaves.

        Raises:
            PageNotDebuggable: the enclave is a production enclave.
            SGXFault: ``#PF`` if a page is not in the EPC.
        """
        state = self._debuggable("EDBGRD", secs_page)
        return self._access("EDBGRD", state, linaddr, size, None, 0)

    def edbgwr(self, secs_page: int, linaddr: int, data: bytes) -> None:
        """EDBGWR: write enclave memory from outside; only for DEBUG enclaves.

        Raises:
            PageNotDebuggable: the enclave is a production enclave.
            SGXFault: ``#PF`` if a page is not in the EPC.
        """
        state = self._debuggable("EDBGWR", secs_page)
        self._access("EDBGWR", state, linaddr, len(data), bytes(data), 0)

    # ------------------------------------------------------------------ the enclave's own view

    def read(self, secs_page: int, linaddr: int, size: int) -> bytes:
        """Enclave code reading its own memory (EPCM-checked: owner, not blocked, R).

        Raises:
            SGXFault: ``#PF`` naming the LINADDR when the page is evicted, blocked or not
                readable (the OS ELDUs it and retries); ``#GP`` before EINIT.
            EnclaveLost: the enclave's EPC integrity broke.
        """
        state = self._running("READ", secs_page)
        return self._access("READ", state, linaddr, size, None, int(SecInfoFlags.R))

    def write(self, secs_page: int, linaddr: int, data: bytes) -> None:
        """Enclave code writing its own memory (EPCM-checked: owner, not blocked, W)."""
        state = self._running("WRITE", secs_page)
        self._access("WRITE", state, linaddr, len(data), bytes(data), int(SecInfoFlags.W))

    def enter(self, secs_page: int) -> int:
        """A thread enters the enclave (EENTER); returns its handle for :meth:`exit`."""
        state = self._running("EENTER", secs_page)
        thread = self._next_thread
        self._next_thread += 1
        state.threads.add(thread)
        return thread

    def exit(self, secs_page: int, thread: int | None = None) -> None:
        """A thread leaves the enclave (EEXIT or AEX); ``None``: the longest-inside thread."""
        state = self._state("EEXIT", secs_page)
        if not state.threads:
            raise SGXFault("EEXIT", "#GP", f"no thread is inside enclave {state.eid}")
        if thread is None:
            thread = min(state.threads)
        elif thread not in state.threads:
            raise SGXFault("EEXIT", "#GP", f"thread {thread} is not inside enclave {state.eid}")
        state.exit_thread(thread)

    def secs(self, secs_page: int) -> SECS:
        """The SECS as the EPC holds it (a view for upper layers; software cannot read it)."""
        self._secs("SECS", secs_page)
        return SECS.from_bytes(self._epc.load(secs_page), strict=False)

    def identity(self, secs_page: int) -> EnclaveIdentity:
        """The identity EINIT gave the enclave (what EREPORT reports and EGETKEY binds).

        Raises:
            SGXFault: ``#GP`` if the enclave is not initialised.
        """
        state = self._running("IDENTITY", secs_page)
        assert state.identity is not None
        return state.identity

    # ------------------------------------------------------------------ ENCLU: keys, reports

    def ereport(self, secs_page: int, target: TargetInfo, reportdata: bytes) -> Report:
        """EREPORT inside the enclave: a REPORT MACed for the enclave ``target`` names."""
        identity = self.identity(secs_page)
        return keys.ereport(self._secrets, self._cpusvn, identity, target, reportdata,
                            self._report_keyid)

    def egetkey(self, secs_page: int, request: KeyRequest) -> bytes:
        """EGETKEY inside the enclave: the 16-byte key ``request`` asks for."""
        identity = self.identity(secs_page)
        return keys.egetkey(self._secrets, self._cpusvn, identity, request)

    def verify_report(self, secs_page: int, report: Report) -> None:
        """Check, inside the enclave, that ``report`` was made for it on this platform.

        Raises:
            IntegrityError: the REPORT MAC does not verify.
        """
        keys.verify_report(self._secrets, self._cpusvn, self.identity(secs_page), report)

    # ------------------------------------------------------------------ paging

    def epa(self, epc_page: int | None = None) -> int:
        """EPA: make a free EPC page a Version Array page (512 empty slots); returns it."""
        page = self._target("EPA", epc_page)
        self._epc.claim(page, _VA_T, secinfo_flags(PageType.PT_VA), None, 0)
        self._epc.store(page, _ZERO_PAGE, cached=True)
        return page

    def eblock(self, epc_page: int) -> bool:
        """EBLOCK: block a REG/TCS page before eviction.

        Returns ``False`` for SGX_BLKSTATE (informational: the page was already blocked).

        Raises:
            PageInvalid: the page is free. PageIsSECS / NotBlockable: a SECS or VA page.
        """
        leaf = "EBLOCK"
        entry = self._entry(leaf, epc_page)
        if not entry.valid:
            raise PageInvalid(leaf, f"EPC page {epc_page} is not valid (free)")
        if entry.page_type == _SECS_T:
            raise PageIsSECS(leaf, f"EPC page {epc_page} is a SECS; a SECS is evicted "
                             "without EBLOCK once it has no child pages")
        if entry.page_type not in _CHILD_TYPES:
            raise NotBlockable(leaf, f"EPC page {epc_page} is a VA page; EWB it directly")
        entry.owner.check_alive()
        if entry.blocked:
            return False
        entry.blocked = True
        entry.blocked_at = self._next_tick()
        return True

    def etrack(self, secs_page: int) -> None:
        """ETRACK: start a tracking cycle; it completes when the threads now inside exit.

        Raises:
            PrevTrackIncomplete: the previous cycle has not completed.
        """
        state = self._secs("ETRACK", secs_page)
        if state.track_pending:
            raise PrevTrackIncomplete("ETRACK", f"{len(state.track_pending)} thread(s) of "
                                      f"enclave {state.eid} that were inside at the last "
                                      "ETRACK have not exited yet")
        tick = self._next_tick()
        if state.threads:
            state.track_pending = set(state.threads)
            state.track_tick = tick
        else:
            state.tracked_tick = tick

    def ewb(self, epc_page: int, va_page: int, slot: int) -> EvictedPage:
        """EWB: evict an EPC page: encrypt and MAC it, record a fresh version in a VA slot.

        Raises:
            PageNotBlocked: a REG/TCS page not blocked with EBLOCK.
            NotTracked: no ETRACK issued after the EBLOCK has completed.
            ChildPresent: a SECS whose enclave still has pages in the EPC.
            SGXFault: ``#PF`` for a free page or a VA operand that is not a VA page,
                ``#GP`` for a bad slot or both operands in one page.
        """
        leaf = "EWB"
        entry = self._entry(leaf, epc_page)
        va = self._va(leaf, va_page, slot)
        if not entry.valid:
            raise SGXFault(leaf, "#PF", f"EPC page {epc_page} is not valid (free); nothing "
                           "to evict")
        if epc_page == va_page:
            raise SGXFault(leaf, "#GP", f"EPC page {epc_page} cannot be evicted into itself")
        ptype = entry.page_type
        state: EnclaveState | None = entry.owner
        linaddr = 0
        if ptype == _SECS_T:
            assert state is not None
            state.check_alive()
            if state.pages:
                raise ChildPresent(leaf, f"enclave {state.eid} still has {len(state.pages)} "
                                   "pages in the EPC; evict them before its SECS")
            aad_eid = 0
            enclaveid = state.eid
        elif ptype == _VA_T:
            aad_eid = enclaveid = 0
        else:
            assert state is not None
            state.check_alive()
            if not entry.blocked:
                raise PageNotBlocked(leaf, f"page {epc_page} must be blocked with EBLOCK "
                                     "before EWB")
            if state.tracked_tick <= entry.blocked_at:
                raise NotTracked(leaf, f"page {epc_page}: no ETRACK issued after its EBLOCK "
                                 f"has completed; ETRACK enclave {state.eid} and let the "
                                 "threads inside exit")
            aad_eid = enclaveid = state.eid
            linaddr = entry.linaddr
        plain = self._load(leaf, epc_page, entry)
        slots = self._load(leaf, va_page, va)
        version = self._paging.next_version()
        secinfo = _SECINFO.pack(entry.flags)
        ciphertext, tag = self._paging.seal(version, aad_eid, secinfo, linaddr, _RSVD, plain)
        at = slot * 8
        occupied = slots[at:at + 8] != b"\0\0\0\0\0\0\0\0"
        new_slots = slots[:at] + VA_SLOT.pack(version) + slots[at + 8:]
        self._epc.store(va_page, new_slots, cached=True)
        if ptype == _SECS_T:
            assert state is not None
            self._parked[version] = state
            state.secs_page = None
        elif state is not None:
            del state.pages[linaddr]
        else:
            self._helper_slots.pop(epc_page, None)
        self._epc.release(epc_page)
        return EvictedPage(ciphertext, PCMD_LAYOUT.pack(secinfo, enclaveid, _RSVD, tag),
                           linaddr, va_page, slot, occupied)

    def eldu(
        self, epc_page: int | None, secs_page: int | None, linaddr: int, ciphertext: bytes,
        pcmd: PCMD | bytes, va_page: int, slot: int,
    ) -> int:
        """ELDU: reload an evicted page (unblocked) after checking its MAC and version.

        ``secs_page`` is the owning enclave's SECS for REG/TCS pages and ``None`` for SECS
        and VA pages (it decides the EID the MAC binds). On success the VA slot is
        cleared; on failure nothing changes. Returns the EPC page used.

        Raises:
            MACCompareFail: the page, PCMD, LINADDR, enclave or version do not match EWB's.
            SGXFault: ``#PF`` for a busy page or a VA operand that is not a VA page.
            EPCExhausted: no EPC page is free.
        """
        return self._load_back("ELDU", epc_page, secs_page, linaddr, ciphertext, pcmd,
                               va_page, slot, blocked=False)

    def eldb(
        self, epc_page: int | None, secs_page: int | None, linaddr: int, ciphertext: bytes,
        pcmd: PCMD | bytes, va_page: int, slot: int,
    ) -> int:
        """ELDB: as :meth:`eldu`, but a REG/TCS page comes back blocked."""
        return self._load_back("ELDB", epc_page, secs_page, linaddr, ciphertext, pcmd,
                               va_page, slot, blocked=True)

    # ------------------------------------------------------------------ eviction helper

    def evict(self, epc_page: int) -> EvictedPage:
        """EBLOCK, ETRACK and EWB one page into a VA slot (created with EPA when needed).

        Raises:
            EPCExhausted: every VA slot is used and no EPC page is free for a new VA page.
            NotTracked: threads that were inside at ETRACK are still inside.
            (and what EBLOCK / EWB raise)
        """
        entry = self._entry("EWB", epc_page)
        if entry.valid and entry.owner is not None:
            entry.owner.check_alive()
        va_page, slot = self._take_slot(exclude=epc_page)
        try:
            if entry.valid and entry.page_type in _CHILD_TYPES:
                self.eblock(epc_page)
                state: EnclaveState = entry.owner
                if state.tracked_tick <= entry.blocked_at and not state.track_pending:
                    assert state.secs_page is not None
                    self.etrack(state.secs_page)
            return self.ewb(epc_page, va_page, slot)
        except BaseException:
            if va_page in self._helper_slots:
                self._helper_slots[va_page].append(slot)
            raise

    def reload(self, evicted: EvictedPage, epc_page: int | None = None) -> int:
        """ELDU an :class:`EvictedPage` into ``epc_page`` (``None``: the lowest free page).

        The owning SECS is found from PCMD.ENCLAVEID (a hint; the MAC binds the real EID).

        Raises:
            SGXFault: ``#PF`` if the owner's SECS is not in the EPC (reload it first).
            MACCompareFail: the blob is stale, moved or modified.
            EPCExhausted: no EPC page is free.
        """
        secs_page: int | None = None
        if evicted.page_type in _CHILD_TYPES:
            state = self._enclaves.get(evicted.enclaveid)
            if state is None or state.secs_page is None:
                raise SGXFault("ELDU", "#PF", f"the SECS of enclave {evicted.enclaveid} is "
                               "not in the EPC; reload it first")
            secs_page = state.secs_page
        page = self.eldu(epc_page, secs_page, evicted.linaddr, evicted.ciphertext,
                         evicted.pcmd_bytes, evicted.va_page, evicted.slot)
        if evicted.va_page in self._helper_slots:
            self._helper_slots[evicted.va_page].append(evicted.slot)
        return page

    def choose_victim(self, exclude_secs: int | None = None) -> int | None:
        """The least recently used REG/TCS page, preferring enclaves other than
        ``exclude_secs``; ``None`` if no page can be evicted."""
        best: tuple[bool, int, int] | None = None
        for page, entry in enumerate(self._entries):
            if not entry.valid or entry.page_type not in _CHILD_TYPES:
                continue
            state: EnclaveState = entry.owner
            if state.lost is not None:
                continue
            key = (state.secs_page == exclude_secs, entry.last_used, page)
            if best is None or key < best:
                best = key
        return None if best is None else best[2]

    # ------------------------------------------------------------------ internals

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    def _entry(self, leaf: str, page: object) -> EPCMEntry:
        if not isinstance(page, int) or isinstance(page, bool) or not 0 <= page < self._epc.size:
            raise SGXFault(leaf, "#GP", f"{page!r} is not an EPC page (the EPC has pages "
                           f"0..{self._epc.size - 1})")
        return self._entries[page]

    def _target(self, leaf: str, page: int | None) -> int:
        """A free EPC page to fill: ``page`` itself, or the lowest free one for ``None``."""
        if page is None:
            free = self._epc.first_free()
            if free is None:
                raise self._exhausted()
            return free
        if self._entry(leaf, page).valid:
            if not self._epc.free_count():
                raise self._exhausted()
            raise SGXFault(leaf, "#PF", f"EPC page {page} is in use; choose a free page "
                           f"({self._epc.free_count()} are free)")
        return page

    def _exhausted(self) -> EPCExhausted:
        n = self._epc.size
        return EPCExhausted(f"EPC is full: {n} of {n} pages in use; evict a page (EWB) first")

    def _state(self, leaf: str, secs_page: int) -> EnclaveState:
        entry = self._entry(leaf, secs_page)
        if not entry.valid or entry.page_type != _SECS_T:
            raise SGXFault(leaf, "#PF", f"EPC page {secs_page} is not a SECS (free, evicted "
                           "or another type); ELDU the enclave's SECS first")
        state: EnclaveState = entry.owner
        return state

    def _secs(self, leaf: str, secs_page: int) -> EnclaveState:
        """The live enclave whose SECS is at ``secs_page``, its SECS page checked by the MEE."""
        state = self._state(leaf, secs_page)
        state.check_alive()
        self._load(leaf, secs_page, self._entries[secs_page])
        return state

    def _running(self, leaf: str, secs_page: int) -> EnclaveState:
        state = self._secs(leaf, secs_page)
        if not state.initialised:
            raise SGXFault(leaf, "#GP", f"enclave {state.eid} is not initialised; EINIT it "
                           "first")
        return state

    def _debuggable(self, leaf: str, secs_page: int) -> EnclaveState:
        state = self._secs(leaf, secs_page)
        if not state.secs.attributes.flags & AttributeFlags.DEBUG:
            raise PageNotDebuggable(leaf, f"enclave {state.eid} is a production enclave "
                                    "(ATTRIBUTES.DEBUG = 0); its memory cannot be read or "
                                    "written from outside")
        return state

    def _load(self, leaf: str, page: int, entry: EPCMEntry) -> bytes:
        """Page plaintext through the MEE; an integrity failure loses the enclave."""
        if entry.owner is None and page in self._poisoned_va:
            raise self._va_lost(page)
        try:
            return self._epc.load(page)
        except EnclaveLost:
            state: EnclaveState | None = entry.owner
            if state is None:
                self._poisoned_va.add(page)
                raise self._va_lost(page) from None
            raise state.lose(f"EPC integrity check failed on page {page}") from None

    @staticmethod
    def _va_lost(page: int) -> EnclaveLost:
        return EnclaveLost(f"VA page {page} is lost: EPC integrity check failed; the pages "
                           "evicted into its slots cannot be reloaded; EREMOVE it")

    def _va(self, leaf: str, va_page: int, slot: int) -> EPCMEntry:
        va = self._entry(leaf, va_page)
        if not va.valid or va.page_type != _VA_T:
            raise SGXFault(leaf, "#PF", f"EPC page {va_page} is not a VA page; create one "
                           "with EPA")
        if not isinstance(slot, int) or not 0 <= slot < VA_SLOTS_PER_PAGE:
            raise SGXFault(leaf, "#GP", f"VA slot {slot!r} is outside 0..511")
        return va

    def _check_linaddr(self, leaf: str, state: EnclaveState, linaddr: int) -> int:
        secs = state.secs
        if not isinstance(linaddr, int) or linaddr % PAGE_SIZE:
            raise SGXFault(leaf, "#GP", f"LINADDR {linaddr!r} is not page aligned")
        offset = linaddr - secs.baseaddr
        if not 0 <= offset < secs.size:
            raise SGXFault(leaf, "#GP", f"LINADDR {linaddr:#x} is outside ELRANGE "
                           f"[{secs.baseaddr:#x}, {secs.baseaddr + secs.size:#x})")
        return offset

    def _resident(self, leaf: str, state: EnclaveState, base: int) -> tuple[int, EPCMEntry]:
        page = state.pages.get(base)
        if page is None:
            raise SGXFault(leaf, "#PF", f"LINADDR {base:#x} of enclave {state.eid} is not in "
                           "the EPC (evicted or never added); ELDU it and retry")
        return page, self._entries[page]

    def _access(
        self, leaf: str, state: EnclaveState, linaddr: int, size: int, data: bytes | None,
        perm: int,
    ) -> bytes:
        """Read (``data`` None) or write enclave memory page by page, checking the EPCM."""
        if not isinstance(linaddr, int) or not isinstance(size, int) or size < 0:
            raise SGXFault(leaf, "#GP", f"bad address or size ({linaddr!r}, {size!r})")
        out = []
        pos = linaddr
        end = linaddr + size
        while pos < end:
            base = pos & _PAGE_MASK
            page, entry = self._resident(leaf, state, base)
            if perm:
                if entry.blocked:
                    raise SGXFault(leaf, "#PF", f"LINADDR {base:#x} is blocked for eviction")
                if entry.page_type != _REG_T or not entry.flags & perm:
                    raise SGXFault(leaf, "#PF", f"LINADDR {base:#x} does not allow "
                                   f"{'read' if perm == SecInfoFlags.R else 'write'} access")
            stop = min(end, base + PAGE_SIZE)
            plain = self._load(leaf, page, entry)
            a, b = pos - base, stop - base
            if data is None:
                out.append(plain[a:b])
            else:
                chunk = data[pos - linaddr:stop - linaddr]
                self._epc.store(page, plain[:a] + chunk + plain[b:])
            entry.last_used = self._next_tick()
            pos = stop
        return b"".join(out)

    def _load_back(
        self, leaf: str, epc_page: int | None, secs_page: int | None, linaddr: int,
        ciphertext: bytes, pcmd: PCMD | bytes, va_page: int, slot: int, *, blocked: bool,
    ) -> int:
        page = self._target(leaf, epc_page)
        va = self._va(leaf, va_page, slot)
        raw = pcmd.to_bytes() if isinstance(pcmd, PCMD) else pcmd
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != PCMD.SIZE:
            raise SGXFault(leaf, "#GP", "PCMD must be 128 bytes")
        if not isinstance(ciphertext, (bytes, bytearray)) or not isinstance(linaddr, int):
            raise SGXFault(leaf, "#GP", "the evicted page must be bytes and LINADDR an integer")
        secinfo, _, rsvd, tag = PCMD_LAYOUT.unpack(raw)
        state: EnclaveState | None = None
        eid = 0
        if secs_page is not None:
            state = self._secs(leaf, secs_page)
            eid = state.eid
        slots = self._load(leaf, va_page, va)
        at = slot * 8
        version = VA_SLOT.unpack_from(slots, at)[0]
        plain = self._paging.open(leaf, version, eid, secinfo, linaddr, rsvd,
                                  bytes(ciphertext), tag)
        flags = _SECINFO.unpack(secinfo)[0]
        ptype = (flags >> SECINFO_PT_SHIFT) & 0xFF
        owner: EnclaveState | None
        if state is None:
            # A SECS or VA page: EWB bound EID 0, so an authentic blob is one of these.
            owner = self._parked.pop(version, None) if ptype == _SECS_T else None
            if ptype == _SECS_T and owner is None:
                raise SGXFault(leaf, "#GP", "this SECS belongs to no enclave of this boot")
        else:
            if linaddr in state.pages:
                raise SGXFault(leaf, "#GP", f"LINADDR {linaddr:#x} of enclave {state.eid} "
                               "already has a page in the EPC")
            owner = state
        self._epc.store(va_page, slots[:at] + bytes(8) + slots[at + 8:], cached=True)
        entry = self._epc.claim(page, ptype, flags, owner, linaddr)
        self._epc.store(page, plain, cached=ptype in (_SECS_T, _VA_T))
        if ptype == _SECS_T:
            assert owner is not None
            owner.secs_page = page
        elif owner is not None:
            owner.pages[linaddr] = page
            entry.blocked = blocked
            if blocked:
                entry.blocked_at = self._next_tick()
            entry.last_used = self._next_tick()
        return page

    def _take_slot(self, exclude: int) -> tuple[int, int]:
        """A VA slot the eviction helper considers free, making a VA page when needed."""
        for va_page, free in self._helper_slots.items():
            if free and va_page != exclude:
                return va_page, free.pop()
        for va_page, entry in enumerate(self._entries):  # adopt VA pages the OS made with EPA
            if (entry.valid and entry.page_type == _VA_T and va_page != exclude
                    and va_page not in self._helper_slots and va_page not in self._poisoned_va):
                slots = self._load("EWB", va_page, entry)
                free = [i for i in range(VA_SLOTS_PER_PAGE - 1, -1, -1)
                        if not VA_SLOT.unpack_from(slots, i * 8)[0]]
                self._helper_slots[va_page] = free
                if free:
                    return va_page, free.pop()
        if not self._epc.free_count():
            n = self._epc.size
            raise EPCExhausted(f"EPC is full: {n} of {n} pages in use and no VA slot is free "
                               "for the eviction; create a VA page (EPA) before the EPC fills")
        va_page = self.epa()
        self._helper_slots[va_page] = list(range(VA_SLOTS_PER_PAGE - 1, 0, -1))
        return va_page, 0
