"""The attestation service's operations, independent of HTTP.

:class:`AttestationService` holds the :class:`ServiceState` (keys, policies, certificates), a
quote *appraiser* — a callable that verifies an SGX quote and returns an :class:`Appraisal`
or raises (:class:`VerificationFailed` naming the check, :class:`QuoteFormatError`) — and the
configuration. Each operation returns the JWT the HTTP layer sends as ``{"token": ...}``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ...errors import AttestationRequestError
from ...jose import b64url
from ..policy import Policy, evaluate, parse_policy
from .claims import Appraisal, held_claims, incoming_claims, quote_claims, token_claims
from .jws import Jws, b64decode_any, load_x5c_cert, parse_jws, std_b64
from .request import parse_attest_request
from .state import (
    Mode,
    ServiceState,
    StoredPolicy,
    canonical_type,
    cert_thumbprint,
    default_policy_jws,
)
from .tokens import (
    ATTESTATION_TOKEN_LIFETIME,
    POLICY_TOKEN_LIFETIME,
    sign_token,
    time_claims,
    unsecured_token,
)

__all__ = ["Appraiser", "AttestationService", "ServiceConfig"]

Appraiser = Callable[[bytes], Appraisal]
"""Verify a raw SGX quote; return what it established or raise a typed error."""

_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_=+/.-]+$")
"""Text that can only be meant as a compact JWS (policy text always has ``;`` and braces)."""
_CERT_CLAIMS = ("policyCertificate", "maa-policyCertificate", "x-ms-policyCertificate")
_POLICY_CACHE = 64


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs."""

    data_dir: Path
    issuer: str | None = None
    """The base URL put in ``iss`` (and ``jku``); ``None``: the URL each request came to."""
    token_lifetime: int = ATTESTATION_TOKEN_LIFETIME
    mode: Mode | None = None
    """``aad`` or ``isolated`` when creating the state; ``None``: as stored (new: ``aad``)."""
    management_certs: tuple[x509.Certificate, ...] = field(default_factory=tuple)


class AttestationService:
    """Attest quotes and manage policies, keys and policy-management certificates."""

    def __init__(self, config: ServiceConfig, appraise: Appraiser, *,
                 clock: Callable[[], float] = time.time) -> None:
        if config.token_lifetime <= 0:
            raise AttestationRequestError("token lifetime must be positive")
        self.config = config
        self.appraise = appraise
        self.clock = clock
        self.state = ServiceState.open(config.data_dir, mode=config.mode,
                                       management_certs=config.management_certs, now=clock())
        self._parsed: dict[str, Policy] = {}

    # --- helpers -----------------------------------------------------------------------

    def issuer(self, request_base: str) -> str:
        return (self.config.issuer or request_base).rstrip("/")

    def _sign(self, claims: dict[str, Any], issuer: str) -> str:
        key = self.state.signing_key
        return sign_token(claims, key.key, kid=key.kid, jku=f"{issuer}/certs")

    def _policy(self, text: str) -> Policy:
        policy = self._parsed.get(text)
        if policy is None:
            try:
                policy = parse_policy(text)
            except RecursionError:
                raise AttestationRequestError("policy nests expressions too deeply",
                                              "PolicyParsingError") from None
            if len(self._parsed) >= _POLICY_CACHE:
                self._parsed.clear()
            self._parsed[text] = policy
        return policy

    def rotate_signing_key(self) -> str:
        """A new signing key; the old one stays in ``/certs`` until its tokens expire."""
        keep = max(self.config.token_lifetime, ATTESTATION_TOKEN_LIFETIME, POLICY_TOKEN_LIFETIME)
        return self.state.rotate(keep, now=self.clock()).kid

    # --- attestation -------------------------------------------------------------------

    def attest(self, attestation_type: str, body: Any, request_base: str) -> str:
        """Verify the evidence in ``body``, check the data binding, evaluate the policy, and
        return the token (unsecured for a draft policy).

        Raises:
            AttestationRequestError: bad request or data not bound to the quote.
            QuoteFormatError, VerificationFailed: the evidence.
            PolicySyntaxError, PolicyEvaluationError, AuthorizationDenied: the policy.
        """
        kind = canonical_type(attestation_type)
        req = parse_attest_request(kind, body)
        appraisal = self.appraise(req.quote)
        report = appraisal.body
        if req.runtime is not None and not hmac.compare_digest(
                hashlib.sha256(req.runtime.data).digest(), report.reportdata[:32]):
            raise AttestationRequestError(
                "runtimeData is not bound to the quote: SHA-256(runtimeData) differs from "
                "REPORTDATA[0:32]")
        if req.inittime is not None and not hmac.compare_digest(
                hashlib.sha256(req.inittime.data).digest(), report.configid[:32]):
            raise AttestationRequestError(
                "initTimeData is not bound to the quote: SHA-256(initTimeData) differs from "
                "CONFIGID[0:32]")
        service = quote_claims(appraisal)
        service.update(held_claims(req.runtime, req.inittime))
        text = req.draft_policy if req.draft_policy is not None else self.state.policy(kind).text
        evaluation = evaluate(self._policy(text), incoming_claims(service))
        evaluation.require_permitted()
        claims = token_claims(service, evaluation, text, issuer=self.issuer(request_base),
                              now=self.clock(), lifetime=self.config.token_lifetime,
                              nonce=req.nonce)
        if req.draft_policy is not None:
            return unsecured_token(claims)
        return self._sign(claims, claims["iss"])

    # --- keys and metadata -------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return self.state.jwks(self.clock())

    def openid_configuration(self, request_base: str) -> dict[str, Any]:
        issuer = self.issuer(request_base)
        return {
            "response_types_supported": ["token", "none"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "revocation_endpoint": f"{issuer}/revoke",
            "issuer": issuer,
            "jwks_uri": f"{issuer}/certs",
            "claims_supported": [
                "nonce", "x-ms-ver", "x-ms-attestation-type", "x-ms-policy-hash",
                "x-ms-sgx-is-debuggable", "x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner",
                "x-ms-sgx-product-id", "x-ms-sgx-svn", "x-ms-sgx-ehd", "x-ms-sgx-report-data",
                "x-ms-sgx-collateral", "x-ms-sgx-tcb-status", "x-ms-sgx-advisory-ids",
                "x-ms-runtime", "x-ms-inittime", "is-debuggable", "sgx-mrsigner",
                "sgx-mrenclave", "product-id", "svn", "tee"],
        }

    # --- policies ----------------------------------------------------------------------

    def _policy_response(self, claims: dict[str, Any], request_base: str) -> str:
        issuer = self.issuer(request_base)
        body = {**time_claims(self.clock(), POLICY_TOKEN_LIFETIME), "iss": issuer, **claims}
        return self._sign(body, issuer)

    def _authorize(self, jws: Jws, what: str) -> None:
        """Isolated mode: ``jws`` must be signed by a policy-management certificate."""
        if self.state.mode != "isolated":
            return
        if jws.signer is None:
            raise AttestationRequestError(f"{what}: this service is in isolated mode; the JWS "
                                          "must be signed by a policy-management certificate",
                                          "Unauthorized")
        if not self.state.is_management_cert(jws.signer):
            raise AttestationRequestError(f"{what}: the JWS signer is not a policy-management "
                                          "certificate of this service", "Unauthorized")

    @staticmethod
    def _digest(jws: Jws) -> str | None:
        """SHA-256 of a signed JWS, for the state's replay record (unsigned: ``None``)."""
        return hashlib.sha256(jws.text.encode()).hexdigest() if jws.signer is not None else None

    def get_policy(self, attestation_type: str, request_base: str) -> str:
        stored = self.state.policy(canonical_type(attestation_type))
        return self._policy_response({"x-ms-policy": stored.jws}, request_base)

    def set_policy(self, attestation_type: str, body: str, request_base: str) -> str:
        """Store the policy in ``body`` (a policy JWS, or bare policy text in AAD mode).

        Raises:
            AttestationRequestError: bad JWS, no ``AttestationPolicy``, or (isolated) unsigned
                or signed by an unknown certificate.
            PolicySyntaxError: the policy text does not parse.
        """
        kind = canonical_type(attestation_type)
        if not _COMPACT_JWS.match(body.strip()):  # bare policy text (AAD mode only)
            jws = Jws(body, {"alg": "none"}, b"", None)
            self._authorize(jws, "set policy")
            text = body
            stored_jws = default_policy_jws(text)
        else:
            jws = parse_jws(body, what="policy JWS")
            self._authorize(jws, "set policy")
            encoded = jws.claims().get("AttestationPolicy")
            if encoded is None:
                raise AttestationRequestError("policy JWS payload has no AttestationPolicy claim",
                                              "InvalidOperation")
            try:
                text = b64decode_any(encoded, "AttestationPolicy", "InvalidOperation").decode()
            except UnicodeDecodeError:
                raise AttestationRequestError("AttestationPolicy is not UTF-8 text",
                                              "InvalidOperation") from None
            stored_jws = jws.text
        self._policy(text)
        self.state.set_policy(kind, StoredPolicy(stored_jws, text, jws.signer),
                              self._digest(jws))
        claims: dict[str, Any] = {
            "x-ms-policy-result": "Updated",
            "x-ms-policy-token-hash": b64url(hashlib.sha256(body.encode()).digest())}
        if jws.signer is not None:
            claims["x-ms-policy-signer"] = _jwk(jws.signer)
        return self._policy_response(claims, request_base)

    def reset_policy(self, attestation_type: str, body: str, request_base: str) -> str:
        """Go back to the type's default policy (``body``: a JWS with an empty payload)."""
        kind = canonical_type(attestation_type)
        jws = parse_jws(body, what="reset JWS") if body.strip(" \t\r\n") else Jws("", {}, b"", None)
        self._authorize(jws, "reset policy")
        self.state.reset_policy(kind, self._digest(jws))
        claims: dict[str, Any] = {"x-ms-policy-result": "Removed"}
        if jws.signer is not None:
            claims["x-ms-policy-signer"] = _jwk(jws.signer)
        return self._policy_response(claims, request_base)

    # --- policy-management certificates ------------------------------------------------

    def get_management_certs(self, request_base: str) -> str:
        keys = [_jwk(c) for c in self.state.management_certs]
        return self._policy_response({"x-ms-policy-certificates": {"keys": keys}}, request_base)

    def change_management_cert(self, body: Any, *, add: bool, request_base: str) -> str:
        """Add or remove the certificate in a JWS signed by a current management certificate.

        Raises:
            AttestationRequestError: body not a JSON string holding a JWS, not signed by a
                management certificate (``Unauthorized``), no certificate claim, or removal of
                the last certificate.
        """
        if not isinstance(body, str):
            raise AttestationRequestError("body must be a JSON string holding a JWS")
        jws = parse_jws(body, what="certificate JWS")
        if jws.signer is None or not self.state.is_management_cert(jws.signer):
            raise AttestationRequestError("the JWS must be signed by a current policy-management "
                                          "certificate", "Unauthorized")
        payload = jws.claims()
        jwk = next((payload[n] for n in _CERT_CLAIMS if n in payload), None)
        if not isinstance(jwk, dict) or not isinstance(jwk.get("x5c"), list) or not jwk["x5c"]:
            raise AttestationRequestError("certificate JWS has no policyCertificate JWK with x5c",
                                          "InvalidOperation")
        cert = load_x5c_cert(jwk["x5c"][0], "policyCertificate.x5c[0]")
        # add and remove JWS of one certificate are the same bytes: one record per operation
        if add:
            self.state.add_management_cert(cert, "certificates:add", self._digest(jws))
        else:
            self.state.remove_management_cert(cert, "certificates:remove", self._digest(jws))
        return self._policy_response({
            "x-ms-certificate-thumbprint": cert_thumbprint(cert),
            "x-ms-policycertificates-result": "IsPresent" if add else "IsAbsent"}, request_base)


def _jwk(cert: x509.Certificate) -> dict[str, Any]:
    return {"kty": "RSA", "x5c": [std_b64(cert.public_bytes(Encoding.DER))]}
