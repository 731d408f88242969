"""Key management with secure key release, wire-compatible with Azure Key Vault / Managed HSM SKR.

A key is released only against an attestation token that (1) verifies with the keys of an
authority the service is configured to trust and (2) satisfies the key's release policy; the
key is then wrapped to the RSA key that the verified token carries in ``x-ms-runtime.keys``, so
only the attested enclave can unwrap it.

Modules: :mod:`.policy` (release-policy grammar and evaluation), :mod:`.tokens` (token
verification pinned per authority), :mod:`.store` (keys encrypted at rest), :mod:`.wrap`
(Key Vault's RSA-AES key wrap), :mod:`.release`, :mod:`.audit`, :mod:`.app` (the Starlette
app) and :mod:`.serve` (HTTPS with a self-signed certificate). Rank 3.
"""

from .policy import ReleasePolicy, parse_release_policy
from .release import ReleaseService
from .store import KeyStore
from .tokens import TokenVerifier, TrustedAuthority, VerifiedToken

__all__ = [
    "KeyStore",
    "ReleasePolicy",
    "ReleaseService",
    "TokenVerifier",
    "TrustedAuthority",
    "VerifiedToken",
    "parse_release_policy",
]
