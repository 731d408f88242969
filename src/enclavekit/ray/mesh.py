"""Mutual attestation of a job's enclaves, relayed over Ray (the driver sees public data only).

The driver asks every enclave for its hello (``join``), then hands each one every other's
hello with the collateral for that peer's platform (``accept``): each enclave verifies the
others' quotes itself, with the job's trust roots, and keys a channel per pair
(:mod:`enclavekit.enclave.peer`). Both sides of a pair must report the same channel
fingerprint. Collateral comes from exported collateral JSON of the VMs' data directory (the
job's own copy; signed by the root, so its transport needs no trust).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import VerificationFailed
from .actor import EnclaveHandle, get

__all__ = ["Mesh", "job_advisories", "job_collateral", "job_roots"]


def job_roots(data_dir: str | os.PathLike[str]) -> bytes:
    """PEM of the emulation root of the data directory the nodes share (the job's root)."""
    from ..vm.provisioning import Provisioning

    return Provisioning.open(Path(data_dir)).root_certificate.public_bytes(Encoding.PEM)


def job_collateral(data_dir: str | os.PathLike[str], vms: list[str]) -> dict[str, str]:
    """Exported collateral JSON for each VM's quotes (VM name → JSON)."""
    from ..attest.pccs.operator import Operator

    operator = Operator(Path(data_dir))
    return {vm: json.dumps(operator.collateral(vm)) for vm in sorted(set(vms))}


def job_advisories(data_dir: str | os.PathLike[str], vms: list[str]) -> list[str]:
    """The TCB advisory ids the job accepts by name: ``EK-DEV-0001`` when one of its VMs is a
    development platform (enclavekit.vm.devmode), else none (UpToDate only)."""
    from ..vm.devmode import DEVELOPMENT_ADVISORY
    from ..vm.identity import load_identity

    development = any(load_identity(Path(data_dir), vm).development for vm in set(vms))
    return [DEVELOPMENT_ADVISORY] if development else []


@dataclass
class Mesh:
    """The attested enclaves of one job, by name, and their channel fingerprints."""

    members: dict[str, EnclaveHandle]
    hellos: dict[str, bytes] = field(default_factory=dict)
    fingerprints: dict[tuple[str, str], bytes] = field(default_factory=dict)

    @classmethod
    def attest(cls, members: dict[str, EnclaveHandle], context: bytes, roots_pem: bytes,
               collateral: dict[str, str], mrenclaves: list[bytes] | None = None,
               advisories: list[str] | None = None) -> Mesh:
        """Every member verifies every other (in its enclave) before any data moves.

        Raises:
            VerificationFailed: a member refused a peer's quote (the peer's identity, TCB,
                DEBUG or binding), or the two sides of a channel disagree.
        """
        mesh = cls(dict(members))
        refs = {name: h.ecalls.join.remote(context, roots_pem, list(mrenclaves or []),
                                           list(advisories or []))
                for name, h in members.items()}
        for name, ref in refs.items():
            mesh.hellos[name] = get(ref, where=members[name].where)
        for name in members:
            for other in members:
                if other != name:
                    mesh.connect(name, other, collateral[members[other].vm])
        return mesh

    def connect(self, name: str, other: str, collateral: str) -> bytes:
        """``name``'s enclave verifies ``other``'s hello; checks both sides agree once both
        have verified."""
        got: bytes = self.members[name].ecalls.accept(other, self.hellos[other], collateral)
        self.fingerprints[(name, other)] = got
        back = self.fingerprints.get((other, name))
        if back is not None and back != got:
            raise VerificationFailed("peer_channel", f"{name} and {other} derived different "
                                     "channel keys (a hello was substituted); refused")
        return got
