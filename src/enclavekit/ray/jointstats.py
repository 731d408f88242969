"""The demo's joint statistics, partitioned over enclaves on several Ray nodes.

The owners' records (``enclavekit demo``'s Alice and Bob) are split into partitions, one per
worker enclave; an aggregator enclave combines the workers' partial aggregates. Before any
data moves, the enclaves attest one another (:class:`~enclavekit.ray.mesh.Mesh`) and the data
owner verifies each enclave's quote and wraps its data key to the key in the enclave's
hello. Records go in encrypted under the owner's key, partials travel worker → aggregator
under the attested channels (through Ray's object store), and the result comes back
encrypted under the owner's key: Ray only ever holds ciphertext.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import VerificationFailed
from ..jointstats.data import all_records, plain_statistics
from .actor import EnclaveHandle, get
from .mesh import Mesh, job_advisories, job_collateral, job_roots

__all__ = ["AGGREGATOR", "JobResult", "all_records", "app_dir", "owner_verify",
           "partitioned_job", "pin_roots", "reference_statistics"]

AGGREGATOR = "aggregator"
BATCH = 60


def app_dir() -> Path:
    """``examples/ray_stats`` of the source checkout."""
    return Path(__file__).resolve().parents[3] / "examples" / "ray_stats"


def pin_roots(roots_pem: bytes, dest: str | os.PathLike[str],
              app: Path | None = None) -> Path:
    """A copy of the ray_stats app in ``dest`` whose build measures ``roots_pem`` as its
    job's trust roots (``job_roots.pem``, a trusted file): the host can no longer choose the
    roots its enclaves verify peers against. Returns the copy's directory."""
    import shutil

    out = Path(dest)
    shutil.copytree(app or app_dir(), out)
    (out / "job_roots.pem").write_bytes(roots_pem)
    toml = out / "enclave.toml"
    text = toml.read_text()
    if "trusted = []" not in text:
        raise ValueError(f"{toml}: expected 'trusted = []' to pin the roots into")
    toml.write_text(text.replace("trusted = []", 'trusted = ["job_roots.pem"]'))
    return out


def reference_statistics(rows: list[dict[str, int]]) -> dict[str, Any]:
    """The single-VM computation (``enclavekit demo``'s reference) over ``rows``."""
    return plain_statistics(rows)


def _aad(kind: str, extra: str = "") -> bytes:
    return f"ray-stats/v1/{kind}/{extra}".encode()


def owner_verify(hello: bytes, context: bytes, roots_pem: bytes, collateral: str,
                 mrenclave: bytes, advisories: list[str] | None = None) -> bytes:
    """The data owner's check of an enclave's hello (DCAP verifier with the job's root,
    UpToDate — or ConfigurationNeeded with only the ``advisories`` named, a development
    platform — the expected MRENCLAVE, not DEBUG, the key bound); returns the hello key."""
    from ..dcap.collateral import Collateral
    from ..dcap.policy import AppraisalPolicy
    from ..dcap.roots import load_pem_chain
    from ..dcap.verify import verify_quote
    from ..enclave.peer import hello_report_data, split_hello

    quote, public = split_hello(hello)
    result = verify_quote(quote, Collateral.from_json(collateral),
                          trusted_roots=load_pem_chain(roots_pem, "job trust roots"))
    statuses = ("UpToDate", "ConfigurationNeeded") if advisories else ("UpToDate",)
    AppraisalPolicy.build(mrenclave=[mrenclave], allowed_statuses=statuses,
                          allowed_advisory_ids=advisories or (),
                          report_data=hello_report_data(context, public)).check(result)
    return public


@dataclass
class JobResult:
    """The statistics the owner decrypted, and what crossed Ray (for inspection)."""

    stats: dict[str, Any]
    records: int
    mesh: Mesh
    transported: list[Any] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each phase: ``attest`` (mesh and key provisioning), ``data`` (records
    in, partials, combine)."""


def partitioned_job(workers: list[EnclaveHandle], aggregator: EnclaveHandle,
                    data_dir: str | os.PathLike[str], *, key: bytes | None = None,
                    rows: list[dict[str, int]] | None = None,
                    mrenclave: bytes | None = None,
                    on_phase: Callable[[str], None] | None = None) -> JobResult:
    """Run the partitioned joint statistics; the decrypted result.

    ``on_phase`` is called with ``"attested"`` (keys provisioned) and ``"partitioned"`` (every
    record inside a worker) as the job reaches them.

    Raises:
        VerificationFailed: an enclave of the job (or the owner) refused a quote.
        EnclaveLost: an enclave's node died before the job completed (never a partial
            result).
    """
    key = key or AESGCM.generate_key(bit_length=256)
    rows = all_records() if rows is None else rows
    expected = mrenclave or aggregator.mrenclave
    members = {AGGREGATOR: aggregator, **{f"worker-{i}": w for i, w in enumerate(workers)}}
    started = time.perf_counter()
    context = os.urandom(16)
    roots = job_roots(data_dir)
    collateral = job_collateral(data_dir, [h.vm for h in members.values()])
    advisories = job_advisories(data_dir, [h.vm for h in members.values()])
    mesh = Mesh.attest(members, context, roots, collateral, [expected], advisories)
    for name, handle in members.items():
        public = owner_verify(mesh.hellos[name], context, roots, collateral[handle.vm],
                              expected, advisories)
        from ..enclave.peer import wrap_secret

        handle.ecalls.provision(*wrap_secret(context, public, key))
    import ray

    attested = time.perf_counter()
    if on_phase is not None:
        on_phase("attested")
    transported: list[Any] = []
    pending = []
    for number, start in enumerate(range(0, len(rows), BATCH)):
        nonce = os.urandom(12)
        blob = nonce + AESGCM(key).encrypt(nonce, json.dumps(rows[start:start + BATCH])
                                           .encode(), _aad("records", str(number)))
        ref = ray.put(blob)
        transported.append(ref)
        worker = workers[number % len(workers)]
        pending.append((worker, worker.ecalls.add_partition.remote(number, ref)))
    for worker, ref in pending:
        get(ref, where=worker.where)
    if on_phase is not None:
        on_phase("partitioned")
    partials = {f"worker-{i}": w.ecalls.partial.remote(AGGREGATOR) for i, w in
                enumerate(workers)}
    transported.extend(partials.values())
    for name, ref in partials.items():
        get(ref, where=members[name].where)
    result_ref = aggregator.ecalls.combine.remote(partials)
    transported.append(result_ref)
    blob = get(result_ref, where=aggregator.where)
    try:
        stats = json.loads(AESGCM(key).decrypt(blob[:12], blob[12:], _aad("result")))
    except Exception:
        raise VerificationFailed("result", "the aggregator's result does not open under the "
                                 "owner's key; refused") from None
    done = time.perf_counter()
    return JobResult(stats, len(rows), mesh, transported,
                     {"attest": attested - started, "data": done - attested})
