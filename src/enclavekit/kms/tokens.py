"""Attestation-token verification pinned per trusted authority (TS-1..TS-4, TS-7).

A token is accepted only when all of these hold, checked in this order:

1. It is a compact JWS of exactly three base64url parts whose header and payload are strict
   JSON objects (duplicate keys refused, TS-7) and whose header has no ``crit``.
2. ``alg`` is exactly ``RS256``. The algorithm is pinned here, never chosen from the header:
   ``none``, ``HS256`` (with whatever secret), ``ES256``, ``PS256``, ``rs256`` are all refused
   (TS-1, TS-2).
3. ``iss`` (normalised by removing one trailing ``/``) equals a configured trusted authority.
4. ``kid`` is a string that equals, exactly, the ``kid`` of a key in that authority's JWKS,
   fetched from the authority's own ``/certs`` (or a configured JWKS URL, or configured static
   keys) — never from ``jku``, ``x5u``, ``jwk`` or ``x5c`` in the token header, which are ignored
   (TS-3). JWKS documents are cached for ``ttl`` seconds; an unknown ``kid`` refetches at most
   every ``refresh_interval`` seconds.
5. The RSASSA-PKCS1-v1_5/SHA-256 signature verifies with that key (RSA >= 2048 bits).
6. ``exp`` is present and in the future, ``nbf`` (when present) and ``iat`` (when present) are
   not in the future, allowing ``leeway`` seconds (TS-4).

Any failure raises :class:`~enclavekit.errors.TokenRejected` naming the check.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .._codec import JSONError, b64url_decode, strict_json
from ..errors import TokenRejected
from .policy import normalize_authority

__all__ = ["PINNED_ALG", "TokenVerifier", "TrustedAuthority", "VerifiedToken"]

PINNED_ALG: Final = "RS256"
_MAX_TOKEN: Final = 64 * 1024
_MAX_JWKS: Final = 1024 * 1024
_MIN_RSA_BITS: Final = 2048


@dataclass(frozen=True)
class TrustedAuthority:
    """An attestation service whose tokens the key service accepts.

    Args:
        url: the issuer URL exactly as the service writes ``iss`` (one trailing ``/`` ignored).
        jwks_url: where its signing keys are; default ``<url>/certs`` (MAA).
        keys: static signing keys by ``kid``; when given, nothing is fetched.
    """

    url: str
    jwks_url: str | None = None
    keys: Mapping[str, rsa.RSAPublicKey] | None = field(default=None, compare=False)

    @property
    def normalized(self) -> str:
        return normalize_authority(self.url)

    @property
    def certs_url(self) -> str:
        return self.jwks_url or f"{self.normalized}/certs"

    @classmethod
    def from_certificate(cls, url: str, pem: bytes, kid: str) -> TrustedAuthority:
        """An authority whose only signing key is the one in ``pem`` (a certificate)."""
        key = x509.load_pem_x509_certificate(pem).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise TokenRejected("authority certificate does not hold an RSA key")
        return cls(url, keys={kid: key})


@dataclass(frozen=True)
class VerifiedToken:
    """A token that passed every check; ``claims`` are the verified payload."""

    issuer: str
    authority: str
    kid: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]


def _rsa_from_jwk(entry: Mapping[str, Any]) -> rsa.RSAPublicKey | None:
    """The RSA public key of a JWKS entry (``x5c[0]`` preferred), or ``None`` if unusable."""
    if entry.get("kty") != "RSA" or entry.get("alg", PINNED_ALG) != PINNED_ALG:
        return None
    if entry.get("use", "sig") != "sig":
        return None
    key: object = None
    chain = entry.get("x5c")
    try:
        if isinstance(chain, list) and chain and isinstance(chain[0], str):
            key = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True)) \
                .public_key()
        elif isinstance(entry.get("n"), str) and isinstance(entry.get("e"), str):
            n = int.from_bytes(b64url_decode(entry["n"]), "big")
            e = int.from_bytes(b64url_decode(entry["e"]), "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        return None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < _MIN_RSA_BITS:
        return None
    return key


class TokenVerifier:
    """Verifies attestation tokens against a fixed set of trusted authorities.

    Args:
        authorities: the authorities to trust (nothing else is ever trusted).
        http: the client used to fetch JWKS documents (default: a new ``httpx.Client``).
        ttl: seconds a fetched JWKS is used before it is fetched again.
        refresh_interval: least seconds between two fetches caused by unknown ``kid`` values.
        leeway: clock skew allowed on ``exp`` / ``nbf`` / ``iat``, in seconds.
        clock: the time source (tests pass a fixed one).
    """

    def __init__(self, authorities: Iterable[TrustedAuthority], *,
                 http: httpx.Client | None = None, ttl: float = 300.0,
                 refresh_interval: float = 30.0, leeway: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._authorities = {a.normalized: a for a in authorities}
        self._http = http
        self._ttl = ttl
        self._refresh = refresh_interval
        self._leeway = leeway
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, rsa.RSAPublicKey]]] = {}
        self._lock = threading.Lock()

    @property
    def authorities(self) -> tuple[str, ...]:
        return tuple(self._authorities)

    def verify(self, token: object, *, now: float | None = None) -> VerifiedToken:
        """Check ``token`` as the module docstring lists and return its verified claims.

        Raises:
            TokenRejected: the token fails a check (the message names it).
        """
        if not isinstance(token, str) or not token:
            raise TokenRejected("token: expected a compact JWS string")
        if len(token) > _MAX_TOKEN:
            raise TokenRejected(f"token: {len(token)} bytes, the limit is {_MAX_TOKEN}")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenRejected(f"token: a compact JWS has 3 parts, found {len(parts)}")
        try:
            header = strict_json(b64url_decode(parts[0]))
            claims = strict_json(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except (JSONError, ValueError) as exc:
            raise TokenRejected(f"token: does not decode: {exc}") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenRejected("token: header and payload must be JSON objects")
        if "crit" in header:
            raise TokenRejected("token: critical header parameters are not supported")
        if header.get("alg") != PINNED_ALG:
            raise TokenRejected(f"token: algorithm {header.get('alg')!r} refused; "
                                f"only {PINNED_ALG} is accepted")
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise TokenRejected("token: iss claim is missing")
        authority = self._authorities.get(normalize_authority(issuer))
        if authority is None:
            raise TokenRejected(f"token: issuer {issuer!r} is not a trusted authority")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token: kid header is missing")
        key = self._key(authority, kid)
        try:
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise TokenRejected("token: signature does not verify with the authority's key "
                                f"{kid!r}") from exc
        self._check_times(claims, self._clock() if now is None else now)
        return VerifiedToken(issuer, authority.normalized, kid, header, claims)

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        def number(name: str) -> float | None:
            value = claims.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TokenRejected(f"token: {name} must be a NumericDate")
            return float(value)
        exp = number("exp")
        if exp is None:
            raise TokenRejected("token: exp claim is missing")
        if now >= exp + self._leeway:
            raise TokenRejected(f"token: expired at {int(exp)} (now {int(now)})")
        nbf = number("nbf")
        if nbf is not None and now + self._leeway < nbf:
            raise TokenRejected(f"token: not valid before {int(nbf)} (now {int(now)})")
        iat = number("iat")
        if iat is not None and now + self._leeway < iat:
            raise TokenRejected(f"token: issued in the future ({int(iat)}, now {int(now)})")

    def _key(self, authority: TrustedAuthority, kid: str) -> rsa.RSAPublicKey:
        if authority.keys is not None:
            key = authority.keys.get(kid)
            if key is None:
                raise TokenRejected(f"token: kid {kid!r} is not a key of {authority.normalized}")
            return key
        with self._lock:
            now = self._clock()
            cached = self._cache.get(authority.normalized)
            stale = cached is None or now - cached[0] >= self._ttl
            unknown = cached is not None and kid not in cached[1]
            if stale or (unknown and cached is not None and now - cached[0] >= self._refresh):
                cached = (now, self._fetch(authority))
                self._cache[authority.normalized] = cached
            assert cached is not None
            key = cached[1].get(kid)
        if key is None:
            raise TokenRejected(f"token: kid {kid!r} is not a key of {authority.normalized}")
        return key

    def _fetch(self, authority: TrustedAuthority) -> dict[str, rsa.RSAPublicKey]:
        url = authority.certs_url
        try:
            if self._http is None:
                self._http = httpx.Client(timeout=5.0, follow_redirects=False)
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise TokenRejected(f"cannot fetch the keys of {authority.normalized} from {url}: "
                                f"{type(exc).__name__}") from exc
        if response.status_code != 200 or len(response.content) > _MAX_JWKS:
            raise TokenRejected(f"cannot fetch the keys of {authority.normalized} from {url}: "
                                f"HTTP {response.status_code}")
        try:
            doc = strict_json(response.content)
        except JSONError as exc:
            raise TokenRejected(f"keys of {authority.normalized}: {exc}") from exc
        entries = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise TokenRejected(f"keys of {authority.normalized}: not a JWKS document")
        keys: dict[str, rsa.RSAPublicKey] = {}
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("kid"), str):
                key = _rsa_from_jwk(entry)
                if key is not None and entry["kid"] not in keys:
                    keys[entry["kid"]] = key
        return keys
