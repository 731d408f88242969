"""Fault tests (issue 4): ``kill -9`` of the device in the middle of a seal-heavy workload
and in the middle of EPC paging. Every caller gets EnclaveLost, the restarted VM serves
new enclaves, and every blob sealed before the kill (with the trusted API's ``seal``, both
policies) still unseals with ``unseal`` (the SEAL key is derived from the persisted fused
secrets; blobs carry their KEYREQUEST like the Intel SDK's)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from enclavekit.errors import EnclaveLost
from enclavekit.host import VM, Enclave, EnclaveFile
from enclavekit.vm.platform import PlatformStore
from tests.host.test_vm import wait_gone
from tests.sgx.conftest import session_signing_key
from tests.vm._device import signed_image

SEALING = '''

@ecall
def seal_blob(data: bytes, by_build: bool) -> bytes:
    from enclavekit.enclave import SealPolicy, seal

    return seal(data, SealPolicy.MRENCLAVE if by_build else SealPolicy.MRSIGNER, aad=b"fault")


@ecall
def unseal_blob(blob: bytes) -> bytes:
    from enclavekit.enclave import unseal

    data, aad = unseal(blob)
    assert aad == b"fault"
    return data
'''

Blob = tuple[int, bytes, bytes]  # index of the sealing image, blob, plaintext


def seal_loop(index: int, enclave: Enclave, blobs: list[Blob],
              errors: list[BaseException]) -> None:
    """Seal (alternating MRSIGNER and MRENCLAVE) until the enclave is lost."""
    try:
        for n in range(1 << 30):
            data = os.urandom(64)
            blob = enclave.ecalls.seal_blob(data, n % 2 == 1)
            blobs.append((index, blob, data))
    except BaseException as exc:
        errors.append(exc)


def kill_when(vm: VM, blobs: list[Blob], at: int, sealers: int) -> None:
    """kill -9 once ``at`` blobs are sealed, at least one by each of the ``sealers``."""
    deadline = time.monotonic() + 30
    while ((len(blobs) < at or len({index for index, _, _ in blobs}) < sealers)
           and time.monotonic() < deadline):
        time.sleep(0.002)
    os.kill(vm.pid, signal.SIGKILL)
    assert wait_gone(vm.pid)


def all_unseal(store: PlatformStore, images: list[EnclaveFile], blobs: list[Blob]) -> None:
    """A restarted VM: each image's fresh instance unseals every blob its build sealed, and
    the first image also every blob of the others (same signer: MRSIGNER policy)."""
    again = VM.start("faultvm", store.root)
    try:
        for index, image in enumerate(images):
            with again.load(image) as fresh:
                for sealer, blob, data in blobs:
                    mrsigner = blob[2] == 2  # KEYPOLICY, the blob's own KEYREQUEST
                    if sealer == index or (index == 0 and mrsigner):
                        assert fresh.ecalls.unseal_blob(blob) == data
    finally:
        again.stop()


def run_workload(vm: VM, enclaves: list[Enclave], at: int) -> list[Blob]:
    blobs: list[Blob] = []
    errors: list[BaseException] = []
    workers = [threading.Thread(target=seal_loop, args=(i, enc, blobs, errors))
               for i, enc in enumerate(enclaves) for _ in range(2)]
    for worker in workers:
        worker.start()
    kill_when(vm, blobs, at, len(enclaves))
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    assert len(errors) == len(workers)
    assert all(isinstance(e, EnclaveLost) and "load it again" in str(e) for e in errors), errors
    assert len(blobs) >= at and {index for index, _, _ in blobs} == set(range(len(enclaves)))
    assert {blob[2] for _, blob, _ in blobs} == {1, 2}  # both policies were sealed
    return blobs


def test_kill_9_during_a_seal_heavy_workload(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path / "data")
    store.create("faultvm", "Standard_DC1s_v2")
    platform = store.path("faultvm").read_bytes()
    image = signed_image(tmp_path, session_signing_key(), "sealer", extra=SEALING)
    vm = VM.start("faultvm", store.root)
    enclave = vm.load(image)
    blobs = run_workload(vm, [enclave], at=200)
    enclave.close()
    vm.close()
    assert store.path("faultvm").read_bytes() == platform
    all_unseal(store, [image], blobs)


def test_kill_9_during_epc_paging(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path / "data")
    store.create("faultvm", "Standard_DC1s_v2")
    key = session_signing_key()
    images = [signed_image(tmp_path, key, f"pager{i}", heap="256K", extra=SEALING)
              for i in range(3)]
    epc = images[0].epc_pages * 2  # room for two: the third forces EWB/ELDU
    vm = VM.start("faultvm", store.root, extra_args=["--epc-pages", str(epc)])
    enclaves = [vm.load(img) for img in images]
    status = vm.status()
    assert sum(e.pages for e in status.enclaves) > status.epc_total_pages
    blobs = run_workload(vm, enclaves, at=150)
    for enclave in enclaves:
        enclave.close()
    vm.close()
    all_unseal(store, images, blobs)
