"""EGETKEY: the key-policy equality structure, SVN and attribute checks, #GP pre-checks."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from enclavekit.errors import (
    InvalidAttribute,
    InvalidCPUSVN,
    InvalidISVSVN,
    InvalidKeyname,
    InvalidStructure,
    SGXFault,
)
from enclavekit.sgx.consts import PKCS1_SHA256_PADDING, AttributeFlags, KeyName, KeyPolicy
from enclavekit.sgx.keys import (
    EnclaveIdentity,
    FusedSecrets,
    KeyDependencies,
    cpusvn_beyond,
    egetkey,
    einittoken_key,
)
from enclavekit.sgx.structs import Attributes, KeyRequest

F = AttributeFlags
INIT64 = F.INIT | F.MODE64BIT
CPUSVN = bytes([5, 5, 2, 2, 4, 1, 0, 3] + [7] * 8)
SECRETS = FusedSecrets(root=b"R" * 16, seal_fuses=b"F" * 16, owner_epoch=b"E" * 16)

hash32 = st.binary(min_size=32, max_size=32)
svn = st.integers(0, 0xFFFF)


def enclave(**changes: object) -> EnclaveIdentity:
    """A production 64-bit enclave with PROVISIONKEY, EINITTOKEN_KEY and KSS unless changed."""
    base: dict[str, object] = {
        "mrenclave": b"\x11" * 32,
        "mrsigner": b"\x22" * 32,
        "attributes": Attributes(flags=INIT64, xfrm=0x3),
        "miscselect": 0,
        "isvprodid": 7,
        "isvsvn": 3,
    }
    base.update(changes)
    return EnclaveIdentity(**base)  # type: ignore[arg-type]


def kss(flags: int = 0) -> Attributes:
    return Attributes(flags=INIT64 | F.KSS | flags, xfrm=0x3)


def seal(policy: int = KeyPolicy.MRSIGNER, **fields: object) -> KeyRequest:
    fields.setdefault("cpusvn", CPUSVN)
    return KeyRequest(keyname=KeyName.SEAL, keypolicy=policy, **fields)  # type: ignore[arg-type]


def key(ident: EnclaveIdentity, req: KeyRequest, secrets: FusedSecrets = SECRETS) -> bytes:
    return egetkey(secrets, CPUSVN, ident, req)


# --------------------------------------------------------------------------- FusedSecrets


def test_fused_secrets_round_trip_and_are_random() -> None:
    one, two = FusedSecrets.generate(), FusedSecrets.generate()
    assert FusedSecrets.from_bytes(one.to_bytes()) == one
    assert len({one.root, one.seal_fuses, one.owner_epoch, two.root}) == 4
    assert one.root.hex() not in repr(one)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-1],
        lambda b: b + b"\0",
        lambda b: b"X" + b[1:],
        lambda b: b[:8] + b"\x02" + b[9:],
        lambda b: b[:12] + b"\x01" + b[13:],
    ],
    ids=["truncated", "oversized", "magic", "version", "reserved"],
)
def test_fused_secrets_refuse_garbled_bytes(mangle: object) -> None:
    data = FusedSecrets.generate().to_bytes()
    with pytest.raises(InvalidStructure, match="FusedSecrets"):
        FusedSecrets.from_bytes(mangle(data))  # type: ignore[operator]


def test_fused_secrets_and_identity_check_sizes() -> None:
    with pytest.raises(InvalidStructure, match="root must be 16 bytes, found 15"):
        FusedSecrets(root=bytes(15), seal_fuses=bytes(16), owner_epoch=bytes(16))
    with pytest.raises(InvalidStructure, match="mrsigner must be 32 bytes"):
        enclave(mrsigner=bytes(31))
    with pytest.raises(InvalidStructure, match="isvsvn"):
        enclave(isvsvn=0x10000)


def test_key_dependencies_layout_is_the_documented_one() -> None:
    assert KeyDependencies.SIZE == 672
    offsets = KeyDependencies.OFFSETS
    assert (offsets["keyname"], offsets["attributes"], offsets["cpusvn"]) == (16, 48, 80)
    assert (offsets["keyid"], offsets["mrenclave"], offsets["padding"]) == (128, 160, 320)


# --------------------------------------------------------------------------- SEAL policy


@given(a=hash32, b=hash32, keyid=hash32)
def test_mrsigner_seal_key_is_shared_by_one_signers_enclaves(
    a: bytes, b: bytes, keyid: bytes
) -> None:
    req = seal(keyid=keyid)
    assert key(enclave(mrenclave=a), req) == key(enclave(mrenclave=b), req)


@given(s1=hash32, s2=hash32)
def test_mrsigner_seal_key_differs_across_signers(s1: bytes, s2: bytes) -> None:
    assume(s1 != s2)
    assert key(enclave(mrsigner=s1), seal()) != key(enclave(mrsigner=s2), seal())


@given(p1=svn, p2=svn)
def test_seal_key_differs_across_isvprodids(p1: int, p2: int) -> None:
    assume(p1 != p2)
    assert key(enclave(isvprodid=p1), seal()) != key(enclave(isvprodid=p2), seal())


def test_seal_key_differs_across_platforms() -> None:
    other = FusedSecrets.generate()
    assert key(enclave(), seal(), SECRETS) != key(enclave(), seal(), other)
    # The root alone separates platforms, even with the same fuses and owner epoch.
    clone = FusedSecrets(b"r" * 16, SECRETS.seal_fuses, SECRETS.owner_epoch)
    assert key(enclave(), seal(), clone) != key(enclave(), seal())


@given(k1=hash32, k2=hash32)
def test_seal_key_differs_across_keyids(k1: bytes, k2: bytes) -> None:
    assume(k1 != k2)
    assert key(enclave(), seal(keyid=k1)) != key(enclave(), seal(keyid=k2))


def test_seal_key_differs_across_requested_svns() -> None:
    ident = enclave(isvsvn=3)
    keys = {key(ident, seal(isvsvn=n)) for n in range(4)}
    older = bytes([5, 5, 2, 2, 4, 1, 0, 2] + [7] * 8)
    keys.add(key(ident, seal(isvsvn=3).replace(cpusvn=older)))
    assert len(keys) == 5


@given(a=hash32, b=hash32)
def test_mrenclave_seal_key_differs_across_mrenclaves(a: bytes, b: bytes) -> None:
    assume(a != b)
    req = seal(KeyPolicy.MRENCLAVE)
    assert key(enclave(mrenclave=a), req) != key(enclave(mrenclave=b), req)


def test_mrenclave_seal_key_does_not_bind_the_signer() -> None:
    req = seal(KeyPolicy.MRENCLAVE)
    assert key(enclave(mrsigner=b"\x01" * 32), req) == key(enclave(mrsigner=b"\x02" * 32), req)
    assert key(enclave(), req) != key(enclave(), seal(KeyPolicy.MRSIGNER))


def test_debug_is_always_bound() -> None:
    prod = enclave()
    debug = enclave(attributes=Attributes(flags=INIT64 | F.DEBUG, xfrm=0x3))
    req = seal(attributemask=Attributes())
    assert key(prod, req) != key(debug, req)


def test_attribute_and_misc_masks_choose_what_binds() -> None:
    plain = enclave()
    other = enclave(attributes=Attributes(flags=INIT64 | F.AEXNOTIFY, xfrm=0x7), miscselect=1)
    assert key(plain, seal()) == key(other, seal())
    for mask in (
        {"attributemask": Attributes(flags=F.AEXNOTIFY)},
        {"attributemask": Attributes(xfrm=0x4)},
        {"miscmask": 1},
    ):
        assert key(plain, seal(**mask)) != key(other, seal(**mask))


def test_the_masks_themselves_are_bound() -> None:
    # Same enclave, bits absent from its ATTRIBUTES/MISCSELECT: only the masks differ.
    plain = enclave()
    assert key(plain, seal()) != key(plain, seal(miscmask=1))
    assert key(plain, seal()) != key(plain, seal(attributemask=Attributes(flags=F.AEXNOTIFY)))


def test_provision_seal_key_binds_signer_but_not_mrenclave() -> None:
    flags = Attributes(flags=INIT64 | F.PROVISIONKEY, xfrm=3)
    req = KeyRequest(keyname=KeyName.PROVISION_SEAL, cpusvn=CPUSVN, keypolicy=KeyPolicy.MRENCLAVE)
    a = enclave(attributes=flags)
    assert key(a, req) == key(enclave(attributes=flags, mrenclave=b"\x99" * 32), req)
    assert key(a, req) != key(enclave(attributes=flags, mrsigner=b"\x98" * 32), req)
    assert key(a, req) != key(a, req.replace(keypolicy=KeyPolicy.MRSIGNER))


def test_owner_epoch_changes_seal_keys_but_not_provision_keys() -> None:
    ident = enclave(attributes=Attributes(flags=INIT64 | F.PROVISIONKEY, xfrm=3))
    new_owner = FusedSecrets(SECRETS.root, SECRETS.seal_fuses, b"N" * 16)
    prov = KeyRequest(keyname=KeyName.PROVISION, cpusvn=CPUSVN)
    pseal = KeyRequest(keyname=KeyName.PROVISION_SEAL, cpusvn=CPUSVN)
    assert key(ident, seal(), SECRETS) != key(ident, seal(), new_owner)
    assert key(ident, prov, SECRETS) == key(ident, prov, new_owner)
    assert key(ident, pseal, SECRETS) == key(ident, pseal, new_owner)
    new_fuses = FusedSecrets(SECRETS.root, b"G" * 16, SECRETS.owner_epoch)
    assert key(ident, prov) == key(ident, prov, new_fuses)
    assert key(ident, pseal) != key(ident, pseal, new_fuses)


def test_provision_key_ignores_keyid_and_mrenclave() -> None:
    flags = Attributes(flags=INIT64 | F.PROVISIONKEY, xfrm=3)
    req = KeyRequest(keyname=KeyName.PROVISION, cpusvn=CPUSVN)
    a, b = enclave(attributes=flags), enclave(attributes=flags, mrenclave=b"\x99" * 32)
    assert key(a, req) == key(b, req.replace(keyid=b"\x01" * 32))
    assert key(a, req) != key(enclave(attributes=flags, mrsigner=b"\x98" * 32), req)


def test_seal_key_binds_secs_padding() -> None:
    odd = bytes(1) + PKCS1_SHA256_PADDING[1:-1] + b"\x21"
    assert key(enclave(), seal()) != key(enclave(padding=odd), seal())


def test_key_names_never_collide() -> None:
    ident = enclave(attributes=kss(F.PROVISIONKEY | F.EINITTOKEN_KEY))
    keys = {key(ident, seal().replace(keyname=n)) for n in KeyName}
    assert len(keys) == len(KeyName)


# --------------------------------------------------------------------------- SVN checks


@given(own=st.integers(0, 0xFFFE), extra=st.integers(1, 0xFFFF))
def test_request_above_enclave_isvsvn_is_refused(own: int, extra: int) -> None:
    requested = min(own + extra, 0xFFFF)
    with pytest.raises(InvalidISVSVN, match=f"requested ISVSVN {requested} is above .* {own}"):
        key(enclave(isvsvn=own), seal(isvsvn=requested))


@given(old=st.integers(0, 100), bump=st.integers(1, 100), a=hash32, b=hash32)
def test_newer_enclave_derives_older_enclaves_key(old: int, bump: int, a: bytes, b: bytes) -> None:
    older, newer = enclave(mrenclave=a, isvsvn=old), enclave(mrenclave=b, isvsvn=old + bump)
    assert key(newer, seal(isvsvn=old)) == key(older, seal(isvsvn=old))
    assert key(newer, seal(isvsvn=old + bump)) != key(older, seal(isvsvn=old))


@given(data=st.data())
def test_cpusvn_beyond_current_is_refused_and_older_is_allowed(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, 15))
    higher = bytearray(CPUSVN)
    higher[index] = data.draw(st.integers(CPUSVN[index] + 1, 255))
    with pytest.raises(InvalidCPUSVN, match="beyond the platform's CPUSVN"):
        key(enclave(), seal(cpusvn=bytes(higher)))
    lower = bytes(data.draw(st.integers(0, c)) for c in CPUSVN)
    assume(lower != CPUSVN)
    assert key(enclave(), seal(cpusvn=lower)) != key(enclave(), seal())


@given(req=st.binary(min_size=16, max_size=16), cur=st.binary(min_size=16, max_size=16))
def test_cpusvn_beyond_is_componentwise(req: bytes, cur: bytes) -> None:
    assert cpusvn_beyond(req, cur) == any(r > c for r, c in zip(req, cur, strict=True))
    assert not cpusvn_beyond(cur, cur)


def test_cpusvn_beyond_refuses_wrong_sizes() -> None:
    with pytest.raises(InvalidStructure, match="CPUSVN"):
        cpusvn_beyond(bytes(15), bytes(16))


def test_configsvn_above_enclave_is_refused() -> None:
    ident = enclave(attributes=kss(), configsvn=2)
    assert key(ident, seal(KeyPolicy.CONFIGID, configsvn=2))
    with pytest.raises(InvalidISVSVN, match="CONFIGSVN 3 is above the enclave's CONFIGSVN 2"):
        key(ident, seal(KeyPolicy.CONFIGID, configsvn=3))


def test_svn_error_precedence_follows_the_sdm() -> None:
    future = b"\xff" * 16
    with pytest.raises(InvalidCPUSVN):
        key(enclave(isvsvn=0), seal(cpusvn=future, isvsvn=9))
    no_prov = KeyRequest(keyname=KeyName.PROVISION, cpusvn=future)
    with pytest.raises(InvalidAttribute):
        key(enclave(), no_prov)


# --------------------------------------------------------------------------- KSS and #GP


@pytest.mark.parametrize(
    "policy",
    [KeyPolicy.NOISVPRODID, KeyPolicy.CONFIGID, KeyPolicy.ISVFAMILYID, KeyPolicy.ISVEXTPRODID],
)
def test_kss_policy_bits_need_kss(policy: KeyPolicy) -> None:
    with pytest.raises(SGXFault, match="KSS-only") as info:
        key(enclave(), seal(KeyPolicy.MRSIGNER | policy))
    assert info.value.vector == "#GP"
    assert key(enclave(attributes=kss()), seal(KeyPolicy.MRSIGNER | policy))


def test_configsvn_needs_kss() -> None:
    with pytest.raises(SGXFault, match=r"CONFIGSVN 1 needs ATTRIBUTES\.KSS"):
        key(enclave(configsvn=5), seal(configsvn=1))


def test_kss_policies_bind_their_fields() -> None:
    base = enclave(attributes=kss())
    for policy, field, value in (
        (KeyPolicy.CONFIGID, "configid", b"\x05" * 64),
        (KeyPolicy.ISVFAMILYID, "isvfamilyid", b"\x06" * 16),
        (KeyPolicy.ISVEXTPRODID, "isvextprodid", b"\x07" * 16),
    ):
        changed = enclave(attributes=kss(), **{field: value})
        assert key(base, seal()) == key(changed, seal())
        req = seal(KeyPolicy.MRSIGNER | policy)
        assert key(base, req) != key(changed, req)
    noprod = seal(KeyPolicy.MRSIGNER | KeyPolicy.NOISVPRODID)
    assert key(base, noprod) == key(enclave(attributes=kss(), isvprodid=99), noprod)


@given(bits=st.integers(1, 0x3FF))
def test_reserved_keypolicy_bits_fault(bits: int) -> None:
    with pytest.raises(SGXFault, match="reserved bits") as info:
        key(enclave(attributes=kss()), seal(KeyPolicy.MRSIGNER | bits << 6))
    assert info.value.vector == "#GP"


@given(data=st.data())
def test_reserved_request_bytes_fault(data: st.DataObject) -> None:
    field, size = data.draw(st.sampled_from([("reserved1", 2), ("reserved2", 434)]))
    raw = bytearray(size)
    raw[data.draw(st.integers(0, size - 1))] = data.draw(st.integers(1, 255))
    with pytest.raises(SGXFault, match=f"KEYREQUEST.{field}"):
        key(enclave(), seal(**{field: bytes(raw)}))


def test_gp_comes_before_keyname_checks() -> None:
    with pytest.raises(SGXFault):
        key(enclave(), KeyRequest(keyname=9, keypolicy=0x8000))


# --------------------------------------------------------------------------- key names


@given(name=st.integers(5, 0xFFFF))
def test_unknown_keyname_is_refused(name: int) -> None:
    with pytest.raises(InvalidKeyname, match=f"KEYNAME {name} is not a key name"):
        key(enclave(), KeyRequest(keyname=name))


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        (KeyName.PROVISION, "PROVISIONKEY"),
        (KeyName.PROVISION_SEAL, "PROVISIONKEY"),
        (KeyName.EINITTOKEN, "EINITTOKEN_KEY"),
    ],
)
def test_privileged_keys_need_their_attribute(name: KeyName, needs: str) -> None:
    with pytest.raises(InvalidAttribute, match=f"ATTRIBUTES.{needs}"):
        key(enclave(), KeyRequest(keyname=name, cpusvn=CPUSVN))


def test_einittoken_key_is_what_einit_recomputes() -> None:
    launch = enclave(attributes=Attributes(flags=INIT64 | F.EINITTOKEN_KEY, xfrm=0x3))
    req = KeyRequest(
        keyname=KeyName.EINITTOKEN, cpusvn=CPUSVN, isvsvn=2, keyid=b"\x42" * 32,
        attributemask=Attributes(flags=F.MODE64BIT, xfrm=0x3),
    )
    from_le = key(launch, req)
    masked = Attributes(flags=F.INIT | F.MODE64BIT, xfrm=0x3)
    assert from_le == einittoken_key(
        SECRETS, cpusvn=CPUSVN, isvsvn=2, isvprodid=launch.isvprodid,
        mrsigner=launch.mrsigner, masked_attributes=masked, masked_miscselect=0,
        keyid=b"\x42" * 32,
    )
    other_signer = einittoken_key(
        SECRETS, cpusvn=CPUSVN, isvsvn=2, isvprodid=launch.isvprodid,
        mrsigner=b"\x00" * 32, masked_attributes=masked, masked_miscselect=0,
        keyid=b"\x42" * 32,
    )
    assert from_le != other_signer
    new_owner = FusedSecrets(SECRETS.root, SECRETS.seal_fuses, b"O" * 16)
    assert from_le != key(launch, req, new_owner)
