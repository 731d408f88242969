"""The joint-statistics scenario on one VM: two data owners, their keys released to an
attested enclave by the key-release service, the host seeing only ciphertext.

The flow (public calls only; the app is ``examples/joint_stats`` of the source checkout):

1. Alice and Bob each make an AES-256-GCM data key and encrypt their records.
2. The app is built and signed with a key made for this run (and a DEBUG build of it with
   the same key); the production build is loaded on the embedded default VM.
3. Trust services start on 127.0.0.1 (:func:`enclavekit.services.trust_services`).
4. The owners import their data keys into the key-release service with a release policy:
   that authority, the app's MRSIGNER, product id, minimum SVN, not debuggable
   (:mod:`enclavekit.kms.owner`). They never talk to the enclave.
5. The compute enclave attests (REPORTDATA binds an RSA key made inside it) and has both
   keys released, wrapped to that key and unwrapped inside; the host relays bytes. A
   verifier pinned to Intel's root refuses the same quote (QV-12).
6. The DEBUG build asks for a key and is refused; the release log shows every decision.
7. The compute enclave decrypts, computes (sealing its state across a ``vm restart``) and
   returns each owner's copy under that owner's key; the owners decrypt and compare with a
   plain computation.
8. A compute image with one changed byte in a measured page is refused by EINIT.
9. A debugger is refused on the production enclave and reads the DEBUG build.

:func:`run` reports each step as :mod:`~enclavekit.jointstats.events` to a callback and
prints nothing. Every server is stopped when it ends, also on error.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..dcap.quote import Quote
from ..enclave.keyrelease import HttpRelay
from ..errors import (
    EnclaveKitError,
    EnclaveLost,
    InvalidMeasurement,
    ManifestError,
    PageNotDebuggable,
)
from ..host import VM, EnclaveFile, build
from ..kms.owner import import_key, sgx_release_policy
from ..services import Services, trust_services
from ..sgx.sgxs import write_sgxs
from ..sgx.signing import SigningKey
from ..vm.datadir import data_dir
from ..vm.devmode import DEVELOPMENT_ADVISORY, label
from ..vm.identity import load_identity
from .data import FIELDS, OWNERS, plain_statistics, records
from .events import HostSaw, Outcome, Report, Say, SideBySide, Step, Title, snippet
from .owner import RemoteVerifier, encrypt_records, open_result

__all__ = ["KEY_NAMES", "examples_dir", "release_policy", "run", "tamper"]

KEY_NAMES = {owner: f"{owner}-data-key" for owner in OWNERS}
"""owner id → the name of the owner's data key in the key-release service."""


class _Failed(Exception):
    """A check of the scenario did not hold (its one-line reason)."""


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


def release_policy(authority: str, expected: EnclaveFile, *,
                   allowed_advisories: Sequence[str] = ()) -> dict[str, Any]:
    """The owners' release policy: ``authority`` as the only authority; the compute
    enclave's MRSIGNER, product id, minimum SVN (those of its SIGSTRUCT), not DEBUG, an
    UpToDate platform unless its only advisory is named in ``allowed_advisories``."""
    if expected.sigstruct is None or expected.mrsigner is None:
        raise ManifestError(f"{expected.name}: the enclave file is not signed")
    return sgx_release_policy(authority, mrsigner=expected.mrsigner,
                              product_id=expected.sigstruct.isvprodid,
                              min_svn=expected.sigstruct.isvsvn,
                              allowed_advisories=allowed_advisories)


def tamper(image: EnclaveFile) -> EnclaveFile:
    """A copy of a signed enclave file with one byte changed in a measured bundle page.

    The SGXS stream and the metadata's MRENCLAVE are made consistent, the SIGSTRUCT is
    the original one: only EINIT (ENCLAVEHASH against the measured MRENCLAVE) can tell.
    """
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


class _Host:
    """What the untrusted host relays, reported as :class:`HostSaw` events."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.bytes_seen = 0

    def saw(self, label: str, blob: bytes) -> bytes:
        self.bytes_seen += len(blob)
        self.report(HostSaw(label, len(blob), snippet(blob)))
        return blob


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Relay(HttpRelay):
    """The host's ``enclavekit_http`` handler for one enclave: relays and reports each
    message, keeping the last quote and attestation token for the owners to look at."""

    def __init__(self, host: _Host, services: Services, who: str) -> None:
        super().__init__(verify=ssl.create_default_context(cafile=str(services.kms.cert_path)))
        self.host, self.who = host, who
        self.owner_of = {name: owner for owner, name in KEY_NAMES.items()}
        self.quote = b""
        self.token = ""

    def __call__(self, method: str, url: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, bytes]:
        path, who, name = url.split("?", 1)[0], self.who, ""
        if "/attest/" in path:
            self.quote = _unb64url(json.loads(body)["quote"])
            self.host.saw(f"{who}: quote → attest", body)
        else:
            name = path.rsplit("/keys/", 1)[-1].split("/")[0]
            self.host.saw(f"{who}: token → key service", body)
        status, answer = super().__call__(method, url, headers, body)
        if "/attest/" in path:
            if status == 200:
                self.token = json.loads(answer).get("token", "")
            self.host.saw(f"{who}: token ← attest", answer)
        else:
            label = f"wrapped key {self.owner_of.get(name, name)}" if status == 200 else \
                f"refusal ({status})"
            self.host.saw(f"{who}: {label}", answer)
        return status, answer


def _claims(token: str) -> dict[str, Any]:
    value = json.loads(_unb64url(token.split(".")[1])) if token.count(".") == 2 else {}
    return value if isinstance(value, dict) else {}


def _token_line(token: str) -> str:
    c = _claims(token)
    runtime = c.get("x-ms-runtime", {}).get("keys", [{}])[0]
    return (f"iss {c.get('iss')}, MRSIGNER {str(c.get('x-ms-sgx-mrsigner'))[:16]}…, "
            f"product id {c.get('x-ms-sgx-product-id')}, SVN {c.get('x-ms-sgx-svn')}, "
            f"debuggable {c.get('x-ms-sgx-is-debuggable')}, TCB "
            f"{c.get('x-ms-sgx-tcb-status')} {c.get('x-ms-sgx-advisory-ids', [])}, "
            f"x-ms-runtime key {runtime.get('kty')} "
            f"{runtime.get('kid')}")


def _stats_lines(result: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{o} {n}" for o, n in result["owners"].items())
    lines = [f"{sum(result['owners'].values())} records ({counts})"]
    for name in FIELDS:
        s = result["stats"][name]
        lines += [f"{name}: mean {s['mean']:,.2f}", f"  range {s['min']:,}–{s['max']:,}"]
    return lines


def run(report: Report, examples: Path | None = None) -> Outcome:
    """Run the scenario on the embedded default VM (``VM.default()``, in the data directory
    ``$ENCLAVEKIT_HOME`` or the user's), reporting each step to ``report``.

    Args:
        report: called with each event, in order.
        examples: the ``examples/`` directory (default: :func:`examples_dir`).

    Returns:
        The outcome: ``ok`` when every check held, else the first that did not.

    Raises:
        EnclaveKitError: a step could not be carried out (not a check that failed).
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="enclavekit-demo-") as tmp:
        try:
            _run(report, examples or examples_dir(), Path(tmp), data_dir())
        except _Failed as failed:
            report(Say(str(failed), "fail"))
            return Outcome(False, time.monotonic() - started, str(failed))
    seconds = time.monotonic() - started
    report(Title(f"demo complete in {seconds:.1f} s", final=True))
    return Outcome(True, seconds)


def _run(report: Report, examples: Path, work: Path, home: Path) -> None:
    """The steps; ``work`` is a scratch directory, ``home`` the VM data directory."""
    host = _Host(report)
    report(Title("enclavekit demo: joint statistics over two owners' encrypted records"))

    report(Step("1. Alice and Bob encrypt their records with their own AES-256-GCM keys"))
    keys = {owner: AESGCM.generate_key(bit_length=256) for owner in OWNERS}
    batches = {owner: encrypt_records(owner, keys[owner]) for owner in OWNERS}
    for owner in OWNERS:
        report(Say(f"{OWNERS[owner][0]}: {len(records(owner))} records in "
                   f"{len(batches[owner])} encrypted batches"))

    report(Step("2. Build and sign the compute app (and a DEBUG build, same key); load it"))
    signing_key = SigningKey.generate()
    compute_file = build(examples / "joint_stats").sign(signing_key)
    app = work / "joint_stats-debug"
    shutil.copytree(examples / "joint_stats", app)
    toml = app / "enclave.toml"
    toml.write_text(toml.read_text().replace("debug = false", "debug = true"))
    debug_file = build(app).sign(signing_key)
    # The owners compute the expected identity themselves, from the signed file's bytes.
    expected = EnclaveFile.from_bytes(compute_file.to_bytes())
    assert expected.mrsigner is not None and expected.sigstruct is not None
    report(Say(f"joint_stats MRENCLAVE {expected.mrenclave.hex()}"))
    report(Say(f"MRSIGNER (demo key)   {expected.mrsigner.hex()}"))
    report(Say(f"product id {expected.sigstruct.isvprodid}, SVN {expected.sigstruct.isvsvn}; "
               f"the DEBUG build has MRENCLAVE {debug_file.mrenclave.hex()[:16]}…, same "
               "MRSIGNER"))
    vm = VM.default()
    platform = load_identity(vm.data_dir, vm.name)
    report(Say(f"VM {vm.name}: {label(platform.development)}",
               "warn" if platform.development else ""))
    with contextlib.ExitStack() as enclaves, contextlib.ExitStack() as stack:
        report(Step("3. Start the trust services on 127.0.0.1"))
        services = stack.enter_context(trust_services(home, work))
        report(Say(f"collateral service (PCCS)  {services.pccs_url}"))
        report(Say(f"attestation service (MAA)  {services.attest_url}  trusts only "
                   f"{services.root.subject.rfc4514_string()}, collateral from the PCCS"))
        report(Say(f"key-release service (KV)   {services.kms_url}  HTTPS, self-signed "
                   "certificate; trusts only that attestation service's tokens"))

        report(Step("4. Alice and Bob put their keys in the key-release service, with a "
                    "release policy"))
        allowed = (DEVELOPMENT_ADVISORY,) if platform.development else ()
        policy = release_policy(services.attest_url, expected, allowed_advisories=allowed)
        report(Say("release policy: " + json.dumps(policy["anyOf"][0]["allOf"])))
        if allowed:
            report(Say(f"development mode: the policy allows advisory {DEVELOPMENT_ADVISORY} by "
                       "name (a development platform's TCB status, ConfigurationNeeded), which "
                       "a production policy would refuse", "warn"))
        for owner in OWNERS:
            kid = import_key(services.kms_url, KEY_NAMES[owner], keys[owner], policy,
                             cafile=services.kms.cert_path)
            report(Say(f"{OWNERS[owner][0]} imported {kid} (exportable, released only under "
                       "this policy)"))
        report(Say("the owners never talk to the enclave: the key service releases their "
                   "keys to an enclave the policy admits, wrapped to a key made inside it"))

        report(Step("5. joint_stats attests and has both keys released to it (the host "
                    "relays)"))
        relay = _Relay(host, services, "joint_stats")
        stack.callback(relay.close)
        compute = enclaves.enter_context(vm.load(compute_file,
                                                 ocalls={"enclavekit_http": relay}))
        report(Say(f"loaded joint_stats (enclave {compute.enclave_id}, debug "
                   f"{compute.debug})"))
        cert = services.kms.cert_path.read_bytes()
        try:
            held = compute.ecalls.fetch_keys(services.attest_url, services.kms_url, cert,
                                             KEY_NAMES)
        except EnclaveKitError as exc:
            raise _Failed(f"joint_stats did not get the keys: {type(exc).__name__}: "
                          f"{exc}") from None
        report(Say(f"token: {_token_line(relay.token)}"))
        report(Say(f"joint_stats holds the keys of {', '.join(held)} (unwrapped inside; each "
                   "answer signed by the pinned key-service certificate)", "ok"))
        quote = relay.quote
        collateral = services.collateral(Quote.parse(quote))
        refusal = RemoteVerifier(services.root, collateral).refused_under_intel_root(quote)
        report(Say("a verifier pinned to Intel's root refuses the same quote (QV-12): "
                   f"{refusal}", "ok"))

        report(Step("6. The DEBUG build of the same enclave asks for Alice's key"))
        debug_relay = _Relay(host, services, "DEBUG build")
        stack.callback(debug_relay.close)
        with vm.load(debug_file, ocalls={"enclavekit_http": debug_relay}) as rogue:
            try:
                rogue.ecalls.fetch_keys(services.attest_url, services.kms_url, cert,
                                        {"alice": KEY_NAMES["alice"]})
            except EnclaveKitError as exc:
                report(Say(f"token: {_token_line(debug_relay.token)}"))
                report(Say(f"refused: {str(exc).splitlines()[0]}", "ok"))
                report(Say("(the service answers Key Vault's generic 403, no oracle; its "
                           "reason is in the release log)"))
            else:
                raise _Failed("a DEBUG enclave was given Alice's key")
        report(Say("the key service's release log (every decision, allowed or refused):"))
        for entry in services.kms.audit.records():
            enclave = entry.get("enclave", {})
            report(Say(f"  {entry['decision']:<8} {entry['key']:<15} MRENCLAVE "
                       f"{str(enclave.get('x-ms-sgx-mrenclave'))[:16]}… debuggable "
                       f"{enclave.get('x-ms-sgx-is-debuggable')}: {entry['reason']}"))
        stack.close()
        report(Say("trust services stopped; joint_stats keeps the keys in enclave memory"))

        report(Step("7. Encrypted batches go in; joint statistics come out re-encrypted"))
        todo = [(owner, number, blob) for owner in OWNERS
                for number, blob in enumerate(batches[owner])]
        half = len(todo) // 2
        for owner, number, blob in todo[:half]:
            compute.ecalls.add_records(owner, number, host.saw(f"records {owner}/{number}",
                                                               blob))
        checkpoint = host.saw("sealed checkpoint", compute.ecalls.checkpoint())
        report(Say(f"joint_stats sealed its intermediate state (keys included; {half} of "
                   f"{len(todo)} batches) for the host to keep"))
        lost = vm.restart()
        report(Say(f"vm restart: a power event; {lost} running enclaves lost"))
        try:
            compute.ecalls.add_records(*todo[half])
        except EnclaveLost as exc:
            report(Say(f"the old instance is gone: {exc}"))
        else:
            raise _Failed("an enclave survived the power loss")
        compute = enclaves.enter_context(vm.load(compute_file))
        counts = compute.ecalls.resume(checkpoint)
        report(Say(f"a fresh joint_stats instance unsealed the checkpoint: {counts}"))
        for owner, number, blob in todo[half:]:
            compute.ecalls.add_records(owner, number, host.saw(f"records {owner}/{number}",
                                                               blob))
        sealed = compute.ecalls.compute()
        for owner, blob in sealed.items():
            host.saw(f"result for {owner}", blob)

    decrypted = {owner: open_result(owner, keys[owner], sealed[owner]) for owner in OWNERS}
    everyone = [r for owner in sorted(OWNERS) for r in records(owner)]
    reference = {"owners": {o: len(records(o)) for o in sorted(OWNERS)},
                 "stats": plain_statistics(everyone)}
    report(SideBySide(
        "side by side",
        ("what the host saw", *(f"what {OWNERS[o][0]} decrypts" for o in OWNERS)),
        ("\n".join([f"{host.bytes_seen:,} B relayed,", "all ciphertext:",
                    *(f"{o}: {b[:6].hex()}…" for o, b in sealed.items())]),
         *("\n".join(_stats_lines(decrypted[o])) for o in OWNERS))))
    for owner in OWNERS:
        report(Say(f"{OWNERS[owner][0]} decrypts: "
                   f"{json.dumps(decrypted[owner]['stats'], sort_keys=True)}"))
    if any(decrypted[o] != reference for o in OWNERS):
        raise _Failed("the enclave's result differs from the plain computation")
    report(Say("both owners' results match the plain computation", "ok"))

    report(Step("8. A tampered joint_stats image (one byte in a measured page) is refused"))
    try:
        with vm.load(tamper(compute_file)):
            pass
    except InvalidMeasurement as exc:
        report(Say(f"refused: {exc}", "ok"))
    except EnclaveKitError as exc:
        raise _Failed(f"expected SGX_INVALID_MEASUREMENT from EINIT, got "
                      f"{type(exc).__name__}: {exc}") from None
    else:
        raise _Failed("the tampered image was loaded")
    _debugger_step(report, vm, compute_file, debug_file)


def _proc_mem(pid: int) -> str:
    """Try to read the first readable region of process ``pid`` as a debugger would."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            lo, hi = (int(x, 16) for x in maps.readline().split()[0].split("-"))
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            return f"read {len(os.pread(mem.fileno(), min(hi - lo, 4096), lo))} bytes"
    except OSError as exc:
        return f"refused ({type(exc).__name__}: {exc.strerror})"


def _debugger_step(report: Report, vm: VM, compute_file: EnclaveFile,
                   debug_file: EnclaveFile) -> None:
    """Step 9: a debugger on the production enclave is refused; on the DEBUG build it reads."""
    report(Step("9. A debugger reads enclave memory: production refused, DEBUG build open"))
    root = os.geteuid() == 0
    with vm.load(compute_file) as prod:
        pid = {e.enclave_id: e.pid for e in vm.status().enclaves}[prod.enclave_id]
        try:
            prod.debug_read(0, 8)
        except PageNotDebuggable as exc:
            report(Say(f"production debug_read refused: {exc}", "ok"))
        else:
            raise _Failed("EDBGRD read a production enclave")
        got = _proc_mem(pid)
        if root:
            report(Say(f"/proc/{pid}/mem as root: {got} (root can read any process: only "
                       "real SGX hardware keeps root out; see docs/threat-model.md)"))
        elif got.startswith("refused"):
            report(Say(f"production /proc/{pid}/mem {got}", "ok"))
        else:
            raise _Failed(f"/proc/{pid}/mem of a production enclave: {got}")
    with vm.load(debug_file) as dbg:
        pid = {e.enclave_id: e.pid for e in vm.status().enclaves}[dbg.enclave_id]
        head: bytes = dbg.debug_read(0, 8)
        report(Say(f"DEBUG build: debug_read gives {head!r}; /proc/{pid}/mem "
                   f"{_proc_mem(pid)} — anyone on the host can read a debug enclave: never "
                   "ship one (and the owners' policy gave it no key)", "warn"))
    if head != b"EKMANIF1":
        raise _Failed(f"the DEBUG build's debug_read gave {head!r}, not the manifest's magic")
