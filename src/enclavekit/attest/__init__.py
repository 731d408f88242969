"""Relying-party side of attestation: the collateral service for emulated platforms (PCCS),
verification policy and services built on DCAP quotes, and attestation-token verification
(:func:`verify_token`).

Rank 3: may use :mod:`enclavekit.dcap`, :mod:`enclavekit.vm` and the layers below.
"""

from __future__ import annotations

from .token import JWKSSource, jwks_source, verify_token

__all__ = ["JWKSSource", "jwks_source", "verify_token"]
