"""``enclavekit attest policy check|eval``: attestation policies, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..attest.policy import Claim, evaluate, parse_policy, policy_hash
from ..errors import PolicyError


@click.group(name="attest")
def group() -> None:
    """Attestation policies and the attestation service."""


@group.group(name="policy")
def policy_group() -> None:
    """Check and evaluate attestation policies (MAA policy language 1.0-1.2) offline."""


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: policy text is not UTF-8") from None


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Parse the policy in FILE; print its version, rule counts and hash, or where it is wrong."""
    policy = parse_policy(_read(file))
    click.echo(f"{file}: valid policy version {policy.version}: "
               f"{len(policy.configuration)} configuration, {len(policy.authorization)} "
               f"authorization, {len(policy.issuance)} issuance rule(s); "
               f"x-ms-policy-hash {policy_hash(policy.text)}")


def _claims(raw: str) -> list[Claim]:
    text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
    try:
        doc: Any = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"--claims is not JSON: {exc}") from None
    pairs: list[tuple[str, Any]]
    if isinstance(doc, dict):
        pairs = list(doc.items())
    elif isinstance(doc, list) and all(isinstance(c, dict) and "type" in c and "value" in c
                                       for c in doc):
        pairs = [(c["type"], c["value"]) for c in doc]
    else:
        raise PolicyError("--claims must be a JSON object {type: value} or a list of "
                          '{"type": ..., "value": ...}')
    claims = []
    for ctype, value in pairs:
        if not isinstance(value, bool | int | str):
            raise PolicyError(f"claim {ctype!r}: value must be a string, integer or Boolean")
        claims.append(Claim(str(ctype), value))
    return claims


@policy_group.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--claims", "claims_json", required=True,
              help='Incoming claims: JSON {"type": value, ...} or @FILE.')
def eval_(file: str, claims_json: str) -> None:
    """Evaluate the policy in FILE over --claims; print the outcome and the issued claims.

    Exits 0 when authorization permits, 1 when it does not.
    """
    policy = parse_policy(_read(file))
    result = evaluate(policy, _claims(claims_json))
    permitted = result.permitted and not result.denied
    click.echo(json.dumps({
        "permitted": permitted, "deny_fired": result.denied,
        "issued": result.issued_claims(),
        "properties": {c.type: c.value for c in result.properties},
    }, indent=2))
    if not permitted:
        raise SystemExit(1)


def register(main: click.Group) -> None:
    """Add the ``attest`` group to the top-level command."""
    main.add_command(group)
