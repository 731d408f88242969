"""The host side of enclave apps: manifest, page layout and the signed enclave file."""

from __future__ import annotations

from .image import EnclaveFile
from .layout import Layout, Region, build_layout
from .manifest import Manifest

__all__ = ["EnclaveFile", "Layout", "Manifest", "Region", "build_layout"]
