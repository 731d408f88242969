"""JOSE: compact JWS and JWT, signed and verified with PyJWT, with enclavekit's checks around it.

Every JWS enclavekit reads or writes goes through this module: the attestation service's
tokens and its incoming policy / certificate JWS, the key service's release responses and the
attestation tokens it accepts, and :func:`enclavekit.attest.verify_token`. PyJWT does the
cryptographic work: tokens are signed with ``PyJWS.encode``; a signature is verified by the
algorithm PyJWT registered for the allowed ``alg`` (the registry here holds RS256 and the
RSA256 alias only), which prepares the key, enforces PyJWT's minimum RSA size (2048 bits) and
verifies. ``PyJWS.decode_complete`` is not on the verify path: it would parse the text a second
time, more loosely than :func:`decode` (``=`` padding, duplicate keys), and its per-character
alphabet scan made a verification 3.3 times slower than the hand-written verifier this module
replaced (1.4 k against 4.7 k tokens/s in one run; this path 6.3 k against its 6.6 k;
``bench/bench_token.py``). Its checks that matter here (canonical base64url, ``crit``, the
``alg`` allow-list) are in :func:`decode` and :func:`check_alg`, as strict or stricter.
Around PyJWT:

* **Exactly three parts of unpadded, canonical base64url** (RFC 7515 §2, §7.1). PyJWT also
  accepts ``=`` padding; a second spelling of one signed JWS is a second text with the same
  signature, which defeats any record kept by the text (the attestation service refuses a
  replayed policy JWS by its SHA-256).
* **Duplicate JSON keys refused** in header and payload, and no ``NaN`` or deep nesting
  (:func:`enclavekit._codec.strict_json`; RFC 7515 §5.2 leaves duplicates to the parser).
  PyJWT's ``json.loads`` keeps the last duplicate, another parser may keep the first: two
  readers of one signed token must never see two different claims (TS-7).
* **No ``crit`` at all**: enclavekit understands no extension, and PyJWT's one (``b64``,
  RFC 7797) changes what the signature covers.
* **``alg`` checked against the caller's allow-list first, ``none`` never verified**: the
  refusal names the algorithm found (TS-1, TS-2). Unsecured JWS (``alg: none``, which the
  attestation service accepts for AAD-mode policies and issues for draft policies) are
  decoded by :func:`decode` and never pass :func:`verify_signature`. ``RSA256`` (what
  Microsoft's attestation client writes for RS256) is registered with PyJWT as an alias,
  allowed only where a caller names it.
* **A size limit** (:data:`MAX_TOKEN` by default) before anything is decoded.
* **Time as a parameter**: PyJWT reads the wall clock and coerces ``"123"`` or ``true`` to a
  time with ``int()``. :func:`check_times` applies PyJWT's rules (``exp`` is exclusive,
  ``nbf`` / ``iat`` not after ``at + leeway``) at the time the caller gives, and a NumericDate
  must be a JSON number (RFC 7519 §2), so tokens can be verified at the time evidence says.
* **JWKS keys only by exact ``kid``, never from the token**: :func:`jwks_keys` takes RSA
  signature keys from ``x5c[0]`` (MAA's ``/certs``) or ``n``/``e`` (PyJWT's
  ``RSAAlgorithm.from_jwk``); header ``jku``, ``x5u``, ``jwk`` and ``x5c`` are never used to
  find a token's key (TS-3). :func:`fetch_jwks` follows no redirect and caps the size.

Every refusal raises :class:`~enclavekit.errors.InvalidToken` with a one-line message; the
services re-raise it as their own error type.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ._codec import JSONError, b64url, strict_json
from .errors import InvalidToken

__all__ = ["ALGORITHMS", "MAX_JWKS", "MAX_TOKEN", "MIN_RSA_BITS", "Compact", "Verified",
           "b64url", "b64url_json", "check_alg", "check_times", "decode", "fetch_jwks", "jwks_keys",
           "payload_claims", "sign", "unsecured", "verify", "verify_signature", "x5c_certificate"]

ALGORITHMS: Final = ("RS256",)
"""The default allow-list: RSASSA-PKCS1-v1_5 with SHA-256, what Azure Attestation signs with."""
MAX_TOKEN: Final = 64 * 1024
"""Longest compact JWS accepted by default, in characters."""
MAX_JWKS: Final = 1024 * 1024
"""Largest JWKS document accepted."""
MIN_RSA_BITS: Final = 2048

_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_B64STD: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SPARE_BITS: Final = (0, 0, 0b1111, 0b11)  # by length mod 4: 2 chars = 1 byte, 3 = 2 bytes

_JWS = jwt.PyJWS(algorithms=list(ALGORITHMS), options={"enforce_minimum_key_length": True})
"""PyJWT's registry: RS256 and its RSA256 alias verify and sign; nothing else is registered."""
_JWS.register_algorithm("RSA256", RSAAlgorithm(RSAAlgorithm.SHA256))
_UNSECURED = jwt.PyJWS(algorithms=["none"])  # its own registry: "none" only ever signs here


def b64url_json(value: Any) -> str:
    """Unpadded base64url of compact JSON."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _unb64url(part: str, name: str) -> bytes:
    """Strict RFC 7515 base64url: URL alphabet, no padding, zero unused bits."""
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise InvalidToken(f"{name} is not unpadded base64url")
    spare = _SPARE_BITS[len(part) % 4]  # low bits of the last character that encode nothing
    if spare and _ALPHABET.index(part[-1]) & spare:
        raise InvalidToken(f"{name} is not canonical base64url (unused bits set)")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    try:
        value = strict_json(raw)
    except JSONError as exc:
        raise InvalidToken(f"{name}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"{name} is not a JSON object")
    return value


@dataclass(frozen=True)
class Compact:
    """A compact JWS that passed the structural checks; its signature is not yet verified."""

    text: str
    header: Mapping[str, Any]
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> object:
        return self.header.get("alg")

    def claims(self) -> dict[str, Any]:
        """The payload as a strict JSON object (``{}`` for an empty payload)."""
        return payload_claims(self.payload)


def payload_claims(payload: bytes) -> dict[str, Any]:
    """A JWS payload as a strict JSON object (``{}`` for an empty payload).

    Raises:
        InvalidToken: not strict JSON (duplicate keys included) or not an object.
    """
    return {} if not payload else _json_object(payload, "payload")


def decode(token: object, *, max_size: int = MAX_TOKEN) -> Compact:
    """Check a compact JWS's form (nothing is verified) and decode its parts.

    Raises:
        InvalidToken: not a string, too long, not three parts of strict base64url, header
            not a strict JSON object, or a ``crit`` header.
    """
    if not isinstance(token, str):
        raise InvalidToken(f"expected a compact JWS string, found {type(token).__name__}")
    if not token:
        raise InvalidToken("expected a compact JWS, found an empty string")
    if len(token) > max_size:
        raise InvalidToken(f"{len(token)} characters, the limit is {max_size}")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken(f"a compact JWS has 3 parts, found {len(parts)}")
    header = _json_object(_unb64url(parts[0], "header"), "header")
    payload = _unb64url(parts[1], "payload")
    signature = _unb64url(parts[2], "signature")
    if "crit" in header:
        raise InvalidToken("critical header parameters (crit) are not supported")
    return Compact(token, header, payload, signature)


def check_alg(jws: Compact, algorithms: Sequence[str]) -> None:
    """Refuse an ``alg`` outside ``algorithms``, naming it (InvalidToken)."""
    if not isinstance(jws.alg, str) or jws.alg not in algorithms:
        raise InvalidToken(f"algorithm {jws.alg!r} refused; only {', '.join(algorithms)} "
                           f"{'is' if len(algorithms) == 1 else 'are'} accepted")


def verify_signature(jws: Compact, key: object, *, algorithms: Sequence[str] = ALGORITHMS,
                     key_name: str = "the key") -> None:
    """Verify ``jws``'s signature with ``key`` by PyJWT's algorithm, for an ``alg`` in
    ``algorithms`` only.

    Raises:
        InvalidToken: ``alg`` not allowed, ``key`` not an RSA public key of at least
            :data:`MIN_RSA_BITS` bits, or a signature that does not verify.
    """
    check_alg(jws, algorithms)
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidToken(f"{key_name} must be an RSA key of at least {MIN_RSA_BITS} bits, "
                           f"found {type(key).__name__}")
    try:
        algorithm = _JWS.get_algorithm_by_name(str(jws.alg))
    except NotImplementedError:  # "none", or anything not registered above
        raise InvalidToken(f"PyJWT has no verifier for {jws.alg!r} here") from None
    prepared = algorithm.prepare_key(key)
    if algorithm.check_key_length(prepared):
        raise InvalidToken(f"{key_name} must be an RSA key of at least {MIN_RSA_BITS} bits, "
                           f"found {key.key_size}")
    signing_input = jws.text[: jws.text.rindex(".")].encode("ascii")
    if not algorithm.verify(signing_input, prepared, jws.signature):
        raise InvalidToken(f"signature does not verify with {key_name}")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} must be a NumericDate")
    return float(value)


def check_times(claims: Mapping[str, Any], *, at: float, leeway: float = 0.0,
                require_exp: bool = True) -> None:
    """``exp`` after ``at``, ``nbf`` and ``iat`` not after it, allowing ``leeway`` seconds.

    Raises:
        InvalidToken: a missing ``exp`` (when required), a claim that is not a number, or a
            token not valid at ``at``.
    """
    exp = _numeric_date(claims, "exp")
    if exp is None and require_exp:
        raise InvalidToken("exp claim is missing")
    if exp is not None and at >= exp + leeway:
        raise InvalidToken(f"expired at {int(exp)} (now {int(at)})")
    nbf = _numeric_date(claims, "nbf")
    if nbf is not None and at + leeway < nbf:
        raise InvalidToken(f"not valid before {int(nbf)} (now {int(at)})")
    iat = _numeric_date(claims, "iat")
    if iat is not None and at + leeway < iat:
        raise InvalidToken(f"issued in the future ({int(iat)}, now {int(at)})")


@dataclass(frozen=True)
class Verified:
    """A JWT that passed :func:`verify`."""

    header: Mapping[str, Any]
    claims: dict[str, Any]
    kid: str


KeyLookup = Mapping[str, object] | Callable[[str], object | None]
"""Keys by ``kid``: a mapping, or a function returning the key or ``None``."""


def verify(token: object, keys: KeyLookup, *, algorithms: Sequence[str] = ALGORITHMS,
           issuer: str | None = None, at: float | None = None, leeway: float = 0.0,
           max_size: int = MAX_TOKEN) -> Verified:
    """Verify a signed JWT: form, ``alg``, the key named by ``kid``, signature, ``iss``, times.

    Args:
        token: the compact JWS.
        keys: the trusted keys by ``kid`` (header key material is never used).
        algorithms: the allowed ``alg`` values.
        issuer: when given, ``iss`` must equal it exactly.
        at: the time to check ``exp`` / ``nbf`` / ``iat`` at (default: now).
        leeway: clock skew allowed, in seconds.
        max_size: the longest token accepted.

    Raises:
        InvalidToken: the first check that fails, named in the message.
    """
    jws = decode(token, max_size=max_size)
    claims = jws.claims()
    check_alg(jws, algorithms)
    kid = jws.header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("kid header is missing")
    key = keys(kid) if callable(keys) else keys.get(kid)
    if key is None:
        raise InvalidToken(f"kid {kid!r} is not a trusted key")
    verify_signature(jws, key, algorithms=algorithms, key_name=f"key {kid!r}")
    if issuer is not None and claims.get("iss") != issuer:
        raise InvalidToken(f"issuer {claims.get('iss')!r} is not {issuer!r}")
    check_times(claims, at=time.time() if at is None else at, leeway=leeway)
    return Verified(jws.header, claims, kid)


def sign(claims: Mapping[str, Any], key: rsa.RSAPrivateKey, *,
         headers: Mapping[str, Any] | None = None, alg: str = "RS256") -> str:
    """A compact JWS over the JSON of ``claims`` (PyJWT); ``typ`` only if ``headers`` has it."""
    extra = {"typ": None, **(headers or {}), "alg": alg}
    return _JWS.encode(_json(claims), key, algorithm=alg, headers=extra)


def unsecured(claims: Mapping[str, Any]) -> str:
    """An unsecured JWS: header ``{"alg":"none"}``, the JSON of ``claims``, empty signature."""
    return _UNSECURED.encode(_json(claims), "", algorithm="none", headers={"typ": None})


def _json(claims: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(claims), separators=(",", ":")).encode()


def x5c_certificate(entry: object, name: str = "x5c[0]") -> x509.Certificate:
    """The certificate in an ``x5c`` entry: standard base64 of DER (RFC 7515 §4.1.6).

    Raises:
        InvalidToken: not a base64 string, not a DER certificate, or an unsupported key.
    """
    if not isinstance(entry, str) or not _B64STD.fullmatch(entry):
        raise InvalidToken(f"{name} is not base64")
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(entry, validate=True))
        cert.public_key()  # an unsupported key type must fail here, not later
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise InvalidToken(f"{name} is not a DER X.509 certificate") from None
    return cert


def _jwk_key(entry: Mapping[str, Any]) -> rsa.RSAPublicKey | None:
    """The RSA signature key of a JWKS entry (``x5c[0]`` preferred), or ``None`` if unusable."""
    if entry.get("kty") != "RSA" or entry.get("alg", "RS256") != "RS256":
        return None
    if entry.get("use", "sig") != "sig":
        return None
    key: object
    chain = entry.get("x5c")
    try:
        if isinstance(chain, list) and chain:
            key = x5c_certificate(chain[0]).public_key()
        else:
            key = RSAAlgorithm.from_jwk(dict(entry))
    except (InvalidToken, jwt.PyJWTError, ValueError, TypeError):
        return None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        return None
    return key


def jwks_keys(document: Mapping[str, Any] | bytes | str) -> dict[str, rsa.RSAPublicKey]:
    """The usable RSA signature keys of a JWKS by ``kid`` (first entry wins on a repeat).

    Entries that are not RSA, are for another algorithm or use, or hold a key under
    :data:`MIN_RSA_BITS` bits are left out.

    Raises:
        InvalidToken: not strict JSON, too large, or not an object with a ``keys`` array.
    """
    if isinstance(document, bytes | str):
        if len(document) > MAX_JWKS:
            raise InvalidToken(f"JWKS of {len(document)} bytes, the limit is {MAX_JWKS}")
        try:
            document = strict_json(document)
        except JSONError as exc:
            raise InvalidToken(f"JWKS: {exc}") from None
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise InvalidToken("not a JWKS document (no keys array)")
    keys: dict[str, rsa.RSAPublicKey] = {}
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("kid"), str):
            key = _jwk_key(entry)
            if key is not None and entry["kid"] not in keys:
                keys[entry["kid"]] = key
    return keys


def fetch_jwks(url: str, *, client: httpx.Client | None = None, timeout: float = 5.0) -> bytes:
    """GET a JWKS document: no redirects, at most :data:`MAX_JWKS` bytes (see :func:`jwks_keys`).

    Raises:
        InvalidToken: unreachable, not HTTP 200, or too large.
    """
    try:
        if client is None:
            with httpx.Client(timeout=timeout, follow_redirects=False) as own:
                response = own.get(url, headers={"Accept": "application/json"})
        else:
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise InvalidToken(f"cannot fetch the keys from {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise InvalidToken(f"cannot fetch the keys from {url}: HTTP {response.status_code}")
    if len(response.content) > MAX_JWKS:
        raise InvalidToken(f"cannot fetch the keys from {url}: more than {MAX_JWKS} bytes")
    return response.content
