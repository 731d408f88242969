"""`enclavekit attest policy check|eval`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from enclavekit.attest.policy import policy_hash
from enclavekit.cli import main
from tests.vectors import vector


def test_check_prints_version_counts_and_hash() -> None:
    path = vector("maa_policies/sgx_default_policy.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid policy version 1.1" in result.output
    assert "6 issuance rule(s)" in result.output
    assert policy_hash(path.read_text()) in result.output


def test_check_names_line_and_column_of_an_error() -> None:
    path = vector("maa_policies/sgx_custom_policy_template.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "check", str(path)])
    assert result.exit_code == 1
    assert "PolicySyntaxError: line 5, column 50: unexpected '<'" in result.output
    assert "Traceback" not in result.output


def test_eval_permits_and_prints_issued_claims(tmp_path: Path) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps([{"type": "x-ms-sgx-mrsigner", "value": "ab"},
                                  {"type": "x-ms-sgx-is-debuggable", "value": False}]))
    path = vector("maa_policies/sgx_default_policy.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path),
                                       "--claims", f"@{claims}"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["permitted"] is True
    assert out["issued"] == {"sgx-mrsigner": "ab", "is-debuggable": False}


def test_eval_exits_1_when_denied() -> None:
    path = vector("maa_policies/signing_tool_sample_deny.all.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path), "--claims", "{}"])
    assert result.exit_code == 1
    assert json.loads(result.output)["permitted"] is False


def test_eval_refuses_bad_claims_json() -> None:
    path = vector("maa_policies/sgx_default_policy.txt")
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path), "--claims", "{oops"])
    assert result.exit_code == 1
    assert "PolicyError: --claims is not JSON" in result.output
    result = CliRunner().invoke(main, ["attest", "policy", "eval", str(path), "--claims",
                                       '{"a": [1]}'])
    assert "value must be a string, integer or Boolean" in result.output
