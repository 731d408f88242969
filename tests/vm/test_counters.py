"""Device-held monotonic counters: persistence, ownership, compare-and-increment, and the
rollback (SE-3) and clone (SE-7) attacks end to end through a real device and enclaves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from enclavekit.errors import CounterError, CounterMismatch, InvalidStructure, SealRuleError
from enclavekit.host import VM
from enclavekit.vm.counters import CounterStore
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server, signed_image

A, B = b"\x01" * 32, b"\x02" * 32


def test_compare_and_increment_and_ownership_by_signer(tmp_path: Path) -> None:
    store = CounterStore(tmp_path / "counters.json")
    cid = store.create(A).counter_id
    assert store.increment(A, cid, 0).value == 1
    with pytest.raises(CounterMismatch, match="is at 1, the caller expected 0"):
        store.increment(A, cid, 0)
    with pytest.raises(CounterError, match="no counter"):
        store.read(B, cid)  # another signer cannot see it, let alone advance it
    with pytest.raises(CounterError, match="no counter"):
        store.increment(B, cid, 1)
    store.destroy(A, cid)
    with pytest.raises(CounterError):
        store.read(A, cid)


def test_values_survive_a_restart_and_the_limit_is_per_signer(tmp_path: Path) -> None:
    path = tmp_path / "counters.json"
    store = CounterStore(path, max_per_signer=3)
    ids = [store.create(A).counter_id for _ in range(3)]
    store.increment(A, ids[1], 0, b"t" * 32)
    with pytest.raises(CounterError, match="limit is 3"):
        store.create(A)
    store.create(B)  # another signer has its own budget
    again = CounterStore(path)
    assert again.read(A, ids[1]).value == 1 and again.read(A, ids[1]).tag == b"t" * 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("{not json")
    with pytest.raises(InvalidStructure, match="counter store"):
        CounterStore(path)


KILLER = """
import sys
from pathlib import Path
from enclavekit.vm.counters import CounterStore
store = CounterStore(Path(sys.argv[1]))
cid = store.create(b"\\x01" * 32).counter_id
v = 0
while True:
    v = store.increment(b"\\x01" * 32, cid, v).value
    print(cid.hex(), v, flush=True)
"""


def test_kill_9_loses_no_acknowledged_increment(tmp_path: Path) -> None:
    path = tmp_path / "counters.json"
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    last = ""
    for _ in range(30):
        last = proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cid, acked = last.split()
    value = CounterStore(path).read(A, bytes.fromhex(cid)).value
    assert int(acked) <= value <= int(acked) + 1  # at most the one in flight
    json.loads(path.read_text())  # never a torn file


STATE_APP = '''

from enclavekit.enclave import counters, ocall
from enclavekit.enclave.counters import CountedState

_state = None


@ecall
def new_counter() -> None:
    global _state
    _state = CountedState.new()


@ecall
def save(data: bytes) -> bytes:
    assert _state is not None
    return _state.seal(data)


@ecall
def commit() -> int:
    assert _state is not None
    return _state.commit()


@ecall
def restore(blobs: list[bytes]) -> bytes:
    global _state
    _state, data = CountedState.restore(blobs)
    return data


@ecall
def version() -> int:
    assert _state is not None
    return counters.read(_state.counter_id)
'''


def test_rollback_and_clone_of_sealed_state_are_refused_end_to_end(tmp_path: Path) -> None:
    image = signed_image(tmp_path, session_signing_key(), "state", extra=STATE_APP)
    path = tmp_path / "counters.json"
    with device_server(tmp_path, fake=False, counters=CounterStore(path)) as (_, sock, store), \
            VM("testvm", sock, store=store) as vm, vm.load(image) as one, \
            vm.load(image) as two:
        one.ecalls.new_counter()
        v1 = one.ecalls.save(b"attempts=1")
        assert one.ecalls.commit() == 1
        v2 = one.ecalls.save(b"attempts=2")
        # SE-3 crash window: v2 stored, the enclave dies before commit -> v2 rolls forward
        assert two.ecalls.restore([v1, v2]) == b"attempts=2"
        assert two.ecalls.version() == 2
        # SE-3: the host restores v1 alone -> stale
        with pytest.raises(SealRuleError, match="stale rule"):
            one.ecalls.restore([v1])
        # SE-7: two instances restored from v2 both try to advance it
        assert one.ecalls.restore([v2]) == b"attempts=2"
        a = one.ecalls.save(b"attempts=3 (one)")
        b = two.ecalls.save(b"attempts=3 (two)")
        assert two.ecalls.commit() == 3
        with pytest.raises(CounterMismatch, match="another instance"):
            one.ecalls.commit()
        with pytest.raises(SealRuleError, match="a fork"):
            one.ecalls.restore([a])  # the clone's uncommitted version is refused
        assert one.ecalls.restore([b]) == b"attempts=3 (two)"
    # the device's counter outlives the device: one signer, one counter, at 3
    (mine,) = json.loads(path.read_text())["signers"].values()
    (value, _tag), = mine.values()
    assert value == 3
