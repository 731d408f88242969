"""The VM size catalogue against Microsoft's published figures."""

from __future__ import annotations

import pytest

from enclavekit.errors import UnknownVMSize
from enclavekit.vm.sku import CATALOGUE, DEFAULT_SIZE, SKU

# (name, vCPUs, memory GiB, EPC MiB) as published on the DCsv2 and DCsv3 size pages.
PUBLISHED = [
    ("Standard_DC1s_v2", 1, 4, 28),
    ("Standard_DC2s_v2", 2, 8, 56),
    ("Standard_DC4s_v2", 4, 16, 112),
    ("Standard_DC8_v2", 8, 32, 168),
    ("Standard_DC1s_v3", 1, 8, 4 * 1024),
    ("Standard_DC2ds_v3", 2, 16, 8 * 1024),
    ("Standard_DC8s_v3", 8, 64, 32 * 1024),
    ("Standard_DC48ds_v3", 48, 384, 256 * 1024),
]


@pytest.mark.parametrize(("name", "vcpus", "memory", "epc"), PUBLISHED)
def test_published_sizes(name: str, vcpus: int, memory: int, epc: int) -> None:
    sku = SKU.get(name)
    assert (sku.vcpus, sku.memory_gib, sku.epc_mib) == (vcpus, memory, epc)
    assert sku.epc_pages * 4096 == epc * 1024 * 1024


def test_lookup_accepts_short_and_case_insensitive_names() -> None:
    assert SKU.get("dc2s_v2") is SKU.get("Standard_DC2s_v2")
    assert SKU.get(DEFAULT_SIZE).epc_mib == 56


def test_every_v3_size_has_s_and_ds_variants_and_names_are_unique() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names)) == 4 + 16


def test_unknown_size_lists_the_known_ones() -> None:
    known = r"known sizes: Standard_DC1s_v2, "
    with pytest.raises(UnknownVMSize, match=rf"unknown VM size 'Standard_DC3s_v2'; {known}"):
        SKU.get("Standard_DC3s_v2")


def test_fits() -> None:
    small = SKU.get("Standard_DC1s_v2")
    assert small.fits(28 << 20)
    assert not small.fits((28 << 20) + 1)
