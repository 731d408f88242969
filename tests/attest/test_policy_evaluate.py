"""Evaluating attestation policies: authorization, issuance, bindings, functions."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.attest.policy import (
    DEFAULT_SGX_POLICY,
    Claim,
    evaluate,
    parse_policy,
    policy_hash,
)
from enclavekit.errors import AuthorizationDenied, PolicyEvaluationError
from tests.vectors import vector


def _token() -> dict[str, Any]:
    return json.loads(vector("azure_sdk_python_maa/attest_sgx_token_decoded.json").read_text())[
        "payload"]


def _evidence_claims(payload: dict[str, Any]) -> list[Claim]:
    return [Claim(k, v) for k, v in payload.items()
            if k.startswith("x-ms-") and isinstance(v, bool | int | str)]


def test_default_policy_issues_what_azure_issued() -> None:
    payload = _token()
    result = evaluate(parse_policy(DEFAULT_SGX_POLICY), _evidence_claims(payload))
    result.require_permitted()
    assert result.issued_claims() == payload["x-ms-policy"]
    assert [(c.type, c.value) for c in result.properties] == [
        ("x-ms-sgx-tcbidentifier", "azuredefault")]


def _signed_policy_text() -> str:
    payload = vector("maa_policies/sgx_signed_policy.jwt").read_text().strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    encoded = claims["AttestationPolicy"]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


@pytest.mark.parametrize(("debuggable", "permitted"), [(True, False), (False, True)])
def test_published_deny_debug_policy(debuggable: bool, permitted: bool) -> None:
    policy = parse_policy(_signed_policy_text())
    result = evaluate(policy, [Claim("$is-debuggable", debuggable), Claim("$svn", 1)])
    assert (result.permitted and not result.denied) is permitted
    if not permitted:
        with pytest.raises(AuthorizationDenied, match="deny"):
            result.require_permitted()
    assert result.issued_claims()["NotDebuggable"] is debuggable


def test_nothing_permitted_is_refused() -> None:
    policy = parse_policy('version=1.0; authorizationrules{[type=="a", value==1] => permit();};')
    result = evaluate(policy, [Claim("a", 2)])
    with pytest.raises(AuthorizationDenied, match="no authorization rule"):
        result.require_permitted()


def test_rules_across_mrsigners_are_alternatives() -> None:
    policy = parse_policy(vector("maa_policies/sgx_multiple_enclaves_policy.txt").read_text())
    for signer, ok in (("mrsigner1", True), ("mrsigner2", True), ("mrsigner3", False)):
        claims = [Claim("x-ms-sgx-is-debuggable", True), Claim("x-ms-sgx-mrsigner", signer)]
        assert evaluate(policy, claims).permitted is ok


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("==", 5, True), ("!=", 5, False), ("<", 6, True), ("<=", 5, True), (">", 5, False),
    (">=", 6, False),
])
def test_integer_comparisons(op: str, value: int, expected: bool) -> None:
    policy = parse_policy(f'version=1.0; authorizationrules{{[type=="svn", value{op}{value}] '
                          "=> permit();};")
    assert evaluate(policy, [Claim("svn", 5)]).permitted is expected


def test_ordering_operators_refuse_strings() -> None:
    policy = parse_policy('version=1.0; authorizationrules{[type=="a", value>"b"] => permit();};')
    with pytest.raises(PolicyEvaluationError, match="compares Integers only"):
        evaluate(policy, [Claim("a", "c")])


def test_values_of_different_types_are_not_equal() -> None:
    policy = parse_policy('version=1.0; authorizationrules{[type=="a", value==1] => permit();};')
    assert not evaluate(policy, [Claim("a", True)]).permitted
    assert not evaluate(policy, [Claim("a", "1")]).permitted


def test_bindings_flow_between_conditions_and_fire_per_match() -> None:
    policy = parse_policy(
        'version=1.0; authorizationrules{=> permit();}; issuancerules{'
        'a:[type=="x"] && b:[type=="y", value==a.value] => issue(type="pair", value=b.value);};')
    claims = [Claim("x", 1), Claim("x", 2), Claim("y", 2), Claim("y", 3)]
    assert evaluate(policy, claims).issued_claims() == {"pair": 2}
    claims.append(Claim("y", 1))
    assert evaluate(policy, claims).issued_claims() == {"pair": [1, 2]}


def test_added_claims_are_seen_by_later_rules_but_not_issued() -> None:
    policy = parse_policy(
        'version=1.0; authorizationrules{c:[type=="a"] => add(type="seen", value=c.value);'
        '[type=="seen", issuer=="AttestationPolicy"] => permit();};'
        'issuancerules{c:[type=="seen"] => issue(claim=c);};')
    result = evaluate(policy, [Claim("a", "v")])
    assert result.permitted
    assert result.issued_claims() == {"seen": "v"}


def test_negated_condition_and_functions() -> None:
    policy = parse_policy(
        'version=1.2; authorizationrules{![type=="x-ms-sgx-is-debuggable", value==true] '
        '=> permit();}; issuancerules{'
        'c:[type=="name"] => issue(type="greeting", value=AppendString("hi ", c.value));'
        'c:[type=="flag"] => issue(type="flipped", value=NegateBool(c.value));'
        'c:[type=="doc"] => issue(type="svn", value=JmesPath(c.value, "a.b"));};')
    claims = [Claim("name", "bob"), Claim("flag", False), Claim("doc", '{"a": {"b": 7}}')]
    result = evaluate(policy, claims)
    assert result.permitted
    assert result.issued_claims() == {"greeting": "hi bob", "flipped": True, "svn": 7}
    debug = evaluate(policy, [*claims, Claim("x-ms-sgx-is-debuggable", True)])
    assert not debug.permitted


def test_function_type_errors_are_typed() -> None:
    policy = parse_policy('version=1.2; authorizationrules{c:[type=="a"] => '
                          'add(type="b", value=NegateBool(c.value));};')
    with pytest.raises(PolicyEvaluationError, match="NegateBool"):
        evaluate(policy, [Claim("a", "text")])


def test_value_type_and_issuer_properties() -> None:
    policy = parse_policy('version=1.0; authorizationrules{[valueType=="Integer", '
                          'issuer=="AttestationService"] => permit();};')
    assert evaluate(policy, [Claim("a", 3)]).permitted
    assert not evaluate(policy, [Claim("a", "3")]).permitted
    assert not evaluate(policy, [Claim("a", 3, issuer="CustomClaim")]).permitted


def test_policy_hash_is_base64url_sha256_of_base64url_text() -> None:
    text = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"
    digest = policy_hash(text)
    assert len(digest) == 43 and "=" not in digest
    assert digest != policy_hash(text + " ")


_SVN_POLICY = parse_policy(
    'version=1.2; authorizationrules{'
    '[type=="x-ms-sgx-is-debuggable", value==true] => deny();'
    '[type=="x-ms-sgx-mrsigner", value=="aa"] && [type=="x-ms-sgx-svn", value>=2] => permit();'
    '[type=="x-ms-sgx-product-id", value!=7] && ![type=="blocked"] => permit();};')

_claim_sets = st.lists(st.one_of(
    st.builds(Claim, st.just("x-ms-sgx-is-debuggable"), st.booleans()),
    st.builds(Claim, st.just("x-ms-sgx-mrsigner"), st.sampled_from(["aa", "AA", "bb"])),
    st.builds(Claim, st.just("x-ms-sgx-svn"), st.integers(-2, 5)),
    st.builds(Claim, st.just("x-ms-sgx-product-id"), st.one_of(st.integers(5, 9), st.just("7"))),
    st.builds(Claim, st.just("blocked"), st.booleans()),
), max_size=6)


def _direct_decision(claims: list[Claim]) -> bool:
    def has(ctype: str, test: Any) -> bool:
        return any(c.type == ctype and test(c.value) for c in claims)

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if has("x-ms-sgx-is-debuggable", lambda v: v is True):
        return False
    signer_ok = (has("x-ms-sgx-mrsigner", lambda v: v == "aa")
                 and has("x-ms-sgx-svn", lambda v: is_int(v) and v >= 2))
    product_ok = (has("x-ms-sgx-product-id", lambda v: not (is_int(v) and v == 7))
                  and not has("blocked", lambda v: True))
    return signer_ok or product_ok


@settings(max_examples=1000, deadline=None)
@given(_claim_sets)
def test_random_claim_sets_decide_as_the_conditions_say(claims: list[Claim]) -> None:
    result = evaluate(_SVN_POLICY, claims)
    assert (result.permitted and not result.denied) is _direct_decision(claims)
