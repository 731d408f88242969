"""Keys at rest: every key encrypted under the service master key, written atomically.

Layout of the data directory (0700)::

    master.key          32 random bytes, mode 0600, made on first start
    keys/<name>.key     b"EKKMS1" || nonce(12) || AES-256-GCM(master, nonce, record JSON,
                        aad = b"enclavekit.kms.key\\0" || name)

A record holds every version of one key (its private material, attributes and release
policy), so no key material is ever on disk in the clear. A file that does not authenticate
(corrupted, truncated, renamed to another key's name) raises
:class:`~enclavekit.errors.IntegrityError` for that key only; the others keep working.

Key Vault rules enforced here (maa-skr.md §5.2): names match ``[0-9a-zA-Z-]{1,127}``;
RSA 2048/3072/4096 (exponent 65537), EC P-256/P-384/P-521, oct 128/192/256; an exportable key
must have a release policy and a non-exportable key must not; an immutable release policy
never changes (not by update, not by a new version).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._codec import JSONError, b64url, b64url_decode, strict_json
from .._fs import atomic_write, locked_temp, remove_stale_temps
from ..errors import IntegrityError, KeyNotFound, KeyParameterError, KeyStateError
from .policy import ReleasePolicy, parse_release_policy

__all__ = ["POLICY_CONTENT_TYPE", "KeyStore", "KeyVersion", "StoredPolicy"]

POLICY_CONTENT_TYPE: Final = "application/json; charset=utf-8"
_MAGIC: Final = b"EKKMS1"
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_VERSION = re.compile(r"^[0-9a-f]{32}$")
_RSA_SIZES: Final = (2048, 3072, 4096)
_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
_OCT_SIZES: Final = (128, 192, 256)
_KTYS: Final = ("RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM")
_OPS: Final = ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import",
               "export")
_DEFAULT_OPS: Final = {"RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
                       "EC": ["sign", "verify"],
                       "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]}
_MAX_TAGS: Final = 15
_MAX_TIME: Final = 253_402_300_799
"""9999-12-31T23:59:59Z, the last time an ``nbf``/``exp`` may name."""
_CREATE_FIELDS: Final = frozenset({"kty", "key_size", "public_exponent", "crv", "key_ops",
                                   "attributes", "tags", "release_policy"})
_IMPORT_FIELDS: Final = frozenset({"key", "Hsm", "hsm", "attributes", "tags", "release_policy"})
_UPDATE_FIELDS: Final = frozenset({"key_ops", "attributes", "tags", "release_policy"})
_ATTRIBUTE_FIELDS: Final = frozenset({"enabled", "exportable", "nbf", "exp"})


def check_name(name: str) -> None:
    """Refuse a key name Key Vault would refuse (this also rules out path tricks)."""
    if not _NAME.match(name):
        raise KeyParameterError(f"key name {name[:40]!r} is invalid: use 1-127 letters, digits "
                                "and '-'")


@dataclass(frozen=True)
class StoredPolicy:
    """A release policy as stored: the normalised JSON, its content type and mutability."""

    data: bytes
    content_type: str = POLICY_CONTENT_TYPE
    immutable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"contentType": self.content_type, "data": b64url(self.data),
                "immutable": self.immutable}


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key, with its private material (never serialised in the clear)."""

    name: str
    version: str
    kty: str
    material: bytes = field(repr=False)
    key_ops: tuple[str, ...]
    enabled: bool
    exportable: bool
    created: int
    updated: int
    nbf: int | None = None
    exp: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    release_policy: StoredPolicy | None = None
    public: Mapping[str, str] = field(default_factory=dict)
    """The public JWK members (``n``/``e`` or ``crv``/``x``/``y``), computed at creation."""

    @property
    def family(self) -> str:
        """``RSA``, ``EC`` or ``oct`` (without ``-HSM``)."""
        return self.kty.removesuffix("-HSM")

    def private_key(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        key = serialization.load_der_private_key(self.material, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise IntegrityError(f"key {self.name}: stored material is not an RSA or EC key")
        return key

    def public_jwk(self, kid: str) -> dict[str, Any]:
        """The key's JWK as Key Vault returns it (public part only)."""
        jwk: dict[str, Any] = {"kid": kid, "kty": self.kty, "key_ops": list(self.key_ops)}
        return jwk | dict(self.public or self.public_members())

    def public_members(self) -> dict[str, str]:
        """Compute the public JWK members from the private material."""
        jwk: dict[str, str] = {}
        if self.family == "RSA":
            numbers = self.private_key().public_key().public_numbers()
            assert isinstance(numbers, rsa.RSAPublicNumbers)
            jwk["n"] = b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
            jwk["e"] = b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
        elif self.family == "EC":
            key = self.private_key()
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            pub = key.public_key().public_numbers()
            size = (key.curve.key_size + 7) // 8
            jwk["crv"] = next(n for n, c in _CURVES.items() if isinstance(key.curve, c))
            jwk["x"] = b64url(pub.x.to_bytes(size, "big"))
            jwk["y"] = b64url(pub.y.to_bytes(size, "big"))
        return jwk

    def attributes_json(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": self.enabled, "exportable": self.exportable,
                                 "created": self.created, "updated": self.updated,
                                 "recoveryLevel": "Purgeable"}
        if self.nbf is not None:
            attrs["nbf"] = self.nbf
        if self.exp is not None:
            attrs["exp"] = self.exp
        return attrs

    def policy(self) -> ReleasePolicy | None:
        if self.release_policy is None:
            return None
        return _parsed_policy(self.release_policy.data)

    def to_record(self) -> dict[str, Any]:
        return {"version": self.version, "kty": self.kty, "material": b64url(self.material),
                "key_ops": list(self.key_ops), "enabled": self.enabled,
                "exportable": self.exportable, "created": self.created,
                "updated": self.updated, "nbf": self.nbf, "exp": self.exp,
                "tags": dict(self.tags), "public": dict(self.public),
                "release_policy": None if self.release_policy is None else {
                    "data": b64url(self.release_policy.data),
                    "contentType": self.release_policy.content_type,
                    "immutable": self.release_policy.immutable}}

    @classmethod
    def from_record(cls, name: str, rec: Mapping[str, Any]) -> KeyVersion:
        pol = rec["release_policy"]
        return cls(name=name, version=rec["version"], kty=rec["kty"],
                   material=b64url_decode(rec["material"]), key_ops=tuple(rec["key_ops"]),
                   enabled=rec["enabled"], exportable=rec["exportable"],
                   created=rec["created"], updated=rec["updated"], nbf=rec["nbf"],
                   exp=rec["exp"], tags=dict(rec["tags"]), public=dict(rec.get("public", {})),
                   release_policy=None if pol is None else StoredPolicy(
                       b64url_decode(pol["data"]), pol["contentType"], pol["immutable"]))


_POLICY_CACHE: dict[bytes, ReleasePolicy] = {}
_POLICY_LOCK = threading.Lock()


def _parsed_policy(data: bytes) -> ReleasePolicy:
    with _POLICY_LOCK:
        parsed = _POLICY_CACHE.get(data)
    if parsed is None:
        parsed = parse_release_policy(data, require_debug_pin=False)  # checked at creation
        with _POLICY_LOCK:
            if len(_POLICY_CACHE) > 1024:
                _POLICY_CACHE.clear()
            _POLICY_CACHE[data] = parsed
    return parsed


def _bool(value: object, what: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise KeyParameterError(f"{what} must be true or false, found {type(value).__name__}")
    return value


def _time(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TIME:
        raise KeyParameterError(f"{what} must be a Unix time in seconds (0..{_MAX_TIME})")
    return value


def _fields(body: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    """Refuse a body naming a field Key Vault does not define for this operation."""
    extra = set(body) - allowed
    if extra:
        shown = ", ".join(repr(str(k)[:40]) for k in sorted(extra)[:5])
        raise KeyParameterError(f"{what}: unknown field(s) {shown}")


def _attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    attrs = body.get("attributes")
    attrs = {} if attrs is None else attrs
    if not isinstance(attrs, dict):
        raise KeyParameterError("attributes must be an object")
    _fields(attrs, _ATTRIBUTE_FIELDS, "attributes")
    return attrs


def _tags(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > _MAX_TAGS or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 512 and len(v) <= 512
            for k, v in value.items()):
        raise KeyParameterError(f"tags must be an object of at most {_MAX_TAGS} string values")
    return dict(value)


def _key_ops(value: object, family: str) -> tuple[str, ...]:
    if value is None:
        return tuple(_DEFAULT_OPS[family])
    if not isinstance(value, list) or not all(isinstance(op, str) and op in _OPS for op in value):
        raise KeyParameterError(f"key_ops must be a list of {', '.join(_OPS)}")
    return tuple(dict.fromkeys(value))


class KeyStore:
    """Keys with versions, encrypted at rest under a master key in ``data_dir``.

    Args:
        data_dir: the service's data directory (created 0700 if absent).
        require_debug_pin: passed to :func:`~enclavekit.kms.policy.parse_release_policy` for
            every policy the store accepts.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, require_debug_pin: bool = True) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keys_dir = self.root / "keys"
        self.keys_dir.mkdir(exist_ok=True, mode=0o700)
        remove_stale_temps(self.root)  # of writes a kill interrupted (never a live writer's)
        remove_stale_temps(self.keys_dir)
        self.require_debug_pin = require_debug_pin
        self._aead = AESGCM(self._master_key())
        self._lock = threading.Lock()
        # Decrypted records by name, valid while the file's inode, size and mtime are unchanged
        # (every save is a rename, so a new inode).
        self._cache: dict[str, tuple[tuple[int, int, int], tuple[KeyVersion, ...]]] = {}

    def _master_key(self) -> bytes:
        path = self.root / "master.key"
        if not path.exists():
            # Written to a temporary file, then linked into place: two services starting at
            # once never see a half-written key, and the second one uses the first one's.
            fd, tmp = locked_temp(path)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, secrets.token_bytes(32))
                os.fsync(fd)
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
                os.close(fd)
        key = path.read_bytes()
        if len(key) != 32:
            raise IntegrityError(f"master key {path} is {len(key)} bytes, expected 32")
        return key

    # ------------------------------------------------------------------ persistence

    def _path(self, name: str) -> Path:
        check_name(name)
        return self.keys_dir / f"{name}.key"

    def _aad(self, name: str) -> bytes:
        return b"enclavekit.kms.key\0" + name.encode()

    def _load(self, name: str) -> list[KeyVersion]:
        path = self._path(name)
        try:
            with path.open("rb") as handle:
                st = os.fstat(handle.fileno())
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                cached = self._cache.get(name)
                if cached is not None and cached[0] == stamp:
                    return list(cached[1])
                blob = handle.read()
        except FileNotFoundError:
            raise KeyNotFound(f"key {name!r} does not exist") from None
        versions = self._decrypt(name, blob)
        # Only files older than the file system's timestamp granularity are cached, so an
        # in-place change right after a write is never hidden by an equal mtime.
        if time.time_ns() - st.st_mtime_ns > 2_000_000_000:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[name] = (stamp, tuple(versions))
        return versions

    def _decrypt(self, name: str, blob: bytes) -> list[KeyVersion]:
        if len(blob) < len(_MAGIC) + 12 + 16 or not blob.startswith(_MAGIC):
            raise IntegrityError(f"key store file for {name!r} is not an enclavekit key file")
        nonce = blob[len(_MAGIC):len(_MAGIC) + 12]
        try:
            plain = self._aead.decrypt(nonce, blob[len(_MAGIC) + 12:], self._aad(name))
        except InvalidTag:
            raise IntegrityError(f"key store file for {name!r} does not authenticate "
                                 "(corrupted or tampered)") from None
        try:
            record = strict_json(plain)
            return [KeyVersion.from_record(name, v) for v in record["versions"]]
        except (JSONError, KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"key store record for {name!r} is malformed") from exc

    def _save(self, name: str, versions: list[KeyVersion]) -> None:
        import json

        plain = json.dumps({"name": name, "versions": [v.to_record() for v in versions]},
                           separators=(",", ":")).encode()
        nonce = secrets.token_bytes(12)
        atomic_write(self._path(name),
                     _MAGIC + nonce + self._aead.encrypt(nonce, plain, self._aad(name)))

    # ------------------------------------------------------------------ queries

    def names(self) -> list[str]:
        """Every key name in the store (corrupted files included)."""
        return sorted(p.stem for p in self.keys_dir.glob("*.key") if _NAME.match(p.stem))

    def versions(self, name: str) -> list[KeyVersion]:
        """Every version of ``name``, oldest first."""
        return self._load(name)

    def get(self, name: str, version: str | None = None) -> KeyVersion:
        """The named version (or the latest).

        Raises:
            KeyNotFound: no such key or version.
            IntegrityError: the key's file does not authenticate.
        """
        versions = self._load(name)
        if not version:
            return versions[-1]
        for item in versions:
            if item.version == version:
                return item
        raise KeyNotFound(f"key {name!r} has no version {version[:40]!r}")

    # ------------------------------------------------------------------ changes

    def _policy(self, value: object, exportable: bool) -> StoredPolicy | None:
        if value is None:
            if exportable:
                raise KeyParameterError("Exportable keys must have release policy")
            return None
        if not exportable:
            raise KeyParameterError("Non-exportable keys must not have release policy")
        if not isinstance(value, dict):
            raise KeyParameterError("release_policy must be an object")
        extra = set(value) - {"contentType", "data", "immutable"}
        if extra:
            raise KeyParameterError(f"release_policy: unknown field(s) {sorted(extra)}")
        content_type = value.get("contentType") or POLICY_CONTENT_TYPE
        if content_type != POLICY_CONTENT_TYPE:
            raise KeyParameterError(f"release_policy contentType must be {POLICY_CONTENT_TYPE!r}")
        try:
            raw = b64url_decode(value.get("data"), lenient=True)
        except ValueError as exc:
            raise KeyParameterError(f"release_policy data: {exc}") from exc
        policy = parse_release_policy(raw, require_debug_pin=self.require_debug_pin)
        return StoredPolicy(policy.document, content_type,
                            _bool(value.get("immutable"), "release_policy immutable", False))

    def _add_version(self, name: str, new: KeyVersion) -> KeyVersion:
        with self._lock:
            try:
                versions = self._load(name)
            except KeyNotFound:
                versions = []
            if versions:
                last = versions[-1].release_policy
                if last is not None and last.immutable and new.release_policy != last:
                    raise KeyStateError(f"key {name!r} has an immutable release policy; a new "
                                        "version must carry the same policy")
            versions.append(new)
            self._save(name, versions)
        return new

    def _common(self, name: str, kty: str, material: bytes, body: Mapping[str, Any]
                ) -> KeyVersion:
        attrs = _attributes(body)
        exportable = _bool(attrs.get("exportable"), "attributes.exportable", False)
        now = int(time.time())
        key = KeyVersion(
            name=name, version=secrets.token_hex(16), kty=kty, material=material,
            key_ops=_key_ops(body.get("key_ops"), kty.removesuffix("-HSM")),
            enabled=_bool(attrs.get("enabled"), "attributes.enabled", True),
            exportable=exportable, created=now, updated=now,
            nbf=_time(attrs.get("nbf"), "attributes.nbf"),
            exp=_time(attrs.get("exp"), "attributes.exp"), tags=_tags(body.get("tags")),
            release_policy=self._policy(body.get("release_policy"), exportable))
        return replace(key, public=key.public_members())

    def create(self, name: str, body: Mapping[str, Any]) -> KeyVersion:
        """Generate a new key (or a new version of ``name``) from a Key Vault create body.

        Raises:
            KeyParameterError: a parameter Key Vault would refuse (``BadParameter``).
            ReleasePolicyInvalid: the release policy is refused.
            KeyStateError: the current version's release policy is immutable and differs.
        """
        check_name(name)
        _fields(body, _CREATE_FIELDS, "create body")
        kty = body.get("kty")
        if kty not in _KTYS:
            raise KeyParameterError(f"kty must be one of {', '.join(_KTYS)}, found {kty!r}")
        assert isinstance(kty, str)
        family = kty.removesuffix("-HSM")
        size = body.get("key_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise KeyParameterError("key_size must be an integer")
        if family == "RSA":
            size = size or 2048
            exponent = body.get("public_exponent", 65537) or 65537
            if size not in _RSA_SIZES:
                raise KeyParameterError(f"RSA key_size must be 2048, 3072 or 4096, found {size}")
            if exponent != 65537:
                raise KeyParameterError("public_exponent must be 65537")
            material = _pkcs8(rsa.generate_private_key(65537, size))
        elif family == "EC":
            crv = body.get("crv") or "P-256"
            if crv not in _CURVES:
                raise KeyParameterError(f"crv must be P-256, P-384 or P-521, found {crv!r}")
            material = _pkcs8(ec.generate_private_key(_CURVES[crv]()))
        else:
            size = size or 256
            if size not in _OCT_SIZES:
                raise KeyParameterError(f"oct key_size must be 128, 192 or 256, found {size}")
            material = secrets.token_bytes(size // 8)
        return self._add_version(name, self._common(name, kty, material, body))

    def import_key(self, name: str, body: Mapping[str, Any]) -> KeyVersion:
        """Import a key from a Key Vault import body (``{"key": JWK, "Hsm": bool, ...}``).

        Raises:
            KeyParameterError: the JWK is not a complete, consistent private key.
        """
        check_name(name)
        _fields(body, _IMPORT_FIELDS, "import body")
        jwk = body.get("key")
        if not isinstance(jwk, dict):
            raise KeyParameterError("key must be a JSON Web Key object")
        kty = jwk.get("kty")
        if kty not in _KTYS:
            raise KeyParameterError(f"key.kty must be one of {', '.join(_KTYS)}, found {kty!r}")
        assert isinstance(kty, str)
        family = kty.removesuffix("-HSM")
        hsm = body.get("Hsm", body.get("hsm"))
        if _bool(hsm, "Hsm", False) and not kty.endswith("-HSM"):
            kty += "-HSM"
        material = _material_from_jwk(family, jwk)
        merged = dict(body)
        merged.setdefault("key_ops", jwk.get("key_ops"))
        return self._add_version(name, self._common(name, kty, material, merged))

    def update(self, name: str, version: str, body: Mapping[str, Any]) -> KeyVersion:
        """Change attributes, tags, key_ops or the release policy of one version (PATCH).

        Raises:
            KeyParameterError: an unknown field or a value Key Vault would refuse.
            KeyStateError: the release policy is immutable.
        """
        with self._lock:
            versions = self._load(name)
            index = next((i for i, v in enumerate(versions) if v.version == version), None)
            if index is None:
                raise KeyNotFound(f"key {name!r} has no version {version[:40]!r}")
            old = versions[index]
            _fields(body, _UPDATE_FIELDS, "update body")
            attrs = _attributes(body)
            if "exportable" in attrs and attrs["exportable"] != old.exportable:
                raise KeyParameterError("exportable cannot be changed after creation")
            policy = old.release_policy
            if body.get("release_policy") is not None:
                if policy is not None and policy.immutable:
                    raise KeyStateError(f"key {name!r}: the release policy is immutable")
                policy = self._policy(body["release_policy"], old.exportable)
            new = replace(
                old, enabled=_bool(attrs.get("enabled"), "attributes.enabled", old.enabled),
                nbf=_time(attrs.get("nbf"), "attributes.nbf") if "nbf" in attrs else old.nbf,
                exp=_time(attrs.get("exp"), "attributes.exp") if "exp" in attrs else old.exp,
                tags=_tags(body["tags"]) if body.get("tags") is not None else old.tags,
                key_ops=_key_ops(body["key_ops"], old.family) if body.get("key_ops")
                is not None else old.key_ops,
                release_policy=policy, updated=int(time.time()))
            versions[index] = new
            self._save(name, versions)
        return new

    def delete(self, name: str) -> KeyVersion:
        """Delete every version of ``name`` (purged at once: no soft delete); return the latest."""
        with self._lock:
            try:
                latest = self._load(name)[-1]
            except IntegrityError:
                latest = None
            self._path(name).unlink(missing_ok=False)
        if latest is None:
            raise KeyNotFound(f"key {name!r} was corrupted and has been removed")
        return latest


def _pkcs8(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _int(jwk: Mapping[str, Any], name: str) -> int:
    try:
        return int.from_bytes(b64url_decode(jwk.get(name), lenient=True), "big")
    except ValueError as exc:
        raise KeyParameterError(f"key.{name}: {exc}") from exc


def _material_from_jwk(family: str, jwk: Mapping[str, Any]) -> bytes:
    try:
        if family == "RSA":
            n, e, d, p, q = (_int(jwk, k) for k in ("n", "e", "d", "p", "q"))
            if n.bit_length() not in _RSA_SIZES:
                raise KeyParameterError(f"RSA key must be 2048, 3072 or 4096 bits, found "
                                        f"{n.bit_length()}")
            numbers = rsa.RSAPrivateNumbers(
                p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
                rsa.RSAPublicNumbers(e, n))
            return _pkcs8(numbers.private_key())
        if family == "EC":
            crv = jwk.get("crv")
            if crv not in _CURVES:
                raise KeyParameterError(f"key.crv must be P-256, P-384 or P-521, found {crv!r}")
            assert isinstance(crv, str)
            key = ec.derive_private_key(_int(jwk, "d"), _CURVES[crv]())
            pub = key.public_key().public_numbers()
            if ("x" in jwk and _int(jwk, "x") != pub.x) or ("y" in jwk and _int(jwk, "y") != pub.y):
                raise KeyParameterError("key.x / key.y do not match key.d")
            return _pkcs8(key)
        raw = b64url_decode(jwk.get("k"), lenient=True)
        if len(raw) * 8 not in _OCT_SIZES:
            raise KeyParameterError("oct key must be 128, 192 or 256 bits")
        return raw
    except KeyParameterError:
        raise
    except ValueError as exc:
        raise KeyParameterError(f"key is not a consistent private key: {exc}") from exc
