"""The processor's build, launch, debug, teardown and ENCLU leaves (sgx-spec.md §1.6, §3.6, §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import (
    ChildPresent,
    EnclaveAct,
    InvalidAttribute,
    InvalidCPUSVN,
    InvalidEInitToken,
    InvalidISVSVN,
    InvalidMeasurement,
    InvalidSignature,
    InvalidSigStruct,
    PageNotDebuggable,
    SGXFault,
)
from enclavekit.sgx import sigstruct as sigmod
from enclavekit.sgx.consts import AttributeFlags, KeyName, KeyPolicy, PageType, secinfo_flags
from enclavekit.sgx.keys import FusedSecrets, einittoken_key
from enclavekit.sgx.processor import Processor
from enclavekit.sgx.signing import SigningKey
from enclavekit.sgx.structs import (
    SECS,
    Attributes,
    EInitToken,
    KeyRequest,
    SecInfo,
    SigStruct,
    TargetInfo,
)
from tests.vectors import cases, vector

from ._cpu import BASE, CPUSVN, RO, RW, TCS_INFO, cpu, enclave, mrenclave, page, secs, signed

U64 = 0xFFFF_FFFF_FFFF_FFFF


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def launched(proc: Processor, key: SigningKey, npages: int = 3, *, debug: bool = True) -> int:
    s = enclave(proc, npages, debug=debug)
    proc.einit(s, signed(npages, key))  # type: ignore[arg-type]
    return s


# ----------------------------------------------------------------------------- lifecycle


def test_build_and_einit_set_mrenclave_mrsigner_and_init(key: SigningKey) -> None:
    proc = cpu()
    s = enclave(proc, 3)
    assert proc.secs(s).mrenclave == bytes(32)  # not final before EINIT
    sig = signed(3, key, isvprodid=7, isvsvn=3)
    proc.einit(s, sig)  # type: ignore[arg-type]
    after = proc.secs(s)
    assert after.mrenclave == mrenclave(3)
    assert after.mrsigner == sigmod.mrsigner(sig)  # type: ignore[arg-type]
    assert (after.isvprodid, after.isvsvn) == (7, 3)
    assert after.attributes.flags & AttributeFlags.INIT
    assert proc.identity(s).mrenclave == mrenclave(3)


@pytest.mark.parametrize("v", cases("measurement_vectors", "image", "sigstruct"))
def test_published_enarx_enclave_builds_and_launches(v: dict[str, str]) -> None:
    image = vector(v["image"]).read_bytes()
    sig = SigStruct.from_bytes(vector(v["sigstruct"]).read_bytes())
    proc = cpu()
    s = proc.ecreate(SECS(size=0x8000, baseaddr=0, ssaframesize=1,
                          attributes=Attributes(flags=int(AttributeFlags.MODE64BIT), xfrm=3)))
    for i in range(len(image) // 4096):
        info = TCS_INFO if i == 0 else SecInfo(flags=secinfo_flags(PageType.PT_REG, 7))
        proc.add_page(None, s, i * 4096, info, image[i * 4096:(i + 1) * 4096])
    assert sig.enclavehash.hex() == v["mrenclave"]
    proc.einit(s, sig)
    assert proc.secs(s).mrenclave.hex() == v["mrenclave"]
    assert proc.secs(s).mrsigner.hex() == v["mrsigner"]


def test_eextend_measures_what_the_epc_holds_chunk_by_chunk(key: SigningKey) -> None:
    proc = cpu()
    s = proc.ecreate(secs())
    for i in range(3):
        proc.eadd(None, s, BASE + i * 4096, RW, page(i))
        for at in range(0, 4096, 256):
            proc.eextend(s, BASE + i * 4096 + at)
    proc.einit(s, signed(3, key))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- EINIT refusals


def test_tampered_page_gives_invalid_measurement(key: SigningKey) -> None:
    proc = cpu()
    s = proc.ecreate(secs())
    for i in range(3):
        data = page(i) if i != 1 else b"X" + page(i)[1:]
        proc.add_page(None, s, BASE + i * 4096, RW, data)
    with pytest.raises(InvalidMeasurement, match=r"SGX_INVALID_MEASUREMENT.*ENCLAVEHASH"):
        proc.einit(s, signed(3, key))  # type: ignore[arg-type]


def test_bad_signature_and_bad_header_are_refused(key: SigningKey) -> None:
    proc = cpu()
    s = enclave(proc, 3)
    sig: SigStruct = signed(3, key)  # type: ignore[assignment]
    forged = bytearray(sig.signature)
    forged[5] ^= 1
    with pytest.raises(InvalidSignature):
        proc.einit(s, sig.replace(signature=bytes(forged)))
    with pytest.raises(InvalidSignature):  # a signed field changed after signing
        proc.einit(s, sig.replace(isvsvn=sig.isvsvn + 1))
    with pytest.raises(InvalidSigStruct):
        proc.einit(s, sig.replace(header=bytes(16)))
    proc.einit(s, sig)  # nothing was committed by the refusals


def test_debug_enclave_refused_when_mask_forbids_debug(key: SigningKey) -> None:
    proc = cpu()
    s = enclave(proc, 3, debug=True)
    sig = signed(3, key, attributemask=Attributes(flags=U64, xfrm=U64))
    with pytest.raises(InvalidAttribute, match=r"SGX_INVALID_ATTRIBUTE.*DEBUG"):
        proc.einit(s, sig)  # type: ignore[arg-type]
    prod = enclave(proc, 3, debug=False)
    proc.einit(prod, sig)  # type: ignore[arg-type]


def test_miscselect_mismatch_is_invalid_attribute(key: SigningKey) -> None:
    proc = cpu()
    s = proc.ecreate(secs().replace(miscselect=1))
    for i in range(3):
        proc.add_page(None, s, BASE + i * 4096, RW, page(i))
    with pytest.raises(InvalidAttribute, match="MISCSELECT"):
        proc.einit(s, signed(3, key))  # type: ignore[arg-type]


def test_eadd_and_eextend_after_einit_fault(key: SigningKey) -> None:
    proc = cpu()
    s = launched(proc, key)
    with pytest.raises(SGXFault, match="EADD: #GP"):
        proc.eadd(None, s, BASE + 0x10000, RW, page(9))
    with pytest.raises(SGXFault, match="EEXTEND: #GP"):
        proc.eextend(s, BASE)
    with pytest.raises(SGXFault, match="EINIT: #GP"):
        proc.einit(s, signed(3, key))  # type: ignore[arg-type]


def test_allowlist_refuses_other_signers_by_mrsigner(key: SigningKey) -> None:
    sig: SigStruct = signed(3, key)  # type: ignore[assignment]
    mine = sigmod.mrsigner(sig)
    strict = cpu(launch_allowlist=frozenset({bytes(32)}))
    s = enclave(strict, 3)
    with pytest.raises(InvalidEInitToken, match=mine.hex()):
        strict.einit(s, sig)
    allowing = cpu(launch_allowlist=frozenset({mine}))
    allowing.einit(enclave(allowing, 3), sig)


def test_valid_launch_token_is_checked(key: SigningKey) -> None:
    secrets = FusedSecrets.generate()
    proc = cpu(secrets=secrets)
    le_hash = bytes(range(32))
    proc.write_lepubkeyhash(le_hash)
    sig: SigStruct = signed(3, key)  # type: ignore[assignment]
    s = enclave(proc, 3)
    with pytest.raises(InvalidEInitToken, match="VALID = 0"):  # the LE hash is not our signer
        proc.einit(s, sig)
    attrs = proc.secs(s).attributes
    token = EInitToken(valid=1, attributes=attrs, mrenclave=mrenclave(3),
                       mrsigner=sigmod.mrsigner(sig), cpusvnle=CPUSVN, keyid=b"k" * 32)
    k = einittoken_key(secrets, cpusvn=CPUSVN, isvsvn=0, isvprodid=0, mrsigner=le_hash,
                       masked_attributes=Attributes(), masked_miscselect=0, keyid=b"k" * 32)
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms

    mac = cmac.CMAC(algorithms.AES128(k))
    mac.update(token.to_bytes()[:192])
    good = token.replace(mac=mac.finalize())
    with pytest.raises(InvalidEInitToken, match="MAC"):
        proc.einit(s, sig, good.replace(mac=bytes(16)))
    with pytest.raises(InvalidCPUSVN):
        proc.einit(s, sig, good.replace(cpusvnle=b"\xff" * 16))
    proc.einit(s, sig, good)
    assert proc.identity(s).mrsigner == sigmod.mrsigner(sig)


# ----------------------------------------------------------------------------- ECREATE / EADD


@pytest.mark.parametrize("bad", [
    {"size": 0x3000}, {"size": 0x1000}, {"baseaddr": BASE + 0x1000},
    {"attributes": Attributes(flags=int(AttributeFlags.INIT | AttributeFlags.MODE64BIT), xfrm=3)},
    {"attributes": Attributes(flags=4, xfrm=1)}, {"ssaframesize": 0}, {"miscselect": 0x100},
    {"configsvn": 1},
])
def test_ecreate_rejects_invalid_secs(bad: dict[str, object]) -> None:
    proc = cpu()
    with pytest.raises(SGXFault, match="ECREATE: #GP"):
        proc.ecreate(secs().replace(**bad))
    assert proc.free_pages() == proc.epc_pages


def test_eadd_checks_secinfo_address_and_tcs() -> None:
    proc = cpu()
    s = proc.ecreate(secs())
    for info in (SecInfo(flags=secinfo_flags(PageType.PT_REG, 2)),  # W without R
                 SecInfo(flags=secinfo_flags(PageType.PT_VA, 1)),
                 SecInfo(flags=0x203, reserved=b"\1" + bytes(55)),
                 SecInfo(flags=0x20B)):  # PENDING
        with pytest.raises(SGXFault, match="#GP"):
            proc.eadd(None, s, BASE, info, page(0))
    for linaddr in (BASE - 4096, BASE + 0x4_0000, BASE + 1):
        with pytest.raises(SGXFault, match="#GP"):
            proc.eadd(None, s, linaddr, RW, page(0))
    with pytest.raises(SGXFault, match="TCS"):
        proc.eadd(None, s, BASE, TCS_INFO, b"\1" * 4096)
    proc.eadd(None, s, BASE, RW, page(0))
    with pytest.raises(SGXFault, match="already has a page"):
        proc.eadd(None, s, BASE, RW, page(0))
    assert proc.free_pages() == proc.epc_pages - 2


# ----------------------------------------------------------------------------- debug


@given(offset=st.integers(0, 3 * 4096 - 16), size=st.integers(1, 16))
def test_edbgrd_on_production_enclave_is_refused(offset: int, size: int) -> None:
    proc = cpu(8)
    s = enclave(proc, 3, debug=False)
    with pytest.raises(PageNotDebuggable, match="SGX_PAGE_NOT_DEBUGGABLE"):
        proc.edbgrd(s, BASE + offset, size)
    with pytest.raises(PageNotDebuggable):
        proc.edbgwr(s, BASE + offset, b"x" * size)


def test_edbgrd_and_edbgwr_work_on_debug_enclave() -> None:
    proc = cpu()
    s = enclave(proc, 3)
    assert proc.edbgrd(s, BASE + 4096, 4096) == page(1)
    proc.edbgwr(s, BASE + 4096 - 2, b"ABCD")  # across a page boundary
    assert proc.edbgrd(s, BASE + 4096 - 2, 4) == b"ABCD"
    assert proc.edbgrd(s, BASE + 4096 + 2, 4094) == page(1)[2:]


# ----------------------------------------------------------------------------- the enclave's view


def test_enclave_reads_and_writes_with_epcm_permissions(key: SigningKey) -> None:
    proc = cpu()
    s = proc.ecreate(secs())
    proc.add_page(None, s, BASE, RW, page(0))
    proc.add_page(None, s, BASE + 4096, RO, page(1))
    proc.add_page(None, s, BASE + 8192, TCS_INFO, bytes(4096))
    from enclavekit.sgx.measure import Measurement

    m = Measurement()
    m.ecreate(1, 0x4_0000)
    m.add_page(0, RW.flags, page(0))
    m.add_page(4096, RO.flags, page(1))
    m.add_page(8192, TCS_INFO.flags, bytes(4096))
    with pytest.raises(SGXFault, match=r"READ: #GP.*not initialised"):
        proc.read(s, BASE, 4)
    proc.einit(s, sigmod.sign(sigmod.build_sigstruct(m.digest()), key))
    proc.write(s, BASE + 10, b"hello")
    assert proc.read(s, BASE + 8, 9) == page(0)[8:10] + b"hello" + page(0)[15:17]
    assert proc.read(s, BASE + 4096, 4) == page(1)[:4]
    with pytest.raises(SGXFault, match=r"WRITE: #PF.*write"):
        proc.write(s, BASE + 4096, b"x")
    with pytest.raises(SGXFault, match="READ: #PF"):
        proc.read(s, BASE + 8192, 1)  # TCS pages are not accessible as data
    with pytest.raises(SGXFault, match=r"READ: #PF.*0x410000"):
        proc.read(s, BASE + 0x10000, 1)
    proc.evict(proc.pages_of(s)[BASE])
    with pytest.raises(SGXFault, match=r"#PF.*LINADDR 0x400000.*ELDU"):
        proc.read(s, BASE, 1)


# ----------------------------------------------------------------------------- EREMOVE, threads


def test_eremove_child_present_and_enclave_act(key: SigningKey) -> None:
    proc = cpu()
    s = launched(proc, key)
    with pytest.raises(ChildPresent):
        proc.eremove(s)
    thread = proc.enter(s)
    child = proc.pages_of(s)[BASE]
    with pytest.raises(EnclaveAct, match="SGX_ENCLAVE_ACT"):
        proc.eremove(child)
    proc.exit(s, thread)
    for p in list(proc.pages_of(s).values()):
        proc.eremove(p)
    proc.eremove(s)
    assert proc.free_pages() == proc.epc_pages
    with pytest.raises(SGXFault, match="not a SECS"):
        proc.enter(s)


def test_exit_without_thread_faults(key: SigningKey) -> None:
    proc = cpu()
    s = launched(proc, key)
    with pytest.raises(SGXFault, match="EEXIT: #GP"):
        proc.exit(s)


# ----------------------------------------------------------------------------- EREPORT / EGETKEY


def test_ereport_verifies_only_in_its_target(key: SigningKey) -> None:
    proc = cpu()
    a = launched(proc, key, 3)
    b = launched(proc, key, 2)
    report = proc.ereport(a, proc.identity(b).target_info(), b"d" * 64)
    assert report.body.mrenclave == mrenclave(3)
    proc.verify_report(b, report)
    from enclavekit.errors import IntegrityError

    with pytest.raises(IntegrityError):
        proc.verify_report(a, report)
    with pytest.raises(SGXFault, match="EREPORT: #GP"):
        proc.ereport(a, TargetInfo(reserved3=b"\1" * 384), bytes(64))


def test_seal_key_survives_power_cycle_and_differs_across_platforms(key: SigningKey) -> None:
    secrets = FusedSecrets.generate()
    request = KeyRequest(keyname=KeyName.SEAL, keypolicy=KeyPolicy.MRSIGNER)
    before = cpu(secrets=secrets)
    k1 = before.egetkey(launched(before, key), request)
    after = cpu(secrets=secrets)  # power cycle: new boot, same fuses
    k2 = after.egetkey(launched(after, key), request)
    other = cpu()
    k3 = other.egetkey(launched(other, key), request)
    assert k1 == k2 != k3
    with pytest.raises(InvalidISVSVN):
        after.egetkey(launched(after, key), request.replace(isvsvn=1))


def test_egetkey_before_einit_faults() -> None:
    proc = cpu()
    s = enclave(proc, 1)
    with pytest.raises(SGXFault, match="#GP"):
        proc.egetkey(s, KeyRequest(keyname=KeyName.SEAL))
