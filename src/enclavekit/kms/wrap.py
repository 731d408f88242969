"""Key Vault's RSA-AES key wrap for released keys (maa-skr.md §5.4; what
microsoft/confidential-sidecar-containers ``pkg/skr`` unwraps).

``ciphertext = RSA-OAEP(wrapping_key, kek) || AES-KWP(kek, material)``: a fresh AES-256 key
(KEK) encrypted with RSA-OAEP whose hash and MGF1 hash are SHA-1 (``CKM_RSA_AES_KEY_WRAP``),
SHA-256 (``RSA_AES_KEY_WRAP_256``) or SHA-384 (``RSA_AES_KEY_WRAP_384``), followed by the key
material wrapped with AES key wrap with padding (RFC 5649). The first ``modulus_len`` bytes
are the RSA part. Key material is the PKCS#8 DER private key for RSA and EC keys and the raw
bytes for ``oct`` keys.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import (
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

__all__ = ["DEFAULT_ENC", "ENC_ALGORITHMS", "unwrap_key_material", "wrap_key_material"]

ENC_ALGORITHMS: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "CKM_RSA_AES_KEY_WRAP": hashes.SHA1,
    "RSA_AES_KEY_WRAP_256": hashes.SHA256,
    "RSA_AES_KEY_WRAP_384": hashes.SHA384,
}
"""Key Vault's ``KeyExportEncryptionAlgorithm`` names and their OAEP hash."""

DEFAULT_ENC: Final = "CKM_RSA_AES_KEY_WRAP"
"""What Key Vault uses when a release request names no ``enc``."""


def _oaep(enc: str) -> padding.OAEP:
    algorithm = ENC_ALGORITHMS[enc]()
    return padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)


def wrap_key_material(wrapping_key: rsa.RSAPublicKey, material: bytes, enc: str) -> bytes:
    """Wrap ``material`` to ``wrapping_key`` as Key Vault does for ``enc``."""
    kek = os.urandom(32)
    return wrapping_key.encrypt(kek, _oaep(enc)) + aes_key_wrap_with_padding(kek, material)


def unwrap_key_material(private_key: rsa.RSAPrivateKey, ciphertext: bytes, enc: str) -> bytes:
    """Inverse of :func:`wrap_key_material` (what the enclave runs).

    Raises:
        ValueError: the ciphertext does not decrypt or unwrap with this key (pyca's errors
            ``ValueError`` / ``InvalidUnwrap`` pass through).
    """
    size = private_key.key_size // 8
    if len(ciphertext) <= size:
        raise ValueError("wrapped key is shorter than the RSA modulus")
    kek = private_key.decrypt(ciphertext[:size], _oaep(enc))
    return aes_key_unwrap_with_padding(kek, ciphertext[size:])
