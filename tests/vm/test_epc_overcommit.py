"""EPC over-commit on a real DC1s_v2 (28 MiB EPC): three enclaves that need more than the
EPC all load through EWB/ELDU, and their ecalls return correct results."""

from __future__ import annotations

from pathlib import Path

from enclavekit.host import VM
from enclavekit.vm.sku import SKU
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server, signed_image

EXTRA = '''

@ecall
def whoami(x: int) -> list[int]:
    from enclavekit.enclave import identity

    return [x * 3, identity().mrenclave[0]]
'''


def test_three_enclaves_beyond_a_dc1s_v2_epc_return_correct_results(tmp_path: Path) -> None:
    key = session_signing_key()
    images = [signed_image(tmp_path, key, f"big{i}", heap="12M", extra=EXTRA)
              for i in range(3)]
    epc = SKU.get("Standard_DC1s_v2").epc_pages
    assert sum(img.epc_pages for img in images) > epc  # more than the VM's EPC
    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm:
        assert vm.status().epc_total_pages == epc
        loaded = [vm.load(img) for img in images]
        try:
            status = vm.status()
            assert sum(e.pages for e in status.enclaves) > epc
            assert sum(e.pages_resident for e in status.enclaves) <= epc
            for round_ in range(2):
                for i, (img, enclave) in enumerate(zip(images, loaded, strict=True)):
                    assert enclave.ecalls.add(i, round_) == i + round_
                    assert enclave.ecalls.whoami(i) == [i * 3, img.mrenclave[0]]
        finally:
            for enclave in loaded:
                enclave.close()
