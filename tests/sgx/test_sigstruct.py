"""SIGSTRUCT: published vectors, sign → verify, EINIT's check order, tampering, HSM two-step."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import (
    InvalidSignature,
    InvalidSigStruct,
    InvalidStructure,
    SGXError,
    SigningKeyError,
)
from enclavekit.sgx import sigstruct as ss
from enclavekit.sgx.consts import AttributeFlags
from enclavekit.sgx.signing import SigningKey
from enclavekit.sgx.structs import Attributes, SigStruct
from tests.vectors import cases, entry, vector

SIGNED_BITS = [*range(0, 128 * 8), *range(900 * 8, 1028 * 8)]
ALL_BITS = range(SigStruct.SIZE * 8)

SIGSTRUCT_VECTORS = cases("measurement_vectors", "sigstruct", "mrsigner")


def _flip(raw: bytes, bit: int) -> bytes:
    out = bytearray(raw)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _load(rel: str) -> SigStruct:
    return SigStruct.from_bytes(vector(rel).read_bytes())


@pytest.fixture(scope="module")
def signed(signing_key: SigningKey) -> SigStruct:
    unsigned = ss.build_sigstruct(
        hashlib.sha256(b"some enclave").digest(),
        date=datetime.date(2024, 2, 29),
        isvprodid=7,
        isvsvn=3,
        miscselect=1,
    )
    return ss.sign(unsigned, signing_key)


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("v", SIGSTRUCT_VECTORS)
def test_published_sigstruct_verifies_with_expected_identity(v: dict[str, Any]) -> None:
    sig = _load(v["sigstruct"])
    ss.verify(sig)
    assert ss.mrsigner(sig).hex() == v["mrsigner"]
    expected_hash = v["mrenclave"] if "mrenclave" in v else v["inputs"]["enclavehash"]
    assert sig.enclavehash.hex() == expected_hash


def test_enarx_signed_bytes_hash() -> None:
    """sgx-spec.md §2.7: SHA-256 of encl.ss's signed 256 bytes."""
    sig = _load("enarx_sgx/encl.ss")
    assert (
        hashlib.sha256(ss.signing_data(sig)).hexdigest()
        == "58ef2b4fe0ba7861c3a466fcd016498245640165f7e225381425500e3dfd46f3"
    )


def test_sig1_signing_data_rebuilt_from_documented_inputs() -> None:
    """sgxs-sign -x 3/0xe4 --date 20160109 --in-hash c506…: our defaults give the same bytes."""
    sig1 = entry("measurement_vectors", "sigstruct", "mrsigner", id="fortanix_sig1")
    inputs = sig1["inputs"]
    xfrm, inverse_mask = (int(x, 0) for x in inputs["xfrm"].split("/"))
    rebuilt = ss.build_sigstruct(
        bytes.fromhex(inputs["enclavehash"]),
        date=datetime.datetime.strptime(inputs["date"], "%Y%m%d").date(),
        attributes=Attributes(flags=AttributeFlags.MODE64BIT, xfrm=xfrm),
        attributemask=Attributes(
            flags=0xFFFF_FFFF_FFFF_FFFD, xfrm=~inverse_mask & 0xFFFF_FFFF_FFFF_FFFF
        ),
    )
    vector_sig = _load(sig1["sigstruct"])
    raw = vector_sig.to_bytes()
    assert ss.signing_data(rebuilt) == raw[0:128] + raw[900:1028]
    # the library defaults are exactly these options
    defaults = ss.build_sigstruct(bytes.fromhex(inputs["enclavehash"]), date=0x20160109)
    assert ss.signing_data(defaults) == ss.signing_data(vector_sig)


def test_enarx_signing_data_rebuilt_from_documented_fields() -> None:
    sig = _load("enarx_sgx/encl.ss")
    rebuilt = ss.build_sigstruct(
        bytes.fromhex("b999536238fcf4e9d360ef6cd3e0c20ef8a684c7b93f74a9c4a4c6d517d61fc0"),
        date=0,
        miscmask=0,
        attributes=Attributes(flags=AttributeFlags.MODE64BIT, xfrm=3),
        attributemask=Attributes(),
    )
    assert ss.signing_data(rebuilt) == ss.signing_data(sig)


def test_published_vectors_with_a_bit_flipped_fail() -> None:
    sig = _load("fortanix_sgxs/test_enclave.sig")
    raw = sig.to_bytes()
    for bit in (0, 20 * 8, 130 * 8, 600 * 8, 960 * 8, 1100 * 8 + 3, 1500 * 8):
        with pytest.raises((InvalidSigStruct, InvalidSignature, InvalidStructure)):
            ss.verify(SigStruct.from_bytes(_flip(raw, bit)))


# --------------------------------------------------------------------------- sign / verify


def test_sign_then_verify_round_trip(signed: SigStruct, signing_key: SigningKey) -> None:
    ss.verify(signed)
    assert ss.is_valid(signed)
    assert ss.mrsigner(signed) == signing_key.mrsigner()
    assert signed.exponent == 3
    assert signed.date == 0x20240229
    # what is stored is what was signed: PKCS#1 verification by pyca over the signed bytes
    s_be = int.from_bytes(signed.signature, "little").to_bytes(384, "big")
    signing_key.key.public_key().verify(
        s_be, ss.signing_data(signed), padding.PKCS1v15(), hashes.SHA256()
    )
    assert SigStruct.from_bytes(signed.to_bytes()) == signed


def test_q1_q2_follow_the_sdm_definition(signed: SigStruct) -> None:
    s = int.from_bytes(signed.signature, "little")
    n = int.from_bytes(signed.modulus, "little")
    q1 = int.from_bytes(signed.q1, "little")
    q2 = int.from_bytes(signed.q2, "little")
    assert q1 == (s * s) // n
    assert q2 == (s**3 - q1 * s * n) // n


@given(
    enclavehash=st.binary(min_size=32, max_size=32),
    isvprodid=st.integers(0, 0xFFFF),
    isvsvn=st.integers(0, 0xFFFF),
    miscselect=st.integers(0, 0xFFFF_FFFF),
    flags=st.integers(0, 0xFFFF_FFFF_FFFF_FFFF),
    vendor=st.sampled_from([0, 0x8086]),
    day=st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)),
)
def test_property_any_fields_sign_and_verify(
    signing_key: SigningKey,
    enclavehash: bytes,
    isvprodid: int,
    isvsvn: int,
    miscselect: int,
    flags: int,
    vendor: int,
    day: datetime.date,
) -> None:
    sig = ss.sign(
        ss.build_sigstruct(
            enclavehash,
            vendor=vendor,
            date=day,
            isvprodid=isvprodid,
            isvsvn=isvsvn,
            miscselect=miscselect,
            attributes=Attributes(flags=flags, xfrm=3),
        ),
        signing_key,
    )
    ss.verify(sig)
    assert ss.date_from_bcd(sig.date) == day


@given(bit=st.sampled_from(SIGNED_BITS))
def test_property_single_bit_flip_in_signed_regions_fails(signed: SigStruct, bit: int) -> None:
    tampered = SigStruct.from_bytes(_flip(signed.to_bytes(), bit), strict=False)
    with pytest.raises((InvalidSigStruct, InvalidSignature)):
        ss.verify(tampered)


def test_every_single_bit_flip_anywhere_fails(signed: SigStruct) -> None:
    """Exhaustive: each of the 14464 bits is either signed or checked (modulus, exponent,
    signature, reserved, Q1/Q2), so no flip survives ``verify``."""
    raw = signed.to_bytes()
    survivors = []
    for bit in ALL_BITS:
        try:
            ss.verify(SigStruct.from_bytes(_flip(raw, bit), strict=False))
        except (InvalidSigStruct, InvalidSignature):
            continue
        survivors.append(bit)
    assert survivors == []


def test_signature_and_modulus_flips_are_invalid_signature(signed: SigStruct) -> None:
    raw = signed.to_bytes()
    for bit in (*range(128 * 8, 512 * 8, 97), *range(516 * 8, 900 * 8, 89)):
        with pytest.raises(InvalidSignature):
            ss.verify(SigStruct.from_bytes(_flip(raw, bit)))


@pytest.mark.parametrize("field", ["q1", "q2"])
def test_q1_q2_tamper_fails(signed: SigStruct, field: str) -> None:
    value = int.from_bytes(getattr(signed, field), "little") + 1
    tampered = signed.replace(**{field: value.to_bytes(384, "little")})
    ss.verify_rsa(tampered)  # the RSA signature itself is still good
    with pytest.raises(InvalidSignature, match="Q1/Q2 do not match the signature"):
        ss.verify(tampered)


# --------------------------------------------------------------------------- EINIT order


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"header": bytes(16)}, InvalidSigStruct, "HEADER is"),
        ({"vendor": 0x1234}, InvalidSigStruct, "VENDOR is 0x1234"),
        ({"header2": bytes(16)}, InvalidSigStruct, "HEADER2 is"),
        ({"exponent": 65537}, InvalidSigStruct, "EXPONENT is 65537, SGX requires 3"),
        ({"reserved1": b"\x01" + bytes(83)}, InvalidSigStruct, "reserved bytes 44–127"),
        ({"reserved2": b"\x00\x01"}, InvalidSigStruct, "reserved bytes 910–911"),
        ({"reserved3": b"\x01" + bytes(15)}, InvalidSigStruct, "reserved bytes 992–1007"),
        ({"reserved4": b"\x01" + bytes(11)}, InvalidSigStruct, "reserved bytes 1028–1039"),
        ({"isvsvn": 4}, InvalidSignature, "does not verify"),
        ({"signature": bytes(384)}, InvalidSignature, "does not verify"),
        ({"modulus": bytes(384)}, InvalidSignature, "MODULUS is not"),
        ({"signature": b"\xff" * 384}, InvalidSignature, "not below the MODULUS"),
    ],
)
def test_einit_checks_and_error_classes(
    signed: SigStruct, change: dict[str, object], error: type[SGXError], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        ss.verify(signed.replace(**change))
    assert info.value.leaf == "EINIT"
    assert "\n" not in str(info.value)


def test_structure_errors_come_before_signature_errors(signed: SigStruct) -> None:
    both = signed.replace(vendor=5, signature=bytes(384))
    with pytest.raises(InvalidSigStruct, match="VENDOR"):
        ss.verify(both)
    assert not ss.is_valid(both)


def test_sdk_type_bit_is_configurable(signing_key: SigningKey) -> None:
    """SDK ReleaseType=1 sets bit 31 of HEADER bytes 12–15; the SDM constant has 0 there."""
    unsigned = ss.build_sigstruct(bytes(32), date=0)
    header = unsigned.header[:12] + (0x8000_0000).to_bytes(4, "little")
    typed = unsigned.replace(header=header)
    attached = ss.attach_signature(
        typed.replace(header=unsigned.header),
        signing_key.public_key(),
        signing_key.sign_pkcs1_sha256(ss.signing_data(unsigned)),
    ).replace(header=header)
    with pytest.raises(InvalidSigStruct, match="HEADER"):
        ss.verify(attached)
    with pytest.raises(InvalidSignature):  # tolerated header, but the signature covers it
        ss.verify(attached, allow_type_bit=True)
    ss.check_structure(typed, allow_type_bit=True)


def test_verify_leaf_name_is_reported(signed: SigStruct) -> None:
    with pytest.raises(InvalidSignature, match=r"^SIGSTRUCT: SGX_INVALID_SIGNATURE"):
        ss.verify(signed.replace(isvprodid=8), leaf="SIGSTRUCT")


# --------------------------------------------------------------------------- HSM two-step


def test_hsm_two_step_round_trip(signing_key: SigningKey, signed: SigStruct) -> None:
    unsigned = ss.build_sigstruct(bytes(range(32)), date=datetime.date(2025, 1, 2), isvsvn=9)
    message = ss.signing_data(unsigned)
    assert len(message) == 256
    external = signing_key.sign_pkcs1_sha256(message)  # stands in for the HSM
    n_be = signing_key.key.public_key().public_numbers().n.to_bytes(384, "big")
    for public in (signing_key.public_key(), signing_key.key.public_key(), n_be):
        attached = ss.attach_signature(unsigned, public, external)
        ss.verify(attached)
        assert attached == ss.sign(unsigned, signing_key)  # PKCS#1 v1.5 is deterministic


def test_hsm_wrong_signature_refused(signing_key: SigningKey) -> None:
    unsigned = ss.build_sigstruct(bytes(32), date=0)
    other = ss.build_sigstruct(bytes(32), date=0, isvsvn=1)
    wrong = signing_key.sign_pkcs1_sha256(ss.signing_data(other))
    with pytest.raises(InvalidSignature, match="does not verify"):
        ss.attach_signature(unsigned, signing_key.public_key(), wrong)
    with pytest.raises(InvalidSignature, match="external signature is 383 bytes"):
        ss.attach_signature(unsigned, signing_key.public_key(), wrong[1:])
    with pytest.raises(InvalidSignature, match="not below the modulus"):
        ss.attach_signature(unsigned, signing_key.public_key(), b"\xff" * 384)
    with pytest.raises(SigningKeyError, match="modulus is 256 bytes"):
        ss.attach_signature(unsigned, bytes(256), wrong)


def test_hsm_signature_from_another_key_refused(signing_key: SigningKey) -> None:
    unsigned = ss.build_sigstruct(bytes(32), date=0)
    vector_key = _load("enarx_sgx/encl.ss")
    foreign = int.from_bytes(vector_key.signature, "little").to_bytes(384, "big")
    with pytest.raises(InvalidSignature):
        ss.attach_signature(unsigned, signing_key.public_key(), foreign)


# --------------------------------------------------------------------------- building, DATE


def test_build_defaults_and_constants() -> None:
    sig = ss.build_sigstruct(bytes(32), date=datetime.date(2016, 1, 9))
    raw = sig.to_bytes()
    assert raw[0:16].hex() == "06000000e10000000000010000000000"
    assert raw[24:40].hex() == "01010000600000006000000001000000"
    assert raw[20:24] == bytes.fromhex("09011620")
    assert raw[512:516] == (3).to_bytes(4, "little")
    assert raw[904:908] == b"\xff" * 4
    assert raw[928:944].hex() == "0400000000000000" + "0300000000000000"
    assert raw[944:960].hex() == "fdffffffffffffff" + "1bffffffffffffff"
    today = datetime.datetime.now(datetime.UTC).date()
    assert ss.date_from_bcd(ss.build_sigstruct(bytes(32)).date) in {
        today,
        today - datetime.timedelta(days=1),
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"enclavehash": bytes(31)}, "ENCLAVEHASH must be 32 bytes, found 31"),
        ({"vendor": 1}, "VENDOR must be 0 or 0x8086"),
        ({"isvprodid": 0x10000}, "isvprodid"),
        ({"isvfamilyid": bytes(15)}, "isvfamilyid must be 16 bytes"),
    ],
)
def test_build_refuses_bad_fields(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"enclavehash": bytes(32), **kwargs}
    with pytest.raises(InvalidStructure, match=message):
        ss.build_sigstruct(**args)  # type: ignore[arg-type]


@given(st.dates(datetime.date(1000, 1, 1), datetime.date(9999, 12, 31)))
def test_bcd_date_round_trip(day: datetime.date) -> None:
    value = ss.bcd_date(day)
    assert f"{value:08x}" == f"{day.year:04d}{day.month:02d}{day.day:02d}"
    assert ss.date_from_bcd(value) == day


@pytest.mark.parametrize("value", [0, 0x2016010A, 0x20161301, 0x20160230, 0x1_0000_0000])
def test_date_from_bcd_refuses_non_dates(value: int) -> None:
    with pytest.raises(InvalidStructure, match="not a BCD YYYYMMDD date"):
        ss.date_from_bcd(value)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("size", [0, 1807, 1809, 4096])
def test_wrong_size_sigstruct_is_typed_error(size: int) -> None:
    raw = vector("fortanix_sgxs/sig1.sigstruct.bin").read_bytes()
    data = (raw * 3)[:size]
    with pytest.raises(InvalidStructure, match=f"SigStruct: expected 1808 bytes, found {size}"):
        SigStruct.from_bytes(data)
