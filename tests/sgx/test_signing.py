"""SigningKey / VerifyingKey: PEM formats of Intel's and Gramine's tools, SGX key rules."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from enclavekit.errors import SigningKeyError
from enclavekit.sgx.signing import SigningKey, VerifyingKey
from tests.vectors import cases, vector


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, pkcs8: bool = False) -> bytes:
    fmt = (
        serialization.PrivateFormat.PKCS8
        if pkcs8
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.mark.parametrize("pkcs8", [False, True], ids=["pkcs1-intel", "pkcs8-gramine"])
def test_load_pkcs1_and_pkcs8_give_the_same_key(signing_key: SigningKey, pkcs8: bool) -> None:
    pem = signing_key.to_pem(pkcs8=pkcs8)
    marker = b"BEGIN PRIVATE KEY" if pkcs8 else b"BEGIN RSA PRIVATE KEY"
    assert marker in pem
    loaded = SigningKey.load(pem)
    assert loaded.mrsigner() == signing_key.mrsigner()


def test_load_encrypted_key_with_password(signing_key: SigningKey, tmp_path: Path) -> None:
    pem = signing_key.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    path = tmp_path / "enc.pem"
    path.write_bytes(pem)
    assert SigningKey.load(path, password="s3cret").mrsigner() == signing_key.mrsigner()
    with pytest.raises(SigningKeyError, match="encrypted; give its password"):
        SigningKey.load(path)
    with pytest.raises(SigningKeyError, match="wrong password"):
        SigningKey.load(path, password=b"guess")


def test_save_is_0600_and_round_trips(signing_key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "key.pem"
    signing_key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert SigningKey.load(str(path)).to_pem() == signing_key.to_pem()


def test_mrsigner_is_sha256_of_little_endian_modulus(signing_key: SigningKey) -> None:
    n = signing_key.key.public_key().public_numbers().n
    modulus_le = n.to_bytes(384, "little")
    assert signing_key.public_modulus_le() == modulus_le
    assert signing_key.mrsigner() == hashlib.sha256(modulus_le).digest()
    assert signing_key.mrsigner() != hashlib.sha256(n.to_bytes(384, "big")).digest()


def test_signature_is_big_endian_pkcs1_sha256(signing_key: SigningKey) -> None:
    message = b"enclave" * 10
    signature = signing_key.sign_pkcs1_sha256(message)
    assert len(signature) == 384
    signing_key.key.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_exponent_65537_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SigningKeyError, match=r"exponent is 65537, SGX requires 3"):
        SigningKey.load(_pem(key))


def test_2048_bit_key_refused() -> None:
    key = rsa.generate_private_key(public_exponent=3, key_size=2048)
    with pytest.raises(SigningKeyError, match=r"SIGSTRUCT: key is 2048 bits, SGX requires 3072"):
        SigningKey.load(_pem(key, pkcs8=True))
    with pytest.raises(SigningKeyError, match="2048 bits"):
        SigningKey(key)


def test_non_rsa_key_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SigningKeyError, match="SGX requires RSA-3072"):
        SigningKey.load(_pem(key))


def test_public_key_where_private_needed(signing_key: SigningKey) -> None:
    with pytest.raises(SigningKeyError, match="found a public key; signing needs the private"):
        SigningKey.load(signing_key.public_key().to_pem())


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"not a key at all",
        b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        bytes(range(256)),
    ],
    ids=["empty", "text", "bad-base64-body", "binary"],
)
def test_garbled_pem_refused(garbage: bytes) -> None:
    with pytest.raises(SigningKeyError, match="not a readable PEM private key") as info:
        SigningKey.load(garbage)
    assert "\n" not in str(info.value)


def test_truncated_pem_file_refused(signing_key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "cut.pem"
    path.write_bytes(signing_key.to_pem()[:700])
    with pytest.raises(SigningKeyError, match=r"cut\.pem: not a readable PEM private key"):
        SigningKey.load(path)


def test_missing_key_file_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SigningKey.load(tmp_path / "absent.pem")


PUBLIC_KEYS = {
    "enarx_sgx/encl.ss": "enarx_sgx/encl_pub.pem",
    "fortanix_sgxs/sig1.sigstruct.bin": "fortanix_sgxs/sig1.pub.pem",
}


@pytest.mark.parametrize(
    "v",
    cases("measurement_vectors", "sigstruct", "mrsigner",
          where=lambda e: e["sigstruct"] in PUBLIC_KEYS),
)
def test_published_public_keys_give_mrsigner(v: dict[str, str]) -> None:
    key = VerifyingKey.load(vector(PUBLIC_KEYS[v["sigstruct"]]))
    assert key.mrsigner().hex() == v["mrsigner"]


def test_verifying_key_from_modulus(signing_key: SigningKey) -> None:
    n = signing_key.key.public_key().public_numbers().n
    assert VerifyingKey.from_modulus(n.to_bytes(384, "big")).mrsigner() == signing_key.mrsigner()
    le = VerifyingKey.from_modulus(n.to_bytes(384, "little"), byteorder="little")
    assert le.mrsigner() == signing_key.mrsigner()
    with pytest.raises(SigningKeyError, match="modulus is 256 bytes"):
        VerifyingKey.from_modulus(bytes(256))
    with pytest.raises(SigningKeyError, match="odd 3072-bit"):
        VerifyingKey.from_modulus((n + 1).to_bytes(384, "big"))


def test_verifying_key_load_refuses_wrong_exponent() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(SigningKeyError, match="exponent is 65537"):
        VerifyingKey.load(pem)
    with pytest.raises(SigningKeyError, match="not a readable PEM public key"):
        VerifyingKey.load(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
