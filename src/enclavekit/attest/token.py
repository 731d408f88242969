"""Attestation tokens as a relying party verifies them (enclavekit's service or Azure Attestation).

A token is an RS256 JWT whose header ``kid`` names a key of the issuer's JWKS (``/certs``:
entries with ``x5c``, or ``n``/``e``). :func:`verify_token` checks it with
:func:`enclavekit.jose.verify` — strict form, ``alg`` RS256 only, the key by exact ``kid`` from
the JWKS *you* give (never from ``jku``/``x5u``/``jwk``/``x5c`` in the token), the signature,
``iss`` when you name it, and ``exp``/``nbf``/``iat`` at ``at`` — and returns the claims.
The JWKS is the trust anchor: whoever controls it can sign tokens you accept, so fetch it over
HTTPS from the issuer you mean (the certificates in ``x5c`` are not chain-checked, as Azure
Attestation's are self-signed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import jose
from ..errors import InvalidToken

__all__ = ["JWKSSource", "jwks_source", "verify_token"]

JWKSSource = Mapping[str, Any] | bytes | Callable[[], Mapping[str, Any] | bytes]
"""A JWKS document (parsed or JSON bytes), or a function that returns one when called."""


def jwks_source(location: str) -> Callable[[], bytes]:
    """A fetcher for the JWKS at ``location``: an ``http(s)://`` URL (GET, no redirects) or a
    file path. Nothing is read until it is called.

    Raises (when called):
        InvalidToken: the URL cannot be fetched or the file cannot be read.
    """
    if location.startswith(("https://", "http://")):
        return lambda: jose.fetch_jwks(location)

    def read() -> bytes:
        try:
            return Path(location).read_bytes()
        except OSError as exc:
            raise InvalidToken(f"cannot read the keys from {location}: "
                               f"{exc.strerror or type(exc).__name__}") from None
    return read


def verify_token(token: object, *, jwks: JWKSSource, issuer: str | None = None,
                 at: float | None = None, leeway: float = 0.0) -> dict[str, Any]:
    """Verify an attestation token and return its claims.

    Args:
        token: the compact JWT (what ``POST /attest/SgxEnclave`` answers in ``token``).
        jwks: the issuer's signing keys: a JWKS (dict or JSON bytes) or a fetcher
            (:func:`jwks_source`), called only once the token's form and ``alg`` are valid.
        issuer: when given, ``iss`` must equal it exactly; when ``None``, any ``iss`` is
            accepted and the JWKS alone decides.
        at: the time (Unix seconds) ``exp``/``nbf``/``iat`` are checked at; default now.
        leeway: clock skew allowed, in seconds.

    Returns:
        The verified claims.

    Raises:
        InvalidToken: malformed, another algorithm, unknown ``kid``, a signature that does not
            verify, another issuer, expired or not yet valid, or keys that cannot be had.
    """
    loaded: dict[str, Any] = {}

    def key(kid: str) -> object | None:
        if not loaded:
            document = jwks() if callable(jwks) else jwks
            loaded.update(jose.jwks_keys(document))
        return loaded.get(kid)

    return jose.verify(token, key, issuer=issuer, at=at, leeway=leeway).claims
