"""Signed collateral made from a :class:`~.state.CollateralState`, in Intel's formats.

TCB info v3 and QE identity v2 are compact JSON texts signed raw (r ‖ s, hex) over the exact
text by the TCB signing key (sgx-spec.md §6.7); the PCK CRL (by the PCK CA) and the root CA CRL
(by the root) carry a CRL Number and an Authority Key Identifier (§6.5). All four share one
window, issueDate → nextUpdate. A :class:`Publication` is never changed: when the state changes
or its window ends, :class:`Publisher` signs a new one with a new window and a higher CRL number
(``<data dir>/pki/pccs-published.json``, replaced atomically).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..._fs import atomic_write
from ...dcap import pki
from ...dcap.arch import QE_ISVPRODID
from ...dcap.ecdsa import sign_raw
from ...errors import ProvisioningError
from ...sgx.consts import AttributeFlags
from ...vm.provisioning import Provisioning
from .state import CollateralState, StateStore, TcbLevel, format_time, parse_time

__all__ = [
    "QE_ATTRIBUTES", "QE_ATTRIBUTES_MASK", "QE_MISCSELECT", "QE_MISCSELECT_MASK",
    "Publication", "Publisher", "SignedJson", "publish", "qe_identity_text",
    "tcb_info_text",
]

PUBLISHED_FILE = "pccs-published.json"
_FORMAT = "enclavekit-pccs-published/2"
_SUPERSEDED = frozenset({"enclavekit-pccs-published/1"})
"""Formats of publications signed before development platforms were marked (re-signed)."""

QE_MISCSELECT = bytes(4)
QE_MISCSELECT_MASK = b"\xff" * 4
QE_ATTRIBUTES = int(AttributeFlags.INIT | AttributeFlags.PROVISIONKEY).to_bytes(8, "little") \
    + bytes(8)
"""The QE's required ATTRIBUTES: INIT and PROVISIONKEY (Intel's ``1100…00``)."""
QE_ATTRIBUTES_MASK = (0xFFFFFFFFFFFFFFFF & ~int(AttributeFlags.MODE64BIT)).to_bytes(8, "little") \
    + bytes(8)
"""Every FLAGS bit is compared except MODE64BIT (so DEBUG must be clear); XFRM is ignored —
Intel's ``FBFFFFFFFFFFFFFF0000000000000000``."""


def _issuer_chain(leaf: x509.Certificate, root: x509.Certificate) -> str:
    """``leaf`` ‖ root as PEM text (the issuer chains PCS sends in headers)."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, root))


@dataclass(frozen=True)
class SignedJson:
    """A JSON object's exact text and the hex r ‖ s signature over those bytes."""

    text: str
    signature: str

    def body(self, name: str) -> str:
        """The PCS response body ``{"<name>":<text>,"signature":"<hex>"}``, text embedded as is."""
        return f'{{"{name}":{self.text},"signature":"{self.signature}"}}'


def _compact(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _level_doc(tcb: dict[str, Any], date: str, status: str,
               advisories: tuple[str, ...]) -> dict[str, Any]:
    doc: dict[str, Any] = {"tcb": tcb, "tcbDate": date, "tcbStatus": status}
    if advisories:
        doc["advisoryIDs"] = list(advisories)
    return doc


def tcb_info_text(levels: tuple[TcbLevel, ...], *, fmspc: str, pce_id: str, eval_number: int,
                  issue: datetime, next_update: datetime) -> str:
    """TCB info v3 for SGX as compact JSON, fields in Intel's order (sgx-spec.md §6.7)."""
    return _compact({
        "id": "SGX", "version": 3, "issueDate": format_time(issue),
        "nextUpdate": format_time(next_update), "fmspc": fmspc.upper(), "pceId": pce_id.upper(),
        "tcbType": 0, "tcbEvaluationDataNumber": eval_number,
        "tcbLevels": [_level_doc({"sgxtcbcomponents": [{"svn": c} for c in lv.components],
                                  "pcesvn": lv.pcesvn}, lv.tcb_date, lv.status, lv.advisory_ids)
                      for lv in sorted(levels, key=lambda lv: lv.key, reverse=True)],
    })


def qe_identity_text(state: CollateralState, *, mrsigner: bytes, issue: datetime,
                     next_update: datetime) -> str:
    """QE identity v2 as compact JSON, fields in Intel's order; hex in structure byte order."""
    if len(mrsigner) != 32:
        raise ProvisioningError(f"QE MRSIGNER must be 32 bytes, found {len(mrsigner)}")
    return _compact({
        "id": "QE", "version": 2, "issueDate": format_time(issue),
        "nextUpdate": format_time(next_update),
        "tcbEvaluationDataNumber": state.tcb_evaluation_data_number,
        "miscselect": QE_MISCSELECT.hex().upper(),
        "miscselectMask": QE_MISCSELECT_MASK.hex().upper(),
        "attributes": QE_ATTRIBUTES.hex().upper(),
        "attributesMask": QE_ATTRIBUTES_MASK.hex().upper(),
        "mrsigner": mrsigner.hex().upper(), "isvprodid": QE_ISVPRODID,
        "tcbLevels": [_level_doc({"isvsvn": lv.isvsvn}, lv.tcb_date, lv.status, lv.advisory_ids)
                      for lv in sorted(state.qe_levels, key=lambda lv: lv.isvsvn, reverse=True)],
    })


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def _sign(key: ec.EllipticCurvePrivateKey, text: str) -> SignedJson:
    return SignedJson(text, sign_raw(key, text.encode()).hex())


@dataclass(frozen=True)
class Publication:
    """One signed set of collateral with one validity window; never modified once made."""

    revision: int
    issue_date: datetime
    next_update: datetime
    crl_number: int
    tcb_info: dict[str, SignedJson]
    qe_identity: SignedJson
    pck_crl: bytes
    root_ca_crl: bytes
    pck_crl_issuer_chain: str
    tcb_info_issuer_chain: str

    def fresh(self, state: CollateralState, now: datetime) -> bool:
        """Whether this still says what ``state`` says and ``now`` is inside its window."""
        return self.revision == state.revision and self.issue_date <= now < self.next_update

    def tcb_info_for(self, fmspc: str) -> SignedJson:
        """The signed TCB info of ``fmspc`` (12 hex digits); unknown raises ProvisioningError."""
        try:
            return self.tcb_info[fmspc.upper()]
        except KeyError:
            raise ProvisioningError(f"no TCB info for FMSPC {fmspc.upper()}") from None

    def collateral(self, fmspc: str) -> dict[str, str]:
        """The one-object collateral layout DCAP tools exchange (dcap-qvl QuoteCollateralV3)."""
        tcb = self.tcb_info_for(fmspc)
        return {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain,
            "root_ca_crl": self.root_ca_crl.hex(),
            "pck_crl": self.pck_crl.hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
            "tcb_info": tcb.text,
            "tcb_info_signature": tcb.signature,
            "qe_identity_issuer_chain": self.tcb_info_issuer_chain,
            "qe_identity": self.qe_identity.text,
            "qe_identity_signature": self.qe_identity.signature,
        }

    def to_json(self) -> bytes:
        """The persisted form."""
        return json.dumps({
            "format": _FORMAT, "revision": self.revision,
            "issueDate": format_time(self.issue_date), "nextUpdate": format_time(self.next_update),
            "crlNumber": self.crl_number,
            "tcbInfo": {f: {"text": s.text, "signature": s.signature}
                        for f, s in self.tcb_info.items()},
            "qeIdentity": {"text": self.qe_identity.text, "signature": self.qe_identity.signature},
            "pckCrl": self.pck_crl.hex(), "rootCaCrl": self.root_ca_crl.hex(),
            "pckCrlIssuerChain": self.pck_crl_issuer_chain,
            "tcbInfoIssuerChain": self.tcb_info_issuer_chain,
        }, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Publication:
        """Parse the persisted form; a corrupt file raises ProvisioningError."""
        try:
            doc = json.loads(data)
            if doc.get("format") != _FORMAT:
                raise ProvisioningError(f"published collateral: format is {doc.get('format')!r}, "
                                        f"expected {_FORMAT!r}")
            return cls(
                revision=int(doc["revision"]), issue_date=parse_time(doc["issueDate"]),
                next_update=parse_time(doc["nextUpdate"]), crl_number=int(doc["crlNumber"]),
                tcb_info={str(f): SignedJson(str(s["text"]), str(s["signature"]))
                          for f, s in doc["tcbInfo"].items()},
                qe_identity=SignedJson(str(doc["qeIdentity"]["text"]),
                                       str(doc["qeIdentity"]["signature"])),
                pck_crl=bytes.fromhex(doc["pckCrl"]), root_ca_crl=bytes.fromhex(doc["rootCaCrl"]),
                pck_crl_issuer_chain=str(doc["pckCrlIssuerChain"]),
                tcb_info_issuer_chain=str(doc["tcbInfoIssuerChain"]),
            )
        except ProvisioningError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProvisioningError(f"corrupt published-collateral file: {exc!r}") from exc


def publish(state: CollateralState, authority: Provisioning, now: datetime) -> Publication:
    """Sign every artefact of ``state`` with the window [now, now + state.window), with the
    keys of ``authority`` (the emulated provisioning PKI; its architectural signer is the
    QE's MRSIGNER the identity vouches for).

    ``state.crl_number`` is the CRL Number both CRLs carry (the caller raises it first).
    """
    issue = now.astimezone(UTC).replace(microsecond=0)
    until = issue + state.window
    pce_id = "0000"
    tcb_info = {
        fmspc: _sign(authority.tcb_signing_key, tcb_info_text(
            state.published_levels(fmspc), fmspc=fmspc, pce_id=pce_id,
            eval_number=state.tcb_evaluation_data_number, issue=issue, next_update=until))
        for fmspc in state.tcb_levels
    }
    qe = _sign(authority.tcb_signing_key, qe_identity_text(
        state, mrsigner=authority.arch_signer().mrsigner(), issue=issue, next_update=until))
    revoked = [(r.serial, parse_time(r.date)) for r in state.revoked]
    pck_crl = _der(pki.make_crl(authority.pck_ca_certificate, authority.pck_ca_key, revoked,
                                this_update=issue, next_update=until, number=state.crl_number))
    root_crl = _der(pki.make_crl(authority.root_certificate, authority.root_key, [],
                                 this_update=issue, next_update=until, number=state.crl_number))
    return Publication(
        revision=state.revision, issue_date=issue, next_update=until,
        crl_number=state.crl_number, tcb_info=tcb_info, qe_identity=qe, pck_crl=pck_crl,
        root_ca_crl=root_crl,
        pck_crl_issuer_chain=_issuer_chain(authority.pck_ca_certificate,
                                           authority.root_certificate),
        tcb_info_issuer_chain=_issuer_chain(authority.tcb_signing_certificate,
                                            authority.root_certificate))


def _superseded(data: bytes) -> bool:
    """Whether a published file has a format from before the current one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("format") in _SUPERSEDED


Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Publisher:
    """The current publication of one data directory: re-signed when the state changed or the
    window ended, otherwise served as it was signed (shared by the service and the operator).

    ``authority`` may be a callable so the PKI is opened only when something must be signed.
    """

    def __init__(self, data_dir: Path, authority: Provisioning | Callable[[], Provisioning],
                 clock: Clock = _utcnow) -> None:
        self.store = StateStore(Path(data_dir))
        self.path = self.store.dir / PUBLISHED_FILE
        self._authority = authority
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, ...], Publication] | None = None

    @classmethod
    def open(cls, data_dir: Path, clock: Clock = _utcnow) -> Publisher:
        """The publisher of ``data_dir``, signing with its provisioning PKI."""
        return cls(Path(data_dir), lambda: Provisioning.open(Path(data_dir)), clock)

    @property
    def authority(self) -> Provisioning:
        """The signing keys (opened on first use when given as a callable)."""
        if callable(self._authority):
            self._authority = self._authority()
        return self._authority

    def now(self) -> datetime:
        """The service's clock."""
        return self._clock()

    def _stamp(self) -> tuple[int, ...]:
        stamp: list[int] = []
        for path in (self.store.path, self.path):
            try:
                st = path.stat()
                stamp += [st.st_ino, st.st_mtime_ns, st.st_size]
            except FileNotFoundError:
                stamp += [0, 0, 0]
        return tuple(stamp)

    def _load(self) -> Publication | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if _superseded(data):
            return None  # signed without the development mark: sign a new one
        return Publication.from_json(data)

    def current(self) -> Publication:
        """The publication in force now, signing a new one first if the old one is stale."""
        now = self._clock()
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] == self._stamp() and \
                    cached[1].issue_date <= now < cached[1].next_update:
                return cached[1]
            self.authority  # noqa: B018 -- the PKI is created before pki/ gets our files
            with self.store.locked():
                state = self.store.load(now)
                pub = self._load()
                if pub is None or not pub.fresh(state, now):
                    pub = self._republish(state, now)
                self._cached = (self._stamp(), pub)
                return pub

    def update(self, change: Callable[[CollateralState], CollateralState]) -> CollateralState:
        """Apply an operator ``change`` to the saved state and re-publish if it altered anything
        published. Returns the new state."""
        now = self._clock()
        self.authority  # noqa: B018 -- the PKI is created before pki/ gets our files
        with self._lock, self.store.locked():
            old = self.store.load(now)
            new = change(old)
            if new != old:
                self.store.save(new)
            pub = self._load()
            if pub is None or not pub.fresh(new, now):
                self._republish(new, now)
            self._cached = None
            return self.store.load(now)

    def _republish(self, state: CollateralState, now: datetime) -> Publication:
        state = state.with_next_crl_number()
        self.store.save(state)
        pub = publish(state, self.authority, now)
        atomic_write(self.path, pub.to_json(), mode=0o644)
        return pub
