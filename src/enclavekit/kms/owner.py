"""A data owner's client of the key-release service: a release policy for an SGX enclave
and importing a key under it (Key Vault's ``PUT /keys/{name}``, over HTTPS).

The owner never talks to the enclave: the service releases the key, wrapped to a key made
inside it, only to an enclave whose attestation token satisfies the policy.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from ..errors import KeyReleaseError

__all__ = ["API_VERSION", "import_key", "sgx_release_policy", "tcb_condition"]

API_VERSION = "7.4"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tcb_condition(allowed_advisories: Sequence[str] = ()) -> dict[str, Any]:
    """The release-policy condition on the platform's TCB: ``x-ms-sgx-tcb-status`` UpToDate,
    or any status but Revoked whose advisories (``x-ms-sgx-advisories``, the sorted ids joined
    by ``,``) are exactly ``allowed_advisories`` (e.g. ``EK-DEV-0001``, a development
    platform)."""
    up_to_date = {"claim": "x-ms-sgx-tcb-status", "equals": "UpToDate"}
    if not allowed_advisories:
        return up_to_date
    return {"anyOf": [up_to_date, {"allOf": [
        {"claim": "x-ms-sgx-tcb-status", "notEquals": "Revoked"},
        {"claim": "x-ms-sgx-advisories", "equals": ",".join(sorted(set(allowed_advisories)))}]}]}


def sgx_release_policy(authority: str, *, mrsigner: bytes, product_id: int, min_svn: int,
                       allowed_advisories: Sequence[str] = ()) -> dict[str, Any]:
    """A release policy (Key Vault grammar) admitting only tokens of ``authority`` for a
    production enclave of signer ``mrsigner``, product ``product_id`` and SVN at least
    ``min_svn`` (``x-ms-sgx-is-debuggable`` false) on an UpToDate platform, or one whose only
    advisory is named in ``allowed_advisories`` (:func:`tcb_condition`)."""
    return {"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": mrsigner.hex()},
        {"claim": "x-ms-sgx-product-id", "equals": product_id},
        {"claim": "x-ms-sgx-svn", "greaterOrEquals": min_svn},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False},
        tcb_condition(allowed_advisories)]}]}


def import_key(kms_url: str, name: str, key: bytes, policy: dict[str, Any], *,
               cafile: str | Path, bearer: str = "data-owner", timeout: float = 10.0) -> str:
    """Import the AES ``key`` as ``name`` (exportable, released only under ``policy``) into
    the key-release service at ``kms_url``, trusting its TLS certificate ``cafile``.

    Returns:
        The key's id (``{kms_url}/keys/{name}/{version}``).

    Raises:
        KeyReleaseError: the service refused the import (its status and answer).
    """
    body = {"key": {"kty": "oct-HSM", "k": _b64url(key)}, "attributes": {"exportable": True},
            "release_policy": {"contentType": "application/json; charset=utf-8",
                               "data": _b64url(json.dumps(policy).encode())}}
    answer = httpx.put(f"{kms_url}/keys/{name}?api-version={API_VERSION}", json=body,
                       headers={"Authorization": f"Bearer {bearer}"},
                       verify=ssl.create_default_context(cafile=str(cafile)), timeout=timeout)
    if answer.status_code != 200:
        raise KeyReleaseError(f"importing {name} failed: HTTP {answer.status_code} "
                              f"{answer.text[:200]}")
    return str(answer.json()["key"]["kid"])
