"""Evaluate a parsed attestation policy over a set of claims.

Semantics (MAA policy language): rules run in textual order, section by section
(configuration, authorization, issuance). A condition selects the claims that pass all
its property tests and holds iff one does (``!``: iff none does); a named condition binds
each such claim in turn, and the action runs once per combination of bindings.
``add`` puts a claim in the incoming set, ``issue`` also in the token, ``issueproperty``
in the properties. Authorization succeeds iff some ``permit()`` fired and no ``deny()`` did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import AuthorizationDenied, PolicyEvaluationError
from .model import (
    Call,
    ClaimRef,
    ClaimValue,
    Condition,
    Expr,
    Literal_,
    Policy,
    PropertyTest,
    Rule,
)

__all__ = ["Claim", "Evaluation", "evaluate"]

_MAX_FIRINGS = 10_000
"""Upper bound on action firings per rule (a guard against combinatorial policies)."""


@dataclass(frozen=True)
class Claim:
    """One claim: a type, a value, its value type and who issued it."""

    type: str
    value: ClaimValue
    issuer: str = "AttestationService"

    @property
    def value_type(self) -> str:
        """``Boolean``, ``Integer`` or ``String``."""
        if isinstance(self.value, bool):
            return "Boolean"
        return "Integer" if isinstance(self.value, int) else "String"

    def prop(self, name: str) -> ClaimValue:
        """The claim property a policy names (``type``, ``value``, ``issuer``, ``valueType``)."""
        if name == "valueType":
            return self.value_type
        return {"type": self.type, "value": self.value, "issuer": self.issuer}[name]


@dataclass
class Evaluation:
    """The outcome: whether authorization permitted, and what the policy issued."""

    permitted: bool
    denied: bool
    incoming: list[Claim] = field(default_factory=list)
    issued: list[Claim] = field(default_factory=list)
    properties: list[Claim] = field(default_factory=list)

    def require_permitted(self) -> None:
        """Raise AuthorizationDenied unless authorization succeeded."""
        if self.denied:
            raise AuthorizationDenied("a deny() rule fired: the policy refuses this evidence")
        if not self.permitted:
            raise AuthorizationDenied("no authorization rule permitted this evidence")

    def issued_claims(self) -> dict[str, Any]:
        """The issued claims as token claims (one value per type, a list when issued twice)."""
        out: dict[str, Any] = {}
        for claim in self.issued:
            if claim.type in out:
                prev = out[claim.type]
                out[claim.type] = [*prev, claim.value] if isinstance(prev, list) else [
                    prev, claim.value]
            else:
                out[claim.type] = claim.value
        return out


Bindings = Mapping[str, Claim]


def _value(expr: Expr, bound: Bindings) -> ClaimValue | Claim:
    if isinstance(expr, Literal_):
        return expr.value
    if isinstance(expr, ClaimRef):
        claim = bound[expr.binding]
        return claim if expr.prop is None else claim.prop(expr.prop)
    return _call(expr, [_value(a, bound) for a in expr.args])


def _plain(value: ClaimValue | Claim, where: Expr) -> ClaimValue:
    if isinstance(value, Claim):
        raise PolicyEvaluationError(f"{where.at}: a whole claim cannot be used as a value; "
                                    "use name.value")
    return value


def _call(expr: Call, args: Sequence[ClaimValue | Claim]) -> ClaimValue:
    values = [_plain(a, expr) for a in args]
    name = expr.name
    try:
        if name == "AppendString":
            a, b = values
            if not (isinstance(a, str) and isinstance(b, str)):
                raise TypeError("AppendString takes two strings")
            return a + b
        if name == "NegateBool":
            (a,) = values
            if not isinstance(a, bool):
                raise TypeError("NegateBool takes a Boolean")
            return not a
        if name == "JsonToClaimValue":
            (a,) = values
            parsed = json.loads(str(a))
            if isinstance(parsed, bool | int | str):
                return parsed
            raise TypeError("JsonToClaimValue supports numbers, Booleans and strings here")
        if name == "JmesPath":
            import jmespath  # type: ignore[import-untyped]

            doc, query = values
            found = jmespath.search(str(query), json.loads(str(doc)))
            if isinstance(found, bool | int | str):
                return found
            return json.dumps(found, separators=(",", ":"))
        if name in ("IsSubsetOf", "ContainsOnlyValue"):
            a, b = (json.loads(v) if isinstance(v, str) and v[:1] == "[" else v for v in values)
            if name == "IsSubsetOf":
                left = a if isinstance(a, list) else [a]
                right = b if isinstance(b, list) else [b]
                return all(x in right for x in left)
            items = a if isinstance(a, list) else [a]
            return bool(items) and all(x == b for x in items)
    except (TypeError, ValueError) as exc:
        raise PolicyEvaluationError(f"{expr.at}: {name}(): {exc}") from None
    raise PolicyEvaluationError(f"{expr.at}: unknown function {name}")


def _compare(test: PropertyTest, have: ClaimValue, want: ClaimValue) -> bool:
    op = test.op
    if isinstance(have, bool) != isinstance(want, bool) or isinstance(have, int) != isinstance(
            want, int):
        return op == "!="  # values of different types are never equal
    if op == "==":
        return have == want
    if op == "!=":
        return have != want
    if isinstance(have, bool) or not isinstance(have, int) or not isinstance(want, int):
        raise PolicyEvaluationError(f"{test.at}: {op} compares Integers only; "
                                    f"{test.prop} is {type(have).__name__}")
    return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op]


def _matches(condition: Condition, claim: Claim, bound: Bindings) -> bool:
    for test in condition.tests:
        want = _plain(_value(test.expr, bound), test.expr)
        if not _compare(test, claim.prop(test.prop), want):
            return False
    return True


def _literal_type(condition: Condition) -> str | None:
    """The claim type a condition's first test pins (``[type == "x", ...]``), else ``None``.

    Only the first test: a claim of another type then fails it before any later test runs, so
    skipping such claims changes nothing (not even which errors are raised)."""
    if not condition.tests:
        return None
    test = condition.tests[0]
    if test.prop == "type" and test.op == "==" and isinstance(test.expr, Literal_) \
            and isinstance(test.expr.value, str):
        return test.expr.value
    return None


def _bindings(conditions: Sequence[Condition], claims: Sequence[Claim],
              bound: dict[str, Claim], by_type: Mapping[str, Sequence[Claim]]
              ) -> Iterator[dict[str, Claim]]:
    if not conditions:
        yield dict(bound)
        return
    first, rest = conditions[0], conditions[1:]
    pinned = _literal_type(first)
    candidates = claims if pinned is None else by_type.get(pinned, ())
    matching = [c for c in candidates if _matches(first, c, bound)]
    if first.negated:
        if not matching:
            yield from _bindings(rest, claims, bound, by_type)
        return
    if first.binding is None:
        if matching:
            yield from _bindings(rest, claims, bound, by_type)
        return
    for claim in matching:
        bound[first.binding] = claim
        yield from _bindings(rest, claims, bound, by_type)
        del bound[first.binding]


def _made_claim(rule: Rule, bound: Bindings) -> Claim:
    args = rule.action.args
    if "claim" in args:
        claim = _value(args["claim"], bound)
        if not isinstance(claim, Claim):
            raise PolicyEvaluationError(f"{rule.action.at}: claim= needs a bound claim name")
        return Claim(claim.type, claim.value, "AttestationPolicy")
    ctype = _plain(_value(args["type"], bound), args["type"])
    value = _plain(_value(args["value"], bound), args["value"])
    if not isinstance(ctype, str):
        raise PolicyEvaluationError(f"{rule.action.at}: type= must be a string")
    return Claim(ctype, value, "AttestationPolicy")


def evaluate(policy: Policy, claims: Sequence[Claim]) -> Evaluation:
    """Run ``policy`` over the incoming ``claims`` (evidence claims, then custom claims)."""
    result = Evaluation(permitted=False, denied=False, incoming=list(claims))
    by_type: dict[str, list[Claim]] = {}  # the incoming claims by type, in order
    for claim in result.incoming:
        by_type.setdefault(claim.type, []).append(claim)
    for rules in (policy.configuration, policy.authorization, policy.issuance):
        for rule in rules:
            snapshot = list(result.incoming)
            for fired, bound in enumerate(_bindings(rule.conditions, snapshot, {}, by_type)):
                if fired >= _MAX_FIRINGS:
                    raise PolicyEvaluationError(f"{rule.at}: the rule fires more than "
                                                f"{_MAX_FIRINGS} times")
                kind = rule.action.kind
                if kind == "permit":
                    result.permitted = True
                elif kind == "deny":
                    result.denied = True
                else:
                    claim = _made_claim(rule, bound)
                    if kind == "issueproperty":
                        result.properties.append(claim)
                    else:
                        result.incoming.append(claim)
                        if kind == "issue":
                            result.issued.append(claim)
            for claim in result.incoming[len(snapshot):]:  # seen from the next rule on
                by_type.setdefault(claim.type, []).append(claim)
    return result
