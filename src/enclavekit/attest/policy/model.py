"""The parsed form of an attestation policy (MAA policy language 1.0–1.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

ClaimValue: TypeAlias = str | int | bool
"""A claim's value: String, Integer or Boolean (the policy language's three value types)."""

Property = Literal["type", "value", "issuer", "valueType"]
Operator = Literal["==", "!=", "<", "<=", ">", ">="]
SectionName = Literal["configurationrules", "authorizationrules", "issuancerules"]
ActionKind = Literal["permit", "deny", "add", "issue", "issueproperty"]

PROPERTIES: tuple[Property, ...] = ("type", "value", "issuer", "valueType")
SECTIONS: tuple[SectionName, ...] = ("configurationrules", "authorizationrules", "issuancerules")
VERSIONS = ("1.0", "1.1", "1.2")


@dataclass(frozen=True)
class Position:
    """Where a construct starts in the policy text (1-based)."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}"


@dataclass(frozen=True)
class Literal_:
    """A constant: a string, an integer, ``true`` or ``false``."""

    value: ClaimValue
    at: Position


@dataclass(frozen=True)
class ClaimRef:
    """``c.value`` (a property of a claim bound earlier in the rule) or ``c`` (the claim)."""

    binding: str
    prop: Property | None
    at: Position


@dataclass(frozen=True)
class Call:
    """A function call (policy version 1.2), e.g. ``AppendString(c.value, "-x")``."""

    name: str
    args: tuple[Expr, ...]
    at: Position


Expr: TypeAlias = Literal_ | ClaimRef | Call


@dataclass(frozen=True)
class PropertyTest:
    """``value >= 2`` inside a condition's brackets."""

    prop: Property
    op: Operator
    expr: Expr
    at: Position


@dataclass(frozen=True)
class Condition:
    """``[!] [c:] [tests]``: true iff some claim passes every test (``!``: iff none does)."""

    tests: tuple[PropertyTest, ...]
    binding: str | None = None
    negated: bool = False
    at: Position = Position(1, 1)


@dataclass(frozen=True)
class Action:
    """What a rule does when its conditions hold."""

    kind: ActionKind
    args: dict[str, Expr] = field(default_factory=dict)
    at: Position = Position(1, 1)


@dataclass(frozen=True)
class Rule:
    """``conditions => action;`` (no conditions: always fires)."""

    conditions: tuple[Condition, ...]
    action: Action
    at: Position


@dataclass(frozen=True)
class Policy:
    """A parsed policy: its version, its three rule sections and the text it came from."""

    version: str
    configuration: tuple[Rule, ...]
    authorization: tuple[Rule, ...]
    issuance: tuple[Rule, ...]
    text: str
