"""The durable writers of the crash-consistency suite, and their checks.

``python -m tests.reliability._writers NAME DIR`` opens the store in ``DIR`` as a service
would at start, then writes in a loop and prints ``ack <token>`` after each write has
returned (that is: after the write was acknowledged). The suite kills it with SIGKILL at a
random moment; :func:`check` then opens the store again and sorts every acknowledged write
into present or lost, and anything unreadable into corrupt.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from enclavekit._fs import atomic_write
from enclavekit.errors import EnclaveKitError

PF_KEY = bytes(range(32))
MRSIGNER = b"\x11" * 32
TYPE = "sgxenclave"


def _writes(directory: Path) -> Iterator[int]:
    """0, 1, 2, … continuing across runs (the next index is saved before each write, in the
    harness's own directory beside the store's)."""
    marker = directory.parent / "harness" / "next"
    i = int(marker.read_text()) if marker.exists() else 0
    while True:
        atomic_write(marker, str(i + 1).encode())
        yield i
        i += 1


def write_keys(directory: Path) -> Iterator[str]:
    from enclavekit.kms.store import KeyStore

    store = KeyStore(directory / "kms")
    for i in _writes(directory):
        key = store.create(f"k{i}", {"kty": "oct", "key_size": 256})
        yield f"k{i}:{key.version}"


def write_attestation_state(directory: Path) -> Iterator[str]:
    from enclavekit.attest.maa.state import ServiceState, StoredPolicy

    state = ServiceState.open(directory / "maa")
    for i in _writes(directory):
        if i % 4 == 3:
            yield f"kid:{state.rotate(keep_for=10**9).kid}"
        else:
            state.set_policy(TYPE, StoredPolicy(jws=f"jws-{i}", text=f"policy {i}"))
            yield f"policy:{i}"


def write_pccs_state(directory: Path) -> Iterator[str]:
    from enclavekit.attest.pccs.state import StateStore

    store = StateStore(directory / "pccs")
    for _ in _writes(directory):
        with store.locked():
            state = store.load()
            state = dataclasses.replace(state, revision=state.revision + 1,
                                        crl_number=state.crl_number + 1)
            store.save(state)
        yield f"revision:{state.revision}"


def write_platforms(directory: Path) -> Iterator[str]:
    from enclavekit.vm.platform import PlatformStore

    store = PlatformStore(directory / "vms")
    for i in _writes(directory):
        identity = store.create(f"vm{i}", "DC1s_v2")
        yield f"vm{i}:{identity.to_json().hex()[:64]}"


def write_counters(directory: Path) -> Iterator[str]:
    from enclavekit.vm.counters import CounterStore

    path = directory / "counters.json"
    store = CounterStore(path)
    ids = store._counters.get(MRSIGNER, {})
    cid = next(iter(ids)) if ids else store.create(MRSIGNER).counter_id
    for _ in _writes(directory):
        value = store.read(MRSIGNER, cid).value
        new = store.increment(MRSIGNER, cid, value)
        yield f"{cid.hex()}:{new.value}"


def write_protected_file(directory: Path) -> Iterator[str]:
    from enclavekit.enclave import files

    path = directory / "data.pf"
    for i in _writes(directory):
        with files.open(path, "wb", key=PF_KEY, name="crash", chunk_size=4096) as handle:
            handle.write(f"record {i};".encode() * 2000)
        yield f"record:{i}"


WRITERS: dict[str, Callable[[Path], Iterator[str]]] = {
    "key store": write_keys, "attestation state": write_attestation_state,
    "pccs state": write_pccs_state, "platform identity": write_platforms,
    "sealed counters": write_counters, "protected files": write_protected_file}


@dataclasses.dataclass
class Outcome:
    """What one reopening found of the acknowledged writes."""

    acknowledged: int = 0
    lost: int = 0
    corrupt: int = 0


def check(name: str, directory: Path, acks: list[str]) -> Outcome:
    """Open the store as a restarting service would and account for every ack."""
    out = Outcome(acknowledged=len(acks))
    try:
        present = _CHECKS[name](directory / "store", acks)
    except EnclaveKitError:
        out.corrupt = len(acks) or 1  # the store itself does not open
        return out
    out.lost = sum(1 for ack in acks if present(ack) is False)
    out.corrupt = sum(1 for ack in acks if present(ack) is None)
    return out


Present = Callable[[str], bool | None]  # True present, False lost, None corrupt


def _check_keys(directory: Path, acks: list[str]) -> Present:
    from enclavekit.errors import IntegrityError, KeyNotFound
    from enclavekit.kms.store import KeyStore

    store = KeyStore(directory / "kms")

    def present(ack: str) -> bool | None:
        name, version = ack.split(":")
        try:
            return store.get(name).version == version
        except KeyNotFound:
            return False
        except IntegrityError:
            return None
    return present


def _check_attestation_state(directory: Path, acks: list[str]) -> Present:
    from enclavekit.attest.maa.state import ServiceState

    state = ServiceState.open(directory / "maa")
    kids = {k["kid"] for k in state.jwks()["keys"]}
    text = state.policy(TYPE).text
    last = max((int(a.split(":")[1]) for a in acks if a.startswith("policy:")), default=None)
    stored = int(text.split()[1]) if text.startswith("policy ") else None

    def present(ack: str) -> bool | None:
        kind, value = ack.split(":")
        if kind == "kid":
            return value in kids
        # the last acknowledged policy, or one written after it (not yet acknowledged)
        return stored is not None and last is not None and stored >= last
    return present


def _check_pccs_state(directory: Path, acks: list[str]) -> Present:
    from enclavekit.attest.pccs.state import StateStore

    revision = StateStore(directory / "pccs").load().revision

    def present(ack: str) -> bool | None:
        return revision >= int(ack.split(":")[1])
    return present


def _check_platforms(directory: Path, acks: list[str]) -> Present:
    from enclavekit.errors import VMNotFound
    from enclavekit.vm.platform import PlatformStore

    store = PlatformStore(directory / "vms")

    def present(ack: str) -> bool | None:
        name, prefix = ack.split(":")
        try:
            return store.load(name).to_json().hex()[:64] == prefix
        except VMNotFound:
            return False
        except EnclaveKitError:
            return None
    return present


def _check_counters(directory: Path, acks: list[str]) -> Present:
    from enclavekit.vm.counters import CounterStore

    store = CounterStore(directory / "counters.json")

    def present(ack: str) -> bool | None:
        cid, value = ack.split(":")
        return store.read(MRSIGNER, bytes.fromhex(cid)).value >= int(value)
    return present


def _check_protected_file(directory: Path, acks: list[str]) -> Present:
    from enclavekit.enclave import files

    path = directory / "data.pf"
    if not path.exists():
        return lambda ack: False
    with files.open(path, "rb", key=PF_KEY, name="crash") as handle:
        data = handle.read()
    record = int(data[len("record "):data.index(b";")].decode()) if data else -1
    intact = data == f"record {record};".encode() * 2000

    def present(ack: str) -> bool | None:
        if not intact:
            return None
        return record >= int(ack.split(":")[1])
    return present


_CHECKS: dict[str, Callable[[Path, list[str]], Present]] = {
    "key store": _check_keys, "attestation state": _check_attestation_state,
    "pccs state": _check_pccs_state, "platform identity": _check_platforms,
    "sealed counters": _check_counters, "protected files": _check_protected_file}


def main() -> None:
    name, directory = sys.argv[1], Path(sys.argv[2]) / "store"
    directory.mkdir(parents=True, exist_ok=True)
    for token in WRITERS[name](directory):
        print(f"ack {token}", flush=True)


if __name__ == "__main__":
    main()
