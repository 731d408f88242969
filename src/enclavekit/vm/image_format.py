"""The enclave file container: header, metadata, SGXS stream, SIGSTRUCT (one definition).

Format: magic ``EKIMAGE1``, u32 version, u32 metadata length, metadata JSON, u64 SGXS
length, the SGXS stream, then the 1808-byte SIGSTRUCT (all zero while unsigned). The host
(``host.image.EnclaveFile``) builds and checks the metadata; the device reads only the
SGXS stream and the SIGSTRUCT, so the metadata never decides what is loaded.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import InvalidStructure

IMAGE_MAGIC = b"EKIMAGE1"
IMAGE_VERSION = 1
SIGSTRUCT_BYTES = 1808
MAX_METADATA = 1 << 20
_HEAD = struct.Struct("<8sII")
_U64 = struct.Struct("<Q")


class ImageParts(NamedTuple):
    """The three parts of an enclave file, as bytes."""

    metadata: bytes
    sgxs: bytes
    sigstruct: bytes


def image_error(detail: str) -> InvalidStructure:
    """An InvalidStructure naming the enclave image."""
    return InvalidStructure("enclave image", detail)


def split_image(data: bytes) -> ImageParts:
    """Split an enclave file into its parts, checking the container only.

    Raises:
        InvalidStructure: wrong magic or version, or lengths that do not add up.
    """
    if len(data) < _HEAD.size:
        raise image_error(f"file is {len(data)} bytes, too short for the header")
    magic, version, meta_len = _HEAD.unpack_from(data)
    if magic != IMAGE_MAGIC:
        raise image_error(f"magic is {magic!r}, expected {IMAGE_MAGIC!r}; is this an enclave "
                          "file?")
    if version != IMAGE_VERSION:
        raise image_error(f"version {version} is not supported (expected {IMAGE_VERSION})")
    pos = _HEAD.size
    if meta_len > MAX_METADATA or pos + meta_len + _U64.size > len(data):
        raise image_error(f"metadata length {meta_len} runs past the end of the file")
    metadata = data[pos : pos + meta_len]
    pos += meta_len
    (sgxs_len,) = _U64.unpack_from(data, pos)
    pos += _U64.size
    if pos + sgxs_len + SIGSTRUCT_BYTES != len(data):
        raise image_error(f"SGXS length {sgxs_len} and the {SIGSTRUCT_BYTES}-byte SIGSTRUCT do "
                          f"not end at the end of the file ({len(data)} bytes)")
    return ImageParts(metadata, data[pos : pos + sgxs_len], data[pos + sgxs_len :])


def join_image(metadata: bytes, sgxs: bytes, sigstruct: bytes) -> bytes:
    """The enclave file made of ``metadata``, ``sgxs`` and a 1808-byte ``sigstruct``."""
    if len(sigstruct) != SIGSTRUCT_BYTES:
        raise image_error(f"SIGSTRUCT must be {SIGSTRUCT_BYTES} bytes, found {len(sigstruct)}")
    return b"".join([_HEAD.pack(IMAGE_MAGIC, IMAGE_VERSION, len(metadata)), metadata,
                     _U64.pack(len(sgxs)), sgxs, sigstruct])
