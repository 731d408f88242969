"""Release policies: the published examples, normalisation, evaluation, and a property test
against an independent evaluation of the same conditions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.errors import ReleasePolicyInvalid, ReleasePolicyNotSatisfied
from enclavekit.kms.policy import parse_release_policy
from tests.vectors import names, vector

POLICIES = names("akv_skr_policies", "*.json")
DOC_BUG = {"skr_sgx_example2_mrsigner_mrenclave.json",
           "skr_sgx_example3_mrsigner_mrenclave_svn.json"}


@pytest.mark.parametrize("name", POLICIES)
def test_published_policies(name: str) -> None:
    data = vector(f"akv_skr_policies/{name}").read_bytes()
    if name in DOC_BUG:  # non-hex, 45-character MRENCLAVE: can never match, refused
        with pytest.raises(ReleasePolicyInvalid, match="x-ms-sgx-mrenclave must be 64"):
            parse_release_policy(data, require_debug_pin=False)
        return
    policy = parse_release_policy(data, require_debug_pin=False)
    assert policy.authorities
    # Only MarbleRun's policy pins x-ms-sgx-is-debuggable; the others need the opt-out.
    if name == "skr_marblerun_coordinator_v1.8.0.json":
        assert not policy.warnings
        assert parse_release_policy(data) == policy
    else:
        assert len(policy.warnings) == len(policy.authorities)
        with pytest.raises(ReleasePolicyInvalid, match="does not require x-ms-sgx-is-debuggable"):
            parse_release_policy(data)
    # The normalised document parses to the same policy.
    assert parse_release_policy(policy.document, require_debug_pin=False) == policy


def test_marblerun_policy_evaluation() -> None:
    policy = parse_release_policy(
        vector("akv_skr_policies/skr_marblerun_coordinator_v1.8.0.json").read_bytes())
    issuer = "https://shareduks.uks.attest.azure.net"
    claims: dict[str, Any] = {
        "x-ms-sgx-mrsigner": "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a",
        "x-ms-sgx-svn": 2, "x-ms-sgx-product-id": 3, "x-ms-sgx-is-debuggable": False}
    policy.check(issuer, claims)
    policy.check(issuer + "/", claims)
    for change, needle in [({"x-ms-sgx-svn": 1}, "x-ms-sgx-svn greaterOrEquals 2"),
                           ({"x-ms-sgx-product-id": 2}, "x-ms-sgx-product-id"),
                           ({"x-ms-sgx-is-debuggable": True}, "is-debuggable"),
                           ({"x-ms-sgx-mrsigner": "00" * 32}, "mrsigner")]:
        with pytest.raises(ReleasePolicyNotSatisfied, match=needle):
            policy.check(issuer, claims | change)
    with pytest.raises(ReleasePolicyNotSatisfied, match="not one of the policy's authorities"):
        policy.check("https://shareduks.uks.attest.azure.net.evil", claims)


def test_cvm_policy_nested_any_of_and_duplicate_authority() -> None:
    policy = parse_release_policy(
        vector("akv_skr_policies/skr_azure_cvm_deployment_policy.json").read_bytes(),
        require_debug_pin=False)
    issuer = "https://sharedfrs.frs.attest.azure.net/"
    ok = {"x-ms-compliance-status": "azure-compliant-cvm", "x-ms-attestation-type": "sevsnpvm"}
    policy.check(issuer, ok)
    policy.check(issuer, ok | {"x-ms-attestation-type": "tdxvm"})
    with pytest.raises(ReleasePolicyNotSatisfied):
        policy.check(issuer, ok | {"x-ms-attestation-type": "sgx"})


def test_old_condition_form_and_version_are_normalised_as_key_vault_does() -> None:
    old = {"version": "1.0", "anyOf": [{"authority": "https://a.example/", "allOf": [
        {"claim": "x-ms-sgx-is-debuggable", "condition": "equals", "value": False},
        {"claim": "tee.level", "condition": "greater", "value": 1}]}]}
    policy = parse_release_policy(json.dumps(old).encode())
    assert json.loads(policy.document) == {"version": "1.0.0", "anyOf": [
        {"authority": "https://a.example/", "allOf": [
            {"claim": "x-ms-sgx-is-debuggable", "equals": False},
            {"claim": "tee.level", "greater": 1}]}]}
    policy.check("https://a.example", {"x-ms-sgx-is-debuggable": False, "tee": {"level": 2}})
    with pytest.raises(ReleasePolicyNotSatisfied):
        policy.check("https://a.example", {"x-ms-sgx-is-debuggable": False, "tee": 2})


@pytest.mark.parametrize("data", [b"", b"[]", b"null", b"{", b"\xff", b'{"anyOf": NaN}',
                                  b"[" * 100 + b"]" * 100, b" " * 300_000])
def test_garbage_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(ReleasePolicyInvalid):
        parse_release_policy(data)


# --------------------------------------------------------------------------- property test

CLAIMS = ["a", "b", "n.x", "n.y"]
VALUES = st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from(["s", "t", "1", "true"]),
                   st.floats(-3, 3, allow_nan=False))
OPS = ["equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists"]


@st.composite
def conditions(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and draw(st.booleans()):
        mode = draw(st.sampled_from(["allOf", "anyOf"]))
        return {mode: draw(st.lists(conditions(depth + 1), min_size=1, max_size=3))}
    op = draw(st.sampled_from(OPS))
    if op == "exists":
        value: Any = draw(st.booleans())
    elif op in ("equals", "notEquals"):
        value = draw(VALUES)
    else:
        value = draw(st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False)))
    return {"claim": draw(st.sampled_from(CLAIMS)), op: value}


def reference(cond: dict[str, Any], claims: dict[str, Any]) -> bool:
    """An independent reading of the documented semantics."""
    if "allOf" in cond:
        return all(reference(c, claims) for c in cond["allOf"])
    if "anyOf" in cond:
        return any(reference(c, claims) for c in cond["anyOf"])
    here: Any = claims
    present = True
    for part in cond["claim"].split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        else:
            present = False
            break
    (op, value), = ((k, v) for k, v in cond.items() if k != "claim")
    if op == "exists":
        return present == value
    if not present:
        return False
    kind = {bool: "bool", int: "num", float: "num", str: "str"}
    if type(here) not in kind or kind[type(here)] != kind[type(value)]:
        return False
    return {"equals": here == value, "notEquals": here != value,
            "less": kind[type(here)] == "num" and here < value,
            "lessOrEquals": kind[type(here)] == "num" and here <= value,
            "greater": kind[type(here)] == "num" and here > value,
            "greaterOrEquals": kind[type(here)] == "num" and here >= value}[op]


CLAIM_SETS = st.fixed_dictionaries({}, optional={
    "a": VALUES, "b": VALUES,
    "n": st.one_of(VALUES, st.fixed_dictionaries({}, optional={"x": VALUES, "y": VALUES}))})


@settings(max_examples=1000, deadline=None)
@given(cond=conditions(), claims=CLAIM_SETS)
def test_decision_matches_a_direct_evaluation(cond: dict[str, Any], claims: dict[str, Any]
                                              ) -> None:
    pin = {"claim": "x-ms-sgx-is-debuggable", "equals": False}
    policy = parse_release_policy(json.dumps(
        {"anyOf": [{"authority": "https://a.example", "allOf": [pin, cond]}]}).encode())
    claims = claims | {"x-ms-sgx-is-debuggable": False}
    expected = reference(cond, claims)
    try:
        policy.check("https://a.example", claims)
        decided = True
    except ReleasePolicyNotSatisfied:
        decided = False
    assert decided is expected
