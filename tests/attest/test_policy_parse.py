"""Parsing attestation policies: published policies parse, bad ones fail at the right place."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.attest.policy import DEFAULT_SGX_POLICY, PERMIT_ALL_POLICY, parse_policy
from enclavekit.attest.policy.model import Call, ClaimRef, Literal_
from enclavekit.errors import PolicyError, PolicySyntaxError
from tests.vectors import vector

VALID = [
    "permit_all_policy_sdk_test.txt",
    "sgx_default_policy.txt",
    "sgx_multiple_enclaves_policy.txt",
    "signing_tool_sample_add.custom.claim.txt",
    "signing_tool_sample_deny.all.txt",
    "signing_tool_sample_permit.secure.boot.txt",
]


@pytest.mark.parametrize("name", VALID)
def test_published_policies_parse(name: str) -> None:
    text = vector(f"maa_policies/{name}").read_text()
    policy = parse_policy(text)
    assert policy.text == text
    assert policy.version in ("1.0", "1.1")
    assert policy.authorization


def _jwt_policy(name: str) -> str:
    payload = vector(f"maa_policies/{name}").read_text().strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    encoded = claims["AttestationPolicy"]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


@pytest.mark.parametrize("name", ["sgx_unsigned_policy.jwt", "sgx_signed_policy.jwt"])
def test_policies_inside_policy_jwts_parse(name: str) -> None:
    policy = parse_policy(_jwt_policy(name))
    assert len(policy.issuance) >= 6


def test_template_with_placeholders_is_refused_where_the_placeholder_is() -> None:
    text = vector("maa_policies/sgx_custom_policy_template.txt").read_text()
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(text)
    line = text.splitlines()[info.value.line - 1]
    assert line[info.value.column - 1] == "<"
    assert str(info.value).startswith(f"line {info.value.line}, column {info.value.column}:")


def test_default_policy_shape() -> None:
    policy = parse_policy(DEFAULT_SGX_POLICY)
    assert policy.version == "1.1"
    assert [r.action.kind for r in policy.configuration] == ["issueproperty"]
    assert [r.action.kind for r in policy.authorization] == ["permit"]
    issued = [r.action.args["type"] for r in policy.issuance]
    assert [e.value for e in issued if isinstance(e, Literal_)] == [
        "is-debuggable", "sgx-mrsigner", "sgx-mrenclave", "product-id", "svn", "tee"]


def test_expressions_are_typed() -> None:
    policy = parse_policy('version=1.2; authorizationrules{ c:[type=="a", value>=-3] && '
                          '![type=="b", value==true] => permit(); }; issuancerules{ '
                          'c:[type=="a"] => issue(type="x", value=AppendString(c.value, "y")); };')
    rule = policy.authorization[0]
    first, second = rule.conditions
    assert first.binding == "c" and not first.negated
    assert first.tests[1].op == ">=" and first.tests[1].expr == Literal_(-3, first.tests[1].expr.at)
    assert second.negated and second.tests[1].expr.value is True  # type: ignore[union-attr]
    value = policy.issuance[0].action.args["value"]
    assert isinstance(value, Call) and value.name == "AppendString"
    assert isinstance(value.args[0], ClaimRef) and value.args[0].prop == "value"


def test_single_equals_is_equality_and_comments_are_ignored() -> None:
    policy = parse_policy('// a comment\nversion=1.2;\nauthorizationrules{\n'
                          '  [type="x", value=1] => permit(); /* block */\n};')
    assert policy.authorization[0].conditions[0].tests[0].op == "=="


_ISSUE_IN_AUTH = ('version=1.0;\nauthorizationrules{\n'
                  '  c:[type=="a"] => issue(type="x", value=c.value);\n};')


@pytest.mark.parametrize(("text", "line", "column", "fragment"), [
    ("version=1.0; authorizationrules{=> permit()}; issuancerules{};", 1, 44, "expected ';'"),
    ("version=2.0; authorizationrules{};", 1, 9, "unsupported policy version 2.0"),
    (_ISSUE_IN_AUTH, 3, 20, "issue() is not allowed in authorizationrules"),
    ('version=1.0; authorizationrules{[type=="a", valu==1] => permit();};', 1, 45,
     "unknown claim property 'valu'"),
    ('version=1.0; authorizationrules{[type=="a", value==d.value] => permit();};', 1, 52,
     "'d' is not bound"),
    ("version=1.0; configurationrules{}; authorizationrules{};", 1, 14,
     "configurationrules need policy version 1.1"),
    ('version=1.0; authorizationrules{![type=="a"] => permit();};', 1, 33,
     "needs policy version 1.2"),
    ('version=1.1; authorizationrules{[type=="a", value==NegateBool(true)] => permit();};', 1, 52,
     "needs policy version 1.2"),
    ('version=1.2; authorizationrules{[type=="a", value==Frob(1)] => permit();};', 1, 52,
     "unknown function 'Frob'"),
    ("version=1.0; authorizationrules{=> frob();};", 1, 36, "unknown action frob()"),
    ("version=1.0; authorizationrules{=> permit();}; authorizationrules{};", 1, 48,
     "appears twice"),
    ("version=1.0; issuancerules{};", 1, 30, "no authorizationrules section"),
    ("version=1.0; rules{};", 1, 14, "unknown section 'rules'"),
    ('version=1.0; authorizationrules{=> permit();}; issuancerules{=> issue(type="a");};', 1, 65,
     "needs type= and value="),
    ('version=1.0; authorizationrules{[type=="a"] => permit();', 1, 56, "unexpected end of policy"),
    ("version=1.0; authorizationrules{ # => permit();};", 1, 34, "unexpected character '#'"),
])
def test_errors_point_at_line_and_column(text: str, line: int, column: int,
                                         fragment: str) -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert fragment in str(info.value)


def test_permit_all_is_the_sdk_test_policy() -> None:
    assert parse_policy(PERMIT_ALL_POLICY).authorization[0].action.kind == "permit"


@given(st.text(max_size=200))
def test_arbitrary_text_gives_a_typed_error_or_a_policy(text: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_policy(text)


@given(st.integers(min_value=0, max_value=len(DEFAULT_SGX_POLICY) - 1), st.characters())
def test_mutated_default_policy_never_crashes(index: int, char: str) -> None:
    text = DEFAULT_SGX_POLICY[:index] + char + DEFAULT_SGX_POLICY[index + 1:]
    with contextlib.suppress(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize("depth", [40, 3000])
def test_deeply_nested_calls_are_a_positioned_error(depth: int) -> None:
    expr = "AppendString(" * depth + '"a", "b")' + ', "c")' * (depth - 1)
    text = f'version=1.2; authorizationrules{{[type=="t", value=={expr}] => permit();}};'
    with pytest.raises(PolicySyntaxError, match=r"nested more than 32 deep|nested too deeply"):
        parse_policy(text)


def test_nesting_within_the_limit_parses() -> None:
    expr = "AppendString(" * 32 + '"a", "b")' + ', "c")' * 31
    parse_policy(f'version=1.2; authorizationrules{{[type=="t", value=={expr}] => permit();}};')


@pytest.mark.parametrize("literal", ["1" * 5000, "-" + "1" * 30, str(1 << 64), str(-(1 << 63) - 1)])
def test_integers_outside_64_bits_are_a_positioned_error(literal: str) -> None:
    text = f'version=1.0; authorizationrules{{[type=="t", value=={literal}] => permit();}};'
    with pytest.raises(PolicySyntaxError, match=r"line 1, column \d+: integer .* out of range"):
        parse_policy(text)


@pytest.mark.parametrize("literal", [(1 << 64) - 1, -(1 << 63), 0])
def test_integers_at_the_64_bit_bounds_parse(literal: int) -> None:
    parse_policy(f'version=1.0; authorizationrules{{[type=="t", value=={literal}] => permit();}};')
