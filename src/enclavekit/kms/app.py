"""The Key Vault data-plane API for secure key release, as a Starlette app.

Paths (``?api-version=`` required, any version the Key Vault client sends):

| method | path | operation |
|---|---|---|
| POST | ``/keys/{name}/create`` | create a key (or a new version) |
| PUT | ``/keys/{name}`` | import a key |
| GET | ``/keys`` , ``/keys/{name}/versions`` | list keys / versions |
| GET | ``/keys/{name}[/{version}]`` | get a key (public part) |
| PATCH | ``/keys/{name}[/{version}]`` | update attributes, tags, release policy |
| DELETE | ``/keys/{name}`` | delete a key (no soft delete: purged at once) |
| POST | ``/keys/{name}[/{version}]/release`` (also ``/keys/{name}//release``) | release |

A request without ``Authorization: Bearer …`` gets Key Vault's ``401`` challenge
(``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
resource="https://vault.azure.net"``); any bearer token is then accepted (there is no
directory to check it against; its unverified subject goes to the audit log).

Errors are Key Vault's ``{"error": {"code", "message"}}``: ``400 BadParameter`` for bad input
(bad JSON or base64, wrong types, unknown fields, bodies over the limit; 408/414/431 for a slow
body, a long target, too many or too large headers: ``enclavekit._guard``), ``404 KeyNotFound``,
``403 Forbidden`` for key-state refusals, and for every token or policy refusal Key Vault's
``403 Forbidden`` "Target environment attestation statement cannot be verified." with inner
code ``AccessDenied`` (the reason is in the audit log only, so the answer is no oracle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._codec import JSONError, strict_json
from .._guard import Guard, Limits
from .._net import read_body
from ..errors import (
    EnclaveKitError,
    IntegrityError,
    KeyNotFound,
    KeyParameterError,
    KeyStateError,
    ReleasePolicyNotSatisfied,
    TokenRejected,
)
from .audit import bearer_subject
from .release import ReleaseService
from .store import KeyStore, KeyVersion, check_name

__all__ = ["DEFAULT_TENANT", "MAX_BODY", "create_app"]

DEFAULT_TENANT: Final = "72f988bf-86f1-41af-91ab-2d7cd011db47"
MAX_BODY: Final = 256 * 1024
_ATTESTATION_REFUSED: Final = "Target environment attestation statement cannot be verified."
API_VERSIONS: Final = frozenset({
    "2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.3-preview", "7.4", "7.4-preview.1", "7.5",
    "7.5-preview.1", "7.6", "7.6-preview.1", "7.6-preview.2", "2025-06-01-preview",
    "2025-07-01"})


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def _error(status: int, code: str, message: str, inner: str | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if inner:
        body["innererror"] = {"code": inner}
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def _bundle(key: KeyVersion, vault: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": key.public_jwk(f"{vault}/keys/{key.name}/{key.version}"),
        "attributes": key.attributes_json()}
    if key.tags:
        out["tags"] = dict(key.tags)
    if key.release_policy is not None:
        out["release_policy"] = key.release_policy.to_json()
    return out


def _item(key: KeyVersion, kid: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kid": kid, "attributes": key.attributes_json()}
    if key.tags:
        out["tags"] = dict(key.tags)
    return out


def create_app(store: KeyStore, releaser: ReleaseService, *, tenant: str = DEFAULT_TENANT,
               resource: str = "https://vault.azure.net", max_body: int = MAX_BODY) -> Starlette:
    """The key-release service as an ASGI app over ``store`` and ``releaser``."""
    challenge = (f'Bearer authorization="https://login.microsoftonline.com/{tenant}", '
                 f'resource="{resource}"')

    async def read_json(request: Request) -> Any:
        raw = await read_body(request, max_body, _BadRequest)
        try:
            return strict_json(raw)
        except JSONError as exc:
            raise _BadRequest(f"request body is not valid JSON: {exc}") from exc

    def list_keys(vault: str) -> dict[str, Any]:
        items = []
        for name in store.names():
            try:
                items.append(_item(store.get(name), f"{vault}/keys/{name}"))
            except EnclaveKitError:
                continue  # a corrupted key is reported on its own GET, not here
        return {"value": items, "nextLink": None}

    def list_versions(name: str, vault: str) -> dict[str, Any]:
        return {"value": [_item(v, f"{vault}/keys/{name}/{v.version}")
                          for v in store.versions(name)], "nextLink": None}

    async def dispatch(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP "
                          "token.", headers={"WWW-Authenticate": challenge})
        api_version = request.query_params.get("api-version")
        if api_version not in API_VERSIONS:
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing "
                          "or not supported.")
        vault = str(request.base_url).rstrip("/")
        segments = request.url.path.split("/")[1:]
        method = request.method
        client = f"{request.client.host}:{request.client.port}" if request.client else "?"
        subject = bearer_subject(request.headers.get("authorization"))
        try:
            if segments[0] != "keys":
                return _error(404, "NotFound", f"no operation at {request.url.path[:80]}")
            rest = segments[1:]
            if rest and rest[-1] == "" and method != "POST":
                rest = rest[:-1]
            if not rest and method == "GET":
                return JSONResponse(await run_in_threadpool(list_keys, vault))
            if not rest:
                return _error(405, "BadParameter", f"{method} is not allowed on /keys")
            name = rest[0]
            check_name(name)
            tail = rest[1:]
            if method == "POST" and tail and tail[-1] == "release" and len(tail) <= 2:
                version = tail[0] if len(tail) == 2 and tail[0] else None
                body = await read_json(request)
                jws = await run_in_threadpool(
                    releaser.release, name, version, body, vault_url=vault,
                    api_version=api_version, client=client, subject=subject)
                return JSONResponse({"value": jws})
            if method == "POST" and tail == ["create"]:
                body = await read_json(request)
                if not isinstance(body, dict):
                    raise _BadRequest("request body must be a JSON object")
                key = await run_in_threadpool(store.create, name, body)
                return JSONResponse(_bundle(key, vault))
            if method == "PUT" and not tail:
                body = await read_json(request)
                if not isinstance(body, dict):
                    raise _BadRequest("request body must be a JSON object")
                key = await run_in_threadpool(store.import_key, name, body)
                return JSONResponse(_bundle(key, vault))
            if method == "GET" and tail == ["versions"]:
                return JSONResponse(await run_in_threadpool(list_versions, name, vault))
            if method == "GET" and len(tail) <= 1:
                key = await run_in_threadpool(store.get, name, tail[0] if tail else None)
                return JSONResponse(_bundle(key, vault))
            if method == "PATCH" and len(tail) <= 1:
                body = await read_json(request)
                if not isinstance(body, dict):
                    raise _BadRequest("request body must be a JSON object")
                version = tail[0] if tail else (await run_in_threadpool(store.get, name)).version
                key = await run_in_threadpool(store.update, name, version, body)
                return JSONResponse(_bundle(key, vault))
            if method == "DELETE" and not tail:
                key = await run_in_threadpool(store.delete, name)
                return JSONResponse({**_bundle(key, vault), "deletedDate": key.updated})
            return _error(404, "NotFound", f"no operation {method} {request.url.path[:80]}")
        except _BadRequest as exc:
            return _error(400, "BadParameter", str(exc))
        except (TokenRejected, ReleasePolicyNotSatisfied):
            return _error(403, "Forbidden", _ATTESTATION_REFUSED, inner="AccessDenied")
        except KeyNotFound as exc:
            return _error(404, "KeyNotFound", str(exc))
        except KeyParameterError as exc:
            return _error(400, "BadParameter", str(exc))
        except KeyStateError as exc:
            return _error(403, "Forbidden", str(exc))
        except IntegrityError as exc:
            return _error(409, "Conflict", str(exc))
        except EnclaveKitError as exc:
            return _error(400, "BadParameter", str(exc))

    async def deleted(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP "
                          "token.", headers={"WWW-Authenticate": challenge})
        return _error(404, "KeyNotFound", "soft delete is not enabled: deleted keys are purged")

    def refused(status: int, message: str) -> Response:
        return _error(status, "BadParameter", message)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    guard = Middleware(Guard, limits=Limits(body=max_body), error=refused)
    return Starlette(middleware=[guard], routes=[
        Route("/keys", dispatch, methods=methods),
        Route("/keys/{rest:path}", dispatch, methods=methods),
        Route("/deletedkeys/{rest:path}", deleted, methods=methods),
    ])
