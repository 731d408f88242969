"""The VMs of one data directory: create one (its identity and PCK certificate), load,
save, list and delete them.

A VM's identity and its file format are :mod:`enclavekit.vm.identity`; they are re-exported
here for the callers that name them beside the store.
"""

from __future__ import annotations

from pathlib import Path

from .._fs import atomic_write
from ..errors import VMExists, VMNotFound
from .identity import (
    DEFAULT_CPUSVN,
    DEFAULT_PCESVN,
    EMULATED_FMSPC,
    PlatformIdentity,
    check_name,
    load_identity,
    platform_file,
)
from .provisioning import Provisioning

__all__ = ["DEFAULT_CPUSVN", "DEFAULT_PCESVN", "EMULATED_FMSPC", "PlatformIdentity",
           "PlatformStore", "check_name"]


class PlatformStore:
    """The VMs in one data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        """The platform file of VM ``name``."""
        return platform_file(self.root, name)

    def create(self, name: str, size: str) -> PlatformIdentity:
        """Create and persist a new platform and issue its PCK certificate (the installation's
        emulated PKI is created on first use); refuses an existing name."""
        path = self.path(name)
        if path.exists():
            raise VMExists(f"VM {name!r} already exists in {self.root}")
        identity = PlatformIdentity.new(name, size)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        Provisioning.open(self.root).issue_pck(identity)
        atomic_write(path, identity.to_json(), mode=0o600)
        return identity

    def load(self, name: str) -> PlatformIdentity:
        """Load a persisted platform."""
        return load_identity(self.root, name)

    def save(self, identity: PlatformIdentity) -> None:
        """Persist an updated identity atomically (e.g. after a TCB recovery)."""
        atomic_write(self.path(identity.name), identity.to_json(), mode=0o600)

    def names(self) -> list[str]:
        """Every VM in this data directory, sorted."""
        base = self.root / "vms"
        if not base.is_dir():
            return []
        return sorted(p.parent.name for p in base.glob("*/platform.json"))

    def delete(self, name: str) -> None:
        """Remove a VM's directory (its platform secrets are gone for good)."""
        path = self.path(name)
        if not path.exists():
            raise VMNotFound(f"no VM named {name!r} in {self.root}")
        for child in sorted(path.parent.rglob("*"), reverse=True):
            child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
        path.parent.rmdir()
