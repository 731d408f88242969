"""Secure key release, enclave side: attest, then have a key released and unwrap it inside.

Import it in the enclave app (``from enclavekit.enclave.keyrelease import attest,
release_key``); importing declares the ocall ``enclavekit_http`` through which the enclave
reaches the network. The host serves it with :class:`HttpRelay`
(``vm.load(image, ocalls={"enclavekit_http": HttpRelay(verify=...)})``) and only relays
bytes: nothing that crosses it needs to be secret or trusted.

* :func:`wrapping_key` — an RSA-2048 key pair generated inside the enclave on first use;
  its private half never leaves the enclave. :func:`runtime_data` is its public JWK as
  Azure Attestation runtime data (``{"keys": [{"kty": "RSA", "use": "enc", ...}]}``).
* :func:`attest` — quote this enclave with SHA-256(runtime data) in REPORTDATA and send
  quote and runtime data to an Azure-Attestation-compatible service; returns its token,
  whose ``x-ms-runtime.keys`` is the enclave's public key.
* :func:`release_key` — send the token to a Key-Vault-compatible key-release service, check
  the answer's JWS signature against the **pinned** certificate of that service (a host
  could otherwise wrap a key of its own choosing to the enclave's public key, which is no
  secret), check that it is the key asked for, and unwrap it (RSA-OAEP + AES-KWP) with the
  enclave's private key. The host sees the token and the wrapped key only.

Errors are :class:`~enclavekit.errors.KeyReleaseError` (the services refused, or the
answer is malformed, unsigned or not for this key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from typing import TYPE_CHECKING, Any, Final

from ..errors import KeyReleaseError
from .dispatch import ocall

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["HttpRelay", "attest", "enclavekit_http", "release_key", "runtime_data",
           "wrapping_key"]

MAA_API_VERSION: Final = "2022-08-01"
KV_API_VERSION: Final = "7.4"
_OAEP_HASH: Final = {"CKM_RSA_AES_KEY_WRAP": "SHA1", "RSA_AES_KEY_WRAP_256": "SHA256",
                     "RSA_AES_KEY_WRAP_384": "SHA384"}
_MAX_RESPONSE: Final = 1 << 20


@ocall
def enclavekit_http(method: str, url: str, headers: dict[str, str],
                    body: bytes) -> tuple[int, bytes]:
    """The host performs one HTTP request and returns the status and the body."""
    raise NotImplementedError  # the stub sends the ocall


_lock = threading.Lock()
_key: rsa.RSAPrivateKey | None = None


def wrapping_key() -> rsa.RSAPrivateKey:
    """This enclave's RSA-2048 key for key release (generated once, inside the enclave)."""
    global _key
    with _lock:
        if _key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            _key = rsa.generate_private_key(65537, 2048)
        return _key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyReleaseError(f"key release: {what} is not a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KeyReleaseError(f"key release: {what} is not base64url") from exc


def runtime_data(kid: str = "enclave-wrapping-key") -> bytes:
    """The enclave's public wrapping key as runtime data: ``{"keys": [JWK]}`` (JSON)."""
    numbers = wrapping_key().public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": kid, "use": "enc", "key_ops": ["encrypt", "wrapKey"],
           "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
           "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))}
    return json.dumps({"keys": [jwk]}, separators=(",", ":")).encode()


def _json_reply(status: object, body: object, what: str) -> Any:
    if type(status) is not int or type(body) is not bytes or len(body) > _MAX_RESPONSE:
        raise KeyReleaseError(f"{what}: the host returned no HTTP answer")
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if status != 200:
        error = value.get("error") if isinstance(value, dict) else None
        detail = (error.get("message") if isinstance(error, dict) else None) or f"HTTP {status}"
        raise KeyReleaseError(f"{what} refused: {str(detail)[:300]}")
    if not isinstance(value, dict):
        raise KeyReleaseError(f"{what}: the answer is not a JSON object")
    return value


def attest(service_url: str, data: bytes | None = None, *, quote_version: int = 3) -> str:
    """Attest this enclave to an Azure-Attestation-compatible service; call it in an ecall.

    Args:
        service_url: the attestation service's base URL.
        data: runtime data (JSON) to bind; default :func:`runtime_data`.
        quote_version: 3 or 4.

    Returns:
        The attestation token (a JWT; not verified here — its consumers verify it).

    Raises:
        KeyReleaseError: the service refused or answered something that is not a token.
        QuotingError: the quote could not be made.
    """
    from .quote import get_quote

    held = runtime_data() if data is None else data
    quote = get_quote(hashlib.sha256(held).digest(), version=quote_version)
    request = {"quote": _b64url(quote),
               "runtimeData": {"data": _b64url(held), "dataType": "JSON"}}
    status, body = enclavekit_http(
        "POST", f"{service_url.rstrip('/')}/attest/SgxEnclave?api-version={MAA_API_VERSION}",
        {"Content-Type": "application/json"}, json.dumps(request).encode())
    token = _json_reply(status, body, "attestation").get("token")
    if not isinstance(token, str) or token.count(".") != 2:
        raise KeyReleaseError("attestation: the answer carries no token")
    return token


def _verify_jws(jws: str, kms_certificate: bytes) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    parts = jws.split(".")
    if len(parts) != 3:
        raise KeyReleaseError("key release: the answer is not a compact JWS")
    try:
        header = json.loads(_unb64url(parts[0], "JWS header"))
        payload = json.loads(_unb64url(parts[1], "JWS payload"))
    except ValueError as exc:
        raise KeyReleaseError("key release: the JWS does not decode") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict) \
            or header.get("alg") != "RS256":
        raise KeyReleaseError("key release: the answer is not an RS256 JWS")
    pinned = x509.load_pem_x509_certificate(kms_certificate)
    pinned_der = pinned.public_bytes(serialization.Encoding.DER)
    chain = header.get("x5c")
    try:
        leaf = base64.b64decode(chain[0], validate=True) if isinstance(chain, list) else b""
    except (binascii.Error, ValueError, TypeError):
        leaf = b""
    if not hmac.compare_digest(leaf, pinned_der):
        raise KeyReleaseError("key release: the answer is not signed by the pinned key-release "
                              "service certificate")
    key = pinned.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyReleaseError("key release: the pinned certificate has no RSA key")
    try:
        key.verify(_unb64url(parts[2], "JWS signature"), f"{parts[0]}.{parts[1]}".encode(),
                   padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise KeyReleaseError("key release: the answer's signature does not verify") from exc
    return payload


def _unwrap(ciphertext: bytes, enc: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

    key = wrapping_key()
    size = key.key_size // 8
    algorithm = getattr(hashes, _OAEP_HASH[enc])()
    try:
        kek = key.decrypt(ciphertext[:size], padding.OAEP(padding.MGF1(algorithm), algorithm,
                                                          None))
        return aes_key_unwrap_with_padding(kek, ciphertext[size:])
    except (ValueError, InvalidUnwrap) as exc:
        raise KeyReleaseError("key release: the key is not wrapped to this enclave") from exc


def release_key(kms_url: str, name: str, token: str, *, kms_certificate: bytes,
                version: str | None = None, enc: str = "RSA_AES_KEY_WRAP_256",
                nonce: str | None = None) -> bytes:
    """Have key ``name`` released to this enclave and unwrap it; call it in an ecall.

    Args:
        kms_url: the key-release service's base URL.
        name: the key's name (``version``: one version; default the latest).
        token: this enclave's attestation token (:func:`attest`).
        kms_certificate: the service's certificate (PEM) that must sign the answer.
        enc: the wrap algorithm (``CKM_RSA_AES_KEY_WRAP``, ``RSA_AES_KEY_WRAP_256`` or
            ``RSA_AES_KEY_WRAP_384``).
        nonce: echoed by the service in the signed answer and checked here.

    Returns:
        The key material: PKCS#8 DER for RSA and EC keys, the raw bytes of an ``oct`` key.

    Raises:
        KeyReleaseError: refused by the service, or the answer is unsigned, signed by another
            key, for another key or algorithm, or not wrapped to this enclave.
    """
    if enc not in _OAEP_HASH:
        raise KeyReleaseError(f"key release: enc must be one of {', '.join(_OAEP_HASH)}")
    path = f"/keys/{name}/{version}/release" if version else f"/keys/{name}/release"
    request: dict[str, str] = {"target": token, "enc": enc}
    if nonce is not None:
        request["nonce"] = nonce
    status, body = enclavekit_http(
        "POST", f"{kms_url.rstrip('/')}{path}?api-version={KV_API_VERSION}",
        {"Content-Type": "application/json", "Authorization": "Bearer enclave"},
        json.dumps(request).encode())
    jws = _json_reply(status, body, "key release").get("value")
    if not isinstance(jws, str):
        raise KeyReleaseError("key release: the answer carries no value")
    payload = _verify_jws(jws, kms_certificate)
    try:
        asked = payload["request"]
        key = payload["response"]["key"]["key"]
        key_hsm = json.loads(_unb64url(key["key_hsm"], "key_hsm"))
        kid = str(key["kid"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyReleaseError("key release: the answer has no wrapped key") from exc
    if not isinstance(asked, dict) or asked.get("enc") != enc or asked.get("nonce") != nonce:
        raise KeyReleaseError("key release: the signed answer is for another request")
    if not isinstance(key_hsm, dict) or key_hsm.get("header", {}).get("enc") != enc:
        raise KeyReleaseError("key release: the wrapped key uses another algorithm")
    segments = kid.split("/keys/", 1)[-1].split("/")
    if segments[0] != name or (version and segments[1:2] != [version]):
        raise KeyReleaseError(f"key release: the answer is for key {kid!r}, not {name!r}")
    return _unwrap(_unb64url(key_hsm.get("ciphertext"), "ciphertext"), enc)


class HttpRelay:
    """Host side of ``enclavekit_http``: performs the request with httpx and relays bytes.

    Only ``http``/``https`` URLs and the methods GET/POST are relayed; responses are capped
    at 1 MiB. ``verify`` is passed to httpx (e.g. the key-release service's certificate
    file, as an ``ssl.SSLContext``). Use one per enclave: ``ocalls={"enclavekit_http":
    HttpRelay(verify=ctx)}``.
    """

    def __init__(self, *, verify: Any = True, timeout: float = 30.0) -> None:
        import httpx

        self._client = httpx.Client(verify=verify, timeout=timeout, follow_redirects=False)

    def __call__(self, method: str, url: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, bytes]:
        if method not in ("GET", "POST") or not url.startswith(("http://", "https://")):
            raise KeyReleaseError(f"relay: {method} {url[:80]} is not relayed")
        response = self._client.request(method, url, headers=headers, content=body)
        return response.status_code, response.content[:_MAX_RESPONSE]

    def close(self) -> None:
        self._client.close()
