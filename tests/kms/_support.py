"""Test helpers: a fake attestation authority that mints MAA-shaped tokens, an enclave's
wrapping key, release policies, and a key service over a temporary data directory."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from enclavekit.kms.serve import KMSService, build_service
from enclavekit.kms.tokens import TokenVerifier, TrustedAuthority

AUTHORITY = "https://attest.enclavekit.test"
MRSIGNER = "c2" * 32
MRENCLAVE = "a1" * 32


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(value: Any) -> str:
    return b64u(json.dumps(value, separators=(",", ":")).encode())


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@cache
def rsa_key(label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """One RSA key per label for the whole run (key generation is the slow part)."""
    return rsa.generate_private_key(65537, bits)


def public_jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    nums = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid,
            "n": b64u(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
            "e": b64u(nums.e.to_bytes(3, "big")), **extra}


def sign_rs256(header: Mapping[str, Any], claims: Mapping[str, Any] | str,
               key: rsa.RSAPrivateKey) -> str:
    body = claims if isinstance(claims, str) else b64u_json(claims)
    signing_input = f"{b64u_json(header)}.{body}"
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64u(sig)}"


@dataclass
class FakeAuthority:
    """An attestation service as the key service sees it: an issuer URL and a JWKS."""

    url: str = AUTHORITY
    key_label: str = "authority"
    kid: str = "maa-signing-key-1"
    extra_keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0

    @property
    def key(self) -> rsa.RSAPrivateKey:
        return rsa_key(self.key_label)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.key, self.kid), *self.extra_keys]}

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            if str(request.url) == f"{self.url.rstrip('/')}/certs":
                self.fetches += 1
                return httpx.Response(200, json=self.jwks())
            return httpx.Response(404)
        return httpx.MockTransport(handler)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url, "iat": now, "nbf": now, "exp": now + 3600,
            "x-ms-ver": "1.0", "x-ms-attestation-type": "sgx",
            "x-ms-sgx-mrenclave": MRENCLAVE, "x-ms-sgx-mrsigner": MRSIGNER,
            "x-ms-sgx-product-id": 3, "x-ms-sgx-svn": 2, "x-ms-sgx-is-debuggable": False,
            "x-ms-runtime": {"keys": [enclave_jwk()]},
        }
        for name, value in overrides.items():
            name = name.replace("_", "-") if name.startswith("x_") else name
            if value is _DROP:
                base.pop(name, None)
            else:
                base[name] = value
        return base

    def token(self, claims: Mapping[str, Any] | None = None, *, header: Mapping[str, Any]
              | None = None, key: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
        head = {"alg": "RS256", "jku": f"{self.url}/certs", "kid": self.kid, "typ": "JWT"}
        head.update(header or {})
        return sign_rs256(head, dict(claims) if claims is not None else self.claims(**overrides),
                          key or self.key)

    def trusted(self) -> TrustedAuthority:
        return TrustedAuthority(self.url)

    def verifier(self, **kwargs: Any) -> TokenVerifier:
        return TokenVerifier([self.trusted()], http=httpx.Client(transport=self.transport()),
                             **kwargs)


_DROP = object()
DROP: Any = _DROP
"""Pass as a claim override to remove the claim."""


def enclave_key() -> rsa.RSAPrivateKey:
    return rsa_key("enclave")


def enclave_jwk(label: str = "enclave", **extra: Any) -> dict[str, Any]:
    fields = {"use": "enc", **extra}
    return public_jwk(rsa_key(label), f"{label}-wrapping-key", **fields)


def sgx_policy(authority: str = AUTHORITY, **extra_conditions: Any) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [
        {"claim": "x-ms-sgx-mrsigner", "equals": MRSIGNER},
        {"claim": "x-ms-sgx-product-id", "equals": 3},
        {"claim": "x-ms-sgx-svn", "greaterOrEquals": 2},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False},
    ]
    for claim, value in extra_conditions.items():
        conditions.append({"claim": claim.replace("_", "-"), "equals": value})
    return {"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": conditions}]}


def policy_body(policy: Mapping[str, Any] | bytes, **extra: Any) -> dict[str, Any]:
    raw = policy if isinstance(policy, bytes) else json.dumps(policy).encode()
    return {"data": b64u(raw), **extra}


def service(tmp: Path, authority: FakeAuthority, **kwargs: Any) -> KMSService:
    return build_service(tmp, [], verifier=authority.verifier(), **kwargs)


def open_release(jws: str, private_key: rsa.RSAPrivateKey | None = None
                 ) -> tuple[dict[str, Any], bytes]:
    """Verify a release JWS with its ``x5c[0]`` and unwrap ``key_hsm`` with the enclave key.

    Returns the JWS payload and the released key material.
    """
    from cryptography import x509

    from enclavekit.kms.wrap import unwrap_key_material

    head_b64, body_b64, sig_b64 = jws.split(".")
    header = json.loads(unb64u(head_b64))
    assert header["alg"] == "RS256"
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    pub = cert.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    pub.verify(unb64u(sig_b64), f"{head_b64}.{body_b64}".encode(), padding.PKCS1v15(),
               hashes.SHA256())
    payload = json.loads(unb64u(body_b64))
    key_hsm = json.loads(unb64u(payload["response"]["key"]["key"]["key_hsm"]))
    assert key_hsm["schema_version"] == "1.0" and key_hsm["header"]["alg"] == "dir"
    enc = payload["request"]["enc"]
    assert key_hsm["header"]["enc"] == enc
    material = unwrap_key_material(private_key or enclave_key(), unb64u(key_hsm["ciphertext"]),
                                   enc)
    return payload, material


def multi_verifier(authorities: list[FakeAuthority], requested: list[str] | None = None,
                   **kwargs: Any) -> TokenVerifier:
    """A verifier trusting every authority in the list, each serving its own JWKS; every URL
    the verifier fetches is appended to ``requested``."""
    def handler(request: httpx.Request) -> httpx.Response:
        if requested is not None:
            requested.append(str(request.url))
        for auth in authorities:
            if str(request.url) == f"{auth.url.rstrip('/')}/certs":
                auth.fetches += 1
                return httpx.Response(200, json=auth.jwks())
        return httpx.Response(404)
    return TokenVerifier([a.trusted() for a in authorities],
                         http=httpx.Client(transport=httpx.MockTransport(handler)), **kwargs)


class KMSHarness:
    """The key service under Starlette's TestClient, with helpers for the Key Vault calls."""

    API = "?api-version=2025-07-01"

    def __init__(self, tmp: Path, authorities: list[FakeAuthority], **kwargs: Any) -> None:
        from starlette.testclient import TestClient

        self.authorities = authorities
        self.requested: list[str] = []
        self.svc = build_service(tmp, [], verifier=multi_verifier(authorities, self.requested),
                                 **kwargs)
        self.http = TestClient(self.svc.app, base_url="https://kms.test",
                               headers={"Authorization": "Bearer test"})

    def create(self, name: str, policy: Mapping[str, Any] | bytes | None = None,
               **body: Any) -> httpx.Response:
        payload: dict[str, Any] = {"kty": "RSA-HSM", "key_size": 2048,
                                   "attributes": {"exportable": policy is not None}, **body}
        if policy is not None:
            payload["release_policy"] = policy_body(policy)
        return self.http.post(f"/keys/{name}/create{self.API}", json=payload)

    def release(self, name: str, token: str, version: str | None = None,
                **extra: Any) -> httpx.Response:
        path = f"/keys/{name}/{version}/release" if version else f"/keys/{name}/release"
        return self.http.post(path + self.API, json={"target": token, **extra})

    def audit(self) -> list[dict[str, Any]]:
        return list(self.svc.audit.records())
