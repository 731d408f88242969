"""The evaluator's claim-type index gives exactly what a full scan of the claims gives.

A condition whose first test is ``type == "literal"`` looks only at claims of that type; the
reference here is the same evaluator with the index switched off (every condition scans every
claim). Decisions, issued claims, properties and errors (with their messages) must agree."""

from __future__ import annotations

import importlib

from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.attest.policy import Claim, evaluate, parse_policy
from enclavekit.attest.policy.model import Policy
from enclavekit.errors import PolicyEvaluationError

_module = importlib.import_module("enclavekit.attest.policy.evaluate")

POLICIES = [parse_policy(text) for text in (
    # type pinned first, then value tests (the default policy's shape)
    'version=1.2; authorizationrules{[type=="a", value>=2] && ![type=="d", value==true] '
    '=> permit();}; issuancerules{c:[type=="a"] => issue(type="out", value=c.value);};',
    # type test second: not indexed; ordering a string claim against "b" raises, any type
    'version=1.0; authorizationrules{[value>"b", type=="a"] => permit();};',
    # bindings across conditions, adds seen by later rules only, a rule re-adding its own type
    'version=1.0; authorizationrules{c:[type=="a"] => add(type="a", value=c.value);'
    'c:[type=="a"] && e:[type=="b", value==c.value] => add(type="m", value=e.value);'
    '[type=="m"] => permit();}; issuancerules{c:[type=="m"] => issue(claim=c);'
    'c:[type=="b"] => issueproperty(type="p", value=c.value);};',
    # issuer and valueType tests, negation, deny
    'version=1.2; authorizationrules{[type=="a", issuer=="AttestationService"] => permit();'
    '[type=="b", valueType=="String"] => deny();}; issuancerules{'
    '![type=="c"] => issue(type="no-c", value=true);};',
)]

_claims = st.lists(st.builds(Claim, st.sampled_from(["a", "b", "c", "d", "m"]),
                             st.one_of(st.integers(0, 3), st.booleans(),
                                       st.sampled_from(["1", "x"]))), max_size=6)


def _outcome(policy: Policy, claims: list[Claim]) -> object:
    try:
        result = evaluate(policy, claims)
    except PolicyEvaluationError as exc:
        return ("error", str(exc))
    return (result.permitted, result.denied, result.issued_claims(),
            [(c.type, c.value) for c in result.properties],
            [(c.type, c.value, c.issuer) for c in result.incoming])


@settings(max_examples=1000, deadline=None)
@given(policy=st.sampled_from(POLICIES), claims=_claims)
def test_indexed_evaluation_equals_a_full_scan(policy: Policy, claims: list[Claim]) -> None:
    indexed = _outcome(policy, claims)
    original = _module._literal_type
    assert original(policy.authorization[0].conditions[0]) in ("a", None)
    setattr(_module, "_literal_type", lambda condition: None)  # noqa: B010
    try:
        scanned = _outcome(policy, claims)
    finally:
        setattr(_module, "_literal_type", original)  # noqa: B010
    assert indexed == scanned


def test_a_rule_does_not_see_the_claims_it_adds() -> None:
    policy = parse_policy('version=1.0; authorizationrules{c:[type=="a"] => '
                          'add(type="a", value=c.value); => permit();};')
    result = evaluate(policy, [Claim("a", 1), Claim("a", 2)])
    assert [c.value for c in result.incoming if c.type == "a"] == [1, 2, 1, 2]

    assert _module._literal_type(policy.authorization[0].conditions[0]) == "a"
