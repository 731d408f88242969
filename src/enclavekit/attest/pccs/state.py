"""The collateral state of the emulated platforms: what the operator decided, not what is signed.

TCB levels per FMSPC, the QE identity's levels, tcbEvaluationDataNumber, revoked PCK serials,
the PCK serials each VM has held, the last CRL number issued and the validity window of
published collateral. One JSON file, ``<data dir>/pki/pccs-state.json``, replaced atomically
(:func:`enclavekit._fs.atomic_write`) under an advisory lock (``pccs.lock``) so the service and
the operator commands can run at once. ``revision`` counts changes that alter what is published;
:mod:`.publish` re-signs whenever the published revision differs from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..._fs import atomic_write, remove_stale_temps
from ...dcap.arch import QE_ISVSVN
from ...errors import ProvisioningError
from ...vm.devmode import PLATFORM_FMSPC, development_level, is_development
from ...vm.platform import DEFAULT_CPUSVN, DEFAULT_PCESVN, EMULATED_FMSPC

__all__ = [
    "DEFAULT_WINDOW", "STATUSES", "CollateralState", "QeLevel", "Revocation", "StateStore",
    "TcbLevel", "format_time", "parse_time",
]

FORMAT = "enclavekit-pccs-state/1"
STATE_FILE = "pccs-state.json"
LOCK_FILE = "pccs.lock"
DEFAULT_WINDOW = timedelta(days=30)
"""issueDate → nextUpdate of every published artefact unless the state says otherwise."""

STATUSES = (
    "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
    "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked",
)
"""tcbStatus values Intel's QVL accepts in TCB info (sgx-spec.md §6.7)."""
_QE_STATUSES = ("UpToDate", "OutOfDate", "Revoked")
_OUT_OF_DATE = {
    "UpToDate": "OutOfDate", "SWHardeningNeeded": "OutOfDate",
    "ConfigurationNeeded": "OutOfDateConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded": "OutOfDateConfigurationNeeded",
}
"""What a level becomes when a recovery supersedes it (statuses already out of date stay)."""
_ADVISORY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(when: datetime) -> str:
    """ISO-8601 UTC to the second, as Intel writes issueDate/nextUpdate/tcbDate."""
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time`; anything else raises ValueError."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def check_advisory(advisory: str) -> str:
    """An advisory id such as ``INTEL-SA-00615`` or ``ENCLAVEKIT-SA-0001``."""
    if not _ADVISORY_RE.match(advisory):
        raise ProvisioningError(f"advisory id {advisory!r} is not valid (use letters, digits, "
                                "'.', '_' and '-', e.g. ENCLAVEKIT-SA-0001)")
    return advisory


@dataclass(frozen=True)
class TcbLevel:
    """One platform TCB level: 16 SGX TCB component SVNs, PCESVN, date, status, advisories."""

    components: tuple[int, ...]
    pcesvn: int
    tcb_date: str
    status: str
    advisory_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.components) != 16 or not all(0 <= c <= 255 for c in self.components):
            raise ProvisioningError(f"a TCB level has 16 component SVNs in 0..255, found "
                                    f"{list(self.components)}")
        if not 0 <= self.pcesvn <= 0xFFFF:
            raise ProvisioningError(f"PCESVN must be in 0..65535, found {self.pcesvn}")
        if self.status not in STATUSES:
            raise ProvisioningError(f"tcbStatus {self.status!r} is not one of {STATUSES}")

    @property
    def key(self) -> tuple[tuple[int, ...], int]:
        """The sort key: components compared lexicographically, then PCESVN."""
        return (self.components, self.pcesvn)

    def dominated_by(self, other: TcbLevel) -> bool:
        """Whether every component and the PCESVN of ``self`` are ≤ those of ``other``."""
        return self.pcesvn <= other.pcesvn and all(
            a <= b for a, b in zip(self.components, other.components, strict=True))

    def to_doc(self) -> dict[str, Any]:
        """The state-file form."""
        return {"components": list(self.components), "pcesvn": self.pcesvn,
                "tcbDate": self.tcb_date, "tcbStatus": self.status,
                "advisoryIDs": list(self.advisory_ids)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TcbLevel:
        """Parse the state-file form."""
        return cls(tuple(int(c) for c in doc["components"]), int(doc["pcesvn"]),
                   str(doc["tcbDate"]), str(doc["tcbStatus"]),
                   tuple(str(a) for a in doc.get("advisoryIDs", [])))


@dataclass(frozen=True)
class QeLevel:
    """One QE identity TCB level, by the QE's ISVSVN."""

    isvsvn: int
    tcb_date: str
    status: str
    advisory_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in _QE_STATUSES:
            raise ProvisioningError(f"QE tcbStatus {self.status!r} is not one of {_QE_STATUSES}")

    def to_doc(self) -> dict[str, Any]:
        """The state-file form."""
        return {"isvsvn": self.isvsvn, "tcbDate": self.tcb_date, "tcbStatus": self.status,
                "advisoryIDs": list(self.advisory_ids)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> QeLevel:
        """Parse the state-file form."""
        return cls(int(doc["isvsvn"]), str(doc["tcbDate"]), str(doc["tcbStatus"]),
                   tuple(str(a) for a in doc.get("advisoryIDs", [])))


@dataclass(frozen=True)
class Revocation:
    """A revoked PCK certificate: serial number, the VM it belonged to, when."""

    serial: int
    vm: str
    date: str


@dataclass(frozen=True)
class CollateralState:
    """Everything the published collateral is made from (immutable; changes return a copy)."""

    revision: int
    tcb_evaluation_data_number: int
    tcb_levels: dict[str, tuple[TcbLevel, ...]]
    qe_levels: tuple[QeLevel, ...]
    revoked: tuple[Revocation, ...] = ()
    pck_serials: dict[str, tuple[int, ...]] = field(default_factory=dict)
    crl_number: int = 0
    window_seconds: int = int(DEFAULT_WINDOW.total_seconds())

    @classmethod
    def initial(cls, now: datetime) -> CollateralState:
        """A fresh service: the development and the platform-mode FMSPC at the default TCB,
        UpToDate (the development one is published marked: :meth:`published_levels`); the QE
        UpToDate."""
        date = format_time(now.replace(hour=0, minute=0, second=0, microsecond=0))
        level = TcbLevel(tuple(DEFAULT_CPUSVN), DEFAULT_PCESVN, date, "UpToDate")
        return cls(revision=1, tcb_evaluation_data_number=1,
                   tcb_levels={EMULATED_FMSPC.hex().upper(): (level,),
                               PLATFORM_FMSPC.hex().upper(): (level,)},
                   qe_levels=(QeLevel(QE_ISVSVN, date, "UpToDate"),))

    @property
    def window(self) -> timedelta:
        """issueDate → nextUpdate of published collateral."""
        return timedelta(seconds=self.window_seconds)

    @property
    def revoked_serials(self) -> frozenset[int]:
        """Serial numbers in the PCK CRL."""
        return frozenset(r.serial for r in self.revoked)

    def levels(self, fmspc: bytes) -> tuple[TcbLevel, ...]:
        """The TCB levels of ``fmspc``, highest first; unknown FMSPC raises ProvisioningError."""
        try:
            return self.tcb_levels[fmspc.hex().upper()]
        except KeyError:
            raise ProvisioningError(f"no TCB info for FMSPC {fmspc.hex().upper()}") from None

    def published_levels(self, fmspc: str) -> tuple[TcbLevel, ...]:
        """The TCB levels of ``fmspc`` (12 hex digits) as they are published: those of a
        development platform's FMSPC with "configuration needed" added to their status and the
        advisory EK-DEV-0001 (:func:`enclavekit.vm.devmode.development_level`)."""
        levels = self.tcb_levels[fmspc.upper()]
        if not is_development(bytes.fromhex(fmspc)):
            return levels
        marked = []
        for lv in levels:
            status, ids = development_level(lv.status, lv.advisory_ids)
            marked.append(replace(lv, status=status, advisory_ids=ids))
        return tuple(marked)

    def with_recovery(self, fmspc: bytes, components: tuple[int, ...], pcesvn: int,
                      advisory: str, date: str) -> CollateralState:
        """TCB recovery: a new UpToDate level; every level it dominates becomes out of date
        and gains ``advisory``; tcbEvaluationDataNumber and revision go up by one.

        A level already published is left as it is (the state is returned unchanged).
        """
        check_advisory(advisory)
        new = TcbLevel(tuple(components), pcesvn, date, "UpToDate")
        levels = self.levels(fmspc)
        if any(lv.key == new.key for lv in levels):
            return self
        updated = [new]
        for lv in levels:
            if lv.dominated_by(new):
                ids = lv.advisory_ids if advisory in lv.advisory_ids else (*lv.advisory_ids,
                                                                           advisory)
                lv = replace(lv, status=_OUT_OF_DATE.get(lv.status, lv.status), advisory_ids=ids)
            updated.append(lv)
        updated.sort(key=lambda lv: lv.key, reverse=True)
        return replace(self, revision=self.revision + 1,
                       tcb_evaluation_data_number=self.tcb_evaluation_data_number + 1,
                       tcb_levels={**self.tcb_levels, fmspc.hex().upper(): tuple(updated)})

    def with_revoked(self, serials: list[int], vm: str, date: str) -> CollateralState:
        """Add PCK serial numbers to the PCK CRL (those already there are skipped)."""
        new = [Revocation(s, vm, date) for s in dict.fromkeys(serials)
               if s not in self.revoked_serials]
        if not new:
            return self
        return replace(self, revision=self.revision + 1, revoked=(*self.revoked, *new))

    def with_pck_serial(self, vm: str, serial: int) -> CollateralState:
        """Remember that ``vm`` held the PCK certificate ``serial`` (revocation covers them all)."""
        held = self.pck_serials.get(vm, ())
        if serial in held:
            return self
        return replace(self, pck_serials={**self.pck_serials, vm: (*held, serial)})

    def with_window(self, window: timedelta) -> CollateralState:
        """A new validity window for the next publication (at least one second)."""
        seconds = int(window.total_seconds())
        if seconds < 1:
            raise ProvisioningError(f"the validity window must be at least 1 s, found {window}")
        if seconds == self.window_seconds:
            return self
        return replace(self, revision=self.revision + 1, window_seconds=seconds)

    def with_next_crl_number(self) -> CollateralState:
        """The state after issuing one more pair of CRLs (CRL numbers only ever go up)."""
        return replace(self, crl_number=self.crl_number + 1)

    def to_json(self) -> bytes:
        """The persisted form."""
        doc = {
            "format": FORMAT, "revision": self.revision,
            "tcbEvaluationDataNumber": self.tcb_evaluation_data_number,
            "windowSeconds": self.window_seconds, "crlNumber": self.crl_number,
            "tcbLevels": {f: [lv.to_doc() for lv in levels]
                          for f, levels in self.tcb_levels.items()},
            "qeLevels": [lv.to_doc() for lv in self.qe_levels],
            "revoked": [{"serial": f"{r.serial:x}", "vm": r.vm, "date": r.date}
                        for r in self.revoked],
            "pckSerials": {vm: [f"{s:x}" for s in serials]
                           for vm, serials in self.pck_serials.items()},
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> CollateralState:
        """Parse the persisted form; a corrupt file raises ProvisioningError."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
                raise ProvisioningError(f"PCCS state: format is {found!r}, expected {FORMAT!r}")
            return cls(
                revision=int(doc["revision"]),
                tcb_evaluation_data_number=int(doc["tcbEvaluationDataNumber"]),
                tcb_levels={str(f): tuple(TcbLevel.from_doc(lv) for lv in levels)
                            for f, levels in doc["tcbLevels"].items()},
                qe_levels=tuple(QeLevel.from_doc(lv) for lv in doc["qeLevels"]),
                revoked=tuple(Revocation(int(r["serial"], 16), str(r["vm"]), str(r["date"]))
                              for r in doc["revoked"]),
                pck_serials={str(vm): tuple(int(s, 16) for s in serials)
                             for vm, serials in doc["pckSerials"].items()},
                crl_number=int(doc["crlNumber"]), window_seconds=int(doc["windowSeconds"]),
            )
        except ProvisioningError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProvisioningError(f"corrupt PCCS state file: {exc!r}") from exc


class StateStore:
    """The state file under ``<data dir>/pki/``, with the lock that serialises its writers."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "pki"
        self.path = self.dir / STATE_FILE
        remove_stale_temps(self.dir)  # the state's, the publication's and the PKI's

    def load(self, now: datetime | None = None) -> CollateralState:
        """The saved state, or the initial one (not yet saved) when there is none."""
        try:
            return CollateralState.from_json(self.path.read_bytes())
        except FileNotFoundError:
            return CollateralState.initial(now or datetime.now(UTC))

    def save(self, state: CollateralState) -> None:
        """Replace the state file atomically."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path, state.to_json(), mode=0o600)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive PCCS lock (between processes) while reading and writing."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.dir / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
