"""Verification collateral: CRLs, TCB info, QE identity and their issuer chains.

One :class:`Collateral` holds the pieces exactly as they were issued (DER CRLs, PEM chains, the
signed JSON text and raw signatures). It moves in three forms:

* the one-object JSON layout common DCAP tools exchange (dcap-qvl's ``QuoteCollateralV3``):
  chains as PEM, CRLs and signatures as hex, TCB info and QE identity as their exact JSON text
  (:meth:`Collateral.from_json` / :meth:`Collateral.to_json`);
* Intel PCS response pieces — ``{"tcbInfo": ..., "signature": ...}`` bodies, DER/PEM/hex CRLs,
  PEM issuer chains (:meth:`Collateral.from_pcs`);
* fetched over HTTP from a PCS v4-compatible service (:func:`fetch`, :func:`fetch_for_quote`).

Loading checks that every piece parses (typed :class:`CollateralFormatError` otherwise); it does
not check signatures or validity windows — that is the verifier's job, at its verification time.
Each piece is parsed once per distinct content (:mod:`.memo`: the CRLs by their DER, the issuer
chains by their PEM, TCB info and QE identity by their signed bytes and signature), so loading
the same collateral again, and verifying with it, parses nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .._codec import JSONError, strict_json
from .._fs import atomic_write
from ..errors import AttestationError, CollateralFormatError
from .crl import load_crl
from .memo import ContentCache
from .pckext import PckExtension
from .quote import Quote
from .roots import load_pem_chain
from .tcbinfo import QeIdentity, TcbInfo, split_signed_body

if TYPE_CHECKING:
    import httpx

__all__ = ["PCS_PREFIX", "Collateral", "crl_der", "fetch", "fetch_for_quote", "pck_ca_kind",
           "pem_chain", "qe_identities", "tcb_infos"]

PCS_PREFIX = "/sgx/certification/v4"
"""Path prefix of Intel PCS v4 (and PCCS) SGX collateral endpoints."""

_REQUIRED = (
    "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
    "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
)
_HEX = re.compile(rb"[0-9a-fA-F\s]+")


def crl_der(data: bytes | str, what: str = "CRL") -> bytes:
    """A CRL's DER from DER, PEM or hex text (PCS serves any of them); checked to parse.

    Raises:
        CollateralFormatError: none of those forms, or the CRL does not parse.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw.lstrip().startswith(b"-----BEGIN X509 CRL-----"):
        try:
            crl = x509.load_pem_x509_crl(raw.strip())
        except (ValueError, x509.InvalidVersion) as exc:
            raise CollateralFormatError(f"{what}: PEM does not parse: {exc}") from exc
        return crl.public_bytes(Encoding.DER)
    if raw[:1] != b"\x30":
        if not raw.strip() or not _HEX.fullmatch(raw):
            raise CollateralFormatError(f"{what}: neither DER, PEM nor hex")
        try:
            raw = bytes.fromhex(raw.decode("ascii"))
        except ValueError as exc:
            raise CollateralFormatError(f"{what}: odd-length or malformed hex") from exc
    load_crl(raw, f"{what}: DER")  # parsed as the verifier parses it, once per distinct DER
    return raw


def _pem_chain(raw: bytes, what: str) -> tuple[x509.Certificate, ...]:
    return tuple(load_pem_chain(raw, what))


pem_chain: ContentCache[tuple[x509.Certificate, ...]] = ContentCache(_pem_chain, entries=64)
"""``pem_chain(pem, what)``: :func:`~.roots.load_pem_chain` as a tuple, kept per distinct PEM."""


def _tcb_info(key: tuple[bytes, bytes]) -> TcbInfo:
    return TcbInfo.parse(*key)


def _qe_identity(key: tuple[bytes, bytes]) -> QeIdentity:
    return QeIdentity.parse(*key)


tcb_infos: ContentCache[TcbInfo] = ContentCache(_tcb_info, entries=64)
"""``tcb_infos((signed bytes, signature))``: :meth:`TcbInfo.parse`, kept per distinct pair."""
qe_identities: ContentCache[QeIdentity] = ContentCache(_qe_identity, entries=16)
"""``qe_identities((signed bytes, signature))``: :meth:`QeIdentity.parse`, kept likewise."""


def _hex_signature(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 128:
        raise CollateralFormatError(f"{what} must be 128 hex characters (r || s)")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise CollateralFormatError(f"{what} is not hex") from exc


@dataclass(frozen=True)
class Collateral:
    """Everything a verifier needs besides the quote and the trust root, as issued."""

    pck_crl_issuer_chain: bytes
    """PEM: the PCK CA (and root) that issued ``pck_crl``; may be empty when not supplied."""
    root_ca_crl: bytes
    """DER: the root CA's CRL (revokes intermediates and the TCB signing cert)."""
    pck_crl: bytes
    """DER: the PCK Processor/Platform CA's CRL (revokes PCK leaves)."""
    tcb_info_issuer_chain: bytes
    """PEM: TCB signing cert + root."""
    tcb_info: bytes
    """The exact signed ``tcbInfo`` JSON text."""
    tcb_info_signature: bytes
    """64 bytes r ‖ s over ``tcb_info``."""
    qe_identity_issuer_chain: bytes
    """PEM: TCB signing cert + root."""
    qe_identity: bytes
    """The exact signed ``enclaveIdentity`` JSON text."""
    qe_identity_signature: bytes
    """64 bytes r ‖ s over ``qe_identity``."""
    pck_certificate_chain: bytes | None = None
    """PEM PCK leaf ‖ CA ‖ root, for quotes whose certification data is not type 5."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "pck_certificate_chain":
                continue
            if not isinstance(value, bytes):
                raise CollateralFormatError(f"collateral {f.name} must be bytes")

    # --- parsing helpers (the verifier calls these; each raises CollateralFormatError) ----

    def parse_tcb_info(self) -> TcbInfo:
        """The TCB info, parsed once per distinct (signed bytes, signature)."""
        return tcb_infos((self.tcb_info, self.tcb_info_signature))

    def parse_qe_identity(self) -> QeIdentity:
        """The QE identity, parsed once per distinct (signed bytes, signature)."""
        return qe_identities((self.qe_identity, self.qe_identity_signature))

    def check(self) -> Collateral:
        """Parse every piece once (format only); returns ``self``.

        Raises:
            CollateralFormatError: the first piece that does not parse, named.
        """
        if self.pck_crl_issuer_chain.strip():
            pem_chain(self.pck_crl_issuer_chain, "pck_crl_issuer_chain")
        crl_der(self.root_ca_crl, "root_ca_crl")
        crl_der(self.pck_crl, "pck_crl")
        pem_chain(self.tcb_info_issuer_chain, "tcb_info_issuer_chain")
        pem_chain(self.qe_identity_issuer_chain, "qe_identity_issuer_chain")
        self.parse_tcb_info()
        self.parse_qe_identity()
        if self.pck_certificate_chain is not None:
            pem_chain(self.pck_certificate_chain, "pck_certificate_chain")
        return self

    def digest(self) -> bytes:
        """SHA-256 over every field (length-prefixed): the content key of verifier caches."""
        h = hashlib.sha256(b"enclavekit collateral v1")
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                h.update(b"\xff" * 8)
            else:
                h.update(len(value).to_bytes(8, "little"))
                h.update(value)
        return h.digest()

    # --- the one-object JSON layout ------------------------------------------------------

    @classmethod
    def from_json(cls, text: bytes | str) -> Collateral:
        """Load dcap-qvl's ``QuoteCollateralV3`` layout (also what :meth:`to_json` writes).

        The same text gives the same (immutable) collateral: it is parsed once per distinct
        content (:mod:`.memo`).

        Raises:
            CollateralFormatError: not JSON, a key missing or of the wrong type, or a piece
                that does not parse.
        """
        if isinstance(text, (bytearray, memoryview)):
            text = bytes(text)
        if not isinstance(text, (bytes, str)):
            raise CollateralFormatError(
                f"collateral JSON must be bytes or text, found {type(text).__name__}")
        return _DOCUMENTS(text)

    @classmethod
    def _parse_json(cls, text: bytes | str) -> Collateral:
        try:
            obj = strict_json(text)
        except JSONError as exc:
            raise CollateralFormatError(f"collateral JSON does not parse: {exc}") from exc
        if not isinstance(obj, dict):
            raise CollateralFormatError("collateral JSON must be one object")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise CollateralFormatError(f"collateral JSON lacks {', '.join(missing)}")
        for key in (*_REQUIRED, "pck_certificate_chain"):
            if key in obj and obj[key] is not None and not isinstance(obj[key], str):
                raise CollateralFormatError(f"collateral JSON: {key} must be a string")
        chain = obj.get("pck_certificate_chain")
        return cls(
            pck_crl_issuer_chain=obj["pck_crl_issuer_chain"].encode(),
            root_ca_crl=crl_der(obj["root_ca_crl"], "root_ca_crl"),
            pck_crl=crl_der(obj["pck_crl"], "pck_crl"),
            tcb_info_issuer_chain=obj["tcb_info_issuer_chain"].encode(),
            tcb_info=obj["tcb_info"].encode(),
            tcb_info_signature=_hex_signature(obj["tcb_info_signature"], "tcb_info_signature"),
            qe_identity_issuer_chain=obj["qe_identity_issuer_chain"].encode(),
            qe_identity=obj["qe_identity"].encode(),
            qe_identity_signature=_hex_signature(obj["qe_identity_signature"],
                                                 "qe_identity_signature"),
            pck_certificate_chain=chain.encode() if chain else None,
        ).check()

    def to_dict(self) -> dict[str, str]:
        """The one-object layout as a dict of strings."""
        out = {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain.decode(),
            "root_ca_crl": self.root_ca_crl.hex(),
            "pck_crl": self.pck_crl.hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain.decode(),
            "tcb_info": self.tcb_info.decode(),
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain.decode(),
            "qe_identity": self.qe_identity.decode(),
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }
        if self.pck_certificate_chain is not None:
            out["pck_certificate_chain"] = self.pck_certificate_chain.decode()
        return out

    def to_json(self) -> str:
        """The one-object JSON layout (round-trips through :meth:`from_json`)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> Collateral:
        """Read a one-object collateral JSON file.

        Raises:
            CollateralFormatError: unreadable or malformed.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CollateralFormatError(f"cannot read collateral {path}: {exc.strerror}") from exc
        return cls.from_json(data)

    def save(self, path: str | Path) -> None:
        """Write the one-object JSON layout atomically."""
        atomic_write(Path(path), self.to_json().encode())

    # --- PCS pieces ----------------------------------------------------------------------

    @classmethod
    def from_pcs(
        cls,
        *,
        tcb_info: bytes | str,
        qe_identity: bytes | str,
        tcb_info_issuer_chain: bytes | str,
        pck_crl: bytes | str,
        root_ca_crl: bytes | str,
        pck_crl_issuer_chain: bytes | str = b"",
        qe_identity_issuer_chain: bytes | str | None = None,
        pck_certificate_chain: bytes | str | None = None,
    ) -> Collateral:
        """Assemble collateral from Intel PCS responses (bodies as served, CRLs DER/PEM/hex).

        ``qe_identity_issuer_chain`` defaults to ``tcb_info_issuer_chain`` (Intel signs both
        with the TCB signing key).

        Raises:
            CollateralFormatError: a piece that does not parse.
        """
        tcb_raw, tcb_sig = split_signed_body(tcb_info, "tcbInfo")
        qe_raw, qe_sig = split_signed_body(qe_identity, "enclaveIdentity")

        def text(value: bytes | str) -> bytes:
            return value.encode() if isinstance(value, str) else bytes(value)

        return cls(
            pck_crl_issuer_chain=text(pck_crl_issuer_chain),
            root_ca_crl=crl_der(root_ca_crl, "root_ca_crl"),
            pck_crl=crl_der(pck_crl, "pck_crl"),
            tcb_info_issuer_chain=text(tcb_info_issuer_chain),
            tcb_info=tcb_raw,
            tcb_info_signature=tcb_sig,
            qe_identity_issuer_chain=text(qe_identity_issuer_chain
                                          if qe_identity_issuer_chain is not None
                                          else tcb_info_issuer_chain),
            qe_identity=qe_raw,
            qe_identity_signature=qe_sig,
            pck_certificate_chain=(None if pck_certificate_chain is None
                                   else text(pck_certificate_chain)),
        ).check()


_DOCUMENTS: ContentCache[Collateral] = ContentCache(Collateral._parse_json, entries=16)
"""Collateral JSON documents, parsed once per distinct text (the pieces have their own caches)."""


# --- fetching from a PCS v4-compatible service ----------------------------------------------


def pck_ca_kind(quote: Quote, collateral_chain: bytes | None = None) -> tuple[bytes, str]:
    """(FMSPC, ``"processor"`` or ``"platform"``) of the PCK chain a quote carries.

    Raises:
        QuoteFormatError / CollateralFormatError: no usable PCK chain in the quote.
    """
    if collateral_chain is not None:
        chain = load_pem_chain(collateral_chain, "pck_certificate_chain")
    else:
        chain = quote.certification_data.pck_chain()
    if len(chain) < 2:
        raise CollateralFormatError("PCK chain needs the PCK certificate and its CA")
    ext = PckExtension.from_certificate(chain[0])
    try:
        names = chain[1].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except (ValueError, TypeError) as exc:
        raise CollateralFormatError(f"PCK CA subject does not parse: {exc}") from exc
    cn = str(names[0].value) if names else ""
    return ext.fmspc, "platform" if "Platform" in cn else "processor"


def _get(client: httpx.Client, url: str) -> httpx.Response:
    import httpx

    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise AttestationError(f"collateral service {url}: {exc}") from exc
    if response.status_code != 200:
        raise AttestationError(f"collateral service {url}: HTTP {response.status_code}")
    return response


def _header(response: httpx.Response, *names: str) -> bytes:
    for name in names:
        value = response.headers.get(name)
        if value:
            return urllib.parse.unquote(value).encode()
    raise CollateralFormatError(f"{response.request.url}: response lacks the {names[0]} header")


def fetch(base_url: str, fmspc: bytes | str, ca: str = "processor", *,
          client: httpx.Client | None = None, timeout: float = 10.0) -> Collateral:
    """Fetch collateral for one FMSPC from a PCS v4-compatible service (Intel PCS, PCCS,
    ``enclavekit pccs serve``).

    Args:
        base_url: scheme and host (and any prefix before ``/sgx/certification/v4``).
        fmspc: 6 bytes or 12 hex characters.
        ca: ``"processor"`` or ``"platform"`` — which PCK CA's CRL.
        client: an ``httpx.Client`` to use (tests pass one bound to an in-process app).

    Raises:
        AttestationError: the service cannot be reached or answers other than 200.
        CollateralFormatError: a response that does not parse.
    """
    import httpx

    if ca not in ("processor", "platform"):
        raise CollateralFormatError(f"PCK CA must be 'processor' or 'platform', not {ca!r}")
    fmspc_hex = fmspc.hex() if isinstance(fmspc, bytes) else fmspc
    if not re.fullmatch(r"[0-9a-fA-F]{12}", fmspc_hex):
        raise CollateralFormatError(f"FMSPC must be 12 hex characters, not {fmspc_hex!r}")
    base = base_url.rstrip("/") + PCS_PREFIX
    own = client is None
    http = client if client is not None else httpx.Client(timeout=timeout)
    try:
        crl = _get(http, f"{base}/pckcrl?ca={ca}&encoding=der")
        tcb = _get(http, f"{base}/tcb?fmspc={fmspc_hex.upper()}")
        qe = _get(http, f"{base}/qe/identity")
        root = _get(http, f"{base}/rootcacrl")
        return Collateral.from_pcs(
            tcb_info=tcb.content,
            qe_identity=qe.content,
            tcb_info_issuer_chain=_header(tcb, "TCB-Info-Issuer-Chain",
                                          "SGX-TCB-Info-Issuer-Chain"),
            qe_identity_issuer_chain=_header(qe, "SGX-Enclave-Identity-Issuer-Chain"),
            pck_crl=crl.content,
            pck_crl_issuer_chain=_header(crl, "SGX-PCK-CRL-Issuer-Chain"),
            root_ca_crl=root.content,
        )
    finally:
        if own:
            http.close()


def fetch_for_quote(base_url: str, quote: Quote, *, client: httpx.Client | None = None,
                    timeout: float = 10.0) -> Collateral:
    """Fetch the collateral a quote needs (FMSPC and CA kind read from its PCK certificate)."""
    fmspc, ca = pck_ca_kind(quote)
    return fetch(base_url, fmspc, ca, client=client, timeout=timeout)
