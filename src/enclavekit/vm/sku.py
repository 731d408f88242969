"""The catalogue of Azure's SGX VM sizes: vCPUs, memory and EPC per size.

Figures from Microsoft's DCsv2 and DCsv3/DCdsv3 size pages (sgx-spec.md §5.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownVMSize

MIB = 1 << 20
EPC_PAGE = 4096


@dataclass(frozen=True, slots=True)
class SKU:
    """One VM size: its name, family, vCPUs, memory and EPC."""

    name: str
    family: str
    vcpus: int
    memory_gib: int
    epc_mib: int

    @property
    def epc_bytes(self) -> int:
        """EPC size in bytes."""
        return self.epc_mib * MIB

    @property
    def epc_pages(self) -> int:
        """EPC size in 4 KiB pages."""
        return self.epc_bytes // EPC_PAGE

    @classmethod
    def get(cls, name: str) -> SKU:
        """Look a size up by name (``Standard_DC2s_v2`` or ``DC2s_v2``, any case).

        Raises:
            UnknownVMSize: no such size; the message lists the known ones.
        """
        key = name.strip().lower()
        if not key.startswith("standard_"):
            key = "standard_" + key
        for sku in CATALOGUE:
            if sku.name.lower() == key:
                return sku
        known = ", ".join(s.name for s in CATALOGUE)
        raise UnknownVMSize(f"unknown VM size {name!r}; known sizes: {known}")

    @classmethod
    def all(cls) -> tuple[SKU, ...]:
        """Every size, smallest EPC first within each family."""
        return CATALOGUE

    def fits(self, epc_bytes_needed: int) -> bool:
        """Whether an enclave needing ``epc_bytes_needed`` of EPC fits without paging."""
        return epc_bytes_needed <= self.epc_bytes


def _v3(cores: int, memory: int, epc_gib: int) -> list[SKU]:
    return [
        SKU(f"Standard_DC{cores}{kind}_v3", f"DC{kind}v3", cores, memory, epc_gib * 1024)
        for kind in ("s", "ds")
    ]


CATALOGUE: tuple[SKU, ...] = (
    SKU("Standard_DC1s_v2", "DCsv2", 1, 4, 28),
    SKU("Standard_DC2s_v2", "DCsv2", 2, 8, 56),
    SKU("Standard_DC4s_v2", "DCsv2", 4, 16, 112),
    SKU("Standard_DC8_v2", "DCsv2", 8, 32, 168),
    *_v3(1, 8, 4),
    *_v3(2, 16, 8),
    *_v3(4, 32, 16),
    *_v3(8, 64, 32),
    *_v3(16, 128, 64),
    *_v3(24, 192, 128),
    *_v3(32, 256, 192),
    *_v3(48, 384, 256),
)
"""Every size enclavekit can emulate."""

DEFAULT_SIZE = "Standard_DC2s_v2"
"""The size of the embedded default VM."""
