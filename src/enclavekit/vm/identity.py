"""One platform's persistent identity: fused secrets, CPUSVN, PCE SVN, PPID, FMSPC, size.

One JSON file per VM (``<data dir>/vms/<name>/platform.json``, mode 0600), written
atomically, so a crash leaves the old or the new identity and never a torn one.
The secrets never leave the device service once it runs (issue: VM/device). The store of a
data directory's VMs (creating one with its PCK certificate, listing, deleting) is
:mod:`enclavekit.vm.platform`; this module is what both it and the provisioning PKI read.
"""

from __future__ import annotations

import json
import re
import secrets as _secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidStructure, VMNotFound
from ..sgx.keys import FusedSecrets
from .devmode import PLATFORM_FMSPC, is_development
from .sku import SKU

__all__ = ["DEFAULT_CPUSVN", "DEFAULT_PCESVN", "EMULATED_FMSPC", "PCEID", "PlatformIdentity",
           "check_name", "load_identity", "platform_file"]

FORMAT = "enclavekit-platform/1"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

DEFAULT_CPUSVN = bytes([7, 9, 3, 3, 255, 255, 1, 0] + [0] * 8)
"""CPUSVN of a new emulated platform, as 16 components (the same decomposition as TCB info)."""
DEFAULT_PCESVN = 13
EMULATED_FMSPC = bytes.fromhex("00ee0a000000")
"""The family-model-stepping-platform id of an emulated *development* platform, the kind every
VM created today is (no Intel FMSPC uses 0xEE; :mod:`enclavekit.vm.devmode`)."""
PCEID = bytes(2)


def check_name(name: str) -> str:
    """A VM name: lower-case letters, digits, ``_ . -``; 1–63 characters, no path separators."""
    if not NAME_RE.match(name):
        raise InvalidStructure(
            "VM name", f"{name!r} is not a valid name (use 1-63 of a-z 0-9 _ . -, starting "
            "with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class PlatformIdentity:
    """Everything that makes one emulated platform itself and survives power cycles."""

    name: str
    size: str
    secrets: FusedSecrets
    cpusvn: bytes
    pcesvn: int
    ppid: bytes
    fmspc: bytes
    pceid: bytes
    created: str

    @property
    def sku(self) -> SKU:
        """The VM size this platform emulates."""
        return SKU.get(self.size)

    @property
    def development(self) -> bool:
        """Whether this is a development platform: one whose fused secrets a host user holds
        (the rule and why: :mod:`enclavekit.vm.devmode`)."""
        return is_development(self.fmspc)

    @classmethod
    def new(cls, name: str, size: str, *, development: bool = True) -> PlatformIdentity:
        """A fresh platform with random fused secrets and PPID; a development platform unless
        ``development`` is false (only for an identity no host user will ever read)."""
        sku = SKU.get(size)
        return cls(
            name=check_name(name), size=sku.name, secrets=FusedSecrets.generate(),
            cpusvn=DEFAULT_CPUSVN, pcesvn=DEFAULT_PCESVN, ppid=_secrets.token_bytes(16),
            fmspc=EMULATED_FMSPC if development else PLATFORM_FMSPC, pceid=PCEID,
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def to_json(self) -> bytes:
        """The persisted form (secrets included: the file is mode 0600)."""
        doc = {
            "format": FORMAT, "name": self.name, "size": self.size,
            "secrets": self.secrets.to_bytes().hex(), "cpusvn": self.cpusvn.hex(),
            "pcesvn": self.pcesvn, "ppid": self.ppid.hex(), "fmspc": self.fmspc.hex(),
            "pceid": self.pceid.hex(), "created": self.created,
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> PlatformIdentity:
        """Parse a persisted identity; a corrupt file raises InvalidStructure."""
        try:
            doc: dict[str, Any] = json.loads(data)
            if doc.get("format") != FORMAT:
                found = doc.get("format")
                raise InvalidStructure("platform", f"format is {found!r}, expected {FORMAT!r}")
            return cls(
                name=check_name(str(doc["name"])), size=SKU.get(str(doc["size"])).name,
                secrets=FusedSecrets.from_bytes(bytes.fromhex(doc["secrets"])),
                cpusvn=_hexlen(doc["cpusvn"], 16, "cpusvn"), pcesvn=int(doc["pcesvn"]),
                ppid=_hexlen(doc["ppid"], 16, "ppid"), fmspc=_hexlen(doc["fmspc"], 6, "fmspc"),
                pceid=_hexlen(doc["pceid"], 2, "pceid"), created=str(doc["created"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, InvalidStructure):
                raise
            raise InvalidStructure("platform", f"corrupt platform file: {exc}") from exc


def _hexlen(value: Any, size: int, name: str) -> bytes:
    raw = bytes.fromhex(str(value))
    if len(raw) != size:
        raise InvalidStructure("platform", f"{name} must be {size} bytes, found {len(raw)}")
    return raw


def platform_file(root: Path, name: str) -> Path:
    """The platform file of VM ``name`` in the data directory ``root``."""
    return root / "vms" / check_name(name) / "platform.json"


def load_identity(root: Path, name: str) -> PlatformIdentity:
    """Load VM ``name``'s persisted identity from the data directory ``root``.

    Raises:
        VMNotFound: there is no such VM.
        InvalidStructure: its platform file is corrupt.
    """
    try:
        return PlatformIdentity.from_json(platform_file(root, name).read_bytes())
    except FileNotFoundError:
        raise VMNotFound(f"no VM named {name!r} in {root}; create it with "
                         f"'enclavekit vm create {name}'") from None
