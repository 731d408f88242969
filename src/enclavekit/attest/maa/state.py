"""The attestation service's durable state, one JSON file in its data directory.

* **Signing keys**: RSA-2048, each with a self-signed certificate; ``kid`` is the standard
  base64 of SHA-256(certificate DER), the form MAA uses for its instance keys. The newest key
  signs; :meth:`ServiceState.rotate` makes a new one and keeps the old one in the JWKS until
  every token it signed has expired.
* **Policies** per attestation type: the JWS exactly as it was set (``GET`` returns it), its
  policy text and signer. Without a stored policy the type's default applies.
* **Policy-management certificates** and the **mode**: ``aad`` (unsigned policies allowed) or
  ``isolated`` (every policy change must be signed by a management certificate).

Every change rewrites the file with :func:`enclavekit._fs.atomic_write` (mode 0600: it holds
the private keys).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ..._fs import atomic_write
from ...errors import AttestationError, AttestationRequestError
from ..policy import DEFAULT_SGX_POLICY
from .jws import b64url, b64url_json, std_b64

__all__ = ["ATTESTATION_TYPES", "MODES", "Mode", "ServiceState", "SigningKey", "StoredPolicy",
           "canonical_type", "cert_thumbprint", "default_policy_jws"]

Mode = Literal["aad", "isolated"]
MODES: tuple[Mode, ...] = ("aad", "isolated")
ATTESTATION_TYPES = ("SgxEnclave", "OpenEnclave")
"""The attestation types this service attests (both carry an SGX quote)."""
_OTHER_TYPES = ("Tpm", "SevSnpVm", "TdxVm", "AzureGuest")
STATE_FILE = "maa-state.json"
LOCK_FILE = "maa-state.lock"
_FORMAT = 1
_KEY_BITS = 2048
_CERT_YEARS = 10
_MAX_APPLIED = 10_000
"""Signed changes remembered per scope for replay refusal."""


def canonical_type(name: str) -> str:
    """``SgxEnclave`` or ``OpenEnclave`` for any spelling of either (the path is matched
    case-insensitively, as MAA does).

    Raises:
        AttestationRequestError: another attestation type.
    """
    for known in ATTESTATION_TYPES:
        if name.lower() == known.lower():
            return known
    for other in _OTHER_TYPES:
        if name.lower() == other.lower():
            raise AttestationRequestError(f"attestation type {other} is not supported by this "
                                          "service (it attests SgxEnclave and OpenEnclave)")
    raise AttestationRequestError(f"unknown attestation type {name!r} (this service attests "
                                  "SgxEnclave and OpenEnclave)")


def cert_thumbprint(cert: x509.Certificate) -> str:
    """Upper-case hex SHA-1 of the certificate's DER (``x-ms-certificate-thumbprint``)."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def default_policy_jws(text: str) -> str:
    """An unsecured stored-policy JWS holding ``text``."""
    payload = b64url_json({"AttestationPolicy": b64url(text.encode())})
    return f"{b64url_json({'alg': 'none'})}.{payload}."


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class SigningKey:
    """One token-signing key and its self-signed certificate."""

    kid: str
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    created: int
    drop_after: int | None = None
    """When retired: the time after which no token it signed is valid any more."""

    @classmethod
    def generate(cls, now: float, common_name: str) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        start = dt.datetime.fromtimestamp(int(now) - 3600, dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(start + dt.timedelta(days=365 * _CERT_YEARS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        kid = std_b64(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())
        return cls(kid, key, cert, int(now))

    def jwk(self) -> dict[str, Any]:
        """The JWKS entry: ``kid``, ``kty`` and ``x5c`` (standard base64 DER)."""
        return {"kid": self.kid, "kty": "RSA",
                "x5c": [std_b64(self.cert.public_bytes(serialization.Encoding.DER))]}

    def to_json(self) -> dict[str, Any]:
        return {"kid": self.kid, "created": self.created, "drop_after": self.drop_after,
                "cert": _pem(self.cert),
                "key": self.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SigningKey:
        key = serialization.load_pem_private_key(doc["key"].encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise AttestationError("attestation service state: signing key is not RSA")
        return cls(doc["kid"], key, x509.load_pem_x509_certificate(doc["cert"].encode()),
                   int(doc["created"]), doc.get("drop_after"))


@dataclass(frozen=True)
class StoredPolicy:
    """The policy of one attestation type: the JWS as set, its text and signer (if signed)."""

    jws: str
    text: str
    signer: x509.Certificate | None = None
    default: bool = False


class _DirLock:
    """An exclusive ``flock`` on ``<dir>/maa-state.lock``, held while the file stays open."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._file = open(directory / LOCK_FILE, "a+b")  # noqa: SIM115 - held until close()
        try:
            os.chmod(directory / LOCK_FILE, 0o600)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise AttestationError(f"{directory} is in use by another attestation service "
                                   "(stop it first)") from None

    def close(self) -> None:
        self._file.close()


_DEFAULT = StoredPolicy(default_policy_jws(DEFAULT_SGX_POLICY), DEFAULT_SGX_POLICY, default=True)


class ServiceState:
    """Keys, policies, management certificates and mode, persisted in ``data_dir``."""

    def __init__(self, path: Path, mode: Mode, keys: list[SigningKey],
                 policies: dict[str, StoredPolicy], management_certs: list[x509.Certificate],
                 common_name: str, applied: dict[str, list[str]] | None = None) -> None:
        self.path = path
        self.mode: Mode = mode
        self._keys = keys
        self._policies = policies
        self._certs = management_certs
        self._common_name = common_name
        self._applied: dict[str, list[str]] = applied or {}
        self._lock = threading.RLock()
        self._holder: _DirLock | None = None

    def close(self) -> None:
        """Release the data directory (the state stays readable in memory)."""
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def __enter__(self) -> ServiceState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: str | Path, *, mode: Mode | None = None,
             management_certs: Iterable[x509.Certificate] = (),
             common_name: str = "enclavekit attestation service",
             now: float | None = None) -> ServiceState:
        """Load the state in ``data_dir``, or create it (a fresh signing key) when absent.

        ``mode`` and ``management_certs`` apply when creating; for an existing state ``mode``
        must agree with the stored one, and given certificates are added to the stored ones.

        The directory is locked (``flock`` on ``maa-state.lock``) until :meth:`close`: a second
        service, or ``attest rotate-key``, on the same directory is refused while one runs.

        Raises:
            AttestationRequestError: isolated mode without a management certificate, or a mode
                that contradicts the stored state.
            AttestationError: the state file is unreadable, or the directory is in use.
        """
        holder = _DirLock(Path(data_dir))
        try:
            state = cls._open_locked(Path(data_dir) / STATE_FILE, mode, list(management_certs),
                                     common_name, now)
        except BaseException:
            holder.close()
            raise
        state._holder = holder
        return state

    @classmethod
    def _open_locked(cls, path: Path, mode: Mode | None, certs: list[x509.Certificate],
                     common_name: str, now: float | None) -> ServiceState:
        if path.exists():
            state = cls._load(path, common_name)
            if mode is not None and mode != state.mode:
                raise AttestationRequestError(f"{path} holds a {state.mode}-mode service; "
                                              f"use another --data-dir for {mode} mode")
            for cert in certs:
                state._add_cert(cert)
            if certs:
                state._save()
            return state
        mode = mode or "aad"
        if mode not in MODES:
            raise AttestationRequestError(f"mode must be aad or isolated, not {mode!r}")
        if mode == "isolated" and not certs:
            raise AttestationRequestError("isolated mode needs at least one policy-management "
                                          "certificate")
        now = time.time() if now is None else now
        state = cls(path, mode, [SigningKey.generate(now, common_name)], {}, [], common_name)
        for cert in certs:
            state._add_cert(cert)
        state._save()
        return state

    @classmethod
    def _load(cls, path: Path, common_name: str) -> ServiceState:
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != _FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            keys = [SigningKey.from_json(k) for k in doc["keys"]]
            policies = {
                t: StoredPolicy(p["jws"], p["text"],
                                x509.load_pem_x509_certificate(p["signer"].encode())
                                if p.get("signer") else None)
                for t, p in doc["policies"].items()}
            certs = [x509.load_pem_x509_certificate(c.encode())
                     for c in doc["management_certificates"]]
            mode = doc["mode"]
            applied = {str(k): [str(d) for d in v] for k, v in doc.get("applied", {}).items()}
            if mode not in MODES or not keys:
                raise ValueError("bad mode or no signing key")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AttestationError(f"{path}: attestation service state is unreadable "
                                        f"({exc})") from None
        return cls(path, mode, keys, policies, certs, common_name, applied)

    def _save(self) -> None:
        doc = {"format": _FORMAT, "mode": self.mode,
               "keys": [k.to_json() for k in self._keys],
               "policies": {t: {"jws": p.jws, "text": p.text,
                                "signer": _pem(p.signer) if p.signer else None}
                            for t, p in self._policies.items()},
               "management_certificates": [_pem(c) for c in self._certs],
               "applied": self._applied}
        atomic_write(self.path, json.dumps(doc, indent=1).encode())

    # --- signing keys ------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        """The key that signs new tokens."""
        return self._keys[0]

    def jwks(self, now: float | None = None) -> dict[str, Any]:
        """``{"keys": [...]}``: the current key first, then retired keys whose tokens may still
        be valid."""
        now = time.time() if now is None else now
        with self._lock:
            return {"keys": [k.jwk() for k in self._keys
                             if k.drop_after is None or k.drop_after >= now]}

    def rotate(self, keep_for: int, now: float | None = None) -> SigningKey:
        """Make a new signing key; the old ones stay in the JWKS for ``keep_for`` seconds (the
        longest token lifetime), and keys past that are forgotten."""
        now = time.time() if now is None else now
        with self._lock:
            new = SigningKey.generate(now, self._common_name)
            kept = [k if k.drop_after is not None else
                    SigningKey(k.kid, k.key, k.cert, k.created, int(now) + keep_for)
                    for k in self._keys]
            self._keys = [new, *[k for k in kept if k.drop_after is None or k.drop_after >= now]]
            self._save()
            return new

    # --- replay record of signed changes ------------------------------------------------

    def was_applied(self, scope: str, digest: str) -> bool:
        """Whether a signed JWS with this SHA-256 was applied before in ``scope``."""
        with self._lock:
            return digest in self._applied.get(scope, ())

    def _record(self, scope: str, digest: str | None) -> None:
        if digest is None:
            return
        seen = self._applied.setdefault(scope, [])
        if digest not in seen:
            seen.append(digest)
            del seen[:-_MAX_APPLIED]

    # --- policies ----------------------------------------------------------------------

    def policy(self, attestation_type: str) -> StoredPolicy:
        """The stored policy of a type, or its default."""
        with self._lock:
            stored = self._policies.get(attestation_type)
        return stored if stored is not None else _DEFAULT

    def set_policy(self, attestation_type: str, policy: StoredPolicy,
                   applied: str | None = None) -> None:
        """Store ``policy``; ``applied``: the SHA-256 of the signed JWS, for replay checks."""
        with self._lock:
            self._policies[attestation_type] = policy
            self._record(f"policy:{attestation_type}", applied)
            self._save()

    def reset_policy(self, attestation_type: str, applied: str | None = None) -> None:
        with self._lock:
            self._policies.pop(attestation_type, None)
            self._record(f"policy:{attestation_type}", applied)
            self._save()

    # --- policy-management certificates ------------------------------------------------

    @property
    def management_certs(self) -> list[x509.Certificate]:
        with self._lock:
            return list(self._certs)

    def is_management_cert(self, cert: x509.Certificate) -> bool:
        der = cert.public_bytes(serialization.Encoding.DER)
        return any(c.public_bytes(serialization.Encoding.DER) == der
                   for c in self.management_certs)

    def _add_cert(self, cert: x509.Certificate) -> bool:
        if self.is_management_cert(cert):
            return False
        self._certs.append(cert)
        return True

    def add_management_cert(self, cert: x509.Certificate, scope: str = "certificates:add",
                            applied: str | None = None) -> None:
        with self._lock:
            if self._add_cert(cert):
                self._record(scope, applied)
                self._save()

    def remove_management_cert(self, cert: x509.Certificate,
                               scope: str = "certificates:remove",
                               applied: str | None = None) -> None:
        """Remove ``cert`` (absent: nothing to do).

        Raises:
            AttestationRequestError: it is the last certificate of an isolated-mode service.
        """
        der = cert.public_bytes(serialization.Encoding.DER)
        with self._lock:
            keep = [c for c in self._certs if c.public_bytes(serialization.Encoding.DER) != der]
            if len(keep) == len(self._certs):
                return
            if not keep and self.mode == "isolated":
                raise AttestationRequestError("the last policy-management certificate of an "
                                              "isolated-mode service cannot be removed",
                                              "InvalidOperation")
            self._certs = keep
            self._record(scope, applied)
            self._save()
