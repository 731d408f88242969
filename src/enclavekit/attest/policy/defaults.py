"""The default SGX attestation policy and the policy hash claim."""

from __future__ import annotations

import base64
import hashlib

__all__ = ["DEFAULT_SGX_POLICY", "PERMIT_ALL_POLICY", "policy_hash"]

DEFAULT_SGX_POLICY = """version= 1.1;
configurationrules{
\t=> issueproperty(type="x-ms-sgx-tcbidentifier", value="azuredefault");
};
authorizationrules{
\t=> permit();
};
issuancerules{
\tc:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);
\tc:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);
\tc:[type=="x-ms-sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);
\tc:[type=="x-ms-sgx-product-id"] => issue(type="product-id", value=c.value);
\tc:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);
\tc:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);
};
"""
"""The default policy of the SgxEnclave type (maps x-ms-sgx-* to the legacy claim names)."""

PERMIT_ALL_POLICY = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"
"""Permit everything, issue nothing extra."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def policy_hash(text: str) -> str:
    """``x-ms-policy-hash``: base64url(SHA-256(base64url(UTF-8 policy text))), unpadded."""
    return _b64url(hashlib.sha256(_b64url(text.encode()).encode()).digest())
