"""Several host threads call one enclave at once: up to its TCS count run together, one
more is refused (IF-12), and replies reach the threads that asked for them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from enclavekit.errors import EcallError
from enclavekit.host import VM, Enclave, build
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

APP = '''
from enclavekit.enclave import ecall, ocall


@ocall
def rendezvous(tag: str) -> str: ...


@ecall
def hold(tag: str) -> str:
    return "inside " + rendezvous(tag)


@ecall
def square(x: int) -> int:
    return x * x
'''


@pytest.fixture()
def enclave(tmp_path: Path) -> Iterator[tuple[Enclave, dict[str, object]]]:
    app = tmp_path / "conc"
    app.mkdir()
    (app / "enclave.toml").write_text('name = "conc"\nentry = "app.py"\nthreads = 2\n'
                                      'heap_size = "256K"\nstack_size = "64K"\n')
    (app / "app.py").write_text(APP)
    image = build(app).sign(session_signing_key())
    both_inside = threading.Barrier(2, timeout=10)
    seen: dict[str, object] = {}

    def rendezvous(tag: str) -> str:
        both_inside.wait()  # only passes if both ecalls are inside the enclave at once
        if tag == "a":
            try:
                enc.ecalls.square(3)  # a third concurrent ecall: no TCS left
            except EcallError as exc:
                seen["third"] = str(exc)
        both_inside.wait()
        return tag

    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, \
            vm.load(image, ocalls={"rendezvous": rendezvous}) as enc:
        yield enc, seen


def test_two_tcs_run_two_ecalls_together_and_refuse_a_third(
        enclave: tuple[Enclave, dict[str, object]]) -> None:
    enc, seen = enclave
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(enc.ecalls.hold, "a")
        b = pool.submit(enc.ecalls.hold, "b")
        assert (a.result(timeout=20), b.result(timeout=20)) == ("inside a", "inside b")
    assert "all 2 TCS are busy" in str(seen["third"])
    assert enc.ecalls.square(4) == 16  # the enclave keeps serving


def test_many_threads_each_get_their_own_replies(
        enclave: tuple[Enclave, dict[str, object]]) -> None:
    enc, _ = enclave
    results: dict[int, int] = {}

    def worker(base: int) -> None:
        for i in range(base, base + 40):
            while True:
                try:
                    results[i] = enc.ecalls.square(i)
                    break
                except EcallError as exc:  # more callers than TCS: retry when busy
                    assert "TCS are busy" in str(exc)

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: i * i for k in range(4) for i in range(k * 100, k * 100 + 40)}
