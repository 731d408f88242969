"""DCAP quote verification for SGX quotes, in Intel QVL's order (sgx-spec.md §6.8 A–D).

A. PCK chain: three certificates (PCK, PCK CA, root), each ecdsa-with-SHA256 signature over the
   raw TBS bytes (the unsigned envelope must be canonical), the root byte-identical to
   a trusted root (default: Intel's production root only), the root CA CRL and the PCK CRL
   (issuer, signature, CRL number, AKI, freshness) and revocation of the CA and the PCK.
B. TCB info: its issuer chain (TCB signing cert + the same root), revocation of the signing
   cert, the signature over the exact signed bytes, the validity window.
C. QE identity: the same.
D. The quote: SGX TEE type and Intel's QE vendor id, TCB info bound to the PCK (FMSPC, PCE-ID),
   type 1-3 certification data bound to the PCK, the QE report signature by the PCK, the QE
   report data binding the attestation key, the QE report against the QE identity, the quote
   signature, the platform TCB level and its merge with the QE's TCB status.

Every failure raises :class:`VerificationFailed` (or :class:`CertificateChainError`,
:class:`CollateralExpired`) whose ``check`` is a stable name, listed in :data:`CHECKS`. There is
no "OK with warnings": a TCB status is a verdict in the result; an appraisal policy
(:mod:`enclavekit.dcap.policy`) decides which statuses a relying party accepts.

Time windows: TCB info and QE identity are valid for issueDate ≤ at < nextUpdate; certificates
for notBefore ≤ at ≤ notAfter; CRLs for thisUpdate ≤ at ≤ nextUpdate (+ ``crl_grace``, zero by
default: a stale CRL is refused unless the caller explicitly allows a grace period).
"""

from __future__ import annotations

import functools
import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from ..errors import (
    CertificateChainError,
    CollateralExpired,
    CollateralFormatError,
    EnclaveKitError,
    QuoteFormatError,
    VerificationFailed,
)
from ..sgx.consts import AttributeFlags
from ..sgx.structs import Attributes, ReportBody
from .certdata import CERT_TYPE_PCK_LEAF, CERT_TYPE_PPID_CLEARTEXT
from .collateral import Collateral, pem_chain, qe_identities, tcb_infos
from .crl import Crl, load_crl
from .ecdsa import public_key_from_raw, verify_raw, verify_sha256
from .memo import ContentCache
from .pckext import SGX_TYPES, PckExtension
from .quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_TYPE_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    Quote,
)
from .roots import intel_sgx_root_ca, load_pem_chain
from .tcbinfo import QeIdentity, TcbInfo, converge_qe_status

__all__ = ["CHECKS", "VerificationResult", "Verifier", "check_pck_chain_source", "parse_quote",
           "verify_quote"]

CHECKS = {
    "unsupported_quote": "not an SGX ECDSA-P256 quote from Intel's QE, or no PCK chain",
    "pck_chain": "PCK chain structure, names, CA flags or a signature",
    "root_untrusted": "a chain ends at a root that is not byte-identical to a trusted root",
    "crl": "a CRL's issuer, signature or required extensions",
    "crl_expired": "a CRL outside thisUpdate..nextUpdate (+ grace)",
    "pck_revoked": "the PCK certificate or its CA is listed in a CRL",
    "pck_cert_expired": "a PCK-chain certificate outside its validity",
    "pck_extension": "the PCK certificate's SGX extension does not parse",
    "tcb_info_chain": "TCB info issuer chain structure or signature",
    "tcb_info_signature": "TCB info signature over its exact bytes",
    "tcb_info_expired": "TCB info outside issueDate..nextUpdate",
    "tcb_signing_revoked": "the TCB signing certificate is listed in the root CA CRL",
    "tcb_signing_expired": "the TCB signing certificate outside its validity",
    "qe_identity_chain": "QE identity issuer chain structure or signature",
    "qe_identity_signature": "QE identity signature over its exact bytes",
    "qe_identity_expired": "QE identity outside issueDate..nextUpdate",
    "tcb_info_mismatch": "TCB info is not SGX TCB info of version 2 or 3",
    "fmspc_mismatch": "TCB info FMSPC differs from the PCK certificate's",
    "pceid_mismatch": "TCB info PCE-ID differs from (or lacks) the PCK certificate's",
    "certification_data": "type 1-4 certification data disagrees with the PCK certificate",
    "qe_report_signature": "the QE report is not signed by the PCK key",
    "qe_report_data": "QE REPORTDATA is not SHA-256(attestation key || auth data) || 0^32",
    "qe_identity_mismatch": "the QE report does not match the QE identity",
    "qe_tcb_not_supported": "the QE's ISVSVN is below every QE identity level",
    "quote_signature": "the quote is not signed by the attestation key",
    "tcb_not_supported": "the PCK's TCB matches no TCB info level",
}
"""Every check name :class:`VerificationFailed` may carry, with what it covers."""


@dataclass(frozen=True)
class VerificationResult:
    """A verified quote: the verdict (TCB status) and every identity field of the enclave."""

    status: str
    advisory_ids: tuple[str, ...]
    platform_status: str
    qe_status: str
    qe_advisory_ids: tuple[str, ...]
    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    attributes: Attributes
    miscselect: int
    report_data: bytes
    cpusvn: bytes
    fmspc: bytes
    pceid: bytes
    tcb_components: tuple[int, ...]
    pcesvn: int
    sgx_type: int
    tcb_date: datetime | None
    tcb_evaluation_data_number: int | None
    pck_serial: int
    verified_at: datetime
    collateral_next_update: datetime
    quote: Quote

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG: the enclave's memory is readable by a debugger."""
        return bool(self.attributes.flags & AttributeFlags.DEBUG)

    @property
    def mode64bit(self) -> bool:
        return bool(self.attributes.flags & AttributeFlags.MODE64BIT)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (bytes as lowercase hex, dates ISO-8601 UTC)."""
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "status": self.status,
            "advisory_ids": list(self.advisory_ids),
            "platform_status": self.platform_status,
            "qe_status": self.qe_status,
            "qe_advisory_ids": list(self.qe_advisory_ids),
            "mrenclave": self.mrenclave.hex(),
            "mrsigner": self.mrsigner.hex(),
            "isvprodid": self.isvprodid,
            "isvsvn": self.isvsvn,
            "attributes": self.attributes.to_bytes().hex(),
            "debug": self.debug,
            "mode64bit": self.mode64bit,
            "miscselect": self.miscselect,
            "report_data": self.report_data.hex(),
            "cpusvn": self.cpusvn.hex(),
            "fmspc": self.fmspc.hex(),
            "pceid": self.pceid.hex(),
            "tcb_components": list(self.tcb_components),
            "pcesvn": self.pcesvn,
            "sgx_type": SGX_TYPES.get(self.sgx_type, str(self.sgx_type)),
            "tcb_date": iso(self.tcb_date),
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
            "pck_serial": format(self.pck_serial, "x"),
            "quote_version": self.quote.version,
            "verified_at": iso(self.verified_at),
            "collateral_next_update": iso(self.collateral_next_update),
        }


# --- helpers ---------------------------------------------------------------------------------


def _cn(name: x509.Name) -> str:
    try:
        attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except ValueError:  # a malformed name is no name: the CN check then refuses it
        return ""
    return str(attrs[0].value) if attrs else ""


_T = TypeVar("_T")


def _per_object(fn: Callable[[x509.Certificate], _T]) -> Callable[[x509.Certificate], _T]:
    """Memoize a pure function of a certificate by object identity.

    Hashing a pyca certificate hashes its DER (and equality compares it), which costs more than
    some of the values memoized here. An entry holds a strong reference to its certificate, so
    the id cannot be reused while the entry exists; the table is simply cleared when full.
    """
    table: dict[int, tuple[x509.Certificate, _T]] = {}

    def memo(cert: x509.Certificate) -> _T:
        hit = table.get(id(cert))
        if hit is not None and hit[0] is cert:
            return hit[1]
        value = fn(cert)
        if len(table) >= 256:
            table.clear()
        table[id(cert)] = (cert, value)
        return value

    return memo


@_per_object
def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@_per_object
def _names(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(issuer, subject) as DER, compared byte for byte as QVL does."""
    return cert.issuer.public_bytes(), cert.subject.public_bytes()


@functools.lru_cache(maxsize=64)
def _check_self_signed(root: x509.Certificate) -> None:
    """A trust anchor must be a self-signed CA (checked once per root, not per quote)."""
    try:
        root.verify_directly_issued_by(root)
        if not _is_ca(root):
            raise ValueError("not a CA")
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise CollateralFormatError(
            f"trusted root {_cn(root.subject)!r} is not a self-signed CA certificate") from exc


@_per_object
def _signed_parts(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(tbsCertificate, signature) of an ecdsa-with-SHA256 certificate, as raw bytes."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise ValueError(f"signature algorithm {cert.signature_algorithm_oid.dotted_string} "
                         "is not ecdsa-with-SHA256")
    return cert.tbs_certificate_bytes, cert.signature


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate, check: str, what: str) -> None:
    if _names(cert)[0] != _names(issuer)[1]:
        raise CertificateChainError(check, f"{what}: issuer {cert.issuer.rfc4514_string()!r} "
                                           f"is not {issuer.subject.rfc4514_string()!r}")
    key = issuer.public_key()
    try:
        tbs, signature = _signed_parts(cert)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TypeError("issuer key is not an EC key")
        verify_sha256(key, signature, tbs)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise CertificateChainError(check, f"{what}: signature does not verify") from exc


@_per_object
def _subject_cn(cert: x509.Certificate) -> str:
    return _cn(cert.subject)


@_per_object
def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False
    return bc.ca


@_per_object
def _validity(cert: x509.Certificate) -> tuple[datetime, datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _cert_time(cert: x509.Certificate, at: datetime, check: str, what: str) -> None:
    not_before, not_after = _validity(cert)
    if at < not_before:
        raise CollateralExpired(check, f"{what} is not valid before "
                                       f"{not_before:%Y-%m-%dT%H:%M:%SZ}")
    if at > not_after:
        raise CollateralExpired(check, f"{what} expired at {not_after:%Y-%m-%dT%H:%M:%SZ}")


def _crl_issuer(crl: Crl, issuer: x509.Certificate, what: str) -> None:
    if crl.issuer != _names(issuer)[1]:
        raise VerificationFailed("crl", f"{what} is issued by "
                                        f"{crl.crl.issuer.rfc4514_string()!r}, not "
                                        f"{issuer.subject.rfc4514_string()!r}")
    key = issuer.public_key()
    valid = False
    if crl.ecdsa_sha256 and isinstance(key, ec.EllipticCurvePublicKey):
        try:
            verify_sha256(key, crl.signature, crl.tbs)
            valid = True
        except (InvalidSignature, ValueError, TypeError):
            valid = False
    if not valid:
        raise VerificationFailed("crl", f"{what} signature does not verify with its issuer")
    if crl.missing_extension is not None:
        raise VerificationFailed("crl", f"{what} lacks the {crl.missing_extension} extension")


def _crl_time(crl: Crl, at: datetime, grace: timedelta, what: str) -> None:
    nxt = crl.next_update
    if nxt is None:
        raise VerificationFailed("crl", f"{what} has no nextUpdate")
    if at < crl.this_update:
        raise CollateralExpired("crl_expired", f"{what} is not valid before "
                                               f"{crl.this_update:%Y-%m-%dT%H:%M:%SZ}")
    if at > nxt + grace:
        raise CollateralExpired("crl_expired", f"{what} expired at {nxt:%Y-%m-%dT%H:%M:%SZ}")


def _window(issue: datetime, nxt: datetime, at: datetime, check: str, what: str) -> None:
    if at < issue:
        raise CollateralExpired(check, f"{what} is not valid before {issue:%Y-%m-%dT%H:%M:%SZ}")
    if at >= nxt:
        raise CollateralExpired(check, f"{what} expired at {nxt:%Y-%m-%dT%H:%M:%SZ}")


class _malformed:
    """pyca parses certificate and CRL fields lazily: a malformed field surfaces as ValueError
    on first access. Inside a check, that is a failure of the check, never a crash.

    A class rather than a generator, one stateless instance per check (module constants): it
    runs five times per verification."""

    __slots__ = ("check",)

    def __init__(self, check: str) -> None:
        self.check = check

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or isinstance(exc, EnclaveKitError):
            return
        if isinstance(exc, (ValueError, TypeError, x509.DuplicateExtension, x509.InvalidVersion)):
            raise VerificationFailed(self.check, f"malformed certificate or CRL: {exc}") from exc


_GUARD_PCK_CHAIN = _malformed("pck_chain")
_GUARD_TCB_INFO_CHAIN = _malformed("tcb_info_chain")
_GUARD_QE_IDENTITY_CHAIN = _malformed("qe_identity_chain")


def _when(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# --- parsed and checked pieces ---------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    tcb_info: TcbInfo
    qe_identity: QeIdentity
    root_crl: Crl
    pck_crl: Crl
    tcb_chain: tuple[x509.Certificate, ...]
    qe_chain: tuple[x509.Certificate, ...]


def _parse_collateral(collateral: Collateral) -> _Parsed:
    """Every collateral piece the verifier reads, parsed (kept per distinct content)."""
    return _COLLATERALS((
        collateral.root_ca_crl, collateral.pck_crl, collateral.tcb_info_issuer_chain,
        collateral.qe_identity_issuer_chain, collateral.tcb_info, collateral.tcb_info_signature,
        collateral.qe_identity, collateral.qe_identity_signature))


def _parse_pieces(key: tuple[bytes, ...]) -> _Parsed:
    root_crl, pck_crl, tcb_chain, qe_chain, tcb_info, tcb_sig, qe_identity, qe_sig = key
    return _Parsed(
        tcb_info=tcb_infos((tcb_info, tcb_sig)),
        qe_identity=qe_identities((qe_identity, qe_sig)),
        root_crl=load_crl(root_crl, "root CA CRL"),
        pck_crl=load_crl(pck_crl, "PCK CRL"),
        tcb_chain=pem_chain(tcb_chain, "tcb_info_issuer_chain"),
        qe_chain=pem_chain(qe_chain, "qe_identity_issuer_chain"),
    )


# The pieces of one collateral as the verifier reads them, one entry per distinct content (each
# piece is also kept on its own, so collateral sharing a piece with another parses it once).
_COLLATERALS: ContentCache[_Parsed] = ContentCache(_parse_pieces, entries=32)


@dataclass(frozen=True)
class _Certs:
    """A PCK chain as parsed (not yet checked) and its leaf's SGX extension (or why not)."""

    certs: tuple[x509.Certificate, ...]
    ext: PckExtension | CollateralFormatError


def _parse_chain(certs: Sequence[x509.Certificate]) -> _Certs:
    try:
        ext: PckExtension | CollateralFormatError = PckExtension.from_certificate(certs[0])
    except CollateralFormatError as exc:
        ext = exc
    except ValueError as exc:  # pyca's lazy parse of a malformed extension block
        ext = CollateralFormatError(f"PCK certificate extensions do not parse: {exc}")
    return _Certs(tuple(certs), ext)


def _quote_chain(data: bytes) -> _Certs:
    return _parse_chain(CertificationData(CERT_TYPE_PCK_CHAIN, data).pck_chain())


def _collateral_chain(pem: bytes) -> _Certs:
    return _parse_chain(load_pem_chain(pem, "pck_certificate_chain"))


def _leaf_chain(key: tuple[bytes, ...]) -> _Certs:
    """A type-4 quote's chain: its PCK leaf before the collateral's CA and root (or the
    collateral's whole chain, which the leaf must then match)."""
    pem, leaf = key
    chain = load_pem_chain(pem, "pck_certificate_chain")
    if len(chain) == 2:  # the CA and root given
        chain = [CertificationData(CERT_TYPE_PCK_LEAF, leaf).pck_leaf(), *chain]
    return _parse_chain(chain)


# A platform's PCK chain is the same in every quote it makes: parsed once per distinct bytes.
# The quote's type-5 chain is held to a stricter encoding than a collateral-supplied one.
_QUOTE_CHAINS: ContentCache[_Certs] = ContentCache(_quote_chain, entries=256)
_COLLATERAL_CHAINS: ContentCache[_Certs] = ContentCache(_collateral_chain, entries=64)
_LEAF_CHAINS: ContentCache[_Certs] = ContentCache(_leaf_chain, entries=64)


def _chain_certs(q: Quote, collateral: Collateral, chain_pem: bytes) -> _Certs:
    """The PCK chain of ``q`` as parsed: from its type-5 data, or (types 1-4) the collateral's."""
    data = q.certification_data
    if data.type == CERT_TYPE_PCK_CHAIN:
        return _QUOTE_CHAINS(chain_pem)
    if data.type == CERT_TYPE_PCK_LEAF:
        assert collateral.pck_certificate_chain is not None  # _chain_pem checked it
        return _LEAF_CHAINS((collateral.pck_certificate_chain, data.data))
    return _COLLATERAL_CHAINS(chain_pem)


@dataclass(frozen=True)
class _Chain:
    leaf: x509.Certificate
    ca: x509.Certificate
    root: x509.Certificate
    key: ec.EllipticCurvePublicKey
    ext: PckExtension


class Verifier:
    """Verifies SGX quotes against collateral, caching what it has validated.

    Signatures and chains of a given collateral (keyed by its content and the chain's root) and
    of a given PCK chain are checked once; time windows are checked on every call, and an entry
    whose window no longer holds is dropped. Parsing is kept per distinct content by the module
    caches (:mod:`.memo`) whatever the settings; they hold parses, never a check's outcome.

    Args:
        trusted_roots: roots a chain may end at (exact certificates). Default: Intel's
            production SGX Root CA only. Emulation roots must be passed explicitly.
        crl_grace: how long past nextUpdate a CRL is still accepted (default: not at all).
        cache_size: entries per validation cache; 0 checks everything on every call.
        cache_validation: keep validated chains and collateral (default). False re-checks every
            signature, chain, CRL and window on every call.
    """

    def __init__(self, trusted_roots: Sequence[x509.Certificate] | None = None, *,
                 crl_grace: timedelta = timedelta(0), cache_size: int = 64,
                 cache_validation: bool = True) -> None:
        roots = list(trusted_roots) if trusted_roots is not None else [intel_sgx_root_ca()]
        if not roots:
            raise CollateralFormatError("at least one trusted root is required")
        for root in roots:
            _check_self_signed(root)
        self._roots = {_der(r): r for r in roots}
        self._grace = crl_grace
        self._size = cache_size
        self._keep = cache_validation and cache_size > 0
        # Keys are contents: a Collateral (frozen, hashed and compared by every field's bytes),
        # the PCK chain's bytes and the root's DER.
        self._chains: OrderedDict[tuple[Collateral | None, tuple[bool, bytes]], _Chain] = \
            OrderedDict()
        self._validated: OrderedDict[tuple[Collateral | None, bytes], bool] = OrderedDict()
        self._lock = threading.Lock()

    # --- public ---------------------------------------------------------------------------

    def verify(self, quote: bytes | Quote, collateral: Collateral, *,
               at: datetime | None = None) -> VerificationResult:
        """Verify ``quote`` with ``collateral`` at time ``at`` (default: now).

        Returns:
            The verdict and identity; ``status`` may be any TCB status (apply a policy).

        Raises:
            QuoteFormatError, CollateralFormatError: input that does not parse.
            VerificationFailed: a named check failed (``.check``; see :data:`CHECKS`).
        """
        when = _when(at)
        q = quote if isinstance(quote, Quote) else parse_quote(quote)
        self._check_header(q)
        chain_pem = self._chain_pem(q, collateral)
        ckey = collateral if self._keep else None
        parsed = _parse_collateral(collateral)
        # the quote's chain is held to a stricter encoding than a collateral-supplied one
        in_quote = q.certification_data.type == CERT_TYPE_PCK_CHAIN
        pkey = (in_quote, chain_pem)
        chain = self._chains.get((ckey, pkey)) if self._keep else None
        if chain is None:
            certs = _chain_certs(q, collateral, chain_pem)
            with _GUARD_PCK_CHAIN:
                chain = self._check_chain(certs, parsed)  # A: signatures
            if self._keep:
                self._store(self._chains, (ckey, pkey), chain)
        vkey = (ckey, _der(chain.root))
        validated = self._keep and vkey in self._validated
        try:
            with _GUARD_PCK_CHAIN:
                self._chain_times(chain, parsed, when)  # A: time
            if not validated:
                with _GUARD_TCB_INFO_CHAIN:
                    self._check_signed(parsed, chain.root, "tcb_info")  # B
                with _GUARD_QE_IDENTITY_CHAIN:  # C (one signer cert: checked once)
                    tcb_signer, qe_signer = parsed.tcb_chain[0], parsed.qe_chain[0]
                    self._check_signed(parsed, chain.root, "qe_identity",
                                       signer_checked=qe_signer is tcb_signer
                                       or qe_signer == tcb_signer)
            with _GUARD_TCB_INFO_CHAIN:
                self._signed_times(parsed, when)
        except VerificationFailed:
            self._chains.pop((ckey, pkey), None)
            self._validated.pop(vkey, None)
            raise
        if not validated and self._keep:
            self._store(self._validated, vkey, True)
        return self._check_quote(q, chain, parsed, when, _signed_region(quote, q))  # D

    # --- caches ---------------------------------------------------------------------------

    def _store(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        if not self._keep:
            return
        with self._lock:  # one verifier may serve several threads (a service's pool)
            cache[key] = value
            cache.move_to_end(key)
            while len(cache) > self._size:
                cache.popitem(last=False)

    # --- D.1 and the PCK chain's source ---------------------------------------------------

    @staticmethod
    def _check_header(q: Quote) -> None:
        _check_types(q.header.att_key_type, q.header.tee_type)
        if q.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
            raise VerificationFailed(
                "unsupported_quote",
                f"QE vendor id {q.header.qe_vendor_id.hex()} is not Intel's")

    @staticmethod
    def _chain_pem(q: Quote, collateral: Collateral) -> bytes:
        """The bytes the PCK chain is read from (also its cache key).

        Types 1-4 carry no chain (type 4 the leaf only): the collateral must hold it.
        """
        data = q.certification_data
        if data.type == CERT_TYPE_PCK_CHAIN:
            return data.data
        check_pck_chain_source(q, collateral.pck_certificate_chain)
        assert collateral.pck_certificate_chain is not None
        if data.type == CERT_TYPE_PCK_LEAF:
            return collateral.pck_certificate_chain + b"\0" + data.data
        return collateral.pck_certificate_chain

    # --- A: PCK chain ---------------------------------------------------------------------

    def _pin(self, root: x509.Certificate, what: str) -> None:
        if _der(root) not in self._roots:
            digest = hashlib.sha256(_der(root)).hexdigest()
            raise CertificateChainError(
                "root_untrusted",
                f"{what} ends at {_cn(root.subject)!r} (sha256 {digest[:16]}...), "
                "which is not a trusted root")

    def _check_chain(self, parsed_chain: _Certs, parsed: _Parsed) -> _Chain:
        certs = parsed_chain.certs
        if len(certs) != 3:
            raise CertificateChainError(
                "pck_chain", f"PCK chain has {len(certs)} certificates, expected 3 "
                             "(PCK certificate, PCK CA, root CA)")
        leaf, ca, root = certs
        for cert, needle, what in ((leaf, "SGX PCK Certificate", "PCK certificate"),
                                   (ca, "CA", "PCK CA"), (root, "SGX Root CA", "root CA")):
            if needle not in _subject_cn(cert):
                raise CertificateChainError(
                    "pck_chain", f"{what} CN {_subject_cn(cert)!r} does not contain {needle!r}")
        self._pin(root, "PCK chain")
        _issued_by(ca, root, "pck_chain", "PCK CA")
        _issued_by(leaf, ca, "pck_chain", "PCK certificate")
        if not _is_ca(ca):
            raise CertificateChainError("pck_chain", "PCK CA is not marked CA:TRUE")
        if _is_ca(leaf):
            raise CertificateChainError("pck_chain", "PCK certificate is marked CA:TRUE")
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, ec.SECP256R1):
            raise CertificateChainError("pck_chain", "PCK certificate key is not EC P-256")
        _crl_issuer(parsed.root_crl, root, "root CA CRL")
        _crl_issuer(parsed.pck_crl, ca, "PCK CRL")
        if parsed.pck_crl.issuer != _names(leaf)[0]:
            raise VerificationFailed("crl", "PCK CRL issuer differs from the PCK's issuer")
        if parsed.root_crl.revokes(ca.serial_number):
            raise CertificateChainError(
                "pck_revoked", f"PCK CA serial {ca.serial_number:x} is revoked by the root CA")
        if parsed.pck_crl.revokes(leaf.serial_number):
            raise CertificateChainError(
                "pck_revoked", f"PCK certificate serial {leaf.serial_number:x} is revoked")
        if isinstance(parsed_chain.ext, CollateralFormatError):
            raise VerificationFailed("pck_extension", str(parsed_chain.ext))
        return _Chain(leaf=leaf, ca=ca, root=root, key=key, ext=parsed_chain.ext)

    def _chain_times(self, chain: _Chain, parsed: _Parsed, at: datetime) -> None:
        for cert, what in ((chain.root, "root CA"), (chain.ca, "PCK CA"),
                           (chain.leaf, "PCK certificate")):
            _cert_time(cert, at, "pck_cert_expired", what)
        _crl_time(parsed.root_crl, at, self._grace, "root CA CRL")
        _crl_time(parsed.pck_crl, at, self._grace, "PCK CRL")

    # --- B and C: TCB info and QE identity ------------------------------------------------

    def _check_signed(self, parsed: _Parsed, root: x509.Certificate, kind: str, *,
                      signer_checked: bool = False) -> None:
        certs = parsed.tcb_chain if kind == "tcb_info" else parsed.qe_chain
        check = f"{kind}_chain"
        what = "TCB info" if kind == "tcb_info" else "QE identity"
        if len(certs) != 2:
            raise CertificateChainError(
                check, f"{what} issuer chain has {len(certs)} certificates, expected 2 "
                       "(TCB signing, root CA)")
        signer, chain_root = certs
        if "SGX TCB Signing" not in _subject_cn(signer):
            raise CertificateChainError(
                check, f"{what} signer CN {_cn(signer.subject)!r} lacks 'SGX TCB Signing'")
        self._pin(chain_root, f"{what} issuer chain")
        if _der(chain_root) != _der(root):
            raise CertificateChainError(check, f"{what} is issued under another root than "
                                               "the PCK chain")
        if not signer_checked:
            _issued_by(signer, root, check, f"{what} signing certificate")
        if _is_ca(signer):
            raise CertificateChainError(check, f"{what} signing certificate is marked CA:TRUE")
        if parsed.root_crl.revokes(signer.serial_number):
            raise CertificateChainError("tcb_signing_revoked",
                                        f"{what} signing certificate is revoked by the root CA")
        key = signer.public_key()
        obj: TcbInfo | QeIdentity = parsed.tcb_info if kind == "tcb_info" else parsed.qe_identity
        if not isinstance(key, ec.EllipticCurvePublicKey) or not verify_raw(
                key, obj.signature, obj.raw):
            raise VerificationFailed(f"{kind}_signature",
                                     f"{what} signature does not verify over its exact bytes")

    @staticmethod
    def _signed_times(parsed: _Parsed, at: datetime) -> None:
        _cert_time(parsed.tcb_chain[0], at, "tcb_signing_expired", "TCB info signing certificate")
        _window(parsed.tcb_info.issue_date, parsed.tcb_info.next_update, at,
                "tcb_info_expired", "TCB info")
        _cert_time(parsed.qe_chain[0], at, "tcb_signing_expired",
                   "QE identity signing certificate")
        _window(parsed.qe_identity.issue_date, parsed.qe_identity.next_update, at,
                "qe_identity_expired", "QE identity")

    # --- D: the quote ---------------------------------------------------------------------

    @staticmethod
    def _check_quote(q: Quote, chain: _Chain, parsed: _Parsed, at: datetime,
                     signed: bytes) -> VerificationResult:
        ext, tcb, qe_id = chain.ext, parsed.tcb_info, parsed.qe_identity
        if tcb.id != "SGX" or tcb.version not in (2, 3):
            raise VerificationFailed("tcb_info_mismatch",
                                     f"TCB info is {tcb.id} v{tcb.version}, need SGX v2 or v3")
        if tcb.fmspc != ext.fmspc:
            raise VerificationFailed("fmspc_mismatch", f"TCB info is for FMSPC {tcb.fmspc.hex()}, "
                                                       f"the PCK certifies {ext.fmspc.hex()}")
        if tcb.pce_id != ext.pceid:
            found = "none" if tcb.pce_id is None else tcb.pce_id.hex()
            raise VerificationFailed("pceid_mismatch", f"TCB info PCE-ID {found}, the PCK "
                                                       f"certifies {ext.pceid.hex()}")
        _check_certification_data(q, ext, chain.leaf)
        if not verify_raw(chain.key, q.qe_report_signature, q.qe_report):
            raise VerificationFailed("qe_report_signature",
                                     "QE report signature does not verify with the PCK key")
        rep = q.qe_report  # the QE's REPORTBODY, read in place (offsets from sgx.structs)
        reportdata = rep[_QE_AT["reportdata"] : _QE_AT["reportdata"] + 64]
        binding = hashlib.sha256(q.attestation_key + q.qe_auth_data).digest()
        if reportdata[:32] != binding or any(reportdata[32:]):
            raise VerificationFailed(
                "qe_report_data", "QE REPORTDATA is not SHA-256(attestation key || QE auth "
                                  "data) followed by 32 zero bytes")
        if qe_id.id != "QE":
            raise VerificationFailed("qe_identity_mismatch",
                                     f"QE identity id is {qe_id.id!r}, an SGX quote needs 'QE'")
        misc = rep[_QE_AT["miscselect"] : _QE_AT["miscselect"] + 4]
        if not _masked_equal(misc, qe_id.miscselect_mask, qe_id.miscselect):
            raise VerificationFailed("qe_identity_mismatch",
                                     "QE MISCSELECT does not match the QE identity")
        attrs = rep[_QE_AT["attributes"] : _QE_AT["attributes"] + 16]
        if not _masked_equal(attrs, qe_id.attributes_mask, qe_id.attributes):
            raise VerificationFailed("qe_identity_mismatch",
                                     f"QE ATTRIBUTES {attrs.hex()} do not match the QE identity")
        mrsigner = rep[_QE_AT["mrsigner"] : _QE_AT["mrsigner"] + 32]
        if mrsigner != qe_id.mrsigner:
            raise VerificationFailed("qe_identity_mismatch",
                                     f"QE MRSIGNER {mrsigner.hex()} is not the QE identity's")
        isvprodid = int.from_bytes(rep[_QE_AT["isvprodid"] : _QE_AT["isvprodid"] + 2], "little")
        if isvprodid != qe_id.isvprodid:
            raise VerificationFailed("qe_identity_mismatch",
                                     f"QE ISVPRODID {isvprodid} is not {qe_id.isvprodid}")
        isvsvn = int.from_bytes(rep[_QE_AT["isvsvn"] : _QE_AT["isvsvn"] + 2], "little")
        qe_level = qe_id.match(isvsvn)
        if qe_level is None:
            raise VerificationFailed("qe_tcb_not_supported",
                                     f"QE ISVSVN {isvsvn} is below every QE identity level")
        try:
            attestation_key = _ATTESTATION_KEYS(q.attestation_key)
        except QuoteFormatError as exc:  # unreachable once bound above, kept for safety
            raise VerificationFailed("quote_signature", str(exc)) from exc
        if not verify_raw(attestation_key, q.signature, signed):
            raise VerificationFailed("quote_signature",
                                     "quote signature does not verify with the attestation key")
        level = tcb.match(ext.tcb_components, ext.pcesvn)
        if level is None:
            raise VerificationFailed(
                "tcb_not_supported",
                f"PCK TCB {list(ext.tcb_components)} PCESVN {ext.pcesvn} matches no TCB level")
        status = converge_qe_status(level.status, qe_level.status)
        advisories = tuple(dict.fromkeys(level.advisory_ids + (
            qe_level.advisory_ids if qe_level.status != "UpToDate" else ())))
        body = q.body
        return VerificationResult(
            status=status, advisory_ids=advisories, platform_status=level.status,
            qe_status=qe_level.status, qe_advisory_ids=qe_level.advisory_ids,
            mrenclave=body.mrenclave, mrsigner=body.mrsigner, isvprodid=body.isvprodid,
            isvsvn=body.isvsvn, attributes=body.attributes, miscselect=body.miscselect,
            report_data=body.reportdata, cpusvn=body.cpusvn, fmspc=ext.fmspc, pceid=ext.pceid,
            tcb_components=ext.tcb_components, pcesvn=ext.pcesvn, sgx_type=ext.sgx_type,
            tcb_date=level.tcb_date, tcb_evaluation_data_number=tcb.tcb_evaluation_data_number,
            pck_serial=chain.leaf.serial_number, verified_at=at,
            collateral_next_update=min(tcb.next_update, qe_id.next_update), quote=q)


_QE_AT = ReportBody.OFFSETS
_KEY_TYPES = {0: "EPID", 1: "reserved", 2: "ECDSA-256-with-P-256", 3: "ECDSA-384-with-P-384"}
"""``sgx_ql_attestation_algorithm_id_t`` (Intel's sgx_quote_3.h); DCAP signs with 2 only."""
_TEE_TYPES = {TEE_TYPE_SGX: "SGX", TEE_TYPE_TDX: "TDX"}


def _check_types(key_type: int, tee_type: int) -> None:
    """D.1: only ECDSA-P256 attestation keys and SGX enclaves are verified here."""
    if key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise VerificationFailed(
            "unsupported_quote",
            f"attestation key type {key_type} ({_KEY_TYPES.get(key_type, 'unknown')}) is not "
            "supported; only 2 (ECDSA-256-with-P-256) is verified here")
    if tee_type != TEE_TYPE_SGX:
        raise VerificationFailed(
            "unsupported_quote",
            f"TEE type {tee_type:#x} ({_TEE_TYPES.get(tee_type, 'unknown')}) is not SGX; only "
            "SGX quotes are verified here")


def check_pck_chain_source(quote: Quote, pck_chain: bytes | None) -> None:
    """Whether the PCK chain ``quote`` needs is at hand: in the quote (type 5) or ``pck_chain``.

    Raises:
        VerificationFailed: ``unsupported_quote``, saying which collateral a quote of type
            1-4 needs, or that type 7 (and others) are not verified.
    """
    data = quote.certification_data
    if data.type == CERT_TYPE_PCK_CHAIN:
        return
    if data.type not in _PCK_FROM_COLLATERAL:
        raise VerificationFailed(
            "unsupported_quote",
            f"certification data type {data.type} ({data.type_name}) is not verified here: "
            "Intel's QVL verifies types 1-5 only")
    if pck_chain is None:
        wanted = ("the PCK CA and root (or the whole chain)"
                  if data.type == CERT_TYPE_PCK_LEAF else "the PCK certificate chain")
        raise VerificationFailed(
            "unsupported_quote",
            f"certification data type {data.type} ({data.type_name}) carries no PCK chain: "
            f"give {wanted} (quote verify --pck-cert FILE, collateral pck_certificate_chain) "
            "or fetch the PCK certificate from a PCCS that serves it by PPID "
            "(GET /sgx/certification/v4/pckcert with the quote's PPID, CPUSVN, PCESVN, PCE-ID)")


def parse_quote(data: bytes, *, allow_trailing: bool = False) -> Quote:
    """Parse a quote for verification: its key and TEE types are checked before the rest.

    Bytes after the signature data are refused unless ``allow_trailing`` (see
    :meth:`Quote.parse`); the verifier checks the parsed quote, never those bytes.

    A quote of another attestation-key or TEE type lays its signature data out differently,
    so parsing it as an ECDSA-P256 SGX quote would fail as malformed; this names the type
    instead. Other header faults (too short, unknown version) are the parser's.

    Raises:
        VerificationFailed: ``unsupported_quote`` naming the key or TEE type found.
        QuoteFormatError: the quote does not parse.
    """
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) >= 8:
        version, key_type, tee_type = struct.unpack_from("<HHI", data)
        if version in (3, 4, 5):
            _check_types(key_type, tee_type)
    return Quote.parse(data, allow_trailing=allow_trailing)


def _attestation_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    return public_key_from_raw(raw)


# A QE keeps its attestation key across many quotes: the point is decoded (and checked to lie
# on the curve) once per distinct 64 bytes; the quote signature is verified every call.
_ATTESTATION_KEYS: ContentCache[ec.EllipticCurvePublicKey] = ContentCache(
    _attestation_key, entries=256)


def _signed_region(quote: bytes | Quote, q: Quote) -> bytes:
    """The bytes the attestation key signs, sliced from the quote as it arrived when it came
    as bytes (:meth:`Quote.parse` reads header, v5 descriptor and body from that prefix, and
    they re-encode to it byte for byte); otherwise re-encoded from the parsed quote."""
    if isinstance(quote, Quote):
        return q.signed_bytes()
    size = 48 + (6 if q.header.version >= 5 else 0) + len(q.report_body)
    return bytes(quote[:size])


def _masked_equal(value: bytes, mask: bytes, expected: bytes) -> bool:
    """(value & mask) == expected, bytewise (QE identity MISCSELECT / ATTRIBUTES rule)."""
    big = int.from_bytes(value, "big") & int.from_bytes(mask, "big")
    return big == int.from_bytes(expected, "big") and len(value) == len(expected)


_PCK_FROM_COLLATERAL = (1, 2, 3, CERT_TYPE_PCK_LEAF)
"""Certification data types whose PCK chain comes from the collateral (pck_certificate_chain)."""


def _check_certification_data(q: Quote, ext: PckExtension, leaf: x509.Certificate) -> None:
    """D.4: certification data other than a PCK chain must describe the certified platform."""
    data = q.certification_data
    if data.type == CERT_TYPE_PCK_CHAIN:
        return
    if data.type == CERT_TYPE_PCK_LEAF:
        try:
            same = data.pck_leaf().public_bytes(Encoding.DER) == _der(leaf)
        except QuoteFormatError as exc:
            raise VerificationFailed("certification_data", str(exc)) from exc
        if not same:
            raise VerificationFailed(
                "certification_data", "type 4 certification data is not the PCK certificate "
                "of the supplied chain")
        return
    try:
        ppid = data.ppid_data()
    except QuoteFormatError as exc:
        raise VerificationFailed("certification_data", str(exc)) from exc
    if (ppid.cpusvn != ext.cpusvn or ppid.pcesvn != ext.pcesvn
            or (ppid.pceid is not None and ppid.pceid != ext.pceid)
            or (data.type == CERT_TYPE_PPID_CLEARTEXT and ppid.ppid != ext.ppid)):
        raise VerificationFailed(
            "certification_data",
            f"type {data.type} certification data (PPID, CPUSVN, PCESVN, PCE-ID) is not the "
            "platform the PCK certificate certifies")


def verify_quote(quote: bytes | Quote, collateral: Collateral, *,
                 trusted_roots: Sequence[x509.Certificate] | None = None,
                 at: datetime | None = None,
                 crl_grace: timedelta = timedelta(0)) -> VerificationResult:
    """Verify an SGX quote with its collateral, checking everything (no cache).

    Args:
        quote: quote bytes or a parsed :class:`Quote`.
        collateral: the collateral for the quote's platform (FMSPC) and CA.
        trusted_roots: roots the chains may end at; default Intel's production root only.
        at: verification time (default: now, UTC).
        crl_grace: accept CRLs up to this long past their nextUpdate (default zero).

    Raises:
        QuoteFormatError, CollateralFormatError: input that does not parse.
        VerificationFailed: a named check failed.
    """
    roots = None if trusted_roots is None else tuple(trusted_roots)
    return _uncached(roots, crl_grace).verify(quote, collateral, at=at)


@functools.lru_cache(maxsize=16)
def _uncached(roots: tuple[x509.Certificate, ...] | None, crl_grace: timedelta) -> Verifier:
    """An uncached verifier (it keeps no state, so calls may share it), per (roots, grace):
    certificates hash and compare by their DER."""
    return Verifier(roots, crl_grace=crl_grace, cache_size=0)
