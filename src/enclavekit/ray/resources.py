"""What a Ray node running an enclavekit VM advertises, and what an enclave needs."""

from __future__ import annotations

import math

from ..host.image import EnclaveFile
from ..vm.sku import EPC_PAGE, MIB, SKU

__all__ = ["EPC", "SIZE_PREFIX", "VM_PREFIX", "epc_mib", "node_resources", "parse_node"]

EPC = "epc_mib"
"""The custom resource of a node's EPC, in MiB (an enclave asks for its need)."""
SIZE_PREFIX = "enclavekit_size:"
"""``enclavekit_size:<VM size>``: 1 on a node whose VM is of that size."""
VM_PREFIX = "enclavekit_vm:"
"""``enclavekit_vm:<VM name>``: 1 on the node that hosts that VM."""


def epc_mib(image: EnclaveFile) -> int:
    """The EPC an enclave commits (its pages and SECS, 4 KiB each), in MiB rounded up."""
    return max(1, math.ceil(image.epc_pages * EPC_PAGE / MIB))


def node_resources(vm: str, size: str) -> dict[str, float]:
    """The custom resources of a node hosting VM ``vm`` of ``size`` (raises UnknownVMSize)."""
    sku = SKU.get(size)
    return {EPC: float(sku.epc_mib), SIZE_PREFIX + sku.name: 1.0, VM_PREFIX + vm: 1.0}


def parse_node(resources: dict[str, float]) -> tuple[str, str, int] | None:
    """(VM name, size, EPC MiB) of a node's resources, or None if it hosts no VM."""
    vm = next((k[len(VM_PREFIX):] for k in resources if k.startswith(VM_PREFIX)), None)
    size = next((k[len(SIZE_PREFIX):] for k in resources if k.startswith(SIZE_PREFIX)), None)
    if vm is None or size is None:
        return None
    return vm, size, int(resources.get(EPC, 0))
