"""Operator actions on the collateral of one data directory: TCB recovery, PCK revocation,
collateral export and status.

A **TCB recovery** raises a VM's CPUSVN components and/or PCESVN (its platform file, through
:class:`~enclavekit.vm.platform.PlatformStore`), re-issues its PCK certificate at the new TCB,
publishes a new UpToDate TCB level, marks every level it dominates out of date with the
advisory id and bumps tcbEvaluationDataNumber. Quotes made before still carry the old PCK
certificate, so they now evaluate OutOfDate. A running VM's device keeps the old TCB (like
microcode not yet loaded) until its next power cycle (``enclavekit vm restart NAME``, or a stop
and start), after which its PCE derives the key of the new certificate.

**Revocation** puts every PCK certificate the VM has held (the current one and those recorded
at earlier recoveries or exports) into the PCK CRL. Both re-publish at once: a new window, a
higher CRL number, the old publication left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ...errors import ProvisioningError
from ...vm.platform import PlatformStore
from ...vm.provisioning import Provisioning
from .publish import Clock, Publication, Publisher
from .state import CollateralState, check_advisory, format_time

__all__ = ["Operator", "Recovery", "Status"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Recovery:
    """What a TCB recovery changed."""

    vm: str
    old_cpusvn: bytes
    new_cpusvn: bytes
    old_pcesvn: int
    new_pcesvn: int
    pck_serial: int
    tcb_evaluation_data_number: int


@dataclass(frozen=True)
class Status:
    """The saved state and the publication in force."""

    state: CollateralState
    publication: Publication


class Operator:
    """TCB recovery, revocation and export for the VMs of ``data_dir``."""

    def __init__(self, data_dir: Path, clock: Clock = _utcnow) -> None:
        self.data_dir = Path(data_dir)
        self.platforms = PlatformStore(self.data_dir)
        self.publisher = Publisher.open(self.data_dir, clock)

    def _provisioning(self) -> Provisioning:
        return Provisioning.open(self.data_dir)

    def recover(self, vm: str, *, advisory: str, cpusvn: bytes | None = None,
                pcesvn: int | None = None) -> Recovery:
        """Raise VM ``vm``'s TCB to ``cpusvn`` / ``pcesvn`` (either may be left as it is),
        re-issue its PCK certificate and publish the new level UpToDate, the levels below it
        out of date with ``advisory``.

        Raises:
            ProvisioningError: nothing would be raised, a component would go down, the advisory
                id is malformed, or the VM's FMSPC has no TCB info.
            VMNotFound: there is no such VM.
        """
        check_advisory(advisory)
        identity = self.platforms.load(vm)
        new_cpusvn = identity.cpusvn if cpusvn is None else bytes(cpusvn)
        new_pcesvn = identity.pcesvn if pcesvn is None else pcesvn
        if len(new_cpusvn) != 16:
            raise ProvisioningError(f"CPUSVN must be 16 bytes, found {len(new_cpusvn)}")
        if not 0 <= new_pcesvn <= 0xFFFF:
            raise ProvisioningError(f"PCESVN must be in 0..65535, found {new_pcesvn}")
        lower = [i for i, (a, b) in enumerate(zip(identity.cpusvn, new_cpusvn, strict=True))
                 if b < a]
        if lower:
            raise ProvisioningError(
                f"a TCB recovery never lowers the TCB: CPUSVN component {lower[0] + 1} would go "
                f"from {identity.cpusvn[lower[0]]} to {new_cpusvn[lower[0]]}")
        if new_pcesvn < identity.pcesvn:
            raise ProvisioningError(f"a TCB recovery never lowers the TCB: PCESVN would go from "
                                    f"{identity.pcesvn} to {new_pcesvn}")
        key = (tuple(new_cpusvn), new_pcesvn)
        published = any(lv.key == key for lv in self.publisher.store.load().levels(identity.fmspc))
        if (new_cpusvn, new_pcesvn) == (identity.cpusvn, identity.pcesvn) and published:
            raise ProvisioningError(
                f"VM {vm!r} is already at CPUSVN {identity.cpusvn.hex()} PCESVN "
                f"{identity.pcesvn}; give a higher --cpusvn and/or --pcesvn")
        prov = self._provisioning()
        old_serial = prov.pck_certificate(vm).serial_number
        date = format_time(self.publisher.now().replace(hour=0, minute=0, second=0,
                                                        microsecond=0))

        def recovered(state: CollateralState) -> CollateralState:
            state = state.with_pck_serial(vm, old_serial)
            return state.with_recovery(identity.fmspc, key[0], new_pcesvn, advisory, date)

        state = self.publisher.update(recovered)
        raised = replace(identity, cpusvn=new_cpusvn, pcesvn=new_pcesvn)
        self.platforms.save(raised)
        cert = prov.issue_pck(raised)
        self.publisher.update(lambda s: s.with_pck_serial(vm, cert.serial_number))
        return Recovery(vm, identity.cpusvn, new_cpusvn, identity.pcesvn, new_pcesvn,
                        cert.serial_number, state.tcb_evaluation_data_number)

    def revoke(self, vm: str) -> list[int]:
        """Revoke every PCK certificate VM ``vm`` has held; returns the serials newly revoked
        (empty when they all were already)."""
        self.platforms.load(vm)
        current = self._provisioning().pck_certificate(vm).serial_number
        date = format_time(self.publisher.now())
        before = self.publisher.store.load().revoked_serials

        def revoked(state: CollateralState) -> CollateralState:
            state = state.with_pck_serial(vm, current)
            return state.with_revoked(list(state.pck_serials[vm]), vm, date)

        after = self.publisher.update(revoked).revoked_serials
        return sorted(after - before)

    def collateral(self, vm: str) -> dict[str, str]:
        """The collateral for VM ``vm``'s quotes in the one-object JSON layout (dcap-qvl's
        QuoteCollateralV3): the publication in force, TCB info of the VM's FMSPC."""
        identity = self.platforms.load(vm)
        serial = self._provisioning().pck_certificate(vm).serial_number
        self.publisher.update(lambda s: s.with_pck_serial(vm, serial))
        return self.publisher.current().collateral(identity.fmspc.hex())

    def status(self) -> Status:
        """The state and the publication in force (signed now if the old one is stale)."""
        publication = self.publisher.current()
        return Status(self.publisher.store.load(), publication)
