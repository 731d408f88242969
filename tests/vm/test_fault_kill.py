"""Fault tests (issue 4): ``kill -9`` of the device in the middle of a seal-heavy workload
and in the middle of EPC paging. Every caller gets EnclaveLost, the restarted VM serves
new enclaves, and every blob sealed before the kill still unseals (the SEAL key is derived
from the persisted fused secrets; blobs carry their KEYID like the Intel SDK's)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enclavekit.errors import EnclaveLost
from enclavekit.host import VM, Enclave, EnclaveFile
from enclavekit.vm.platform import PlatformStore
from tests.host.test_vm import wait_gone
from tests.sgx.conftest import session_signing_key
from tests.vm._device import signed_image

KEYS = '''

@ecall
def seal_key(keyid: bytes) -> bytes:
    from enclavekit.enclave import get_key
    from enclavekit.sgx.consts import KeyName, KeyPolicy

    return get_key(KeyName.SEAL, KeyPolicy.MRSIGNER, keyid=keyid)
'''

Blob = tuple[bytes, bytes, bytes, bytes]  # keyid, nonce, ciphertext, plaintext


def seal_loop(enclave: Enclave, blobs: list[Blob], errors: list[BaseException]) -> None:
    """Seal until the enclave is lost (a stand-in for seal(): EGETKEY SEAL + AES-GCM)."""
    try:
        while True:
            keyid, nonce, data = os.urandom(32), os.urandom(12), os.urandom(64)
            key = enclave.ecalls.seal_key(keyid)
            blobs.append((keyid, nonce, AESGCM(key).encrypt(nonce, data, keyid), data))
    except BaseException as exc:
        errors.append(exc)


def kill_when(vm: VM, blobs: list[Blob], at: int) -> None:
    deadline = time.monotonic() + 30
    while len(blobs) < at and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(vm.pid, signal.SIGKILL)
    assert wait_gone(vm.pid)


def all_unseal(store: PlatformStore, image: EnclaveFile, blobs: list[Blob]) -> None:
    again = VM.start("faultvm", store.root)
    try:
        with again.load(image) as fresh:
            for keyid, nonce, sealed, data in blobs:
                key = fresh.ecalls.seal_key(keyid)
                assert AESGCM(key).decrypt(nonce, sealed, keyid) == data
    finally:
        again.stop()


def run_workload(vm: VM, enclaves: list[Enclave], at: int) -> list[Blob]:
    blobs: list[Blob] = []
    errors: list[BaseException] = []
    workers = [threading.Thread(target=seal_loop, args=(enc, blobs, errors))
               for enc in enclaves for _ in range(2)]
    for worker in workers:
        worker.start()
    kill_when(vm, blobs, at)
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    assert len(errors) == len(workers)
    assert all(isinstance(e, EnclaveLost) and "load it again" in str(e) for e in errors), errors
    assert len(blobs) >= at
    return blobs


def test_kill_9_during_a_seal_heavy_workload(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path / "data")
    store.create("faultvm", "Standard_DC1s_v2")
    platform = store.path("faultvm").read_bytes()
    image = signed_image(tmp_path, session_signing_key(), "sealer", extra=KEYS)
    vm = VM.start("faultvm", store.root)
    enclave = vm.load(image)
    blobs = run_workload(vm, [enclave], at=200)
    enclave.close()
    vm.close()
    assert store.path("faultvm").read_bytes() == platform
    all_unseal(store, image, blobs)


def test_kill_9_during_epc_paging(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path / "data")
    store.create("faultvm", "Standard_DC1s_v2")
    key = session_signing_key()
    images = [signed_image(tmp_path, key, f"pager{i}", heap="256K", extra=KEYS)
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
    all_unseal(store, images[0], blobs)  # same signer: MRSIGNER seal keys are shared
