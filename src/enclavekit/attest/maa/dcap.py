"""The service's quote appraiser: enclavekit's DCAP verifier with collateral from a PCCS or file.

Trust roots: Intel's production SGX root unless others are configured (an enclavekit
emulation root is trusted only when passed explicitly). The TCB status is reported in the token
(``x-ms-sgx-tcb-status``, ``x-ms-sgx-advisory-ids``) for the attestation policy to judge, as
MAA leaves that to the policy; a ``Revoked`` TCB level is refused outright.

Collateral hashes put in ``x-ms-sgx-collateral`` (hex SHA-256, MAA's key names): ``tcbinfohash``
(the signed TCB info text), ``tcbinfocertshash`` (its issuer chain PEM), ``tcbinfocrlhash``
(the root CA CRL), ``qeidhash``, ``qeidcertshash``, ``qeidcrlhash`` (likewise for the QE
identity); enclavekit adds ``pckcrlhash`` (the PCK CA CRL). ``quotehash`` is added by the
service.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509

from ...dcap.collateral import Collateral, fetch, pck_ca_kind
from ...dcap.quote import Quote
from ...dcap.verify import Verifier
from ...errors import CollateralExpired, VerificationFailed
from .claims import Appraisal

__all__ = ["CollateralSource", "DcapAppraiser", "FileCollateral", "PccsCollateral",
           "collateral_hashes"]

CollateralSource = Callable[[Quote], Collateral]
"""The collateral for a quote's platform."""


def collateral_hashes(collateral: Collateral) -> dict[str, str]:
    """MAA's ``x-ms-sgx-collateral`` hashes of ``collateral`` (without ``quotehash``)."""
    def h(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    return {"tcbinfohash": h(collateral.tcb_info),
            "tcbinfocertshash": h(collateral.tcb_info_issuer_chain),
            "tcbinfocrlhash": h(collateral.root_ca_crl),
            "qeidhash": h(collateral.qe_identity),
            "qeidcertshash": h(collateral.qe_identity_issuer_chain),
            "qeidcrlhash": h(collateral.root_ca_crl),
            "pckcrlhash": h(collateral.pck_crl)}


class FileCollateral:
    """One collateral file (dcap-qvl's JSON layout) used for every quote."""

    def __init__(self, path: str | Path) -> None:
        self.collateral = Collateral.load(path)

    def __call__(self, quote: Quote) -> Collateral:
        return self.collateral

    def refresh(self, quote: Quote) -> Collateral | None:
        return None


class PccsCollateral:
    """Collateral fetched from a PCS v4-compatible service, cached per (FMSPC, CA) for
    ``ttl`` seconds and re-fetched early when the verifier finds it expired."""

    def __init__(self, base_url: str, *, ttl: float = 300.0, timeout: float = 10.0,
                 client: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self._client = client or httpx.Client(timeout=timeout)
        self._cache: dict[tuple[bytes, str], tuple[float, Collateral]] = {}
        self._kinds: dict[object, tuple[bytes, str]] = {}  # certification data → cache key
        self._lock = threading.Lock()

    def _fetch(self, key: tuple[bytes, str]) -> Collateral:
        collateral = fetch(self.base_url, key[0], key[1], client=self._client)
        with self._lock:
            self._cache[key] = (time.monotonic() + self.ttl, collateral)
        return collateral

    def _kind(self, quote: Quote) -> tuple[bytes, str]:
        """(FMSPC, CA) of the quote's PCK chain, remembered by the exact certification data
        bytes (parsing the PCK extension is a third of an attestation's CPU otherwise)."""
        raw = quote.certification_data
        kind = self._kinds.get(raw)
        if kind is None:
            kind = pck_ca_kind(quote)
            with self._lock:
                if len(self._kinds) >= 1024:
                    self._kinds.clear()
                self._kinds[raw] = kind
        return kind

    def __call__(self, quote: Quote) -> Collateral:
        key = self._kind(quote)
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return self._fetch(key)

    def refresh(self, quote: Quote) -> Collateral | None:
        """Fetch again (after the verifier found the cached collateral out of date)."""
        return self._fetch(self._kind(quote))


class DcapAppraiser:
    """Verify quotes with :class:`enclavekit.dcap.verify.Verifier` (cached chains).

    Args:
        collateral: a :class:`FileCollateral`, :class:`PccsCollateral` or any callable.
        trusted_roots: the roots chains may end at (default: Intel's production root).
        at: the verification time (default: now) — tests pin it for recorded collateral.
    """

    def __init__(self, collateral: CollateralSource,
                 trusted_roots: Sequence[x509.Certificate] | None = None, *,
                 at: Callable[[], datetime] | None = None) -> None:
        self.collateral = collateral
        self.verifier = Verifier(trusted_roots)
        self.at = at

    def __call__(self, quote: bytes) -> Appraisal:
        parsed = Quote.parse(quote)
        collateral = self.collateral(parsed)
        when = self.at() if self.at is not None else None
        try:
            result = self.verifier.verify(parsed, collateral, at=when)
        except CollateralExpired:
            refresh = getattr(self.collateral, "refresh", None)
            fresh = refresh(parsed) if refresh is not None else None
            if fresh is None:
                raise
            collateral = fresh
            result = self.verifier.verify(parsed, collateral, at=when)
        if result.status == "Revoked":
            raise VerificationFailed("tcb_status", "the platform's TCB level is Revoked")
        return Appraisal(quote, parsed.body, result.status, result.advisory_ids,
                         collateral_hashes(collateral))
