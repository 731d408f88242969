"""The host side of enclave apps: manifest, page layout and the signed enclave file."""

from __future__ import annotations

from .build import build
from .enclave import Enclave
from .image import EnclaveFile
from .layout import Layout, Region, build_layout
from .manifest import Manifest
from .vm import VM, VMStatus

__all__ = ["VM", "Enclave", "EnclaveFile", "Layout", "Manifest", "Region", "VMStatus", "build",
           "build_layout"]
