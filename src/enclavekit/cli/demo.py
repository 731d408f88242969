"""`enclavekit demo`: two data owners, joint statistics in an enclave, the host sees ciphertext.

The flow (public calls only; the app is ``examples/joint_stats`` of the source checkout):

1. Alice and Bob each make an AES-256-GCM data key and encrypt their records.
2. The app is built and signed with a key made for this run and loaded (production
   mode) on the embedded default VM.
3. Each owner checks the compute enclave remotely: a DCAP quote over the owner's fresh
   nonce and a key the enclave made for it, verified with the emulated root of the VM's
   data directory as the only trust root and the collateral service's collateral, and
   appraised (UpToDate, the MRENCLAVE/MRSIGNER the owner computed from the signed file,
   not DEBUG, REPORTDATA binding key and nonce). Only then the owner wraps its key to
   that enclave key; the host relays the bytes. A verifier pinned to Intel's root
   refuses the same quote (QV-12).
4. The compute enclave decrypts, computes, and returns each owner's copy encrypted
   under that owner's key; the owners decrypt and compare with a plain computation.
5. A compute image with one changed byte in a measured page is refused by EINIT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rich.console import Console
from rich.table import Table

from ..errors import (
    EnclaveKitError,
    EnclaveLost,
    InvalidMeasurement,
    ManifestError,
    PageNotDebuggable,
)

OWNERS = {"alice": ("Alice", 300, 11), "bob": ("Bob", 240, 29)}
"""owner id → (display name, record count, random seed)."""
BATCH = 60
NONCE = 12
FIELDS = ("age", "income")


def records(owner: str) -> list[dict[str, int]]:
    """The owner's synthetic records (deterministic): integer age and yearly income."""
    _, count, seed = OWNERS[owner]
    rng = random.Random(seed)
    return [{"age": rng.randint(18, 90), "income": rng.randrange(18_000, 250_000, 7)}
            for _ in range(count)]


def plain_statistics(rows: list[dict[str, int]]) -> dict[str, dict[str, float]]:
    """The reference computation, in the clear: count, mean (2 decimals), min, max."""
    stats: dict[str, dict[str, float]] = {}
    for name in FIELDS:
        column = sorted(r[name] for r in rows)
        stats[name] = {"count": len(column), "mean": round(sum(column) / len(column), 2),
                       "min": column[0], "max": column[-1]}
    return stats


def examples_dir() -> Path:
    """The ``examples/`` directory of the source checkout enclavekit runs from.

    Raises:
        ManifestError: there is none (e.g. enclavekit installed from a wheel).
    """
    here = Path(__file__).resolve().parents[3] / "examples"
    if not (here / "joint_stats" / "enclave.toml").is_file():
        raise ManifestError(f"{here}: the demo's example apps are not there; run the demo "
                            "from a source checkout installed with 'pip install -e .' or pass "
                            "--examples DIR")
    return here


def _aad(kind: str, owner: str, extra: str = "") -> bytes:
    return f"joint-stats/v1/{kind}/{owner}/{extra}".encode()


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _snippet(blob: bytes) -> str:
    return f"{blob[:8].hex()}…{blob[-4:].hex()}"


class _Host:
    """What the untrusted host relays, printed as ``host saw`` lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bytes_seen = 0

    def saw(self, label: str, blob: bytes) -> bytes:
        self.bytes_seen += len(blob)
        self.console.print(f"  host saw  {label:<26} {len(blob):>6} B  {_snippet(blob)}",
                           highlight=False, markup=False)
        return blob


def tamper(image: Any) -> Any:
    """A copy of a signed enclave file with one byte changed in a measured bundle page.

    The SGXS stream and the metadata's MRENCLAVE are made consistent, the SIGSTRUCT is
    the original one: only EINIT (ENCLAVEHASH against the measured MRENCLAVE) can tell.
    """
    from ..sgx.sgxs import write_sgxs

    stream = image.stream()
    bundle = next(r for r in image.regions if r.name == "bundle")
    pages = list(stream.pages)
    index = next(i for i, p in enumerate(pages) if p.offset == bundle.offset)
    data = bytearray(pages[index].data)
    data[200] ^= 0x01
    pages[index] = dataclasses.replace(pages[index], data=bytes(data))
    sgxs = write_sgxs(pages, ssaframesize=stream.ssaframesize, size=stream.size)
    metadata = {**image.metadata, "mrenclave": hashlib.sha256(sgxs).hexdigest()}
    return type(image)(metadata, sgxs, image.sigstruct)


def quote_binding(owner: str, public: bytes, nonce: bytes) -> bytes:
    """The REPORTDATA the owner expects (``examples/joint_stats``: ``quote_binding``)."""
    label = f"joint-stats/v1/quote/{owner}/".encode()
    return hashlib.sha256(label + public + nonce).digest() + bytes(32)


def wrap_for(owner: str, data_key: bytes, enclave_public: bytes) -> tuple[bytes, bytes]:
    """The owner's side of the key transfer: an X25519 key of its own and the data key
    wrapped under HKDF-SHA256 of the shared secret (``examples/joint_stats``: ``wrap_key``)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    mine = X25519PrivateKey.generate()
    public = mine.public_key().public_bytes_raw()
    secret = mine.exchange(X25519PublicKey.from_public_bytes(enclave_public))
    info = f"joint-stats/v1/wrap/{owner}/".encode() + enclave_public + public
    wrapping = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
    return public, _seal(wrapping, data_key, _aad("key", owner))


class RemoteVerifier:
    """The owners' DCAP verifier: the emulated root of the default VM's data directory as
    the only trust root, collateral from the collateral service, a strict appraisal."""

    def __init__(self, root: Any, collateral: Any) -> None:
        self.root = root
        self.collateral = collateral

    @classmethod
    def for_default_vm(cls) -> RemoteVerifier:
        from ..attest.pccs.operator import Operator
        from ..dcap.collateral import Collateral
        from ..host.vm import DEFAULT_VM
        from ..vm.datadir import data_dir
        from ..vm.provisioning import Provisioning

        home = data_dir()
        collateral = Collateral.from_json(json.dumps(Operator(home).collateral(DEFAULT_VM)))
        return cls(Provisioning.open(home).root_certificate, collateral)

    @property
    def root_name(self) -> str:
        return str(self.root.subject.rfc4514_string())

    def check(self, quote: bytes, expected: Any, report_data: bytes) -> Any:
        """Verify ``quote`` and appraise it: UpToDate, the expected identity, not DEBUG,
        REPORTDATA as given. Raises VerificationFailed (or a format error) otherwise."""
        from ..dcap.policy import AppraisalPolicy
        from ..dcap.verify import verify_quote

        result = verify_quote(quote, self.collateral, trusted_roots=[self.root])
        policy = AppraisalPolicy.build(mrenclave=[expected.mrenclave],
                                       mrsigner=[expected.mrsigner], report_data=report_data)
        return policy.check(result)

    def refused_under_intel_root(self, quote: bytes) -> str:
        """The refusal of a verifier that trusts only Intel's root (QV-12), as one line."""
        from ..dcap.verify import verify_quote

        try:
            verify_quote(quote, self.collateral)
        except EnclaveKitError as exc:
            return f"{type(exc).__name__}: {exc}"
        raise EnclaveKitError("a verifier pinned to Intel's root accepted an emulated quote")


def _step(console: Console, text: str) -> None:
    console.print(f"\n[bold cyan]▸ {text}[/]")


def _stats_lines(result: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{o} {n}" for o, n in result["owners"].items())
    lines = [f"{sum(result['owners'].values())} records ({counts})"]
    for name in FIELDS:
        s = result["stats"][name]
        lines += [f"{name}: mean {s['mean']:,.2f}", f"  range {s['min']:,}–{s['max']:,}"]
    return lines


def run(console: Console, examples: Path | None = None) -> int:
    """Run the demo; 0 when every check holds, else 1 with the reason printed."""
    import enclavekit

    started = time.monotonic()
    host = _Host(console)
    examples = examples or examples_dir()
    console.rule("[bold]enclavekit demo: joint statistics over two owners' encrypted records")

    _step(console, "1. Alice and Bob encrypt their records with their own AES-256-GCM keys")
    keys = {owner: AESGCM.generate_key(bit_length=256) for owner in OWNERS}
    batches: dict[str, list[bytes]] = {}
    for owner in OWNERS:
        rows = records(owner)
        batches[owner] = [
            _seal(keys[owner], json.dumps(rows[i : i + BATCH]).encode(),
                  _aad("records", owner, str(i // BATCH)))
            for i in range(0, len(rows), BATCH)]
        console.print(f"  {OWNERS[owner][0]}: {len(rows)} records in {len(batches[owner])} "
                      "encrypted batches")

    _step(console, "2. Build and sign the compute app; load it on the default VM")
    signing_key = enclavekit.SigningKey.generate()
    compute_file = enclavekit.build(examples / "joint_stats").sign(signing_key)
    # The owners compute the expected identity themselves, from the signed file's bytes.
    expected = enclavekit.EnclaveFile.from_bytes(compute_file.to_bytes())
    assert expected.mrsigner is not None
    console.print(f"  joint_stats MRENCLAVE {expected.mrenclave.hex()}")
    console.print(f"  MRSIGNER (demo key)   {expected.mrsigner.hex()}")
    vm = enclavekit.VM.default()
    with contextlib.ExitStack() as stack:
        compute = stack.enter_context(vm.load(compute_file))
        console.print(f"  loaded joint_stats (enclave {compute.enclave_id}, debug "
                      f"{compute.debug})")

        _step(console, "3. Each owner checks joint_stats with a quote, then wraps its key to it")
        verifier = RemoteVerifier.for_default_vm()
        console.print(f"  the owners trust only the emulated root {verifier.root_name} and "
                      "the collateral service's collateral", highlight=False)
        for owner in OWNERS:
            nonce = os.urandom(32)
            answer = host.saw(f"quote for {owner}", compute.ecalls.quote_for(owner, nonce))
            quote, public = answer[:-32], answer[-32:]
            try:
                result = verifier.check(quote, expected, quote_binding(owner, public, nonce))
            except EnclaveKitError as exc:
                console.print(f"[red]FAIL: {OWNERS[owner][0]} refused the quote: "
                              f"{type(exc).__name__}: {exc}[/]", highlight=False)
                return 1
            console.print(f"  {OWNERS[owner][0]}: quote v{result.quote.version} verified, "
                          f"TCB {result.status}, MRENCLAVE and MRSIGNER as expected, not "
                          f"DEBUG, REPORTDATA binds the enclave's key to {OWNERS[owner][0]}'s "
                          "nonce", highlight=False)
            owner_public, wrapped = wrap_for(owner, keys[owner], public)
            compute.ecalls.receive_key(owner, owner_public,
                                       host.saw(f"wrapped key {owner}", wrapped))
        refusal = verifier.refused_under_intel_root(quote)
        console.print(f"  [green]✓[/] a verifier pinned to Intel's root refuses the same quote "
                      f"(QV-12): {refusal}", highlight=False)
        console.print(f"  joint_stats holds the keys of {', '.join(OWNERS)}")

        _step(console, "4. Encrypted batches go in; joint statistics come out re-encrypted")
        todo = [(owner, number, blob) for owner in OWNERS
                for number, blob in enumerate(batches[owner])]
        half = len(todo) // 2
        for owner, number, blob in todo[:half]:
            compute.ecalls.add_records(owner, number, host.saw(f"records {owner}/{number}",
                                                               blob))
        checkpoint = host.saw("sealed checkpoint", compute.ecalls.checkpoint())
        console.print(f"  joint_stats sealed its intermediate state ({half} of {len(todo)} "
                      "batches) for the host to keep")
        lost = vm.restart()
        console.print(f"  [yellow]vm restart[/]: a power event; {lost} running enclaves lost")
        try:
            compute.ecalls.add_records(*todo[half])
        except EnclaveLost as exc:
            console.print(f"  the old instance is gone: {exc}", highlight=False)
        else:
            console.print("[red]FAIL: an enclave survived the power loss[/]")
            return 1
        compute = stack.enter_context(vm.load(compute_file))
        counts = compute.ecalls.resume(checkpoint)
        console.print(f"  a fresh joint_stats instance unsealed the checkpoint: {counts}")
        for owner, number, blob in todo[half:]:
            compute.ecalls.add_records(owner, number, host.saw(f"records {owner}/{number}",
                                                               blob))
        sealed = compute.ecalls.compute()
        for owner, blob in sealed.items():
            host.saw(f"result for {owner}", blob)

    decrypted = {owner: json.loads(AESGCM(keys[owner]).decrypt(
        sealed[owner][:NONCE], sealed[owner][NONCE:], _aad("result", owner)))
        for owner in OWNERS}
    everyone = [r for owner in sorted(OWNERS) for r in records(owner)]
    reference = {"owners": {o: len(records(o)) for o in sorted(OWNERS)},
                 "stats": plain_statistics(everyone)}

    table = Table(title="side by side", show_lines=True)
    table.add_column("what the host saw", no_wrap=True)
    for owner in OWNERS:
        table.add_column(f"what {OWNERS[owner][0]} decrypts")
    table.add_row("\n".join([f"{host.bytes_seen:,} B relayed,", "all ciphertext:",
                             *(f"{o}: {b[:6].hex()}…" for o, b in sealed.items())]),
                  *("\n".join(_stats_lines(decrypted[o])) for o in OWNERS))
    console.print(table)
    for owner in OWNERS:
        console.print(f"  {OWNERS[owner][0]} decrypts: "
                      f"{json.dumps(decrypted[owner]['stats'], sort_keys=True)}",
                      highlight=False, markup=False)
    if any(decrypted[o] != reference for o in OWNERS):
        console.print("[red]FAIL: the enclave's result differs from the plain computation[/]")
        return 1
    console.print("  [green]✓[/] both owners' results match the plain computation")

    _step(console, "5. A tampered joint_stats image (one byte in a measured page) is refused")
    try:
        with vm.load(tamper(compute_file)):
            pass
    except InvalidMeasurement as exc:
        console.print(f"  [green]✓[/] refused: {exc}", highlight=False)
    except EnclaveKitError as exc:
        console.print(f"[red]FAIL: expected SGX_INVALID_MEASUREMENT from EINIT, got "
                      f"{type(exc).__name__}: {exc}[/]", highlight=False)
        return 1
    else:
        console.print("[red]FAIL: the tampered image was loaded[/]")
        return 1
    if not debugger_step(console, vm, compute_file, examples):
        return 1
    console.rule(f"[bold green]demo complete in {time.monotonic() - started:.1f} s")
    return 0


def _proc_mem(pid: int) -> str:
    """Try to read the first readable region of process ``pid`` as a debugger would."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            lo, hi = (int(x, 16) for x in maps.readline().split()[0].split("-"))
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            return f"read {len(os.pread(mem.fileno(), min(hi - lo, 4096), lo))} bytes"
    except OSError as exc:
        return f"refused ({type(exc).__name__}: {exc.strerror})"


def debugger_step(console: Console, vm: Any, compute_file: Any, examples: Path) -> bool:
    """Step 6: a debugger on the production enclave is refused; on a DEBUG build it reads."""
    import tempfile

    import enclavekit

    _step(console, "6. A debugger reads enclave memory: production refused, DEBUG build open")
    root = os.geteuid() == 0
    with vm.load(compute_file) as prod:
        pid = {e.enclave_id: e.pid for e in vm.status().enclaves}[prod.enclave_id]
        try:
            prod.debug_read(0, 8)
            console.print("[red]FAIL: EDBGRD read a production enclave[/]")
            return False
        except PageNotDebuggable as exc:
            console.print(f"  [green]✓[/] production debug_read refused: {exc}",
                          highlight=False)
        got = _proc_mem(pid)
        if root:
            console.print(f"  /proc/{pid}/mem as root: {got} (root can read any process: "
                          "only real SGX hardware keeps root out; see docs/threat-model.md)",
                          highlight=False)
        elif got.startswith("refused"):
            console.print(f"  [green]✓[/] production /proc/{pid}/mem {got}", highlight=False)
        else:
            console.print(f"[red]FAIL: /proc/{pid}/mem of a production enclave: {got}[/]")
            return False
    with tempfile.TemporaryDirectory(prefix="enclavekit-demo-") as tmp:
        app = Path(tmp) / "joint_stats"
        shutil.copytree(examples / "joint_stats", app)
        toml = app / "enclave.toml"
        toml.write_text(toml.read_text().replace("debug = false", "debug = true"))
        debug_file = enclavekit.build(app).sign(enclavekit.SigningKey.generate())
    with vm.load(debug_file) as dbg:
        pid = {e.enclave_id: e.pid for e in vm.status().enclaves}[dbg.enclave_id]
        head: bytes = dbg.debug_read(0, 8)
        console.print(f"  [yellow]![/] DEBUG build: debug_read gives {head!r}; /proc/{pid}/mem "
                      f"{_proc_mem(pid)} — anyone on the host can read a debug enclave: never "
                      "ship one", highlight=False)
    return head == b"EKMANIF1"


@click.command("demo")
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="The examples/ directory (default: the source checkout's).")
def demo(examples: Path | None) -> None:
    """Joint statistics over two owners' encrypted data in an attested enclave."""
    code = run(Console(highlight=False, soft_wrap=True), examples)
    if code:
        raise SystemExit(code)


def register(group: click.Group) -> None:
    """Add ``demo`` to the ``enclavekit`` group."""
    group.add_command(demo)
