"""`enclavekit demo`: two data owners, joint statistics in an enclave, the host sees ciphertext.

The flow (public calls only; the app is ``examples/joint_stats`` of the source checkout):

1. Alice and Bob each make an AES-256-GCM data key and encrypt their records.
2. The app is built and signed with a key made for this run (and a DEBUG build of it with
   the same key); the production build is loaded on the embedded default VM.
3. Trust services start on 127.0.0.1: the collateral service (PCCS) over the VM's data
   directory, an Azure-Attestation-compatible service trusting only that directory's
   emulated root (collateral from the PCCS), and a Key-Vault-compatible key-release
   service (HTTPS, self-signed) trusting only that attestation service.
4. The owners import their data keys into the key-release service with a release policy:
   that authority, the app's MRSIGNER, product id, minimum SVN, not debuggable. They never
   talk to the enclave.
5. The compute enclave attests (REPORTDATA binds an RSA key made inside it) and has both
   keys released, wrapped to that key and unwrapped inside; the host relays bytes. A
   verifier pinned to Intel's root refuses the same quote (QV-12).
6. The DEBUG build asks for a key and is refused; the release log shows every decision.
7. The compute enclave decrypts, computes (sealing its state across a ``vm restart``) and
   returns each owner's copy under that owner's key; the owners decrypt and compare with a
   plain computation.
8. A compute image with one changed byte in a measured page is refused by EINIT.
9. A debugger is refused on the production enclave and reads the DEBUG build.

Every server is stopped when the demo ends, also on error.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rich.console import Console
from rich.markup import escape
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
        self.console.print(f"  host saw  {label:<32} {len(blob):>6} B  {_snippet(blob)}",
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


KEY_NAMES = {owner: f"{owner}-data-key" for owner in OWNERS}
"""owner id → the name of the owner's data key in the key-release service."""


@dataclasses.dataclass
class Services:
    """The trust services the demo runs on 127.0.0.1 for the length of a ``with`` block."""

    pccs_url: str
    attest_url: str
    kms_url: str
    kms: Any
    root: Any
    collateral: Any


@contextlib.contextmanager
def trust_services(home: Path, work: Path) -> Iterator[Services]:
    """The collateral service (PCCS) over the VM data directory ``home``, an attestation
    service trusting only that directory's emulation root (collateral from the PCCS), and a
    key-release service over HTTPS trusting only that attestation service. All stopped on
    exit, also on error."""
    from ..attest.maa import AttestationService, ServiceConfig
    from ..attest.maa import create_app as attest_app
    from ..attest.maa.dcap import DcapAppraiser, PccsCollateral
    from ..attest.maa.server import running as attest_running
    from ..attest.pccs.app import create_app as pccs_app
    from ..attest.pccs.publish import Publisher
    from ..attest.pccs.serve import running as pccs_running
    from ..kms.serve import ServerThread, build_service
    from ..vm.provisioning import Provisioning

    root = Provisioning.open(home).root_certificate
    with contextlib.ExitStack() as stack:
        pccs_url = stack.enter_context(pccs_running(pccs_app(Publisher.open(home))))
        collateral = PccsCollateral(pccs_url)
        attest = AttestationService(ServiceConfig(work / "attest"),
                                    DcapAppraiser(collateral, [root]))
        attest_url = stack.enter_context(attest_running(attest_app(attest)))
        kms = build_service(work / "kms", [attest_url])
        stack.callback(kms.audit.close)
        server = ServerThread(kms.app, certfile=kms.cert_path, keyfile=kms.key_path).start()
        stack.callback(server.stop)
        yield Services(pccs_url, attest_url, f"https://127.0.0.1:{server.port}", kms, root,
                       collateral)


def release_policy(authority: str, expected: Any) -> dict[str, Any]:
    """The owners' release policy (Key Vault grammar): the demo's attestation service as the
    only authority; the compute enclave's MRSIGNER, product id, minimum SVN, not DEBUG."""
    sigstruct = expected.sigstruct
    return {"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": expected.mrsigner.hex()},
        {"claim": "x-ms-sgx-product-id", "equals": sigstruct.isvprodid},
        {"claim": "x-ms-sgx-svn", "greaterOrEquals": sigstruct.isvsvn},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False}]}]}


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def put_key(services: Services, name: str, key: bytes, policy: dict[str, Any]) -> str:
    """An owner imports its AES-256 data key (exportable, with ``policy``) into the key-release
    service over HTTPS (Key Vault's import call); returns the key's id."""
    import ssl

    import httpx

    body = {"key": {"kty": "oct-HSM", "k": _b64url(key)}, "attributes": {"exportable": True},
            "release_policy": {"contentType": "application/json; charset=utf-8",
                               "data": _b64url(json.dumps(policy).encode())}}
    verify = ssl.create_default_context(cafile=str(services.kms.cert_path))
    answer = httpx.put(f"{services.kms_url}/keys/{name}?api-version=7.4", json=body,
                       headers={"Authorization": "Bearer data-owner"}, verify=verify)
    if answer.status_code != 200:
        raise EnclaveKitError(f"importing {name} failed: HTTP {answer.status_code} "
                              f"{answer.text[:200]}")
    return str(answer.json()["key"]["kid"])


def _make_relay(host: _Host, services: Services, who: str) -> Any:
    """The host's ``enclavekit_http`` handler for one enclave, printing what it relays."""
    import ssl

    from ..enclave.keyrelease import HttpRelay

    owner_of = {name: owner for owner, name in KEY_NAMES.items()}

    class Relay(HttpRelay):
        quote = b""
        token = ""

        def __call__(self, method: str, url: str, headers: dict[str, str],
                     body: bytes) -> tuple[int, bytes]:
            path = url.split("?", 1)[0]
            if "/attest/" in path:
                Relay.quote = _unb64url(json.loads(body)["quote"])
                host.saw(f"{who}: quote → attest", body)
            else:
                name = path.rsplit("/keys/", 1)[-1].split("/")[0]
                host.saw(f"{who}: token → key service", body)
            status, answer = super().__call__(method, url, headers, body)
            if "/attest/" in path:
                if status == 200:
                    Relay.token = json.loads(answer).get("token", "")
                host.saw(f"{who}: token ← attest", answer)
            else:
                label = f"wrapped key {owner_of.get(name, name)}" if status == 200 else \
                    f"refusal ({status})"
                host.saw(f"{who}: {label}", answer)
            return status, answer

    return Relay(verify=ssl.create_default_context(cafile=str(services.kms.cert_path)))


def _parse_quote(quote: bytes) -> Any:
    from ..dcap.quote import Quote

    return Quote.parse(quote)


def _claims(token: str) -> dict[str, Any]:
    value = json.loads(_unb64url(token.split(".")[1])) if token.count(".") == 2 else {}
    return value if isinstance(value, dict) else {}


def _token_line(token: str) -> str:
    c = _claims(token)
    runtime = c.get("x-ms-runtime", {}).get("keys", [{}])[0]
    return (f"iss {c.get('iss')}, MRSIGNER {str(c.get('x-ms-sgx-mrsigner'))[:16]}…, "
            f"product id {c.get('x-ms-sgx-product-id')}, SVN {c.get('x-ms-sgx-svn')}, "
            f"debuggable {c.get('x-ms-sgx-is-debuggable')}, TCB "
            f"{c.get('x-ms-sgx-tcb-status')}, x-ms-runtime key {runtime.get('kty')} "
            f"{runtime.get('kid')}")


def run(console: Console, examples: Path | None = None) -> int:
    """Run the demo; 0 when every check holds, else 1 with the reason printed."""
    import tempfile

    from ..vm.datadir import data_dir

    with tempfile.TemporaryDirectory(prefix="enclavekit-demo-") as tmp:
        return _run(console, examples or examples_dir(), Path(tmp), data_dir())


def _run(console: Console, examples: Path, work: Path, home: Path) -> int:
    """The demo's steps; ``work`` is a scratch directory, ``home`` the VM data directory."""
    import enclavekit

    started = time.monotonic()
    host = _Host(console)
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

    _step(console, "2. Build and sign the compute app (and a DEBUG build, same key); load it")
    signing_key = enclavekit.SigningKey.generate()
    compute_file = enclavekit.build(examples / "joint_stats").sign(signing_key)
    app = work / "joint_stats-debug"
    shutil.copytree(examples / "joint_stats", app)
    toml = app / "enclave.toml"
    toml.write_text(toml.read_text().replace("debug = false", "debug = true"))
    debug_file = enclavekit.build(app).sign(signing_key)
    # The owners compute the expected identity themselves, from the signed file's bytes.
    expected = enclavekit.EnclaveFile.from_bytes(compute_file.to_bytes())
    assert expected.mrsigner is not None and expected.sigstruct is not None
    console.print(f"  joint_stats MRENCLAVE {expected.mrenclave.hex()}")
    console.print(f"  MRSIGNER (demo key)   {expected.mrsigner.hex()}")
    console.print(f"  product id {expected.sigstruct.isvprodid}, SVN "
                  f"{expected.sigstruct.isvsvn}; the DEBUG build has MRENCLAVE "
                  f"{debug_file.mrenclave.hex()[:16]}…, same MRSIGNER")
    vm = enclavekit.VM.default()
    with contextlib.ExitStack() as enclaves, contextlib.ExitStack() as stack:
        _step(console, "3. Start the trust services on 127.0.0.1")
        services = stack.enter_context(trust_services(home, work))
        console.print(f"  collateral service (PCCS)  {services.pccs_url}", highlight=False)
        console.print(f"  attestation service (MAA)  {services.attest_url}  trusts only "
                      f"{services.root.subject.rfc4514_string()}, collateral from the PCCS",
                      highlight=False)
        console.print(f"  key-release service (KV)   {services.kms_url}  HTTPS, self-signed "
                      "certificate; trusts only that attestation service's tokens",
                      highlight=False)

        _step(console, "4. Alice and Bob put their keys in the key-release service, with a "
                       "release policy")
        policy = release_policy(services.attest_url, expected)
        console.print("  release policy: " + json.dumps(policy["anyOf"][0]["allOf"]),
                      highlight=False, markup=False)
        for owner in OWNERS:
            kid = put_key(services, KEY_NAMES[owner], keys[owner], policy)
            console.print(f"  {OWNERS[owner][0]} imported {escape(kid)} (exportable, released only "
                          "under this policy)", highlight=False)
        console.print("  the owners never talk to the enclave: the key service releases their "
                      "keys to an enclave the policy admits, wrapped to a key made inside it")

        _step(console, "5. joint_stats attests and has both keys released to it (the host "
                       "relays)")
        relay = _make_relay(host, services, "joint_stats")
        stack.callback(relay.close)
        ocalls = {"enclavekit_http": relay}
        compute = enclaves.enter_context(vm.load(compute_file, ocalls=ocalls))
        console.print(f"  loaded joint_stats (enclave {compute.enclave_id}, debug "
                      f"{compute.debug})")
        cert = services.kms.cert_path.read_bytes()
        try:
            held = compute.ecalls.fetch_keys(services.attest_url, services.kms_url, cert,
                                             KEY_NAMES)
        except EnclaveKitError as exc:
            console.print(f"[red]FAIL: joint_stats did not get the keys: "
                          f"{type(exc).__name__}: {escape(str(exc))}[/]", highlight=False)
            return 1
        console.print(f"  token: {escape(_token_line(relay.token))}", highlight=False)
        console.print(f"  [green]✓[/] joint_stats holds the keys of {', '.join(held)} (unwrapped "
                      "inside; each answer signed by the pinned key-service certificate)")
        quote = relay.quote
        collateral = services.collateral(_parse_quote(quote))
        refusal = RemoteVerifier(services.root, collateral).refused_under_intel_root(quote)
        console.print(f"  [green]✓[/] a verifier pinned to Intel's root refuses the same quote "
                      f"(QV-12): {escape(refusal)}", highlight=False)

        _step(console, "6. The DEBUG build of the same enclave asks for Alice's key")
        debug_relay = _make_relay(host, services, "DEBUG build")
        stack.callback(debug_relay.close)
        with vm.load(debug_file, ocalls={"enclavekit_http": debug_relay}) as rogue:
            try:
                rogue.ecalls.fetch_keys(services.attest_url, services.kms_url, cert,
                                        {"alice": KEY_NAMES["alice"]})
            except EnclaveKitError as exc:
                console.print(f"  token: {escape(_token_line(debug_relay.token))}",
                              highlight=False)
                console.print(f"  [green]✓[/] refused: {escape(str(exc).splitlines()[0])}",
                              highlight=False)
                console.print("  (the service answers Key Vault's generic 403, no oracle; its "
                              "reason is in the release log)")
            else:
                console.print("[red]FAIL: a DEBUG enclave was given Alice's key[/]")
                return 1
        console.print("  the key service's release log (every decision, allowed or refused):")
        for entry in services.kms.audit.records():
            enclave = entry.get("enclave", {})
            console.print(f"    {entry['decision']:<8} {entry['key']:<15} MRENCLAVE "
                          f"{str(enclave.get('x-ms-sgx-mrenclave'))[:16]}… debuggable "
                          f"{enclave.get('x-ms-sgx-is-debuggable')}: {entry['reason']}",
                          highlight=False, markup=False)
        stack.close()
        console.print("  trust services stopped; joint_stats keeps the keys in enclave memory")

        _step(console, "7. Encrypted batches go in; joint statistics come out re-encrypted")
        todo = [(owner, number, blob) for owner in OWNERS
                for number, blob in enumerate(batches[owner])]
        half = len(todo) // 2
        for owner, number, blob in todo[:half]:
            compute.ecalls.add_records(owner, number, host.saw(f"records {owner}/{number}",
                                                               blob))
        checkpoint = host.saw("sealed checkpoint", compute.ecalls.checkpoint())
        console.print(f"  joint_stats sealed its intermediate state (keys included; {half} of "
                      f"{len(todo)} batches) for the host to keep")
        lost = vm.restart()
        console.print(f"  [yellow]vm restart[/]: a power event; {lost} running enclaves lost")
        try:
            compute.ecalls.add_records(*todo[half])
        except EnclaveLost as exc:
            console.print(f"  the old instance is gone: {exc}", highlight=False)
        else:
            console.print("[red]FAIL: an enclave survived the power loss[/]")
            return 1
        compute = enclaves.enter_context(vm.load(compute_file))
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

    _step(console, "8. A tampered joint_stats image (one byte in a measured page) is refused")
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
    if not debugger_step(console, vm, compute_file, debug_file):
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


def debugger_step(console: Console, vm: Any, compute_file: Any, debug_file: Any) -> bool:
    """Step 9: a debugger on the production enclave is refused; on the DEBUG build it reads."""
    _step(console, "9. A debugger reads enclave memory: production refused, DEBUG build open")
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
    with vm.load(debug_file) as dbg:
        pid = {e.enclave_id: e.pid for e in vm.status().enclaves}[dbg.enclave_id]
        head: bytes = dbg.debug_read(0, 8)
        console.print(f"  [yellow]![/] DEBUG build: debug_read gives {head!r}; /proc/{pid}/mem "
                      f"{_proc_mem(pid)} — anyone on the host can read a debug enclave: never "
                      "ship one (and the owners' policy gave it no key)", highlight=False)
    return head == b"EKMANIF1"


@click.command("demo")
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="The examples/ directory (default: the source checkout's).")
@click.option("--nodes", type=click.IntRange(1, 8), default=None,
              help="Run it partitioned over N local Ray nodes instead (see docs/ray.md).")
def demo(examples: Path | None, nodes: int | None) -> None:
    """Joint statistics over two owners' encrypted data in an attested enclave."""
    if nodes is not None:
        from ..ray.demo import run_nodes

        code = run_nodes(Console(highlight=False, soft_wrap=True), nodes, examples)
        if code:
            raise SystemExit(code)
        return
    code = run(Console(highlight=False, soft_wrap=True), examples)
    if code:
        raise SystemExit(code)


def register(group: click.Group) -> None:
    """Add ``demo`` to the ``enclavekit`` group."""
    group.add_command(demo)
