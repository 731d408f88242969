"""Attestation-token verification pinned per trusted authority (TS-1..TS-4, TS-7).

The checks are :mod:`enclavekit.jose`'s (the shared JOSE module on PyJWT); this module adds
the trusted authorities and their JWKS. A token is accepted only when all of these hold,
checked in this order:

1. It is a compact JWS of at most 64 KiB in exactly three parts of unpadded, canonical
   base64url whose header and payload are strict JSON objects (duplicate keys refused, TS-7)
   and whose header has no ``crit``.
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

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import jose
from ..errors import InvalidToken, TokenRejected
from .policy import normalize_authority

__all__ = ["PINNED_ALG", "TokenVerifier", "TrustedAuthority", "VerifiedToken"]

PINNED_ALG: Final = "RS256"


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
        try:
            return self._verify(token, self._clock() if now is None else now)
        except InvalidToken as exc:
            raise TokenRejected(f"token: {exc}") from exc

    def _verify(self, token: object, now: float) -> VerifiedToken:
        jws = jose.decode(token)  # at most jose.MAX_TOKEN (64 KiB)
        claims = jws.claims()
        jose.check_alg(jws, (PINNED_ALG,))
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise InvalidToken("iss claim is missing")
        authority = self._authorities.get(normalize_authority(issuer))
        if authority is None:
            raise InvalidToken(f"issuer {issuer!r} is not a trusted authority")
        kid = jws.header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("kid header is missing")
        key = self._key(authority, kid)
        jose.verify_signature(jws, key, algorithms=(PINNED_ALG,),
                              key_name=f"the authority's key {kid!r}")
        jose.check_times(claims, at=now, leeway=self._leeway)
        return VerifiedToken(issuer, authority.normalized, kid, jws.header, claims)

    def _key(self, authority: TrustedAuthority, kid: str) -> rsa.RSAPublicKey:
        if authority.keys is not None:
            key = authority.keys.get(kid)
            if key is None:
                raise InvalidToken(f"kid {kid!r} is not a key of {authority.normalized}")
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
            raise InvalidToken(f"kid {kid!r} is not a key of {authority.normalized}")
        return key

    def _fetch(self, authority: TrustedAuthority) -> dict[str, rsa.RSAPublicKey]:
        if self._http is None:
            self._http = httpx.Client(timeout=5.0, follow_redirects=False)
        try:
            return jose.jwks_keys(jose.fetch_jwks(authority.certs_url, client=self._http))
        except InvalidToken as exc:
            raise InvalidToken(f"keys of {authority.normalized}: {exc}") from None
