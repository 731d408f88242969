"""Parse attestation policy text (MAA policy language 1.0–1.2) with a lark LALR grammar.

Every error is a :class:`~enclavekit.errors.PolicySyntaxError` whose message starts with
``line L, column C:`` and says what was expected.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, cast

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ...errors import PolicySyntaxError
from .model import (
    PROPERTIES,
    SECTIONS,
    VERSIONS,
    Action,
    ActionKind,
    Call,
    ClaimRef,
    Condition,
    Expr,
    Literal_,
    Operator,
    Policy,
    Position,
    PropertyTest,
    Rule,
)

__all__ = ["FUNCTIONS", "INT_MAX", "INT_MIN", "MAX_NESTING", "parse_policy"]

MAX_NESTING = 32
"""How deeply function calls may nest in one expression."""

INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
"""The range of an integer literal (64 bits, signed or unsigned)."""
_MAX_DIGITS = len(str(INT_MAX))

_GRAMMAR = r"""
start: version section*
version: NAME "=" DECIMAL ";"
section: NAME "{" rule* "}" ";"
rule: [conditions] ARROW action ";"
conditions: condition ("&&" condition)*
condition: [BANG] [NAME ":"] "[" test ("," test)* "]"
test: NAME OP expr
action: NAME "(" [arg ("," arg)*] ")"
arg: NAME "=" expr
?expr: STRING            -> string
     | SIGNED_INT        -> integer
     | NAME "." NAME     -> claim_prop
     | NAME "(" [expr ("," expr)*] ")" -> call
     | NAME              -> bare

ARROW: "=>"
BANG: "!"
OP: "==" | "!=" | "<=" | ">=" | "<" | ">" | "="
DECIMAL: /\d+\.\d+/
SIGNED_INT: /-?\d+/
NAME: /[A-Za-z_$][A-Za-z0-9_$\-]*/
STRING: /"(\\.|[^"\\])*"/
COMMENT: /\/\/[^\n]*/ | /\/\*(.|\n)*?\*\//
%import common.WS
%ignore WS
%ignore COMMENT
"""

FUNCTIONS: dict[str, int] = {
    "JmesPath": 2, "JsonToClaimValue": 1, "IsSubsetOf": 2, "AppendString": 2,
    "NegateBool": 1, "ContainsOnlyValue": 2,
}
"""Functions of policy version 1.2 and their argument counts."""

_ACTIONS: dict[str, tuple[ActionKind, frozenset[str]]] = {
    "permit": ("permit", frozenset()),
    "deny": ("deny", frozenset()),
    "add": ("add", frozenset({"type", "value", "valueType", "claim"})),
    "issue": ("issue", frozenset({"type", "value", "valueType", "claim"})),
    "issueproperty": ("issueproperty", frozenset({"type", "value", "valueType", "claim"})),
}
_ALLOWED_ACTIONS: dict[str, frozenset[str]] = {
    "configurationrules": frozenset({"issueproperty"}),
    "authorizationrules": frozenset({"permit", "deny", "add"}),
    "issuancerules": frozenset({"add", "issue", "issueproperty"}),
}
_TOKEN_NAMES = {
    "ARROW": "'=>'", "BANG": "'!'", "OP": "an operator (== != < <= > >=)",
    "DECIMAL": "a version number such as 1.0", "SIGNED_INT": "an integer",
    "NAME": "a name", "STRING": 'a "string"', "SEMICOLON": "';'", "LBRACE": "'{'",
    "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'", "LPAR": "'('", "RPAR": "')'",
    "COMMA": "','", "COLON": "':'", "DOT": "'.'", "EQUAL": "'='", "AMPAMP": "'&&'",
    "$END": "end of policy",
}


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _pos(item: Token | Tree[Any]) -> Position:
    if isinstance(item, Token):
        return Position(item.line or 1, item.column or 1)
    return Position(item.meta.line, item.meta.column)


def _fail(at: Position, message: str) -> PolicySyntaxError:
    return PolicySyntaxError(at.line, at.column, message)


def _integer(text: str, at: Position) -> int:
    """An integer literal, refused unless it fits in 64 bits (claims are SVNs, IDs, times)."""
    digits = text.lstrip("-")
    # the length first: int() of thousands of digits is slow, and refused past 4,300
    if len(digits) > _MAX_DIGITS or not INT_MIN <= (value := int(text)) <= INT_MAX:
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(digits)} digits)"
        raise _fail(at, f"integer {shown} is out of range ({INT_MIN}..{INT_MAX})")
    return value


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of policy"
    return repr(str(token))


def _syntax_error(exc: UnexpectedInput, text: str) -> PolicySyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        index = exc.pos_in_stream or 0
        char = text[index] if index < len(text) else "?"
        return PolicySyntaxError(exc.line, exc.column, f"unexpected character {char!r}")
    if isinstance(exc, UnexpectedToken):
        wanted = sorted({_TOKEN_NAMES.get(t, t) for t in exc.expected})
        found = _describe(exc.token)
        return PolicySyntaxError(exc.line, exc.column,
                                 f"unexpected {found}; expected {' or '.join(wanted)}")
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return PolicySyntaxError(len(lines), len(lines[-1]) + 1,
                                 "unexpected end of policy (a section or rule is not closed)")
    return PolicySyntaxError(exc.line, exc.column, str(exc).splitlines()[0])


class _Builder:
    """Turns lark's tree into the policy model, checking names, versions and sections."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.depth = 0

    def expr(self, node: Tree[Any] | Token) -> Expr:
        assert isinstance(node, Tree)
        kind = node.data
        at = _pos(node)
        if kind == "string":
            raw = str(node.children[0])
            try:
                return Literal_(cast(str, json.loads(raw)), at)
            except ValueError:
                return Literal_(raw[1:-1], at)
        if kind == "integer":
            return Literal_(_integer(str(node.children[0]), at), at)
        if kind == "claim_prop":
            binding, prop = (str(c) for c in node.children)
            if prop not in PROPERTIES:
                raise _fail(_pos(node.children[1]), f"{binding}.{prop}: a claim has only "
                            "the properties type, value, issuer and valueType")
            return ClaimRef(binding, prop, at)
        if kind == "call":
            name = str(node.children[0])
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise _fail(at, f"function calls are nested more than {MAX_NESTING} deep")
            args = tuple(self.expr(c) for c in node.children[1:] if c is not None)
            self.depth -= 1
            if name not in FUNCTIONS:
                raise _fail(at, f"unknown function {name!r}; known: {', '.join(FUNCTIONS)}")
            if self.version < "1.2":
                raise _fail(at, f"function {name}() needs policy version 1.2 "
                            f"(this policy is {self.version})")
            if len(args) != FUNCTIONS[name]:
                raise _fail(at, f"{name}() takes {FUNCTIONS[name]} argument(s), "
                            f"found {len(args)}")
            return Call(name, args, at)
        assert kind == "bare"
        word = str(node.children[0])
        if word in ("true", "false"):
            return Literal_(word == "true", at)
        return ClaimRef(word, None, at)

    def test(self, node: Tree[Any]) -> PropertyTest:
        name, op, expr = node.children
        prop = str(name)
        if prop not in PROPERTIES:
            raise _fail(_pos(name), f"unknown claim property {prop!r}; expected type, value, "
                        "issuer or valueType")
        operator = "==" if str(op) == "=" else str(op)
        return PropertyTest(prop, cast(Operator, operator), self.expr(expr),
                            _pos(name))

    def condition(self, node: Tree[Any]) -> Condition:
        bang, binding, *tests = node.children
        if bang is not None and self.version < "1.2":
            raise _fail(_pos(bang), f"'!' (negated condition) needs policy version 1.2 "
                        f"(this policy is {self.version})")
        return Condition(tuple(self.test(t) for t in tests),
                         str(binding) if binding is not None else None, bang is not None,
                         _pos(node))

    def action(self, node: Tree[Any], section: str) -> Action:
        name_tok, *args = node.children
        name = str(name_tok)
        at = _pos(name_tok)
        if name not in _ACTIONS:
            raise _fail(at, f"unknown action {name}(); expected permit(), deny(), add(), "
                        "issue() or issueproperty()")
        kind, allowed = _ACTIONS[name]
        if kind not in _ALLOWED_ACTIONS[section]:
            raise _fail(at, f"{name}() is not allowed in {section}")
        parsed: dict[str, Expr] = {}
        for arg in args:
            if arg is None:
                continue
            key_tok, expr = arg.children
            key = str(key_tok)
            if key not in allowed:
                raise _fail(_pos(key_tok), f"{name}() takes no argument {key!r}" if not allowed
                            else f"{name}() arguments are {', '.join(sorted(allowed))}; "
                            f"found {key!r}")
            if key in parsed:
                raise _fail(_pos(key_tok), f"{name}(): argument {key!r} given twice")
            parsed[key] = self.expr(expr)
        if kind in ("add", "issue", "issueproperty") and "claim" not in parsed and (
                "type" not in parsed or "value" not in parsed):
            raise _fail(at, f"{name}() needs type= and value= (or claim=)")
        return Action(kind, parsed, at)

    def rule(self, node: Tree[Any], section: str) -> Rule:
        conditions_node, arrow, action = node.children
        conditions: tuple[Condition, ...] = ()
        if conditions_node is not None:
            conditions = tuple(self.condition(c) for c in conditions_node.children)
        bound: set[str] = set()
        for condition in conditions:
            for test in condition.tests:
                self._check_refs(test.expr, bound)
            if condition.binding is not None:
                if condition.negated:
                    raise _fail(condition.at, "a negated condition cannot bind a claim")
                bound.add(condition.binding)
        built = self.action(action, section)
        for expr in built.args.values():
            self._check_refs(expr, bound)
        return Rule(conditions, built, _pos(arrow) if conditions_node is None else
                    _pos(conditions_node))

    def _check_refs(self, expr: Expr, bound: set[str]) -> None:
        if isinstance(expr, ClaimRef) and expr.binding not in bound:
            raise _fail(expr.at, f"{expr.binding!r} is not bound by an earlier condition "
                        "of this rule (bind it with name:[...])")
        if isinstance(expr, Call):
            for arg in expr.args:
                self._check_refs(arg, bound)


def parse_policy(text: str) -> Policy:
    """Parse policy ``text``; raise PolicySyntaxError (with line and column) if it is not valid."""
    if not isinstance(text, str):
        raise PolicySyntaxError(1, 1, "policy text must be a string")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    version_node, *section_nodes = cast(list[Tree[Any]], tree.children)
    keyword, number = version_node.children
    if str(keyword) != "version":
        raise _fail(_pos(keyword), f"a policy starts with 'version=1.0;', found {str(keyword)!r}")
    version = str(number)
    if version not in VERSIONS:
        raise _fail(_pos(number), f"unsupported policy version {version}; "
                    f"supported: {', '.join(VERSIONS)}")
    try:
        return _build(text, version, section_nodes)
    except RecursionError:
        raise PolicySyntaxError(1, 1, "expressions are nested too deeply") from None


def _build(text: str, version: str, section_nodes: list[Tree[Any]]) -> Policy:
    builder = _Builder(version)
    sections: dict[str, tuple[Rule, ...]] = {}
    for node in section_nodes:
        name_tok, *rules = node.children
        name = str(name_tok)
        if name not in SECTIONS:
            raise _fail(_pos(name_tok), f"unknown section {name!r}; expected "
                        f"{', '.join(SECTIONS)}")
        if name in sections:
            raise _fail(_pos(name_tok), f"section {name} appears twice")
        if name == "configurationrules" and version == "1.0":
            raise _fail(_pos(name_tok), "configurationrules need policy version 1.1 or later")
        sections[name] = tuple(builder.rule(r, name) for r in rules)
    if "authorizationrules" not in sections:
        lines = text.splitlines() or [""]
        raise PolicySyntaxError(len(lines), len(lines[-1]) + 1,
                                "the policy has no authorizationrules section")
    return Policy(version, sections.get("configurationrules", ()),
                  sections["authorizationrules"], sections.get("issuancerules", ()), text)
