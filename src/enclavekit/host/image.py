"""The enclave file: metadata, the canonical SGXS stream and a SIGSTRUCT, in one file.

Format: magic ``EKIMAGE1``, u32 version, u32 metadata length, metadata JSON, u64 SGXS
length, the SGXS stream (heap pages as bare EADD records), then the 1808-byte SIGSTRUCT
(all zero while unsigned). Loading re-measures the SGXS against the recorded MRENCLAVE.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, replace
from typing import Any

from .._fs import atomic_write
from ..sgx.consts import XFRM_LEGACY, AttributeFlags
from ..sgx.sgxs import SgxsStream, read_sgxs
from ..sgx.signing import SigningKey
from ..sgx.sigstruct import build_sigstruct, mrsigner, sign, verify
from ..sgx.structs import Attributes, SigStruct
from ..vm.image_format import SIGSTRUCT_BYTES, image_error, join_image, split_image
from .layout import MANIFEST_MAGIC, Layout, Region

_METADATA_KEYS = {"name", "regions", "ssaframesize", "size", "manifest", "mrenclave"}
_fail = image_error


@dataclass(frozen=True, slots=True)
class EnclaveFile:
    """A built (and possibly signed) enclave: metadata, SGXS stream and SIGSTRUCT."""

    metadata: dict[str, Any]
    sgxs: bytes
    sigstruct: SigStruct | None = None

    @classmethod
    def from_layout(cls, layout: Layout, manifest: dict[str, Any]) -> EnclaveFile:
        """An unsigned enclave file for a laid-out image and its resolved manifest."""
        metadata = {
            "name": manifest["name"],
            "regions": [r.to_dict() for r in layout.regions],
            "ssaframesize": layout.ssaframesize,
            "size": layout.size,
            "manifest": manifest,
            "mrenclave": layout.mrenclave.hex(),
        }
        return cls(metadata, layout.to_sgxs())

    # ----------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The enclave's name from its manifest."""
        return str(self.metadata["name"])

    @property
    def manifest(self) -> dict[str, Any]:
        """The resolved manifest the image measures."""
        value: dict[str, Any] = self.metadata["manifest"]
        return value

    @property
    def mrenclave(self) -> bytes:
        """MRENCLAVE of the image (the SHA-256 of its SGXS stream)."""
        return bytes.fromhex(self.metadata["mrenclave"])

    @property
    def regions(self) -> tuple[Region, ...]:
        """The named page regions."""
        return tuple(Region.from_dict(r) for r in self.metadata["regions"])

    @property
    def epc_pages(self) -> int:
        """EPC pages the enclave commits (its pages plus the SECS)."""
        return sum(r.pages for r in self.regions) + 1

    @property
    def signed(self) -> bool:
        """Whether a SIGSTRUCT is attached."""
        return self.sigstruct is not None

    @property
    def mrsigner(self) -> bytes | None:
        """MRSIGNER of the attached SIGSTRUCT, or None when unsigned."""
        return mrsigner(self.sigstruct) if self.sigstruct is not None else None

    def stream(self) -> SgxsStream:
        """The SGXS stream parsed into pages."""
        return read_sgxs(self.sgxs)

    # ----------------------------------------------------------------- signing

    def sign(self, key: SigningKey) -> EnclaveFile:
        """A copy with a SIGSTRUCT over MRENCLAVE (ISVPRODID/ISVSVN and DEBUG from the manifest)."""
        flags = int(AttributeFlags.MODE64BIT)
        if self.manifest.get("debug"):
            flags |= int(AttributeFlags.DEBUG)
        unsigned = build_sigstruct(
            self.mrenclave,
            attributes=Attributes(flags=flags, xfrm=XFRM_LEGACY),
            isvprodid=int(self.manifest["product_id"]),
            isvsvn=int(self.manifest["security_version"]),
        )
        return replace(self, sigstruct=sign(unsigned, key))

    # ----------------------------------------------------------------- bytes and files

    def to_bytes(self) -> bytes:
        """The enclave file's bytes."""
        meta = json.dumps(self.metadata, sort_keys=True, separators=(",", ":")).encode()
        sig = self.sigstruct.to_bytes() if self.sigstruct is not None else bytes(SIGSTRUCT_BYTES)
        return join_image(meta, self.sgxs, sig)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the enclave file atomically."""
        atomic_write(path, self.to_bytes(), mode=0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EnclaveFile:
        """Read an enclave file and check it (see :meth:`from_bytes`)."""
        with open(path, "rb") as handle:
            return cls.from_bytes(handle.read())

    @classmethod
    def from_bytes(cls, data: bytes) -> EnclaveFile:
        """Parse an enclave file strictly and re-measure its SGXS stream.

        Raises:
            InvalidStructure: a part is malformed, the SGXS does not hash to the recorded
                MRENCLAVE, or the SIGSTRUCT is for another MRENCLAVE.
            InvalidSignature / InvalidSigStruct: the attached SIGSTRUCT does not verify.
        """
        meta_raw, sgxs, sig_raw = split_image(data)
        metadata = _metadata(meta_raw)
        stream = read_sgxs(sgxs)
        if (stream.ssaframesize, stream.size) != (metadata["ssaframesize"], metadata["size"]):
            raise _fail("SGXS ECREATE record does not match the metadata's SSAFRAMESIZE/SIZE")
        measured = hashlib.sha256(sgxs).hexdigest()
        if measured != metadata["mrenclave"]:
            raise _fail(f"MRENCLAVE mismatch: the SGXS stream measures {measured}, the metadata "
                        f"says {metadata['mrenclave']}; the image was modified")
        regions = [Region.from_dict(r) for r in metadata["regions"]]
        if sum(r.pages for r in regions) != len(stream.pages):
            raise _fail(f"regions list {sum(r.pages for r in regions)} pages, the SGXS stream "
                        f"has {len(stream.pages)}")
        if _measured_manifest(stream, regions) != metadata["manifest"]:
            raise _fail("metadata manifest differs from the measured manifest in the image")
        sigstruct = None
        if any(sig_raw):
            sigstruct = SigStruct.from_bytes(sig_raw)
            if sigstruct.enclavehash.hex() != measured:
                raise _fail(f"SIGSTRUCT ENCLAVEHASH {sigstruct.enclavehash.hex()} is not the "
                            f"image's MRENCLAVE {measured}")
            verify(sigstruct, leaf="SIGSTRUCT")
        return cls(metadata, sgxs, sigstruct)


def _measured_manifest(stream: SgxsStream, regions: list[Region]) -> Any:
    """The manifest JSON carried in the image's measured ``manifest`` region."""
    if not regions or regions[0].name != "manifest":
        raise _fail("the first region must be the measured manifest")
    blob = b"".join(p.data for p in stream.pages[: regions[0].pages])
    if blob[:8] != MANIFEST_MAGIC:
        raise _fail(f"manifest region starts with {blob[:8]!r}, expected {MANIFEST_MAGIC!r}")
    (length,) = struct.unpack_from("<I", blob, 8)
    try:
        return json.loads(blob[12 : 12 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"measured manifest is not JSON: {exc}") from exc


def _metadata(raw: bytes) -> dict[str, Any]:
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict) or set(metadata) != _METADATA_KEYS:
        found = sorted(metadata) if isinstance(metadata, dict) else type(metadata).__name__
        raise _fail(f"metadata keys are {found}, expected {sorted(_METADATA_KEYS)}")
    if not isinstance(metadata["manifest"], dict) or not isinstance(metadata["regions"], list):
        raise _fail("metadata 'manifest' must be an object and 'regions' a list")
    mr = metadata["mrenclave"]
    if not isinstance(mr, str) or len(mr) != 64:
        raise _fail(f"metadata mrenclave must be 64 hex digits, found {mr!r}")
    return metadata
