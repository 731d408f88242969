"""`enclavekit keygen`: a usable SGX key, mode 0600, no silent overwrite."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from enclavekit.cli import main
from enclavekit.sgx.signing import SigningKey
from tests.sgx.conftest import session_signing_key


def test_keygen_writes_an_sgx_key_and_prints_its_mrsigner(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "enclave.pem"
    result = CliRunner().invoke(main, ["keygen", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert out.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    key = SigningKey.load(out)  # refuses anything but RSA-3072 with exponent 3
    assert key.key.public_key().public_numbers().e == 3
    assert result.stdout.strip() == f"MRSIGNER: {key.mrsigner().hex()}"


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "enclave.pem"
    out.write_bytes(b"precious")
    result = CliRunner().invoke(main, ["keygen", str(out)])
    assert result.exit_code == 1
    assert "already exists; pass --force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert out.read_bytes() == b"precious"


def test_keygen_force_overwrites_pkcs8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = session_signing_key()  # made before generate() is replaced
    monkeypatch.setattr(SigningKey, "generate", classmethod(lambda cls: key))
    out = tmp_path / "enclave.pem"
    out.write_bytes(b"old")
    result = CliRunner().invoke(main, ["keygen", "--force", "--pkcs8", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert SigningKey.load(out).mrsigner() == key.mrsigner()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


@pytest.mark.parametrize("args", [["keygen"], ["keygen", "a.pem", "b.pem"], ["keygen", "--nope"]])
def test_keygen_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
