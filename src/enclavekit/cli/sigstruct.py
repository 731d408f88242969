"""`enclavekit sigstruct show FILE [--json]`: every SIGSTRUCT field and whether it verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidSignature, InvalidSigStruct, InvalidStructure
from ..sgx import sigstruct as ss
from ..sgx.consts import SIGSTRUCT_HEADER, SIGSTRUCT_HEADER2, AttributeFlags
from ..sgx.structs import SigStruct

_TYPE_BYTES = (0, 0x8000_0000)
"""Values of HEADER bytes 12–15 that still identify a SIGSTRUCT (SDM constant, SDK TYPE)."""


def load_sigstruct(data: bytes) -> SigStruct:
    """Parse a SIGSTRUCT file for display: exact size, zero reserved fields, both HEADERs.

    The signature is not checked here, so a badly signed SIGSTRUCT still loads.

    Raises:
        InvalidStructure: the bytes are not a SIGSTRUCT.
    """
    sig = SigStruct.from_bytes(data)
    type_bits = int.from_bytes(sig.header[12:], "little")
    if sig.header[:12] != SIGSTRUCT_HEADER[:12] or type_bits not in _TYPE_BYTES:
        raise InvalidStructure(
            "SigStruct",
            f"HEADER is {sig.header.hex()}, expected {SIGSTRUCT_HEADER.hex()}; not a SIGSTRUCT",
        )
    if sig.header2 != SIGSTRUCT_HEADER2:
        raise InvalidStructure(
            "SigStruct",
            f"HEADER2 is {sig.header2.hex()}, expected {SIGSTRUCT_HEADER2.hex()}; not a SIGSTRUCT",
        )
    return sig


def _passes(check: Any, sig: SigStruct) -> tuple[bool, str | None]:
    try:
        check(sig, leaf="SIGSTRUCT")
    except (InvalidSigStruct, InvalidSignature) as exc:
        return False, str(exc)
    return True, None


def describe(sig: SigStruct) -> dict[str, Any]:
    """The JSON view: Intel's field names in lower case, byte fields as hex (as stored, so
    MODULUS/SIGNATURE/Q1/Q2 are little-endian), DATE as its 8 BCD digits, plus MRSIGNER and
    the verification results."""
    out = sig.to_dict()
    out["date"] = f"{sig.date:08x}"
    signature_valid, rsa_error = _passes(ss.verify_rsa, sig)
    q1q2_valid, q_error = _passes(ss.verify_q1q2, sig)
    valid, error = _passes(ss.verify, sig)
    out["mrsigner"] = ss.mrsigner(sig).hex()
    out["signature_valid"] = signature_valid
    out["q1q2_valid"] = q1q2_valid
    out["valid"] = valid
    out["error"] = error or rsa_error or q_error
    return out


def _flag_names(flags: int) -> str:
    names = [f.name or "" for f in AttributeFlags if flags & f]
    return "|".join(names) if names else "-"


def _text(sig: SigStruct, view: dict[str, Any]) -> list[str]:
    notes = {
        "date": _date_note(sig.date),
        "attributes.flags": _flag_names(sig.attributes.flags),
    }
    rows: list[tuple[str, str]] = []
    for name, value in view.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                rows.append((f"{name}.{sub}", f"{inner:#018x}"))
        elif isinstance(value, bool):
            rows.append((name, "yes" if value else "no"))
        elif isinstance(value, int):
            rows.append((name, f"{value:#x} ({value})"))
        elif value is None:
            continue
        else:
            rows.append((name, str(value)))
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, value in rows:
        note = notes.get(name)
        lines.append(f"{name:<{width}}  {value}" + (f"  ({note})" if note else ""))
    return lines


def _date_note(value: int) -> str:
    try:
        return ss.date_from_bcd(value).isoformat()
    except InvalidStructure:
        return "not a date"


@click.group("sigstruct")
def sigstruct_group() -> None:
    """Inspect SIGSTRUCT files (enclave signatures)."""


@sigstruct_group.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(file: str, as_json: bool) -> None:
    """Print every field of the SIGSTRUCT in FILE and whether its signature and Q1/Q2 verify."""
    sig = load_sigstruct(Path(file).read_bytes())
    view = describe(sig)
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        click.echo("\n".join(_text(sig, view)))


def register(group: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    group.add_command(sigstruct_group)
