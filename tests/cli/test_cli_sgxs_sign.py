"""`enclavekit sgxs sign`: a verifying SIGSTRUCT for the stream's MRENCLAVE, sgxs-sign options."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from enclavekit.cli import main
from enclavekit.sgx import sigstruct as ss
from enclavekit.sgx.consts import AttributeFlags
from enclavekit.sgx.structs import SigStruct
from tests.cli.test_cli_sgxs_measure import reordered_fortanix_stream
from tests.sgx.conftest import session_signing_key
from tests.vectors import cases, vector

SGXS_VECTORS = cases("measurement_vectors", "sgxs", "mrenclave")
SGXS = "fortanix_sgxs/test_enclave.sgxs"
U64 = 0xFFFF_FFFF_FFFF_FFFF


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "enclave.pem"
    session_signing_key().save(path)
    return path


def _sign(key: Path, out: Path, *extra: str, sgxs: Path | None = None) -> Result:
    source = sgxs or vector(SGXS)
    args = ["sgxs", "sign", str(source), "--key", str(key), "-o", str(out), *extra]
    return CliRunner().invoke(main, args)


def _signed(key: Path, tmp_path: Path, *extra: str) -> SigStruct:
    out = tmp_path / "out.sig"
    result = _sign(key, out, *extra)
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert len(raw) == 1808
    return SigStruct.from_bytes(raw)


@pytest.mark.parametrize("v", SGXS_VECTORS)
def test_sign_vector_stream_gives_verifying_sigstruct(
    v: dict[str, Any], key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "enclave.sig"
    result = _sign(key_file, out, sgxs=vector(v["sgxs"]))
    assert result.exit_code == 0, result.output
    sig = SigStruct.from_bytes(out.read_bytes())
    ss.verify(sig)
    assert sig.enclavehash.hex() == v["mrenclave"]
    assert ss.mrsigner(sig) == session_signing_key().mrsigner()
    assert f"ENCLAVEHASH: {v['mrenclave']}" in result.stdout


def test_sign_stream_with_chunks_in_any_order_signs_what_was_measured(
    key_file: Path, tmp_path: Path
) -> None:
    stream, expected = reordered_fortanix_stream()
    source = tmp_path / "reordered.sgxs"
    source.write_bytes(stream)
    out = tmp_path / "reordered.sig"
    result = _sign(key_file, out, sgxs=source)
    assert result.exit_code == 0, result.output
    sig = SigStruct.from_bytes(out.read_bytes())
    ss.verify(sig)
    assert sig.enclavehash == expected
    assert f"ENCLAVEHASH: {expected.hex()}" in result.stdout


def test_defaults_are_sgxs_sign_defaults(key_file: Path, tmp_path: Path) -> None:
    sig = _signed(key_file, tmp_path)
    assert (sig.isvprodid, sig.isvsvn, sig.vendor, sig.swdefined) == (0, 0, 0, 0)
    assert sig.attributes.flags == AttributeFlags.MODE64BIT
    assert sig.attributes.xfrm == 3
    assert sig.attributemask.flags == 0xFFFF_FFFF_FFFF_FFFD
    assert sig.attributemask.xfrm == 0xFFFF_FFFF_FFFF_FF1B
    assert (sig.miscselect, sig.miscmask) == (0, 0xFFFF_FFFF)
    today = datetime.datetime.now(datetime.UTC).date()
    assert ss.date_from_bcd(sig.date) in {today, today - datetime.timedelta(days=1)}


def test_options_set_fields(key_file: Path, tmp_path: Path) -> None:
    sig = _signed(
        key_file, tmp_path, "--isvprodid", "0x10", "--isvsvn", "65535", "--debug",
        "--date", "20160109",
    )  # fmt: skip
    ss.verify(sig)
    assert (sig.isvprodid, sig.isvsvn) == (16, 65535)
    assert sig.date == 0x20160109
    assert sig.attributes.flags == AttributeFlags.MODE64BIT | AttributeFlags.DEBUG
    # DEBUG set in ATTRIBUTES and left out of the mask; every other bit still enforced
    assert sig.attributemask.flags == U64 & ~int(AttributeFlags.DEBUG)


@pytest.mark.parametrize(
    ("option", "xfrm", "mask"),
    [("3/0xe4", 3, U64 & ~0xE4), ("7", 7, U64 & ~7), ("0x1f/0", 0x1F, U64)],
)
def test_xfrm_option_takes_value_and_inverse_mask(
    key_file: Path, tmp_path: Path, option: str, xfrm: int, mask: int
) -> None:
    sig = _signed(key_file, tmp_path, "-x", option)
    assert (sig.attributes.xfrm, sig.attributemask.xfrm) == (xfrm, mask)


@pytest.mark.parametrize(
    "extra",
    [
        ["--date", "2016019"],
        ["--date", "20161301"],
        ["--isvsvn", "65536"],
        ["--isvprodid", "abc"],
        ["-x", "3/zz"],
        ["--unknown"],
    ],
)
def test_bad_options_exit_2(key_file: Path, tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "out.sig"
    result = _sign(key_file, out, *extra)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_key_option_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sgxs", "sign", str(vector(SGXS)), "-o", "x.sig"])
    assert result.exit_code == 2


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("key_bytes", "message"),
    [
        (lambda: _pem(rsa.generate_private_key(3, 2048)), "key is 2048 bits, SGX requires 3072"),
        (lambda: _pem(rsa.generate_private_key(65537, 2048)), "exponent is 65537"),
        (lambda: session_signing_key().public_key().to_pem(), "found a public key"),
        (lambda: session_signing_key().to_pem()[:500], "not a readable PEM private key"),
        (lambda: b"\x00" * 64, "not a readable PEM private key"),
    ],
    ids=["2048-bit", "e65537", "public", "truncated", "garbage"],
)
def test_bad_key_files_one_line_exit_1(tmp_path: Path, key_bytes: Any, message: str) -> None:
    key = tmp_path / "bad.pem"
    key.write_bytes(key_bytes())
    out = tmp_path / "out.sig"
    result = _sign(key, out)
    assert result.exit_code == 1
    assert "SigningKeyError" in result.stderr and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda raw: raw[:100],
        lambda raw: raw[:-1],
        lambda raw: vector("fortanix_sgxs/test_enclave.sig").read_bytes(),
        lambda raw: b"",
    ],
    ids=["truncated-record", "truncated-chunk", "not-sgxs", "empty"],
)
def test_bad_sgxs_files_one_line_exit_1(key_file: Path, tmp_path: Path, make: Any) -> None:
    sgxs = tmp_path / "bad.sgxs"
    sgxs.write_bytes(make(vector(SGXS).read_bytes()))
    out = tmp_path / "out.sig"
    result = _sign(key_file, out, sgxs=sgxs)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: InvalidStructure: SGXS")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not out.exists()
