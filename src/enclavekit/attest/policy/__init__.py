"""The attestation policy language (MAA 1.0–1.2): parse, check and evaluate policies.

>>> from enclavekit.attest.policy import Claim, evaluate, parse_policy
>>> policy = parse_policy('version=1.0; authorizationrules{'
...     '[type=="x-ms-sgx-is-debuggable", value==false] => permit();};'
...     'issuancerules{c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);};')
>>> result = evaluate(policy, [Claim("x-ms-sgx-is-debuggable", False), Claim("x-ms-sgx-svn", 3)])
>>> result.permitted, result.issued_claims()
(True, {'svn': 3})
"""

from __future__ import annotations

from .defaults import DEFAULT_SGX_POLICY, PERMIT_ALL_POLICY, policy_hash
from .evaluate import Claim, Evaluation, evaluate
from .model import Policy
from .parse import parse_policy

__all__ = ["DEFAULT_SGX_POLICY", "PERMIT_ALL_POLICY", "Claim", "Evaluation", "Policy",
           "evaluate", "parse_policy", "policy_hash"]
