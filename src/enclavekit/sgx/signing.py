"""The enclave author's signing key: RSA-3072 with public exponent 3 (sgx-spec.md §2.6, §3.2).

``SigningKey`` holds the private key and signs SIGSTRUCTs; ``VerifyingKey`` holds only the
public half (a ``.pub.pem`` file or an HSM's modulus). Both refuse keys EINIT could never
accept, with a :class:`~enclavekit.errors.SigningKeyError` saying what was found.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .._fs import atomic_write
from ..errors import SigningKeyError
from .consts import RSA_MODULUS_BYTES, SIGSTRUCT_EXPONENT

KEY_BITS = RSA_MODULUS_BYTES * 8
"""SGX signing keys are RSA-3072."""

KeySource = str | os.PathLike[str] | bytes
"""A path to a PEM file, or the PEM bytes themselves."""


def _check_public(key: object) -> rsa.RSAPublicKey:
    """Refuse a public key that is not RSA-3072 with exponent 3."""
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningKeyError(f"SIGSTRUCT: key is {type(key).__name__}, SGX requires RSA-3072")
    exponent = key.public_numbers().e
    if exponent != SIGSTRUCT_EXPONENT:
        raise SigningKeyError(
            f"SIGSTRUCT: exponent is {exponent}, SGX requires {SIGSTRUCT_EXPONENT}"
            " (generate one with `enclavekit keygen` or `openssl genrsa -3 3072`)"
        )
    if key.key_size != KEY_BITS:
        raise SigningKeyError(f"SIGSTRUCT: key is {key.key_size} bits, SGX requires {KEY_BITS}")
    return key


def _read(source: KeySource) -> tuple[bytes, str]:
    """The PEM bytes and a name for messages (the path, or "key" for in-memory bytes)."""
    if isinstance(source, bytes):
        return source, "key"
    return Path(source).read_bytes(), os.fspath(source)


def _is_public_pem(pem: bytes) -> bool:
    return b"-----BEGIN PUBLIC KEY-----" in pem or b"-----BEGIN RSA PUBLIC KEY-----" in pem


class VerifyingKey:
    """The public half of a SIGSTRUCT signing key (MODULUS and EXPONENT 3)."""

    __slots__ = ("_key",)

    def __init__(self, key: rsa.RSAPublicKey) -> None:
        self._key = _check_public(key)

    @classmethod
    def load(cls, source: KeySource) -> VerifyingKey:
        """Load a PEM public key ("BEGIN PUBLIC KEY" or "BEGIN RSA PUBLIC KEY").

        A private key is accepted too (its public half is used).

        Raises:
            SigningKeyError: not PEM, not RSA-3072, or exponent not 3.
            OSError: the file cannot be read.
        """
        pem, name = _read(source)
        if not _is_public_pem(pem):
            return SigningKey.load(source).public_key()
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise SigningKeyError(f"{name}: not a readable PEM public key") from exc
        return cls(_check_public(key))

    @classmethod
    def from_modulus(cls, modulus: bytes, *, byteorder: str = "big") -> VerifyingKey:
        """A key from a 384-byte MODULUS (``byteorder="little"`` for the SIGSTRUCT copy).

        Raises:
            SigningKeyError: the modulus is not 384 bytes or not a 3072-bit odd number.
        """
        if len(modulus) != RSA_MODULUS_BYTES:
            raise SigningKeyError(
                f"SIGSTRUCT: modulus is {len(modulus)} bytes, SGX requires {RSA_MODULUS_BYTES}"
            )
        n = int.from_bytes(modulus, "little" if byteorder == "little" else "big")
        if n.bit_length() != KEY_BITS or n % 2 == 0:
            raise SigningKeyError(f"SIGSTRUCT: modulus is not an odd {KEY_BITS}-bit number")
        try:
            key = rsa.RSAPublicNumbers(SIGSTRUCT_EXPONENT, n).public_key()
        except ValueError as exc:
            raise SigningKeyError("SIGSTRUCT: modulus is not a valid RSA modulus") from exc
        return cls(key)

    @property
    def key(self) -> rsa.RSAPublicKey:
        """The underlying ``cryptography`` public key."""
        return self._key

    def modulus_le(self) -> bytes:
        """MODULUS as SIGSTRUCT stores it: 384 bytes, little-endian."""
        return self._key.public_numbers().n.to_bytes(RSA_MODULUS_BYTES, "little")

    def mrsigner(self) -> bytes:
        """MRSIGNER: SHA-256 of the little-endian MODULUS (sgx-spec.md §2.6)."""
        return hashlib.sha256(self.modulus_le()).digest()

    def to_pem(self) -> bytes:
        """The public key as PEM ("BEGIN PUBLIC KEY", SubjectPublicKeyInfo)."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class SigningKey:
    """An enclave author's RSA-3072, exponent-3 private key that signs SIGSTRUCTs."""

    __slots__ = ("_key",)

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningKeyError(f"SIGSTRUCT: key is {type(key).__name__}, SGX requires RSA-3072")
        _check_public(key.public_key())
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh RSA-3072 key with public exponent 3 (takes about a second)."""
        return cls(rsa.generate_private_key(public_exponent=SIGSTRUCT_EXPONENT, key_size=KEY_BITS))

    @classmethod
    def load(cls, source: KeySource, password: bytes | str | None = None) -> SigningKey:
        """Load a PEM private key: PKCS#1 ("BEGIN RSA PRIVATE KEY", Intel's sgx_sign,
        ``openssl genrsa -3``) or PKCS#8 ("BEGIN PRIVATE KEY", Gramine), optionally encrypted.

        Raises:
            SigningKeyError: garbled PEM, a public key, encrypted without (or with a wrong)
                password, not RSA-3072, or exponent not 3.
            OSError: the file cannot be read.
        """
        pem, name = _read(source)
        if _is_public_pem(pem):
            raise SigningKeyError(f"{name}: found a public key; signing needs the private key")
        secret = password.encode() if isinstance(password, str) else password
        try:
            key = serialization.load_pem_private_key(pem, password=secret)
        except TypeError as exc:
            if secret is None:
                raise SigningKeyError(f"{name}: key is encrypted; give its password") from exc
            raise SigningKeyError(f"{name}: key is not encrypted; give no password") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            if secret is not None and b"ENCRYPTED" in pem:
                raise SigningKeyError(f"{name}: wrong password or damaged key") from exc
            raise SigningKeyError(f"{name}: not a readable PEM private key") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningKeyError(f"{name}: key is {type(key).__name__}, SGX requires RSA-3072")
        return cls(key)

    @property
    def key(self) -> rsa.RSAPrivateKey:
        """The underlying ``cryptography`` private key."""
        return self._key

    def to_pem(self, *, pkcs8: bool = False) -> bytes:
        """The private key as unencrypted PEM: PKCS#1 by default (as Intel's tools write),
        PKCS#8 with ``pkcs8=True`` (as Gramine writes)."""
        fmt = (
            serialization.PrivateFormat.PKCS8
            if pkcs8
            else serialization.PrivateFormat.TraditionalOpenSSL
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, fmt, serialization.NoEncryption()
        )

    def save(self, path: str | os.PathLike[str], *, pkcs8: bool = False) -> None:
        """Write the PEM key atomically with mode 0600."""
        atomic_write(path, self.to_pem(pkcs8=pkcs8), mode=0o600)

    def public_key(self) -> VerifyingKey:
        """The public half."""
        return VerifyingKey(self._key.public_key())

    def public_modulus_le(self) -> bytes:
        """MODULUS as SIGSTRUCT stores it: 384 bytes, little-endian."""
        return self.public_key().modulus_le()

    def mrsigner(self) -> bytes:
        """MRSIGNER of enclaves signed with this key."""
        return self.public_key().mrsigner()

    def sign_pkcs1_sha256(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 over ``message``; the 384-byte big-endian signature."""
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())
