"""The release: verify the token, check the key and its policy, wrap the key to the enclave.

Order of checks for ``POST /keys/{name}[/{version}]/release``:

1. The request body is ``{"target": <token>, "nonce"?: str, "enc"?: str}``, nothing else (a
   wrapping key in the body is refused: the key is only ever wrapped to the token's key, KR-2).
2. The key version exists (the named one, never a silent fallback to another, KR-5), is
   enabled, inside its ``nbf``/``exp`` window, exportable and has a release policy.
3. The token verifies (:mod:`.tokens`) with a trusted authority's key.
4. The key's release policy holds for the token's issuer and claims (:mod:`.policy`).
5. The wrapping key is the first entry of the *verified* token's ``x-ms-runtime.keys`` that
   is an RSA key (>= 2048 bits) usable for encryption (``use == "enc"`` or ``"encrypt"`` /
   ``"wrapKey"`` in ``key_ops``, and neither of them contradicting it).
6. A ``nonce``, if given, has not been used before with this key while the token is valid, and
   its token was issued since the service started (:mod:`.replay`).

The answer is Key Vault's ``{"value": <compact JWS>}``: an RS256 JWS signed by the service's key
(certificate in ``x5c``) whose payload holds the request (``api-version``, ``enc``, ``kid``,
``nonce``) and the key bundle with ``key_hsm`` = base64url of
``{"schema_version":"1.0","header":{"alg":"dir","enc":...,"kid":<wrapping kid>},
"ciphertext":...}`` (:mod:`.wrap`). Every decision, allowed or refused, is written to the
audit log before the answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import jose
from .._codec import b64url, b64url_decode
from ..errors import (
    EnclaveKitError,
    KeyParameterError,
    KeyStateError,
    TokenRejected,
)
from .audit import AuditLog
from .replay import NonceCache
from .store import KeyStore, KeyVersion
from .tokens import TokenVerifier, VerifiedToken
from .wrap import DEFAULT_ENC, ENC_ALGORITHMS, wrap_key_material

__all__ = ["ReleaseService", "ReleaseSigner", "wrapping_key_from_claims"]

_FIELDS: Final = frozenset({"target", "nonce", "enc"})
_MAX_NONCE: Final = 1024


@dataclass(frozen=True)
class ReleaseSigner:
    """The key and certificate that sign release responses (the vault's TLS key in Azure)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    def header(self) -> dict[str, Any]:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return {"alg": "RS256", "kid": b64url(hashlib.sha1(der).digest()),
                "x5c": [base64.b64encode(der).decode()],
                "x5t#S256": b64url(hashlib.sha256(der).digest())}

    def sign(self, payload: Mapping[str, Any]) -> str:
        return jose.sign(payload, self.key, headers=self.header())


def wrapping_key_from_claims(claims: Mapping[str, Any]) -> tuple[str | None, rsa.RSAPublicKey]:
    """The first encryption-capable RSA JWK in ``x-ms-runtime.keys`` and its ``kid``.

    Raises:
        TokenRejected: the token carries no usable wrapping key.
    """
    runtime = claims.get("x-ms-runtime")
    keys = runtime.get("keys") if isinstance(runtime, Mapping) else None
    if not isinstance(keys, list):
        raise TokenRejected("token: x-ms-runtime.keys is missing; nothing to wrap the key to")
    for jwk in keys:
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
            continue
        use, ops = jwk.get("use"), jwk.get("key_ops")
        if use is not None and use != "enc":
            continue
        if ops is not None and not (isinstance(ops, list) and ("encrypt" in ops or
                                                               "wrapKey" in ops)):
            continue
        if use is None and ops is None:
            continue
        try:
            n = int.from_bytes(b64url_decode(jwk.get("n")), "big")
            e = int.from_bytes(b64url_decode(jwk.get("e")), "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            continue
        if key.key_size < 2048:
            continue
        kid = jwk.get("kid")
        return (kid if isinstance(kid, str) else None), key
    raise TokenRejected("token: x-ms-runtime.keys has no RSA key (>= 2048 bits) for encryption")


class ReleaseService:
    """Releases keys from ``store`` to enclaves whose tokens ``verifier`` accepts."""

    def __init__(self, store: KeyStore, verifier: TokenVerifier, audit: AuditLog,
                 signer: ReleaseSigner) -> None:
        self.store = store
        self.verifier = verifier
        self.audit = audit
        self.signer = signer
        self.nonces = NonceCache()
        self._jwk_cache: dict[tuple[str, str], dict[str, Any]] = {}

    def release(self, name: str, version: str | None, body: object, *, vault_url: str,
                api_version: str, client: str, subject: str | None = None) -> str:
        """Run the checks in the module docstring and return the release JWS.

        Raises:
            KeyParameterError: the body is malformed.
            KeyNotFound: no such key or version.
            KeyStateError: the key is disabled, expired, not yet valid or not exportable.
            TokenRejected: the token fails verification, carries no wrapping key, or the
                nonce was used before.
            ReleasePolicyNotSatisfied: the token does not satisfy the key's policy.
        """
        token: VerifiedToken | None = None
        nonce: str | None = None
        try:
            target, nonce, enc = self._parse(body)
            key = self.store.get(name, version)
            self._check_state(key, self.verifier_now())
            token = self.verifier.verify(target)
            policy = key.policy()
            assert policy is not None
            policy.check(token.issuer, token.claims)
            wrap_kid, wrapping_key = wrapping_key_from_claims(token.claims)
            if nonce is not None:
                iat = token.claims.get("iat")
                self.nonces.use(name, nonce, expires=float(token.claims["exp"]),
                                issued=float(iat) if isinstance(iat, int | float) else None)
            jws = self._response(key, token, enc, nonce, wrap_kid, wrapping_key, vault_url,
                                 api_version, explicit_version=bool(version))
        except EnclaveKitError as exc:
            self.audit.record(client=client, subject=subject, key=name, version=version,
                              decision="refused", reason=f"{type(exc).__name__}: {exc}",
                              issuer=token.issuer if token else None,
                              claims=token.claims if token else None, nonce=nonce)
            raise
        self.audit.record(client=client, subject=subject, key=name, version=key.version,
                          decision="allowed", reason="release policy satisfied",
                          issuer=token.issuer, claims=token.claims, nonce=nonce)
        return jws

    def verifier_now(self) -> float:
        import time

        return time.time()

    @staticmethod
    def _parse(body: object) -> tuple[str, str | None, str]:
        if not isinstance(body, dict):
            raise KeyParameterError("release body must be a JSON object")
        extra = set(body) - _FIELDS
        if extra:
            raise KeyParameterError(f"release body: unknown field(s) {sorted(extra)}; the key "
                                    "is only wrapped to the key in the attestation token")
        target = body.get("target")
        if not isinstance(target, str) or not target:
            raise KeyParameterError("release body: target must be an attestation token string")
        nonce = body.get("nonce")
        if nonce is not None and (not isinstance(nonce, str) or len(nonce) > _MAX_NONCE):
            raise KeyParameterError("release body: nonce must be a string of at most 1024 chars")
        enc = body.get("enc") or DEFAULT_ENC
        if not isinstance(enc, str) or enc not in ENC_ALGORITHMS:
            found = repr(enc)[:40] if isinstance(enc, str) else f"a {type(enc).__name__}"
            raise KeyParameterError(f"release body: enc must be one of "
                                    f"{', '.join(ENC_ALGORITHMS)}, found {found}")
        return target, nonce, enc

    @staticmethod
    def _check_state(key: KeyVersion, now: float) -> None:
        if not key.enabled:
            raise KeyStateError("Operation release is not allowed on a disabled key.")
        if key.nbf is not None and now < key.nbf:
            raise KeyStateError("Operation release is not allowed on a key that is not yet "
                                "valid.")
        if key.exp is not None and now >= key.exp:
            raise KeyStateError("Operation release is not allowed on an expired key.")
        if not key.exportable or key.release_policy is None:
            raise KeyStateError("Operation release is not allowed on a non-exportable key.")

    def _public_jwk(self, key: KeyVersion, kid: str) -> dict[str, Any]:
        cache_key = (key.name, key.version)
        cached = self._jwk_cache.get(cache_key)
        if cached is None:
            cached = key.public_jwk("")
            if len(self._jwk_cache) > 4096:
                self._jwk_cache.clear()
            self._jwk_cache[cache_key] = cached
        return {**cached, "kid": kid}

    def _response(self, key: KeyVersion, token: VerifiedToken, enc: str, nonce: str | None,
                  wrap_kid: str | None, wrapping_key: rsa.RSAPublicKey, vault_url: str,
                  api_version: str, *, explicit_version: bool) -> str:
        ciphertext = wrap_key_material(wrapping_key, key.material, enc)
        key_hsm = {"schema_version": "1.0",
                   "header": {"alg": "dir", "enc": enc, "kid": wrap_kid},
                   "ciphertext": b64url(ciphertext)}
        full_kid = f"{vault_url}/keys/{key.name}/{key.version}"
        jwk = self._public_jwk(key, full_kid)
        jwk["kty"] = key.family
        jwk["key_hsm"] = b64url(json.dumps(key_hsm, separators=(",", ":")).encode())
        request: dict[str, Any] = {
            "api-version": api_version, "enc": enc,
            "kid": full_kid if explicit_version else f"{vault_url}/keys/{key.name}"}
        if nonce is not None:
            request["nonce"] = nonce
        assert key.release_policy is not None
        payload = {"request": request,
                   "response": {"key": {
                       "attributes": key.attributes_json(), "key": jwk,
                       "release_policy": {"contentType": key.release_policy.content_type,
                                          "data": b64url(key.release_policy.data)}}}}
        return self.signer.sign(payload)
