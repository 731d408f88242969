"""An enclave cannot use more heap than its manifest declares: a clear error, and the
enclave keeps serving later calls (issue 3, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from enclavekit.errors import EcallError
from enclavekit.host import VM, build
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

APP = '''
from enclavekit.enclave import ecall


@ecall
def allocate(mib: int) -> int:
    block = bytearray(mib << 20)
    return len(block) >> 20
'''


def test_allocation_beyond_the_declared_heap_fails_cleanly(tmp_path: Path) -> None:
    app = tmp_path / "heapy"
    app.mkdir()
    (app / "enclave.toml").write_text('name = "heapy"\nentry = "app.py"\nheap_size = "4M"\n'
                                      'stack_size = "64K"\nthreads = 1\n')
    (app / "app.py").write_text(APP)
    image = build(app).sign(session_signing_key())
    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, vm.load(image) as enclave:
        assert enclave.ecalls.allocate(2) == 2  # within the declared heap
        with pytest.raises(EcallError, match=r"enclave heap exhausted \(heap_size 4194304"):
            enclave.ecalls.allocate(512)
        assert enclave.ecalls.allocate(1) == 1  # still serving
