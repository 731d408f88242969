"""The claims of an SGX attestation token, as Azure Attestation issues them (maa-skr.md §4).

From the verified quote: ``x-ms-sgx-is-debuggable`` (ATTRIBUTES.DEBUG), ``x-ms-sgx-mrenclave``,
``x-ms-sgx-mrsigner`` (lower-case hex), ``x-ms-sgx-product-id``, ``x-ms-sgx-svn`` (integers),
``x-ms-sgx-report-data`` (the 64-byte REPORTDATA, hex), ``x-ms-sgx-collateral`` (hex SHA-256 of
the quote and of each collateral item), ``x-ms-attestation-type`` ``"sgx"``, ``x-ms-ver``
``"1.0"``; the KSS fields ``x-ms-sgx-config-id``, ``-config-svn``, ``-isv-extended-product-id``,
``-isv-family-id`` only when one of them is non-zero (as on Ice Lake and later).

enclavekit additions (MAA names no TCB claims for SGX): ``x-ms-sgx-tcb-status`` (the TCB level
status the verifier found, e.g. ``UpToDate``, ``SWHardeningNeeded``) and
``x-ms-sgx-advisory-ids`` (list of Intel advisory ids) and ``x-ms-sgx-advisories`` (the same ids
sorted and joined by ``,``: one string a release policy can compare), present when the verifier
reports them.

From the request: ``x-ms-sgx-ehd`` (+ legacy ``maa-ehd``, ``aas-ehd``) for Binary runtime data,
``x-ms-runtime`` / ``x-ms-inittime`` (the parsed JSON) for JSON data, ``nonce``.
From the policy: its issued claims, top level and as the ``x-ms-policy`` object;
``x-ms-policy-hash``. Then ``iss``, ``iat``, ``nbf``, ``exp``, ``jti``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...jose import b64url
from ...sgx.structs import ReportBody
from ..policy import Claim, Evaluation, policy_hash
from .tokens import new_jti, time_claims

__all__ = ["Appraisal", "HeldData", "advisories_claim", "incoming_claims", "quote_claims",
           "token_claims"]

_DEBUG = 0x2
_LEGACY_ALIASES = {"x-ms-sgx-is-debuggable": "$is-debuggable",
                   "x-ms-sgx-product-id": "$product-id", "x-ms-sgx-mrsigner": "$sgx-mrsigner",
                   "x-ms-sgx-mrenclave": "$sgx-mrenclave", "x-ms-sgx-svn": "$svn",
                   "x-ms-attestation-type": "$tee"}


@dataclass(frozen=True)
class Appraisal:
    """What quote verification established: the quote, its enclave's REPORTBODY, and the TCB."""

    quote: bytes
    """The raw SGX quote (an OE report's header removed)."""
    body: ReportBody
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    collateral_hashes: Mapping[str, str] = field(default_factory=dict)
    """Hex SHA-256 of each collateral item (``tcbinfohash``, ``qeidhash``, ...)."""


@dataclass(frozen=True)
class HeldData:
    """``runtimeData`` / ``initTimeData``: the bytes and whether they are JSON."""

    data: bytes
    is_json: bool
    parsed: Any = None
    """The JSON value (JSON data only)."""


def quote_claims(appraisal: Appraisal) -> dict[str, Any]:
    """The ``x-ms-sgx-*`` claims (and type, version, TCB) of a verified quote."""
    body = appraisal.body
    collateral = dict(appraisal.collateral_hashes)
    collateral["quotehash"] = hashlib.sha256(appraisal.quote).hexdigest()
    claims: dict[str, Any] = {
        "x-ms-attestation-type": "sgx",
        "x-ms-ver": "1.0",
        "x-ms-sgx-is-debuggable": bool(body.attributes.flags & _DEBUG),
        "x-ms-sgx-mrenclave": body.mrenclave.hex(),
        "x-ms-sgx-mrsigner": body.mrsigner.hex(),
        "x-ms-sgx-product-id": body.isvprodid,
        "x-ms-sgx-svn": body.isvsvn,
        "x-ms-sgx-report-data": body.reportdata.hex(),
        "x-ms-sgx-collateral": dict(sorted(collateral.items())),
    }
    if any(body.configid) or body.configsvn or any(body.isvextprodid) or any(body.isvfamilyid):
        claims.update({"x-ms-sgx-config-id": body.configid.hex(),
                       "x-ms-sgx-config-svn": body.configsvn,
                       "x-ms-sgx-isv-extended-product-id": body.isvextprodid.hex(),
                       "x-ms-sgx-isv-family-id": body.isvfamilyid.hex()})
    if appraisal.tcb_status is not None:
        claims["x-ms-sgx-tcb-status"] = appraisal.tcb_status
        claims["x-ms-sgx-advisory-ids"] = list(appraisal.advisory_ids)
        claims["x-ms-sgx-advisories"] = advisories_claim(appraisal.advisory_ids)
    return claims


def advisories_claim(advisory_ids: tuple[str, ...]) -> str:
    """``x-ms-sgx-advisories``: the advisory ids sorted, unique, joined by ``,`` (``""`` for
    none) — one string, so a Key Vault release policy, whose grammar compares scalars only,
    can name the exact set it accepts (``"EK-DEV-0001"``)."""
    return ",".join(sorted(set(advisory_ids)))


def held_claims(runtime: HeldData | None, inittime: HeldData | None) -> dict[str, Any]:
    """Claims for the runtime and init-time data."""
    claims: dict[str, Any] = {}
    if runtime is not None:
        if runtime.is_json:
            claims["x-ms-runtime"] = runtime.parsed
        else:
            claims["x-ms-sgx-ehd"] = b64url(runtime.data)
    if inittime is not None and inittime.is_json:
        claims["x-ms-inittime"] = inittime.parsed
    return claims


def incoming_claims(service: Mapping[str, Any]) -> list[Claim]:
    """The claims a policy sees: every scalar service claim, its deprecated ``$`` alias, each
    advisory id, and JSON runtime / init-time data as a JSON string (for ``JmesPath``)."""
    out: list[Claim] = []
    for ctype, value in service.items():
        if isinstance(value, bool | int | str):
            out.append(Claim(ctype, value))
            if ctype in _LEGACY_ALIASES:
                out.append(Claim(_LEGACY_ALIASES[ctype], value))
        elif ctype == "x-ms-sgx-advisory-ids":
            out.extend(Claim(ctype, str(a)) for a in value)
        elif ctype in ("x-ms-runtime", "x-ms-inittime"):
            out.append(Claim(ctype, json.dumps(value, separators=(",", ":"))))
    return out


def token_claims(service: Mapping[str, Any], evaluation: Evaluation, policy_text: str, *,
                 issuer: str, now: float, lifetime: int, nonce: str | None) -> dict[str, Any]:
    """The token body: policy-issued claims, then the service's (which win on a clash), the
    legacy copies, ``x-ms-policy``, ``x-ms-policy-hash``, times, ``jti``, ``nonce``."""
    issued = evaluation.issued_claims()
    claims: dict[str, Any] = dict(issued)
    claims.update(service)
    if "x-ms-sgx-ehd" in service:
        claims["maa-ehd"] = claims["aas-ehd"] = service["x-ms-sgx-ehd"]
    if "x-ms-sgx-collateral" in service:
        claims["maa-attestationcollateral"] = service["x-ms-sgx-collateral"]
    claims["x-ms-policy"] = issued
    claims["x-ms-policy-hash"] = policy_hash(policy_text)
    claims.update(time_claims(now, lifetime))
    claims["iss"] = issuer
    claims["jti"] = new_jti()
    if nonce is not None:
        claims["nonce"] = nonce
    return dict(sorted(claims.items()))
