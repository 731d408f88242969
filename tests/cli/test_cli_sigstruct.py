"""`enclavekit sigstruct show`: every field, validity flags, one-line refusals of bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from enclavekit.cli import main
from tests.vectors import cases, vector

INTEL_FIELDS = [
    "header", "vendor", "date", "header2", "swdefined", "modulus", "exponent", "signature",
    "miscselect", "miscmask", "isvfamilyid", "attributes", "attributemask", "enclavehash",
    "isvextprodid", "isvprodid", "isvsvn", "q1", "q2",
]  # fmt: skip


def _show(path: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["sigstruct", "show", str(path), *extra])


def _json(path: Path) -> dict[str, Any]:
    result = _show(path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _one_line_error(result: Result, text: str) -> None:
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert text in lines[0]


@pytest.mark.parametrize("v", cases("measurement_vectors", "sigstruct", "mrsigner"))
def test_show_json_of_published_sigstructs(v: dict[str, Any]) -> None:
    view = _json(vector(v["sigstruct"]))
    for key in [*INTEL_FIELDS, "mrsigner", "signature_valid", "q1q2_valid"]:
        assert key in view
    raw = vector(v["sigstruct"]).read_bytes()
    assert view["mrsigner"] == v["mrsigner"]
    assert view["signature_valid"] is True
    assert view["q1q2_valid"] is True
    assert view["enclavehash"] == raw[960:992].hex()
    assert view["modulus"] == raw[128:512].hex()
    assert view["date"] == raw[20:24][::-1].hex()
    assert view["attributes"] == {
        "flags": int.from_bytes(raw[928:936], "little"),
        "xfrm": int.from_bytes(raw[936:944], "little"),
    }
    assert view["isvprodid"] == int.from_bytes(raw[1024:1026], "little")


def test_show_sig1_fields_match_sgxs_sign_options() -> None:
    view = _json(vector("fortanix_sgxs/sig1.sigstruct.bin"))
    assert view["date"] == "20160109"
    assert view["attributemask"] == {"flags": 0xFFFF_FFFF_FFFF_FFFD, "xfrm": 0xFFFF_FFFF_FFFF_FF1B}
    assert view["miscmask"] == 0xFFFF_FFFF
    assert view["vendor"] == 0


def test_show_text_is_aligned_lines_for_people() -> None:
    result = _show(vector("fortanix_sgxs/sig1.sigstruct.bin"))
    assert result.exit_code == 0, result.output
    assert "2016-01-09" in result.stdout
    assert "MODE64BIT" in result.stdout
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["signature_valid"].strip() == "yes"
    assert lines["q1q2_valid"].strip() == "yes"
    assert lines["isvsvn"].startswith("0x0")


def test_badly_signed_sigstruct_still_shows(tmp_path: Path) -> None:
    raw = bytearray(vector("fortanix_sgxs/sig1.sigstruct.bin").read_bytes())
    raw[1026] ^= 1  # ISVSVN: signed, so the signature breaks; Q1/Q2 still match S and N
    path = tmp_path / "tampered.sig"
    path.write_bytes(raw)
    view = _json(path)
    assert view["isvsvn"] == 1
    assert view["signature_valid"] is False
    assert view["q1q2_valid"] is True
    text = _show(path)
    assert text.exit_code == 0
    assert "no" in dict(line.split(None, 1) for line in text.stdout.splitlines())["signature_valid"]


def test_q1_tamper_shows_q1q2_invalid(tmp_path: Path) -> None:
    raw = bytearray(vector("enarx_sgx/encl.ss").read_bytes())
    raw[1040] ^= 0x80
    path = tmp_path / "q1.sig"
    path.write_bytes(raw)
    view = _json(path)
    assert view["signature_valid"] is True
    assert view["q1q2_valid"] is False


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:1000], "expected 1808 bytes, found 1000"),
        (lambda raw: raw + b"\0", "expected 1808 bytes, found 1809"),
        (lambda raw: b"", "expected 1808 bytes, found 0"),
        (lambda raw: bytes(16) + raw[16:], "HEADER is 0000"),
        (lambda raw: raw[:24] + b"\xff" * 16 + raw[40:], "HEADER2 is ffff"),
        (lambda raw: raw[:50] + b"\x01" + raw[51:], "reserved1"),
        (lambda raw: bytes(range(256)) * 7 + bytes(16), "InvalidStructure"),
    ],
    ids=["truncated", "oversized", "empty", "header", "header2", "reserved", "garbage"],
)
def test_bad_sigstruct_file_is_one_line_exit_1(tmp_path: Path, mutate: Any, message: str) -> None:
    raw = vector("fortanix_sgxs/sig1.sigstruct.bin").read_bytes()
    path = tmp_path / "bad.sig"
    path.write_bytes(mutate(raw))
    _one_line_error(_show(path, "--json"), message)
    _one_line_error(_show(path), message)


@pytest.mark.parametrize(
    "args", [["sigstruct", "show"], ["sigstruct", "show", "/nonexistent/x.sig"], ["sigstruct"]]
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
