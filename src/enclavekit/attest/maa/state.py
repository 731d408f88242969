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

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ..._fs import atomic_write, remove_stale_temps
from ...errors import AttestationError, AttestationRequestError
from ...jose import b64url, b64url_json
from ..policy import DEFAULT_SGX_POLICY
from .jws import std_b64

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


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<dir>/maa-state.lock`` for one read-modify-write."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


_DEFAULT = StoredPolicy(default_policy_jws(DEFAULT_SGX_POLICY), DEFAULT_SGX_POLICY, default=True)


@dataclass
class _Contents:
    mode: Mode
    keys: list[SigningKey]
    policies: dict[str, StoredPolicy]
    certs: list[x509.Certificate]
    applied: dict[str, list[str]]


class ServiceState:
    """Keys, policies, management certificates and mode, persisted in ``data_dir``.

    Several processes (the workers of one service, ``attest rotate-key``) may share a data
    directory: every change is a read-modify-write under an exclusive ``flock`` on
    ``maa-state.lock``, and every read first reloads the file if another process replaced it
    (one ``stat`` per read).
    """

    def __init__(self, path: Path, contents: _Contents, common_name: str) -> None:
        self.path = path
        self._c = contents
        self._common_name = common_name
        self._stamp = _stamp(path)
        self._lock = threading.RLock()

    @property
    def mode(self) -> Mode:
        """``aad`` or ``isolated`` (fixed when the state is created)."""
        return self._c.mode

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: str | Path, *, mode: Mode | None = None,
             management_certs: Iterable[x509.Certificate] = (),
             common_name: str = "enclavekit attestation service",
             now: float | None = None) -> ServiceState:
        """Load the state in ``data_dir``, or create it (a fresh signing key) when absent.

        ``mode`` and ``management_certs`` apply when creating; for an existing state ``mode``
        must agree with the stored one, and given certificates are added to the stored ones.

        Raises:
            AttestationRequestError: isolated mode without a management certificate, or a mode
                that contradicts the stored state.
            AttestationError: the state file is unreadable.
        """
        directory = Path(data_dir)
        path = directory / STATE_FILE
        certs = list(management_certs)
        with _dir_lock(directory):
            remove_stale_temps(directory)
            if path.exists():
                state = cls(path, _read(path), common_name)
                if mode is not None and mode != state.mode:
                    raise AttestationRequestError(f"{path} holds a {state.mode}-mode service; "
                                                  f"use another --data-dir for {mode} mode")
                if any([state._add_cert(c) for c in certs]):
                    state._save()
                return state
            mode = mode or "aad"
            if mode not in MODES:
                raise AttestationRequestError(f"mode must be aad or isolated, not {mode!r}")
            if mode == "isolated" and not certs:
                raise AttestationRequestError("isolated mode needs at least one "
                                              "policy-management certificate")
            now = time.time() if now is None else now
            state = cls(path, _Contents(mode, [SigningKey.generate(now, common_name)], {}, [],
                                        {}), common_name)
            for cert in certs:
                state._add_cert(cert)
            state._save()
            return state

    def _save(self) -> None:
        c = self._c
        doc = {"format": _FORMAT, "mode": c.mode,
               "keys": [k.to_json() for k in c.keys],
               "policies": {t: {"jws": p.jws, "text": p.text,
                                "signer": _pem(p.signer) if p.signer else None}
                            for t, p in c.policies.items()},
               "management_certificates": [_pem(cert) for cert in c.certs],
               "applied": c.applied}
        atomic_write(self.path, json.dumps(doc, indent=1).encode())
        self._stamp = _stamp(self.path)

    def refresh(self) -> None:
        """Reload the file if another process has replaced it since it was last read."""
        stamp = _stamp(self.path)
        if stamp is not None and stamp != self._stamp:
            with self._lock:
                self._c = _read(self.path)
                self._stamp = stamp

    @contextlib.contextmanager
    def _changing(self) -> Iterator[_Contents]:
        """A read-modify-write: locked, on the newest contents, saved at the end."""
        with self._lock, _dir_lock(self.path.parent):
            self.refresh()
            try:
                yield self._c
            except BaseException:
                self._stamp = None  # drop what the failed change did in memory: reload
                raise
            self._save()

    # --- signing keys ------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        """The key that signs new tokens."""
        self.refresh()
        return self._c.keys[0]

    def jwks(self, now: float | None = None) -> dict[str, Any]:
        """``{"keys": [...]}``: the current key first, then retired keys whose tokens may still
        be valid."""
        now = time.time() if now is None else now
        self.refresh()
        return {"keys": [k.jwk() for k in self._c.keys
                         if k.drop_after is None or k.drop_after >= now]}

    def rotate(self, keep_for: int, now: float | None = None) -> SigningKey:
        """Make a new signing key; the old ones stay in the JWKS for ``keep_for`` seconds (the
        longest token lifetime), and keys past that are forgotten."""
        now = time.time() if now is None else now
        new = SigningKey.generate(now, self._common_name)
        with self._changing() as c:
            kept = [k if k.drop_after is not None else
                    SigningKey(k.kid, k.key, k.cert, k.created, int(now) + keep_for)
                    for k in c.keys]
            c.keys = [new, *[k for k in kept if k.drop_after is None or k.drop_after >= now]]
        return new

    # --- replay record of signed changes ------------------------------------------------

    def was_applied(self, scope: str, digest: str) -> bool:
        """Whether a signed JWS with this SHA-256 was applied before in ``scope``."""
        self.refresh()
        return digest in self._c.applied.get(scope, ())

    def _record(self, scope: str, digest: str | None, changes: bool) -> None:
        """Refuse a replay (``digest`` applied before, and it would change something), then
        remember ``digest``. Called inside :meth:`_changing`."""
        if digest is None:
            return
        seen = self._c.applied.setdefault(scope, [])
        if changes and digest in seen:
            raise AttestationRequestError(
                "this signed JWS was applied before and has been superseded since; a replay is "
                "refused (sign a new one: change the policy text or add an iat claim)",
                "InvalidOperation")
        if digest not in seen:
            seen.append(digest)
            del seen[:-_MAX_APPLIED]

    # --- policies ----------------------------------------------------------------------

    def policy(self, attestation_type: str) -> StoredPolicy:
        """The stored policy of a type, or its default."""
        self.refresh()
        stored = self._c.policies.get(attestation_type)
        return stored if stored is not None else _DEFAULT

    def set_policy(self, attestation_type: str, policy: StoredPolicy,
                   applied: str | None = None) -> None:
        """Store ``policy``; ``applied``: the SHA-256 of its signed JWS (replays refused)."""
        with self._changing() as c:
            current = c.policies.get(attestation_type, _DEFAULT)
            self._record(f"policy:{attestation_type}", applied, current.jws != policy.jws)
            c.policies[attestation_type] = policy

    def reset_policy(self, attestation_type: str, applied: str | None = None) -> None:
        with self._changing() as c:
            self._record(f"policy:{attestation_type}", applied, attestation_type in c.policies)
            c.policies.pop(attestation_type, None)

    # --- policy-management certificates ------------------------------------------------

    @property
    def management_certs(self) -> list[x509.Certificate]:
        self.refresh()
        return list(self._c.certs)

    def is_management_cert(self, cert: x509.Certificate) -> bool:
        der = cert.public_bytes(serialization.Encoding.DER)
        return any(c.public_bytes(serialization.Encoding.DER) == der
                   for c in self.management_certs)

    def _add_cert(self, cert: x509.Certificate) -> bool:
        if self.is_management_cert(cert):
            return False
        self._c.certs.append(cert)
        return True

    def add_management_cert(self, cert: x509.Certificate, scope: str = "certificates:add",
                            applied: str | None = None) -> None:
        with self._changing():
            self._record(scope, applied, not self.is_management_cert(cert))
            self._add_cert(cert)

    def remove_management_cert(self, cert: x509.Certificate,
                               scope: str = "certificates:remove",
                               applied: str | None = None) -> None:
        """Remove ``cert`` (absent: nothing to do).

        Raises:
            AttestationRequestError: it is the last certificate of an isolated-mode service.
        """
        der = cert.public_bytes(serialization.Encoding.DER)
        with self._changing() as c:
            keep = [x for x in c.certs if x.public_bytes(serialization.Encoding.DER) != der]
            if not keep and c.certs and c.mode == "isolated":
                raise AttestationRequestError("the last policy-management certificate of an "
                                              "isolated-mode service cannot be removed",
                                              "InvalidOperation")
            self._record(scope, applied, len(keep) != len(c.certs))
            c.certs = keep


def _read(path: Path) -> _Contents:
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
    return _Contents(mode, keys, policies, certs, applied)
