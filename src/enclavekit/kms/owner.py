"""A data owner's client of the key-release service: a release policy for an SGX enclave
and importing a key under it (Key Vault's ``PUT /keys/{name}``, over HTTPS).

The owner never talks to the enclave: the service releases the key, wrapped to a key made
inside it, only to an enclave whose attestation token satisfies the policy.
"""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import httpx

from ..errors import KeyReleaseError

__all__ = ["API_VERSION", "import_key", "sgx_release_policy"]

API_VERSION = "7.4"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sgx_release_policy(authority: str, *, mrsigner: bytes, product_id: int,
                       min_svn: int) -> dict[str, Any]:
    """A release policy (Key Vault grammar) admitting only tokens of ``authority`` for a
    production enclave of signer ``mrsigner``, product ``product_id`` and SVN at least
    ``min_svn`` (``x-ms-sgx-is-debuggable`` false)."""
    return {"version": "1.0.0", "anyOf": [{"authority": authority, "allOf": [
        {"claim": "x-ms-sgx-mrsigner", "equals": mrsigner.hex()},
        {"claim": "x-ms-sgx-product-id", "equals": product_id},
        {"claim": "x-ms-sgx-svn", "greaterOrEquals": min_svn},
        {"claim": "x-ms-sgx-is-debuggable", "equals": False}]}]}


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
