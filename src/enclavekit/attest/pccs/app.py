"""The collateral service as a Starlette app, at Intel PCS v4 paths and in its formats.

* ``GET /sgx/certification/v4/tcb?fmspc=<12 hex>`` → ``{"tcbInfo":…,"signature":…}``,
  header ``TCB-Info-Issuer-Chain``;
* ``GET /sgx/certification/v4/qe/identity`` → ``{"enclaveIdentity":…,"signature":…}``,
  header ``SGX-Enclave-Identity-Issuer-Chain``;
* ``GET /sgx/certification/v4/pckcrl?ca=processor[&encoding=der|pem]`` → the PCK CRL (PEM
  unless ``der``), header ``SGX-PCK-CRL-Issuer-Chain``;
* ``GET /sgx/certification/v4/rootcacrl`` → the root CA CRL, DER.

Issuer chains are URL-encoded PEM (signer ‖ root), as PCS sends them. The signed JSON texts are
embedded byte for byte, so a client can check the signature over what it received. Bad
parameters (or any request body: every operation is a GET) get 400, a request outside the
limits of ``enclavekit._guard`` 408/414/431, and an unknown FMSPC or CA 404, each with
``{"error": "<what is wrong>"}``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..._guard import Guard, Limits
from ...errors import EnclaveKitError
from .publish import Publisher

__all__ = ["PREFIX", "create_app"]

PREFIX = "/sgx/certification/v4"
_FMSPC_RE = re.compile(r"^[0-9A-Fa-f]{12}$")
_UPDATE = ("early", "standard")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _unexpected(request: Request, allowed: tuple[str, ...]) -> JSONResponse | None:
    """400 for a parameter this endpoint does not take, or one given twice."""
    for name in request.query_params:
        if name not in allowed:
            return _error(400, f"unknown query parameter {name!r} (this endpoint takes "
                               f"{', '.join(allowed) or 'none'})")
        if len(request.query_params.getlist(name)) > 1:
            return _error(400, f"query parameter {name!r} given more than once")
    update = request.query_params.get("update")
    if update is not None and update not in _UPDATE:
        return _error(400, f"update must be one of {', '.join(_UPDATE)}, not {update!r}")
    return None


def _chain_header(pem: str) -> str:
    return quote(pem, safe="")


def create_app(publisher: Publisher) -> Starlette:
    """The PCS v4 subset for emulated platforms, serving what ``publisher`` has signed."""

    def tcb(request: Request) -> Response:
        if bad := _unexpected(request, ("fmspc", "update")):
            return bad
        fmspc = request.query_params.get("fmspc")
        if fmspc is None:
            return _error(400, "missing query parameter fmspc (12 hex digits)")
        if not _FMSPC_RE.match(fmspc):
            return _error(400, f"fmspc must be 12 hex digits, not {fmspc!r}")
        pub = publisher.current()
        signed = pub.tcb_info.get(fmspc.upper())
        if signed is None:
            return _error(404, f"no TCB info for FMSPC {fmspc.upper()}")
        return Response(signed.body("tcbInfo"), media_type="application/json",
                        headers={"TCB-Info-Issuer-Chain":
                                 _chain_header(pub.tcb_info_issuer_chain)})

    def qe_identity(request: Request) -> Response:
        if bad := _unexpected(request, ("update",)):
            return bad
        pub = publisher.current()
        return Response(pub.qe_identity.body("enclaveIdentity"), media_type="application/json",
                        headers={"SGX-Enclave-Identity-Issuer-Chain":
                                 _chain_header(pub.tcb_info_issuer_chain)})

    def pck_crl(request: Request) -> Response:
        if bad := _unexpected(request, ("ca", "encoding")):
            return bad
        ca = request.query_params.get("ca")
        if ca is None:
            return _error(400, "missing query parameter ca (processor or platform)")
        if ca not in ("processor", "platform"):
            return _error(400, f"ca must be processor or platform, not {ca!r}")
        if ca == "platform":
            return _error(404, "emulated platforms are certified by the PCK Processor CA only; "
                               "use ca=processor")
        encoding = request.query_params.get("encoding", "pem")
        if encoding not in ("der", "pem"):
            return _error(400, f"encoding must be der or pem, not {encoding!r}")
        pub = publisher.current()
        headers = {"SGX-PCK-CRL-Issuer-Chain": _chain_header(pub.pck_crl_issuer_chain)}
        if encoding == "der":
            return Response(pub.pck_crl, media_type="application/pkix-crl", headers=headers)
        pem = x509.load_der_x509_crl(pub.pck_crl).public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file", headers=headers)

    def root_ca_crl(request: Request) -> Response:
        if bad := _unexpected(request, ()):
            return bad
        return Response(publisher.current().root_ca_crl, media_type="application/pkix-crl")

    async def refused(request: Request, exc: Exception) -> Response:
        return _error(503, f"{type(exc).__name__}: {exc}")

    return Starlette(
        routes=[
            Route(f"{PREFIX}/tcb", tcb, methods=["GET"]),
            Route(f"{PREFIX}/qe/identity", qe_identity, methods=["GET"]),
            Route(f"{PREFIX}/pckcrl", pck_crl, methods=["GET"]),
            Route(f"{PREFIX}/rootcacrl", root_ca_crl, methods=["GET"]),
        ],
        exception_handlers={EnclaveKitError: refused},
        middleware=[Middleware(Guard, limits=Limits(body=0), error=_error)],
    )
