"""Key release policies: the Key Vault / Managed HSM SKR grammar, validated strictly, evaluated
fail-closed.

Grammar (maa-skr.md §5.3; Key Vault "policy grammar")::

    policy    := {"version": "1.0.0"?, "anyOf": [authority, ...]}
    authority := {"authority": "<issuer URL>", ("allOf" | "anyOf"): [condition, ...]}
    condition := {"claim": "<name or dotted.path>", <operator>: <scalar>}
               | {"allOf": [condition, ...]} | {"anyOf": [condition, ...]}
    operator  := equals | notEquals | less | lessOrEquals | greater | greaterOrEquals | exists

The old form ``{"claim", "condition": "equals", "value"}`` is accepted and stored in the new form,
and version ``"1.0"`` becomes ``"1.0.0"``, as Key Vault normalises them.

Decisions (KR-3, KR-4), each refused with :class:`~enclavekit.errors.ReleasePolicyInvalid` when
the key is created:

* Empty ``anyOf``/``allOf`` lists, unknown operators, unknown fields, non-scalar values, an
  object with two operators or with both ``allOf`` and ``anyOf`` are refused.
* Values are compared as JSON values of the same type: ``"true"`` is not ``true`` and ``"1"`` is
  not ``1`` (a type mismatch never matches, for ``notEquals`` too). Ordering operators take
  numbers only; ``exists`` takes a boolean. Known claims are type-checked at creation:
  ``x-ms-sgx-is-debuggable`` needs a boolean, ``x-ms-sgx-svn`` / ``x-ms-sgx-product-id`` a
  number, ``x-ms-sgx-mrenclave`` / ``x-ms-sgx-mrsigner`` 64 lower-case hex digits (what MAA
  issues; hex is compared as given, so an upper-case value could never match).
* Every authority branch must require ``x-ms-sgx-is-debuggable == false`` (in an ``allOf`` path,
  or in every branch of an ``anyOf``); otherwise a DEBUG enclave, whose memory the host can
  read, would satisfy the policy. A service configured with ``require_debug_pin=False`` accepts
  such policies and reports a warning instead (for non-SGX policies, e.g. SEV-SNP CVMs).
* Authorities are compared as exact strings after removing one trailing ``/`` (no case
  folding, no port or scheme normalisation: KR-1).
* A missing claim, or a path that runs into a non-object, makes a condition false (``exists:
  false`` is the only way to require absence). Dots always mean nesting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Union

from .._codec import JSONError, strict_json
from ..errors import ReleasePolicyInvalid, ReleasePolicyNotSatisfied

__all__ = [
    "DEBUG_CLAIM",
    "OPERATORS",
    "Authority",
    "Condition",
    "Group",
    "ReleasePolicy",
    "normalize_authority",
    "parse_release_policy",
]

OPERATORS: Final = ("equals", "notEquals", "less", "lessOrEquals", "greater",
                    "greaterOrEquals", "exists")
DEBUG_CLAIM: Final = "x-ms-sgx-is-debuggable"
_ORDERING: Final = frozenset({"less", "lessOrEquals", "greater", "greaterOrEquals"})
_HEX_CLAIMS: Final = frozenset({"x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner"})
_INT_CLAIMS: Final = frozenset({"x-ms-sgx-svn", "x-ms-sgx-product-id"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSIONS: Final = {"1.0": "1.0.0", "1.0.0": "1.0.0"}
_MAX_NESTING: Final = 8
_MAX_CONDITIONS: Final = 4096
_MAX_CLAIM_LEN: Final = 256
_MAX_POLICY_BYTES: Final = 256 * 1024

Scalar = Union[str, int, float, bool]  # noqa: UP007 (used at run time in isinstance checks)
_MISSING: Final = object()


def normalize_authority(url: str) -> str:
    """The authority as compared: exactly one trailing ``/`` removed, nothing else changed."""
    return url[:-1] if url.endswith("/") else url


def _same_type(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return isinstance(a, str) and isinstance(b, str)


def _lookup(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    here: Any = claims
    for part in path:
        if not isinstance(here, Mapping) or part not in here:
            return _MISSING
        here = here[part]
    return here


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``{"claim": ..., <operator>: value}`` test."""

    claim: str
    operator: str
    value: Scalar

    def holds(self, claims: Mapping[str, Any]) -> bool:
        """Whether the claims satisfy the condition (fail-closed; see the module docstring)."""
        actual = _lookup(claims, tuple(self.claim.split(".")))
        if self.operator == "exists":
            return (actual is not _MISSING) is self.value
        if actual is _MISSING or not _same_type(actual, self.value):
            return False
        if self.operator == "equals":
            return bool(actual == self.value)
        if self.operator == "notEquals":
            return bool(actual != self.value)
        if isinstance(actual, str) or isinstance(self.value, str):
            return False  # ordering is for numbers only (refused at parse time anyway)
        a, b = float(actual), float(self.value)
        return {"less": a < b, "lessOrEquals": a <= b, "greater": a > b,
                "greaterOrEquals": a >= b}[self.operator]

    def describe(self) -> str:
        return f"{self.claim} {self.operator} {json.dumps(self.value)}"

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.claim, self.operator: self.value}


@dataclass(frozen=True, slots=True)
class Group:
    """``allOf`` (every item) or ``anyOf`` (at least one item) over conditions and groups."""

    mode: str
    items: tuple[Condition | Group, ...]

    def holds(self, claims: Mapping[str, Any]) -> bool:
        if self.mode == "allOf":
            return all(item.holds(claims) for item in self.items)
        return any(item.holds(claims) for item in self.items)

    def failure(self, claims: Mapping[str, Any]) -> str | None:
        """Why the group does not hold (``None`` when it holds)."""
        if self.holds(claims):
            return None
        if self.mode == "allOf":
            for item in self.items:
                if not item.holds(claims):
                    return item.describe() if isinstance(item, Condition) else item.failure(claims)
        return "none of: " + "; ".join(
            i.describe() if isinstance(i, Condition) else f"({i.mode})" for i in self.items)

    def describe(self) -> str:
        return f"{self.mode}[...]"

    def requires_not_debuggable(self) -> bool:
        """Whether the group can only hold when ``x-ms-sgx-is-debuggable`` is ``false``."""
        def implies(item: Condition | Group) -> bool:
            if isinstance(item, Group):
                return item.requires_not_debuggable()
            return (item.claim == DEBUG_CLAIM and item.operator == "equals"
                    and item.value is False)
        if self.mode == "allOf":
            return any(implies(i) for i in self.items)
        return all(implies(i) for i in self.items)

    def to_json(self) -> dict[str, Any]:
        return {self.mode: [item.to_json() for item in self.items]}


@dataclass(frozen=True, slots=True)
class Authority:
    """One branch of the top-level ``anyOf``: an issuer and the conditions its tokens must meet."""

    authority: str
    group: Group

    @property
    def normalized(self) -> str:
        return normalize_authority(self.authority)

    def to_json(self) -> dict[str, Any]:
        return {"authority": self.authority, **self.group.to_json()}


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    """A validated release policy; ``document`` is the normalised JSON Key Vault stores."""

    version: str | None
    authorities: tuple[Authority, ...]
    warnings: tuple[str, ...] = ()

    @property
    def document(self) -> bytes:
        body: dict[str, Any] = {}
        if self.version is not None:
            body["version"] = self.version
        body["anyOf"] = [a.to_json() for a in self.authorities]
        return json.dumps(body, separators=(",", ":")).encode()

    def authority_urls(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.normalized for a in self.authorities))

    def check(self, issuer: str, claims: Mapping[str, Any]) -> None:
        """Pass when a branch for ``issuer`` holds on ``claims``.

        Raises:
            ReleasePolicyNotSatisfied: no branch names this issuer, or none holds (the message
                names the first condition that failed).
        """
        wanted = normalize_authority(issuer)
        branches = [a for a in self.authorities if a.normalized == wanted]
        if not branches:
            raise ReleasePolicyNotSatisfied(
                f"release policy: issuer {issuer!r} is not one of the policy's authorities")
        reasons = []
        for branch in branches:
            why = branch.group.failure(claims)
            if why is None:
                return
            reasons.append(why)
        raise ReleasePolicyNotSatisfied(f"release policy: condition not met: {reasons[0]}")


class _Parser:
    def __init__(self) -> None:
        self.count = 0

    def fail(self, where: str, message: str) -> ReleasePolicyInvalid:
        return ReleasePolicyInvalid(f"release policy {where}: {message}")

    def group(self, obj: Mapping[str, Any], where: str, depth: int) -> Group:
        modes = [m for m in ("allOf", "anyOf") if m in obj]
        if len(modes) != 1:
            raise self.fail(where, f"needs exactly one of allOf / anyOf, found {len(modes)}")
        mode = modes[0]
        items = obj[mode]
        if not isinstance(items, list):
            raise self.fail(where, f"{mode} must be a list, found {type(items).__name__}")
        if not items:
            raise self.fail(where, f"{mode} is empty (an empty condition list is refused)")
        parsed = tuple(self.item(x, f"{where}.{mode}[{i}]", depth + 1)
                       for i, x in enumerate(items))
        return Group(mode, parsed)

    def item(self, obj: Any, where: str, depth: int) -> Condition | Group:
        if depth > _MAX_NESTING:
            raise self.fail(where, f"conditions nested deeper than {_MAX_NESTING} levels")
        if not isinstance(obj, dict):
            raise self.fail(where, f"a condition must be an object, found {type(obj).__name__}")
        if "claim" not in obj:
            extra = set(obj) - {"allOf", "anyOf"}
            if extra:
                raise self.fail(where, f"unknown field(s) {sorted(extra)}")
            return self.group(obj, where, depth)
        return self.condition(obj, where)

    def condition(self, obj: Mapping[str, Any], where: str) -> Condition:
        self.count += 1
        if self.count > _MAX_CONDITIONS:
            raise self.fail(where, f"more than {_MAX_CONDITIONS} conditions")
        claim = obj["claim"]
        if not isinstance(claim, str) or not claim or len(claim) > _MAX_CLAIM_LEN:
            raise self.fail(where, "claim must be a non-empty string of at most 256 characters")
        if any(not part for part in claim.split(".")):
            raise self.fail(where, f"claim {claim!r} has an empty path segment")
        rest = {k: v for k, v in obj.items() if k != "claim"}
        if set(rest) == {"condition", "value"}:  # the old form Key Vault still accepts
            operator = rest["condition"]
            if not isinstance(operator, str):
                raise self.fail(where, "condition must be an operator name")
            rest = {operator: rest["value"]}
        if len(rest) != 1:
            raise self.fail(where, f"needs exactly one operator, found {sorted(rest) or 'none'}")
        ((operator, value),) = rest.items()
        if operator not in OPERATORS:
            raise self.fail(where, f"unknown operator {operator!r}; use one of "
                                   f"{', '.join(OPERATORS)}")
        if isinstance(value, dict | list) or value is None:
            raise self.fail(where, f"{operator} needs a string, number or boolean value")
        if operator == "exists" and not isinstance(value, bool):
            raise self.fail(where, f"exists takes true or false, found {json.dumps(value)}")
        if operator in _ORDERING and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
            raise self.fail(where, f"{operator} compares numbers, found {json.dumps(value)}")
        if operator != "exists":
            self.known_claim(claim, value, where)
        return Condition(claim, operator, value)

    def known_claim(self, claim: str, value: Scalar, where: str) -> None:
        if claim == DEBUG_CLAIM and not isinstance(value, bool):
            raise self.fail(where, f"{claim} is a JSON boolean; {json.dumps(value)} never matches "
                                   "(write false, not \"false\")")
        if claim in _INT_CLAIMS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise self.fail(where, f"{claim} is a number; {json.dumps(value)} never matches")
        if claim in _HEX_CLAIMS and not (isinstance(value, str) and _HEX64.match(value)):
            raise self.fail(where, f"{claim} must be 64 lower-case hex digits as MAA issues it, "
                                   f"found {json.dumps(value)}")


def parse_release_policy(data: bytes, *, require_debug_pin: bool = True) -> ReleasePolicy:
    """Validate a release policy (the bytes Key Vault receives base64url-encoded).

    Args:
        data: the policy JSON.
        require_debug_pin: refuse (``True``) or only warn about (``False``) an authority branch
            that does not require ``x-ms-sgx-is-debuggable == false``.

    Raises:
        ReleasePolicyInvalid: the policy breaks the grammar or a decision in the module docstring.
    """
    if len(data) > _MAX_POLICY_BYTES:
        raise ReleasePolicyInvalid(f"release policy is {len(data)} bytes, the limit is "
                                   f"{_MAX_POLICY_BYTES}")
    try:
        doc = strict_json(data)
    except JSONError as exc:
        raise ReleasePolicyInvalid(f"release policy is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ReleasePolicyInvalid("release policy must be a JSON object")
    extra = set(doc) - {"version", "anyOf"}
    if extra:
        raise ReleasePolicyInvalid(f"release policy: unknown field(s) {sorted(extra)}")
    version = doc.get("version")
    if version is not None:
        if version not in _VERSIONS:
            raise ReleasePolicyInvalid(f"release policy: version {version!r} is not supported "
                                       "(use \"1.0.0\")")
        version = _VERSIONS[version]
    branches = doc.get("anyOf")
    if not isinstance(branches, list) or not branches:
        raise ReleasePolicyInvalid("release policy: top level needs a non-empty anyOf list of "
                                   "authorities")
    parser = _Parser()
    authorities = []
    warnings = []
    for i, branch in enumerate(branches):
        where = f"anyOf[{i}]"
        if not isinstance(branch, dict):
            raise parser.fail(where, "an authority must be an object")
        url = branch.get("authority")
        if not isinstance(url, str) or not url.strip() or url != url.strip():
            raise parser.fail(where, "authority must be a non-empty URL without surrounding spaces")
        extra = set(branch) - {"authority", "allOf", "anyOf"}
        if extra:
            raise parser.fail(where, f"unknown field(s) {sorted(extra)}")
        group = parser.group(branch, where, 1)
        if not group.requires_not_debuggable():
            message = (f"{where} ({url}) does not require {DEBUG_CLAIM} == false, so a DEBUG "
                       "enclave could satisfy it")
            if require_debug_pin:
                raise ReleasePolicyInvalid(f"release policy {message}")
            warnings.append(message)
        authorities.append(Authority(url, group))
    return ReleasePolicy(version, tuple(authorities), tuple(warnings))
