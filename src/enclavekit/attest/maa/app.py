"""The attestation service as a Starlette app, at Azure Attestation's paths (maa-skr.md §1.1).

=============================================  ===============================================
``POST /attest/SgxEnclave``                    ``{"quote", "runtimeData", "initTimeData",
                                               "draftPolicyForAttestation", "nonce"}`` → token
``POST /attest/OpenEnclave``                   the same with ``report`` (OE report + quote)
``GET /certs``                                 JWKS of the signing keys (``x5c``)
``GET /.well-known/openid-configuration``      OpenID metadata
``GET /policies/{type}``                       the stored policy JWS in ``x-ms-policy``
``PUT /policies/{type}``                       set (body: policy JWS, ``text/plain``)
``POST /policies/{type}:reset``                back to the default policy
``GET /certificates``                          policy-management certificates
``POST /certificates:add`` / ``:remove``       body: a JSON string holding a signed JWS
``GET /openapi.json``                          the OpenAPI document
=============================================  ===============================================

Type names match case-insensitively; ``api-version`` is accepted and ignored. Successful
operations answer 200 ``{"token": "<JWT>"}``. Errors answer MAA's CloudError body
``{"error": {"code", "message"}}``: 400 for anything wrong with the request (the evidence, the
binding, the policy), 401 for a policy change not signed by a management certificate, 404/405
for unknown paths and methods, 408/414/431 for a request outside :data:`LIMITS` (a slow body,
a long target, too many or too large headers) — never a 5xx or ``Retry-After`` for a client's
mistake (Microsoft's client would silently retry those).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..._codec import strict_json
from ..._guard import Guard, Limits
from ..._net import read_body
from ...errors import (
    AttestationRequestError,
    AuthorizationDenied,
    EnclaveKitError,
    PolicyError,
    PolicyEvaluationError,
    PolicySyntaxError,
    QuoteFormatError,
    VerificationFailed,
)
from .openapi import openapi_document
from .service import AttestationService

__all__ = ["LIMITS", "MAX_BODY", "create_app", "error_status"]

MAX_BODY = 1 << 20
"""Largest request body accepted (bytes)."""
LIMITS = Limits(body=MAX_BODY)
"""What a request may be (``enclavekit._guard``)."""
_LIMIT_CODES = {408: "RequestTimeout", 414: "RequestUriTooLong",
                431: "RequestHeaderFieldsTooLarge"}


def _cloud_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _refused(status: int, message: str) -> JSONResponse:
    return _cloud_error(status, _LIMIT_CODES.get(status, "InvalidParameter"), message)


def error_status(exc: EnclaveKitError) -> tuple[int, str, str]:
    """HTTP status, MAA error code and message for an error raised while serving."""
    if isinstance(exc, AttestationRequestError):
        return (401 if exc.code == "Unauthorized" else 400), exc.code, str(exc)
    if isinstance(exc, PolicySyntaxError):
        return 400, "PolicyParsingError", f"policy does not parse: {exc}"
    if isinstance(exc, AuthorizationDenied | PolicyEvaluationError):
        return 400, "PolicyEvaluationError", f"policy evaluation failed: {exc}"
    if isinstance(exc, PolicyError):
        return 400, "PolicyParsingError", str(exc)
    if isinstance(exc, VerificationFailed):
        return 400, "InvalidParameter", f"quote verification failed: check {exc.check}: " \
                                        f"{exc.detail}"
    if isinstance(exc, QuoteFormatError):
        return 400, "InvalidParameter", f"quote does not parse: {exc}"
    return 400, "InvalidParameter", str(exc)


async def _body(request: Request) -> bytes:
    return await read_body(request, MAX_BODY, AttestationRequestError)


async def _json(request: Request) -> Any:
    raw = await _body(request)
    try:
        return strict_json(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AttestationRequestError(f"request body is not JSON ({exc})") from None


async def _text(request: Request) -> str:
    try:
        return (await _body(request)).decode("utf-8")
    except UnicodeDecodeError:
        raise AttestationRequestError("request body is not UTF-8 text") from None


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _token(token: str) -> JSONResponse:
    return JSONResponse({"token": token})


def create_app(service: AttestationService) -> Starlette:
    """The ASGI app serving ``service``."""

    async def attest(request: Request) -> Response:
        body = await _json(request)
        return _token(service.attest(request.path_params["type"], body, _base(request)))

    async def certs(request: Request) -> Response:
        return JSONResponse(service.jwks())

    async def openid(request: Request) -> Response:
        return JSONResponse(service.openid_configuration(_base(request)))

    async def get_policy(request: Request) -> Response:
        return _token(service.get_policy(request.path_params["type"], _base(request)))

    async def set_policy(request: Request) -> Response:
        body = await _text(request)
        return _token(service.set_policy(request.path_params["type"], body, _base(request)))

    async def policy_action(request: Request) -> Response:
        kind, sep, action = request.path_params["type"].partition(":")
        if not sep or action.lower() != "reset":
            raise HTTPException(404, f"unknown policy operation {request.url.path}")
        body = await _text(request)
        return _token(service.reset_policy(kind, body, _base(request)))

    async def get_certificates(request: Request) -> Response:
        return _token(service.get_management_certs(_base(request)))

    async def change_certificate(request: Request) -> Response:
        add = request.url.path.lower().endswith(":add")
        body = await _json(request)
        return _token(service.change_management_cert(body, add=add, request_base=_base(request)))

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EnclaveKitError)
        return _cloud_error(*error_status(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
        detail = exc.detail if exc.detail and exc.status_code != 404 else \
            f"no operation at {request.method} {request.url.path}"
        return _cloud_error(exc.status_code if exc.status_code < 500 else 400, code, detail)

    routes = [
        Route("/attest/{type}", attest, methods=["POST"]),
        Route("/certs", certs, methods=["GET"]),
        Route("/.well-known/openid-configuration", openid, methods=["GET"]),
        Route("/policies/{type}", get_policy, methods=["GET"]),
        Route("/policies/{type}", set_policy, methods=["PUT"]),
        Route("/policies/{type}", policy_action, methods=["POST"]),
        Route("/certificates", get_certificates, methods=["GET"]),
        Route("/certificates:add", change_certificate, methods=["POST"]),
        Route("/certificates:remove", change_certificate, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={EnclaveKitError: on_error,
                                                        HTTPException: on_http},
                     middleware=[Middleware(Guard, limits=LIMITS, error=_refused)])
