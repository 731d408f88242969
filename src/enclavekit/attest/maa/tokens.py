"""Tokens the attestation service issues.

Signed tokens are RS256 JWTs with header ``{"alg","jku","kid","typ":"JWT"}`` (maa-skr.md §4);
``iat = nbf = floor(now)`` (Microsoft's client allows 0.5 s of clock slack, so ``nbf`` is never
in the future) and ``exp = iat + lifetime``: 8 h for attestation tokens, 1 h for policy and
certificate responses. Draft-policy results are unsecured (``alg: none``, empty signature).
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ... import jose

__all__ = ["ATTESTATION_TOKEN_LIFETIME", "POLICY_TOKEN_LIFETIME", "new_jti", "sign_token",
           "time_claims", "unsecured_token"]

ATTESTATION_TOKEN_LIFETIME = 8 * 3600
"""Seconds an attestation token is valid (MAA: 8 h for SGX, not configurable)."""

POLICY_TOKEN_LIFETIME = 3600
"""Seconds a policy / certificate-management response token is valid."""

def time_claims(now: float, lifetime: int) -> dict[str, int]:
    """``iat``, ``nbf`` (both ``floor(now)``) and ``exp``."""
    iat = math.floor(now)
    return {"iat": iat, "nbf": iat, "exp": iat + lifetime}


def new_jti() -> str:
    """A unique token id: 64 hex digits."""
    return secrets.token_hex(32)


def sign_token(claims: dict[str, Any], key: rsa.RSAPrivateKey, *, kid: str, jku: str) -> str:
    """An RS256 JWT over ``claims``."""
    return jose.sign(claims, key, headers={"jku": jku, "kid": kid, "typ": "JWT"})


def unsecured_token(claims: dict[str, Any]) -> str:
    """An unsecured JWT (``{"alg":"none"}``, empty signature)."""
    return jose.unsecured(claims)
